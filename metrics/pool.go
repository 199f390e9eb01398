package metrics

import (
	"strconv"

	"github.com/prometheus/client_golang/prometheus"
)

// PoolStats is one transaction-mode backend pool's state (pool.mode:
// transaction), as the proxy reports it at each scrape through
// Options.PoolStats: the figures of the admin console's SHOW POOLS.
type PoolStats struct {
	Region, Database string
	ReadOnly         bool
	// Clients are the sessions using the pool, Waiting those waiting for a
	// backend now; MaxWaitSeconds is the longest current wait.
	Clients, Waiting int
	MaxWaitSeconds   float64
	// Active backends are held by a client, Idle ones are not.
	Active, Idle int
}

// poolCollector reads PoolStats once per scrape.
type poolCollector struct {
	stats              func() []PoolStats
	regions, databases *boundedLabel

	clients, waiting, maxWait, active, idle *prometheus.Desc
}

func newPoolCollector(stats func() []PoolStats, regions *boundedLabel) *poolCollector {
	d := func(name, help string) *prometheus.Desc {
		return prometheus.NewDesc(prometheus.BuildFQName(namespace, "pool", name), help,
			[]string{"region", "database", "read_only"}, nil)
	}
	return &poolCollector{
		stats:   stats,
		regions: regions,
		// database names come from the configuration or, for regions
		// that name none, from clients: bounded like unconfigured regions
		databases: newBoundedLabel(nil, extraCodes, regionNamePattern),
		clients:   d("clients", "Client sessions using the transaction-mode pool."),
		waiting:   d("waiting_clients", "Clients waiting for a backend connection of the pool now."),
		maxWait:   d("max_wait_seconds", "How long the longest current wait for a backend connection of the pool has lasted."),
		active:    d("active_servers", "Backend connections of the pool held by a client."),
		idle:      d("idle_servers", "Backend connections of the pool open and not held."),
	}
}

// Describe implements prometheus.Collector.
func (c *poolCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{c.clients, c.waiting, c.maxWait, c.active, c.idle} {
		ch <- d
	}
}

// Collect implements prometheus.Collector.
func (c *poolCollector) Collect(ch chan<- prometheus.Metric) {
	// Aggregate first: names outside the bounds all read "other" and must
	// not produce duplicate series.
	type key struct{ region, database, readOnly string }
	sums := map[key]*PoolStats{}
	var order []key
	for _, s := range c.stats() {
		k := key{c.regions.value(s.Region), c.databases.value(s.Database), strconv.FormatBool(s.ReadOnly)}
		a := sums[k]
		if a == nil {
			a = &PoolStats{}
			sums[k] = a
			order = append(order, k)
		}
		a.Clients += s.Clients
		a.Waiting += s.Waiting
		a.Active += s.Active
		a.Idle += s.Idle
		a.MaxWaitSeconds = max(a.MaxWaitSeconds, s.MaxWaitSeconds)
	}
	for _, k := range order {
		a := sums[k]
		for _, m := range []struct {
			d *prometheus.Desc
			v float64
		}{{c.clients, float64(a.Clients)}, {c.waiting, float64(a.Waiting)}, {c.maxWait, a.MaxWaitSeconds},
			{c.active, float64(a.Active)}, {c.idle, float64(a.Idle)}} {
			ch <- prometheus.MustNewConstMetric(m.d, prometheus.GaugeValue, m.v, k.region, k.database, k.readOnly)
		}
	}
}
