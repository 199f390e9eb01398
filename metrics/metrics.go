package metrics

import (
	"net/http"
	"runtime"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// namespace prefixes every metric name.
const namespace = "pgtenant"

// Options configures New. Every field is optional.
type Options struct {
	// Version and Commit are reported by pgtenant_build_info.
	Version string
	Commit  string
	// Regions are the configured region names; other values are reported as
	// "other". Empty means any region name (up to a small cap) is accepted.
	Regions []string
	// DenyReasons and RejectReasons extend DefaultDenyReasons and
	// DefaultRejectReasons.
	DenyReasons   []string
	RejectReasons []string
	// AuditStats is called at each scrape for the audit trail's state.
	AuditStats func() AuditStats
	// CacheStats is called at each scrape for the policy analysis cache's
	// cumulative hits and misses.
	CacheStats func() (hits, misses uint64)
	// PoolStats is called at each scrape for the transaction-mode backend
	// pools (none in pool.mode: session).
	PoolStats func() []PoolStats
	// NoRuntimeCollectors leaves out the Go runtime and process collectors.
	NoRuntimeCollectors bool
}

// Metrics holds pgtenant's collectors. It implements proxy.Metrics and is
// safe for concurrent use. The zero value is not usable; call New.
type Metrics struct {
	reg *prometheus.Registry

	regions       *boundedLabel
	denyReasons   *boundedLabel
	rejectReasons *boundedLabel

	clientsOpen     prometheus.Gauge
	clientsAccepted prometheus.Counter
	clientsRejected *prometheus.CounterVec

	statements        *prometheus.CounterVec
	statementOverhead *prometheus.HistogramVec
	statementDuration *prometheus.HistogramVec

	backendDials      *prometheus.CounterVec
	backendDialErrors *prometheus.CounterVec
	regionUp          *prometheus.GaugeVec

	auditBatchSize     *prometheus.HistogramVec
	auditWriteDuration *prometheus.HistogramVec
	auditWriteErrors   *prometheus.CounterVec

	configReloads    *prometheus.CounterVec
	configReloadTime prometheus.Gauge

	// perRegion caches the hot-path children of each configured region; it
	// is read-only after New.
	perRegion map[string]regionChildren
	allowed   prometheus.Counter // statements_total{verdict="allow",reason=""}
}

// regionChildren are one region's per-statement observers.
type regionChildren struct {
	overhead, duration prometheus.Observer
}

// New creates the collectors and registers them on a new registry.
func New(o Options) *Metrics {
	regionExtra := 0
	var regionPattern = codePattern
	if len(o.Regions) == 0 {
		regionExtra = extraCodes
		regionPattern = regionNamePattern
	}
	m := &Metrics{
		reg:           prometheus.NewRegistry(),
		regions:       newBoundedLabel(o.Regions, regionExtra, regionPattern),
		denyReasons:   newBoundedLabel(append(append([]string{}, DefaultDenyReasons...), o.DenyReasons...), extraCodes, codePattern),
		rejectReasons: newBoundedLabel(append(append([]string{}, DefaultRejectReasons...), o.RejectReasons...), extraCodes, codePattern),
	}
	f := factory{m.reg}

	m.clientsOpen = f.gauge("client_connections", "Client connections currently open.")
	m.clientsAccepted = f.counter("client_connections_accepted_total", "Client connections accepted.")
	m.clientsRejected = f.counterVec("client_connections_rejected_total", "Client connections rejected before a session started, by reason.", "reason")

	m.statements = f.counterVec("statements_total", "Client messages decided by the policy (simple queries, Parse and Bind), by verdict and deny reason (empty when allowed).", "verdict", "reason")
	m.statementOverhead = f.histogramVec("statement_overhead_seconds", "Time pgtenant itself adds to a statement (parse, policy, audit), excluding the backend.", overheadBuckets, "region")
	m.statementDuration = f.histogramVec("statement_duration_seconds", "End-to-end statement latency as the client sees it, backend included.", durationBuckets, "region")

	m.allowed = m.statements.WithLabelValues("allow", "")

	m.backendDials = f.counterVec("backend_connections_total", "Backend connections opened, by region.", "region")
	m.backendDialErrors = f.counterVec("backend_dial_errors_total", "Failed backend dials, by region.", "region")
	m.regionUp = f.gaugeVec("region_up", "Whether the region's backend was reachable at the last dial or probe (1) or not (0).", "region")

	m.auditBatchSize = f.histogramVec("audit_batch_size", "Events per audit batch written to a region's database.", prometheus.ExponentialBuckets(1, 2, 12), "region")
	m.auditWriteDuration = f.histogramVec("audit_write_duration_seconds", "Latency of one audit batch write, commit included (for a batch handed to this process's own integrator, until the round that wrote it committed).", durationBuckets, "region")
	m.auditWriteErrors = f.counterVec("audit_write_errors_total", "Audit batch writes that failed, by region.", "region")

	m.configReloads = f.counterVec("config_reloads_total", "Configuration reloads, by result (success or failure).", "result")
	m.configReloadTime = f.gauge("config_last_reload_success_timestamp_seconds", "Unix time of the last successful configuration load.")

	m.perRegion = make(map[string]regionChildren, len(o.Regions))
	for _, r := range o.Regions {
		m.backendDials.WithLabelValues(r)
		m.backendDialErrors.WithLabelValues(r)
		// the audit families exist from the start (zero until the first
		// write), so dashboards and alerts see them before any traffic
		m.auditBatchSize.WithLabelValues(r)
		m.auditWriteDuration.WithLabelValues(r)
		m.auditWriteErrors.WithLabelValues(r)
		m.perRegion[r] = regionChildren{
			overhead: m.statementOverhead.WithLabelValues(r),
			duration: m.statementDuration.WithLabelValues(r),
		}
	}
	for _, v := range []string{"success", "failure"} {
		m.configReloads.WithLabelValues(v)
	}
	// every known rejection reason exists from the start, at 0
	for _, r := range append(append([]string{}, DefaultRejectReasons...), o.RejectReasons...) {
		m.clientsRejected.WithLabelValues(m.rejectReasons.value(r))
	}
	m.configReloadTime.SetToCurrentTime()

	buildInfo := prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Namespace: namespace, Name: "build_info",
		Help: "Build information; the value is always 1.",
	}, []string{"version", "commit", "goversion"})
	buildInfo.WithLabelValues(orUnknown(o.Version), orUnknown(o.Commit), runtime.Version()).Set(1)
	m.reg.MustRegister(buildInfo)

	if o.AuditStats != nil {
		m.reg.MustRegister(newAuditCollector(o.AuditStats, m.regions))
	}
	if o.CacheStats != nil {
		m.reg.MustRegister(newCacheCollector(o.CacheStats))
	}
	if o.PoolStats != nil {
		m.reg.MustRegister(newPoolCollector(o.PoolStats, m.regions))
	}
	if !o.NoRuntimeCollectors {
		m.reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	}
	return m
}

