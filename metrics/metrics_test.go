package metrics_test

import (
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/pgtenant/pgtenant/metrics"
	"github.com/pgtenant/pgtenant/proxy"
)

// Interface guard: the proxy consumes *metrics.Metrics.
var _ proxy.Metrics = (*metrics.Metrics)(nil)

func newTestMetrics(o metrics.Options) *metrics.Metrics {
	o.NoRuntimeCollectors = true
	if o.Regions == nil {
		o.Regions = []string{"eu-west", "us-east"}
	}
	return metrics.New(o)
}

func TestClientConnections(t *testing.T) {
	m := newTestMetrics(metrics.Options{})
	for range 3 {
		m.ClientAccepted()
	}
	m.ClientClosed()
	m.ClientRejected("auth_bad_signature")
	m.ClientRejected("auth_bad_signature")
	m.ClientRejected("Token eyJhbGciOi...") // free text must not become a label value
	// every known reason is exported from the start, at 0
	var rejected strings.Builder
	for _, r := range append(slices.Sorted(slices.Values(metrics.DefaultRejectReasons)), "other") {
		n := map[string]int{"auth_bad_signature": 2, "other": 1}[r]
		fmt.Fprintf(&rejected, "pgtenant_client_connections_rejected_total{reason=%q} %d\n", r, n)
	}
	err := testutil.GatherAndCompare(m.Registry(), strings.NewReader(`
# HELP pgtenant_client_connections Client connections currently open.
# TYPE pgtenant_client_connections gauge
pgtenant_client_connections 2
# HELP pgtenant_client_connections_accepted_total Client connections accepted.
# TYPE pgtenant_client_connections_accepted_total counter
pgtenant_client_connections_accepted_total 3
# HELP pgtenant_client_connections_rejected_total Client connections rejected before a session started, by reason.
# TYPE pgtenant_client_connections_rejected_total counter
`+rejected.String()), "pgtenant_client_connections", "pgtenant_client_connections_accepted_total", "pgtenant_client_connections_rejected_total")
	if err != nil {
		t.Fatal(err)
	}
}

func TestStatementsByVerdictAndReason(t *testing.T) {
	m := newTestMetrics(metrics.Options{DenyReasons: []string{"custom_rule"}})
	m.StatementDecided("allow", "")
	m.StatementDecided("allow", "ignored")
	m.StatementDecided("deny", "unscoped_table")
	m.StatementDecided("deny", "custom_rule")
	m.StatementDecided("deny", "SELECT * FROM secrets WHERE account_id = 7") // SQL never becomes a label
	m.StatementDecided("maybe", "x")
	err := testutil.GatherAndCompare(m.Registry(), strings.NewReader(`
# HELP pgtenant_statements_total Client messages decided by the policy (simple queries, Parse and Bind), by verdict and deny reason (empty when allowed).
# TYPE pgtenant_statements_total counter
pgtenant_statements_total{reason="",verdict="allow"} 2
pgtenant_statements_total{reason="custom_rule",verdict="deny"} 1
pgtenant_statements_total{reason="other",verdict="deny"} 1
pgtenant_statements_total{reason="unscoped_table",verdict="deny"} 1
pgtenant_statements_total{reason="",verdict="other"} 1
`), "pgtenant_statements_total")
	if err != nil {
		t.Fatal(err)
	}
}

func TestReasonLabelIsBounded(t *testing.T) {
	m := newTestMetrics(metrics.Options{})
	for i := range 500 {
		m.StatementDecided("deny", fmt.Sprintf("code_%d", i))
		m.ClientRejected(fmt.Sprintf("code_%d", i))
	}
	// Every account id as a reason: still bounded.
	for i := range 500 {
		m.StatementDecided("deny", fmt.Sprint(i))
	}
	if n := testutil.CollectAndCount(m.Registry(), "pgtenant_statements_total"); n > len(metrics.DefaultDenyReasons)+33 {
		t.Fatalf("statements_total has %d series; label set is not bounded", n)
	}
	if n := testutil.CollectAndCount(m.Registry(), "pgtenant_client_connections_rejected_total"); n > len(metrics.DefaultRejectReasons)+33 {
		t.Fatalf("client_connections_rejected_total has %d series; label set is not bounded", n)
	}
}

