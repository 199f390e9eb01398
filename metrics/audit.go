package metrics

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// AuditStats is the audit trail's state, as the audit package reports it at
// each scrape through Options.AuditStats.
type AuditStats struct {
	// QueueDepth is the number of events accepted but not yet written to a
	// regional database (in memory or in the spool).
	QueueDepth int
	// QueueCapacity bounds QueueDepth; 0 when unknown.
	QueueCapacity int
	// SpoolBytes is the size of the local spool.
	SpoolBytes int64
	// Written and Failed are cumulative counts of events written to the
	// regional databases and of events whose write failed.
	Written, Failed uint64
	// SpoolFsyncs and SpoolFsyncSeconds count the spool's fdatasyncs and
	// the time spent in them.
	SpoolFsyncs       uint64
	SpoolFsyncSeconds float64
	// Chains holds the chain heads of each region, keyed by region name.
	Chains map[string]ChainHeads
}

// ChainHeads summarises one region's chains without naming any tenant.
type ChainHeads struct {
	// Chains is the number of chains (one per tenant, plus the unverified one).
	Chains int
	// Entries is the sum of every chain's head sequence number.
	Entries int64
	// LastAppend is when the newest entry was appended; zero when unknown.
	LastAppend time.Time
	// CountsUnknown marks Chains and Entries as not known (the audit tables
	// could not be read): they are then left out rather than reported as 0.
	CountsUnknown bool
	// IntegrationLagSeconds is how old the oldest event of the region's
	// latest integration was when this process chained it; 0 when this
	// process is not the region's integrator or nothing was pending.
	IntegrationLagSeconds float64
}

// auditCollector reads AuditStats once per scrape.
type auditCollector struct {
	stats   func() AuditStats
	regions *boundedLabel

	queueDepth, queueCapacity, spoolBytes, written, failed *prometheus.Desc
	fsyncs, fsyncSeconds                                   *prometheus.Desc
	chains, entries, lastAppend, integrationLag            *prometheus.Desc
}

func newAuditCollector(stats func() AuditStats, regions *boundedLabel) *auditCollector {
	d := func(name, help string, labels ...string) *prometheus.Desc {
		return prometheus.NewDesc(prometheus.BuildFQName(namespace, "audit", name), help, labels, nil)
	}
	return &auditCollector{
		stats:         stats,
		regions:       regions,
		queueDepth:    d("queue_depth", "Audit events accepted but not yet written to a regional database."),
		queueCapacity: d("queue_capacity", "Capacity of the audit event queue."),
		spoolBytes:    d("spool_bytes", "Size of the local audit spool in bytes."),
		written:       d("events_written_total", "Audit events written to the regional databases."),
		failed:        d("events_failed_total", "Audit events whose write to a regional database failed."),
		fsyncs:        d("spool_fsyncs_total", "fdatasyncs of the local audit spool."),
		fsyncSeconds:  d("spool_fsync_seconds_total", "Time spent in fdatasyncs of the local audit spool."),
		chains:        d("chains", "Audit hash chains in the region (one per tenant, plus one for unverified clients).", "region"),
		entries:       d("chain_head_entries", "Sum of the head sequence numbers of the region's audit chains.", "region"),
		lastAppend:    d("last_append_timestamp_seconds", "Unix time of the newest audit entry appended in the region.", "region"),
		integrationLag: d("integration_lag_seconds",
			"Age of the oldest event when the region's integrator (if this process) last chained a batch.", "region"),
	}
}

// Describe implements prometheus.Collector.
func (c *auditCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{c.queueDepth, c.queueCapacity, c.spoolBytes, c.written, c.failed,
		c.fsyncs, c.fsyncSeconds, c.chains, c.entries, c.lastAppend, c.integrationLag} {
		ch <- d
	}
}

// Collect implements prometheus.Collector.
func (c *auditCollector) Collect(ch chan<- prometheus.Metric) {
	s := c.stats()
	ch <- prometheus.MustNewConstMetric(c.queueDepth, prometheus.GaugeValue, float64(s.QueueDepth))
	ch <- prometheus.MustNewConstMetric(c.queueCapacity, prometheus.GaugeValue, float64(s.QueueCapacity))
	ch <- prometheus.MustNewConstMetric(c.spoolBytes, prometheus.GaugeValue, float64(s.SpoolBytes))
	ch <- prometheus.MustNewConstMetric(c.written, prometheus.CounterValue, float64(s.Written))
	ch <- prometheus.MustNewConstMetric(c.failed, prometheus.CounterValue, float64(s.Failed))
	ch <- prometheus.MustNewConstMetric(c.fsyncs, prometheus.CounterValue, float64(s.SpoolFsyncs))
	ch <- prometheus.MustNewConstMetric(c.fsyncSeconds, prometheus.CounterValue, s.SpoolFsyncSeconds)
	// Aggregate first: two unknown regions both map to "other" and must not
	// produce duplicate series.
	type agg struct {
		chains  int
		entries int64
		last    time.Time
		unknown bool
		lag     float64
	}
	byRegion := map[string]*agg{}
	for name, h := range s.Chains {
		r := c.regions.value(name)
		a := byRegion[r]
		if a == nil {
			a = &agg{}
			byRegion[r] = a
		}
		a.chains += h.Chains
		a.entries += h.Entries
		a.unknown = a.unknown || h.CountsUnknown
		a.lag = max(a.lag, h.IntegrationLagSeconds)
		if h.LastAppend.After(a.last) {
			a.last = h.LastAppend
		}
	}
	for r, a := range byRegion {
		if !a.unknown {
			ch <- prometheus.MustNewConstMetric(c.chains, prometheus.GaugeValue, float64(a.chains), r)
			ch <- prometheus.MustNewConstMetric(c.entries, prometheus.GaugeValue, float64(a.entries), r)
		}
		ch <- prometheus.MustNewConstMetric(c.integrationLag, prometheus.GaugeValue, a.lag, r)
		if !a.last.IsZero() {
			ch <- prometheus.MustNewConstMetric(c.lastAppend, prometheus.GaugeValue, float64(a.last.UnixNano())/1e9, r)
		}
	}
}

// newCacheCollector exposes the policy cache's cumulative hits and misses.
func newCacheCollector(stats func() (hits, misses uint64)) prometheus.Collector {
	return &cacheCollector{
		stats: stats,
		desc: prometheus.NewDesc(prometheus.BuildFQName(namespace, "policy", "cache_requests_total"),
			"Policy analysis cache lookups, by result (hit or miss).", []string{"result"}, nil),
	}
}

type cacheCollector struct {
	stats func() (hits, misses uint64)
	desc  *prometheus.Desc
}

// Describe implements prometheus.Collector.
func (c *cacheCollector) Describe(ch chan<- *prometheus.Desc) { ch <- c.desc }

// Collect implements prometheus.Collector.
func (c *cacheCollector) Collect(ch chan<- prometheus.Metric) {
	hits, misses := c.stats()
	ch <- prometheus.MustNewConstMetric(c.desc, prometheus.CounterValue, float64(hits), "hit")
	ch <- prometheus.MustNewConstMetric(c.desc, prometheus.CounterValue, float64(misses), "miss")
}