// Registry returns the registry holding every pgtenant collector.
func (m *Metrics) Registry() *prometheus.Registry { return m.reg }

// Handler serves the registry in the Prometheus exposition formats.
func (m *Metrics) Handler() http.Handler {
	return promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{
		Registry:      m.reg,
		ErrorHandling: promhttp.ContinueOnError,
	})
}

// ConfigReloaded counts a configuration load; err nil means success.
func (m *Metrics) ConfigReloaded(err error) {
	if err != nil {
		m.configReloads.WithLabelValues("failure").Inc()
		return
	}
	m.configReloads.WithLabelValues("success").Inc()
	m.configReloadTime.SetToCurrentTime()
}

// SetRegionUp records the outcome of a reachability probe of region.
func (m *Metrics) SetRegionUp(region string, up bool) {
	m.regionUp.WithLabelValues(m.regions.value(region)).Set(boolFloat(up))
}

// ObserveAuditBatch records one audit batch write of size events to region
// that took elapsed; err is the write's outcome. ObserveAuditBatches
// records several at once.
func (m *Metrics) ObserveAuditBatch(region string, size int, elapsed time.Duration, err error) {
	r := m.regions.value(region)
	m.auditBatchSize.WithLabelValues(r).Observe(float64(size))
	m.auditWriteDuration.WithLabelValues(r).Observe(elapsed.Seconds())
	if err != nil {
		m.auditWriteErrors.WithLabelValues(r).Inc()
	}
}

// ObserveAuditBatches records n batch writes of region, each of size events
// taking elapsed (averages over a sampling interval), and failed failed writes.
func (m *Metrics) ObserveAuditBatches(region string, n int, size float64, elapsed time.Duration, failed int) {
	r := m.regions.value(region)
	bs, wd := m.auditBatchSize.WithLabelValues(r), m.auditWriteDuration.WithLabelValues(r)
	for i := 0; i < n; i++ {
		bs.Observe(size)
		wd.Observe(elapsed.Seconds())
	}
	if failed > 0 {
		m.auditWriteErrors.WithLabelValues(r).Add(float64(failed))
	}
}

// Buckets in seconds: overhead is pgtenant's own work (tens of microseconds
// when cached, milliseconds with a strict-mode audit commit); duration covers
// whole statements.
var (
	overheadBuckets = []float64{.00001, .000025, .00005, .0001, .00025, .0005, .001, .0025, .005, .01, .025, .05, .1, .25}
	durationBuckets = []float64{.0001, .00025, .0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30}
)

func boolFloat(b bool) float64 {
	if b {
		return 1
	}
	return 0
}

func orUnknown(s string) string {
	if s == "" {
		return "unknown"
	}
	return s
}
