package bench

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/pgtenant/pgtenant/cluster"
)

// TestSmokeRun runs the whole harness in --smoke mode against real
// PostgreSQL, PgBouncer and the built pgtenant, so the harness cannot rot.
// It checks what was produced, never how fast anything was.
func TestSmokeRun(t *testing.T) {
	if testing.Short() {
		t.Skip("the smoke run starts a cluster, PgBouncer twice and pgtenant once per pgtenant target; skipped with -short")
	}
	if _, err := cluster.BinDir(); errors.Is(err, cluster.ErrNoBinaries) {
		t.Skipf("no PostgreSQL server binaries: %v", err)
	}
	if _, err := findPgBouncer(); err != nil {
		t.Skipf("PgBouncer is not installed, so the pgbouncer targets cannot run (scripts/deps.sh test installs it): %v", err)
	}
	o := SmokeOptions()
	o.OutDir = filepath.Join(t.TempDir(), "results")
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	log := slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelWarn}))
	res, err := Run(ctx, o, log)
	if err != nil {
		t.Fatal(err)
	}

	if res.PolicyEnforced == nil {
		t.Error("policy_enforced was not probed")
	}
	seen := map[string]int{}
	for _, e := range res.WarmupErrors {
		t.Errorf("warm-up failed: %s", e)
	}
	for _, r := range res.Rows {
		seen[r.Target]++
		if r.Error != "" {
			t.Errorf("%s -M %s -c %d failed: %s", r.Target, r.Mode, r.Clients, r.Error)
			continue
		}
		if r.TPS <= 0 || r.Transactions <= 0 || r.Statements != r.Transactions*5 {
			t.Errorf("%s: tps %v, %d transactions, %d statements", r.Target, r.TPS, r.Transactions, r.Statements)
		}
		if r.Latency.Count <= 0 || r.Latency.MeanMs <= 0 || r.Latency.P99Ms < r.Latency.P50Ms || r.Latency.MaxMs < r.Latency.P99Ms {
			t.Errorf("%s: latency %+v", r.Target, r.Latency)
		}
		proxied := r.Target != TargetDirect
		if proxied != (r.ProxyRSSBytes != nil) || proxied != (r.ProxyCPUPer1kStatements != nil) {
			t.Errorf("%s: proxy measurements present=%v/%v, want %v", r.Target, r.ProxyRSSBytes != nil, r.ProxyCPUPer1kStatements != nil, proxied)
		}
		if r.ClusterCPUPer1kStatements == nil || *r.ClusterCPUPer1kStatements <= 0 {
			t.Errorf("%s: PostgreSQL CPU per statement %v", r.Target, deref(r.ClusterCPUPer1kStatements))
		}
		if r.ProxyRSSBytes != nil && *r.ProxyRSSBytes <= 0 {
			t.Errorf("%s: proxy RSS %d", r.Target, *r.ProxyRSSBytes)
		}
		if r.IsPgtenant() {
			for name, v := range map[string]*float64{"vs direct": r.TPSvsDirect, "vs pgbouncer session": r.TPSvsPgBouncer,
				"vs pgbouncer transaction": r.TPSvsPgBouncerTx, "p99 vs direct": r.P99vsDirect} {
				if v == nil || *v <= 0 {
					t.Errorf("%s: ratio %s not computed", r.Target, name)
				}
			}
		}
		// the audit modes are compared with the audit disabled; the
		// transaction-pooling target is not an audit mode
		auditMode := r.IsPgtenant() && r.Target != TargetPgtenantNoAudit && r.Target != TargetPgtenantTx
		if auditMode != (r.TPSvsNoAudit != nil) || (auditMode && *r.TPSvsNoAudit <= 0) {
			t.Errorf("%s: TPS vs noaudit %v, want it computed: %v", r.Target, deref(r.TPSvsNoAudit), auditMode)
		}
		// Every statement of an audited run is counted in its target's
		// audit database (TestEachAuditedTargetHasItsOwnAuditDatabase
		// checks that the databases differ).
		if stored := r.AuditStored; auditMode != (stored != nil) || (auditMode && *stored < r.Statements) {
			t.Errorf("%s: audit stored %v of %d statements, want it counted: %v", r.Target, derefInt(stored), r.Statements, auditMode)
		}
		ceiling := r.Target == TargetPgtenantSpoolGroup || r.Target == TargetPgtenantStrict
		if ceiling != (r.TPSvsCeiling != nil) || ceiling != (r.CeilingTPS != nil) || (ceiling && *r.CeilingTPS <= 0) {
			t.Errorf("%s: ceiling %v, TPS / ceiling %v", r.Target, deref(r.CeilingTPS), deref(r.TPSvsCeiling))
		}
		// pgtenant's own timings of the run: every spool fdatasyncs (the
		// interval mode too, in the background), and the strict mode's
		// statements wait for batch writes
		spooled := r.Target == TargetPgtenantSpool || r.Target == TargetPgtenantSpoolGroup
		if spooled != (r.InRunFsyncMs != nil) || (spooled && *r.InRunFsyncMs <= 0) {
			t.Errorf("%s: in-run fdatasync %v ms, want it measured: %v", r.Target, deref(r.InRunFsyncMs), spooled)
		}
		if auditMode != (r.InRunOverheadMs != nil) || (auditMode && *r.InRunOverheadMs <= 0) {
			t.Errorf("%s: in-run overhead %v ms per statement, want it measured: %v", r.Target, deref(r.InRunOverheadMs), auditMode)
		}
		if r.Target == TargetPgtenantStrict && (r.InRunWriteMs == nil || *r.InRunWriteMs <= 0 || r.InRunBoundTPS == nil) {
			t.Errorf("%s: in-run batch write %v ms, bound %v", r.Target, deref(r.InRunWriteMs), deref(r.InRunBoundTPS))
		}
	}
	if d := res.Durability; d == nil || d.FdatasyncMeanMs <= 0 || d.CommitMeanMs <= 0 {
		t.Errorf("durability latencies not measured: %+v", d)
	}
	for _, target := range AllTargets {
		if seen[target] != len(o.Modes)*len(o.Clients) {
			t.Errorf("target %s has %d rows, want %d", target, seen[target], len(o.Modes)*len(o.Clients))
		}
	}

	sc := res.Scale
	if sc == nil {
		t.Fatal("no connection-scale result")
	}
	if sc.Opened != o.IdleConns || sc.Failed != 0 || sc.RSSAfterBytes <= 0 || sc.RSSBeforeBytes <= 0 {
		t.Errorf("scale run: %+v", sc)
	}

	b, err := os.ReadFile(filepath.Join(o.OutDir, "results.json"))
	if err != nil {
		t.Fatal(err)
	}
	var back Results
	if err := json.Unmarshal(b, &back); err != nil {
		t.Fatalf("results.json: %v", err)
	}
	if len(back.Rows) != len(res.Rows) || back.Scale == nil {
		t.Errorf("results.json has %d rows (want %d), scale %v", len(back.Rows), len(res.Rows), back.Scale)
	}
	md, err := os.ReadFile(filepath.Join(o.OutDir, "results.md"))
	if err != nil {
		t.Fatal(err)
	}
	for _, target := range AllTargets {
		if !strings.Contains(string(md), "| "+target+" | ") {
			t.Errorf("results.md has no row for %s", target)
		}
	}
	for _, table := range []string{"## Relay", "## Transaction pooling"} {
		if !strings.Contains(string(md), table) {
			t.Errorf("results.md has no %q table", table)
		}
	}
	if !strings.Contains(string(md), "## Audit modes against the audit disabled and their durability ceiling") {
		t.Errorf("results.md has no durability ceiling table")
	}
}

// testWriter sends log lines to t.Log.
type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

func derefInt(p *int64) any {
	if p == nil {
		return nil
	}
	return *p
}