func TestBackendAndRegionHealth(t *testing.T) {
	m := newTestMetrics(metrics.Options{})
	m.BackendDialed("eu-west", nil)
	m.BackendDialed("eu-west", nil)
	m.BackendDialed("us-east", errors.New("connection refused"))
	m.BackendDialed("mars-1", nil) // not configured
	err := testutil.GatherAndCompare(m.Registry(), strings.NewReader(`
# HELP pgtenant_backend_connections_total Backend connections opened, by region.
# TYPE pgtenant_backend_connections_total counter
pgtenant_backend_connections_total{region="eu-west"} 2
pgtenant_backend_connections_total{region="other"} 1
pgtenant_backend_connections_total{region="us-east"} 0
# HELP pgtenant_backend_dial_errors_total Failed backend dials, by region.
# TYPE pgtenant_backend_dial_errors_total counter
pgtenant_backend_dial_errors_total{region="eu-west"} 0
pgtenant_backend_dial_errors_total{region="us-east"} 1
# HELP pgtenant_region_up Whether the region's backend was reachable at the last dial or probe (1) or not (0).
# TYPE pgtenant_region_up gauge
pgtenant_region_up{region="eu-west"} 1
pgtenant_region_up{region="other"} 1
pgtenant_region_up{region="us-east"} 0
`), "pgtenant_backend_connections_total", "pgtenant_backend_dial_errors_total", "pgtenant_region_up")
	if err != nil {
		t.Fatal(err)
	}
	m.SetRegionUp("us-east", true)
	if h := scrape(t, m); !strings.Contains(h, `pgtenant_region_up{region="us-east"} 1`+"\n") {
		t.Fatalf("region_up{us-east} not 1 after a successful probe:\n%s", h)
	}
}

func TestLatencyHistograms(t *testing.T) {
	m := newTestMetrics(metrics.Options{})
	m.StatementDone("eu-west", 40*time.Microsecond, 3*time.Millisecond)
	m.StatementDone("eu-west", 60*time.Microsecond, 2*time.Second)
	h := scrape(t, m)
	for _, want := range []string{
		`pgtenant_statement_overhead_seconds_count{region="eu-west"} 2`,
		`pgtenant_statement_overhead_seconds_bucket{region="eu-west",le="5e-05"} 1`,
		`pgtenant_statement_overhead_seconds_bucket{region="eu-west",le="0.0001"} 2`,
		`pgtenant_statement_overhead_seconds_sum{region="eu-west"} 0.0001`,
		`pgtenant_statement_duration_seconds_count{region="eu-west"} 2`,
		`pgtenant_statement_duration_seconds_bucket{region="eu-west",le="0.005"} 1`,
		`pgtenant_statement_duration_seconds_bucket{region="eu-west",le="2.5"} 2`,
	} {
		if !strings.Contains(h, want+"\n") {
			t.Errorf("exposition lacks %q", want)
		}
	}
}

func TestAuditAndCacheHooks(t *testing.T) {
	stats := metrics.AuditStats{QueueDepth: 7, QueueCapacity: 100, SpoolBytes: 4096, Written: 12, Failed: 1,
		SpoolFsyncs: 3, SpoolFsyncSeconds: 0.0015,
		Chains: map[string]metrics.ChainHeads{
			"eu-west": {Chains: 3, Entries: 40, LastAppend: time.Unix(1700000000, 0)},
			"x1":      {Chains: 1, Entries: 2},
			"x2":      {Chains: 1, Entries: 5},
		}}
	hits, misses := uint64(9), uint64(4)
	m := newTestMetrics(metrics.Options{
		AuditStats: func() metrics.AuditStats { return stats },
		CacheStats: func() (uint64, uint64) { return hits, misses },
	})
	m.ObserveAuditBatch("eu-west", 64, 3*time.Millisecond, nil)
	m.ObserveAuditBatch("eu-west", 2, time.Millisecond, errors.New("connection reset"))
	expected := `
# HELP pgtenant_audit_queue_depth Audit events accepted but not yet written to a regional database.
# TYPE pgtenant_audit_queue_depth gauge
pgtenant_audit_queue_depth 7
# HELP pgtenant_audit_events_written_total Audit events written to the regional databases.
# TYPE pgtenant_audit_events_written_total counter
pgtenant_audit_events_written_total 12
# HELP pgtenant_audit_events_failed_total Audit events whose write to a regional database failed.
# TYPE pgtenant_audit_events_failed_total counter
pgtenant_audit_events_failed_total 1
# HELP pgtenant_audit_spool_fsyncs_total fdatasyncs of the local audit spool.
# TYPE pgtenant_audit_spool_fsyncs_total counter
pgtenant_audit_spool_fsyncs_total 3
# HELP pgtenant_audit_spool_fsync_seconds_total Time spent in fdatasyncs of the local audit spool.
# TYPE pgtenant_audit_spool_fsync_seconds_total counter
pgtenant_audit_spool_fsync_seconds_total 0.0015
# HELP pgtenant_audit_chains Audit hash chains in the region (one per tenant, plus one for unverified clients).
# TYPE pgtenant_audit_chains gauge
pgtenant_audit_chains{region="eu-west"} 3
pgtenant_audit_chains{region="other"} 2
# HELP pgtenant_audit_chain_head_entries Sum of the head sequence numbers of the region's audit chains.
# TYPE pgtenant_audit_chain_head_entries gauge
pgtenant_audit_chain_head_entries{region="eu-west"} 40
pgtenant_audit_chain_head_entries{region="other"} 7
# HELP pgtenant_audit_last_append_timestamp_seconds Unix time of the newest audit entry appended in the region.
# TYPE pgtenant_audit_last_append_timestamp_seconds gauge
pgtenant_audit_last_append_timestamp_seconds{region="eu-west"} 1.7e+09
# HELP pgtenant_audit_write_errors_total Audit batch writes that failed, by region.
# TYPE pgtenant_audit_write_errors_total counter
pgtenant_audit_write_errors_total{region="eu-west"} 1
pgtenant_audit_write_errors_total{region="us-east"} 0
# HELP pgtenant_policy_cache_requests_total Policy analysis cache lookups, by result (hit or miss).
# TYPE pgtenant_policy_cache_requests_total counter
pgtenant_policy_cache_requests_total{result="hit"} 9
pgtenant_policy_cache_requests_total{result="miss"} 4
`
	names := []string{"pgtenant_audit_queue_depth", "pgtenant_audit_events_written_total", "pgtenant_audit_events_failed_total",
		"pgtenant_audit_spool_fsyncs_total", "pgtenant_audit_spool_fsync_seconds_total",
		"pgtenant_audit_chains", "pgtenant_audit_chain_head_entries", "pgtenant_audit_last_append_timestamp_seconds",
		"pgtenant_audit_write_errors_total", "pgtenant_policy_cache_requests_total"}
	if err := testutil.GatherAndCompare(m.Registry(), strings.NewReader(expected), names...); err != nil {
		t.Fatal(err)
	}
	// The hooks are read at scrape time, not at registration.
	stats.QueueDepth, hits = 0, 10
	h := scrape(t, m)
	for _, want := range []string{"pgtenant_audit_queue_depth 0", `pgtenant_policy_cache_requests_total{result="hit"} 10`,
		`pgtenant_audit_batch_size_count{region="eu-west"} 2`, `pgtenant_audit_batch_size_sum{region="eu-west"} 66`,
		`pgtenant_audit_write_duration_seconds_count{region="eu-west"} 2`} {
		if !strings.Contains(h, want+"\n") {
			t.Errorf("exposition lacks %q", want)
		}
	}
}

// The transaction-mode pools appear per region, database and read-only
// flag, with unknown regions folded into "other" (summed, one series).
func TestPoolHook(t *testing.T) {
	pools := []metrics.PoolStats{
		{Region: "eu-west", Database: "app", Clients: 40, Waiting: 3, MaxWaitSeconds: 0.25, Active: 20},
		{Region: "eu-west", Database: "app", ReadOnly: true, Clients: 2, Idle: 1},
		{Region: "mars-1", Database: "app", Clients: 1, Idle: 2},
		{Region: "mars-2", Database: "app", Clients: 1, Active: 1, MaxWaitSeconds: 0.5},
	}
	m := newTestMetrics(metrics.Options{PoolStats: func() []metrics.PoolStats { return pools }})
	expected := `
# HELP pgtenant_pool_clients Client sessions using the transaction-mode pool.
# TYPE pgtenant_pool_clients gauge
pgtenant_pool_clients{database="app",read_only="false",region="eu-west"} 40
pgtenant_pool_clients{database="app",read_only="false",region="other"} 2
pgtenant_pool_clients{database="app",read_only="true",region="eu-west"} 2
# HELP pgtenant_pool_waiting_clients Clients waiting for a backend connection of the pool now.
# TYPE pgtenant_pool_waiting_clients gauge
pgtenant_pool_waiting_clients{database="app",read_only="false",region="eu-west"} 3
pgtenant_pool_waiting_clients{database="app",read_only="false",region="other"} 0
pgtenant_pool_waiting_clients{database="app",read_only="true",region="eu-west"} 0
# HELP pgtenant_pool_max_wait_seconds How long the longest current wait for a backend connection of the pool has lasted.
# TYPE pgtenant_pool_max_wait_seconds gauge
pgtenant_pool_max_wait_seconds{database="app",read_only="false",region="eu-west"} 0.25
pgtenant_pool_max_wait_seconds{database="app",read_only="false",region="other"} 0.5
pgtenant_pool_max_wait_seconds{database="app",read_only="true",region="eu-west"} 0
# HELP pgtenant_pool_active_servers Backend connections of the pool held by a client.
# TYPE pgtenant_pool_active_servers gauge
pgtenant_pool_active_servers{database="app",read_only="false",region="eu-west"} 20
pgtenant_pool_active_servers{database="app",read_only="false",region="other"} 1
pgtenant_pool_active_servers{database="app",read_only="true",region="eu-west"} 0
# HELP pgtenant_pool_idle_servers Backend connections of the pool open and not held.
# TYPE pgtenant_pool_idle_servers gauge
pgtenant_pool_idle_servers{database="app",read_only="false",region="eu-west"} 0
pgtenant_pool_idle_servers{database="app",read_only="false",region="other"} 2
pgtenant_pool_idle_servers{database="app",read_only="true",region="eu-west"} 1
`
	if err := testutil.GatherAndCompare(m.Registry(), strings.NewReader(expected), "pgtenant_pool_clients",
		"pgtenant_pool_waiting_clients", "pgtenant_pool_max_wait_seconds", "pgtenant_pool_active_servers",
		"pgtenant_pool_idle_servers"); err != nil {
		t.Fatal(err)
	}
	pools = nil // session mode: no pool, no series
	if h := scrape(t, m); strings.Contains(h, "pgtenant_pool_clients{") {
		t.Fatal("pool series without a pool")
	}
}

func TestConfigReloadsAndBuildInfo(t *testing.T) {
	m := newTestMetrics(metrics.Options{Version: "1.2.3", Commit: "abc123"})
	m.ConfigReloaded(nil)
	m.ConfigReloaded(errors.New("bad key"))
	m.ConfigReloaded(errors.New("bad key"))
	h := scrape(t, m)
	for _, want := range []string{
		`pgtenant_config_reloads_total{result="success"} 1`,
		`pgtenant_config_reloads_total{result="failure"} 2`,
		`pgtenant_build_info{commit="abc123",goversion="go`,
		`version="1.2.3"} 1`,
	} {
		if !strings.Contains(h, want) {
			t.Errorf("exposition lacks %q", want)
		}
	}
}

// TestNamingConventions runs Prometheus' own metric linter over every family.
func TestNamingConventions(t *testing.T) {
	m := metrics.New(metrics.Options{
		Regions:    []string{"eu-west"},
		AuditStats: func() metrics.AuditStats { return metrics.AuditStats{} },
		CacheStats: func() (uint64, uint64) { return 0, 0 },
	})
	m.ClientAccepted()
	m.ClientRejected("auth_bad_signature")
	m.StatementDecided("deny", "ddl")
	m.StatementDone("eu-west", time.Microsecond, time.Millisecond)
	m.BackendDialed("eu-west", nil)
	m.ObserveAuditBatch("eu-west", 1, time.Millisecond, nil)
	problems, err := testutil.GatherAndLint(m.Registry())
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range problems {
		t.Errorf("%s: %s", p.Metric, p.Text)
	}
	h := scrape(t, m)
	if !strings.Contains(h, "go_goroutines") || !strings.Contains(h, "process_") {
		t.Error("runtime collectors missing from the default registry")
	}
}

func scrape(t *testing.T, m *metrics.Metrics) string {
	t.Helper()
	srv := httptest.NewServer(m.Handler())
	defer srv.Close()
	resp, err := http.Get(srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET /metrics: %s: %s", resp.Status, b)
	}
	return string(b)
}
