package bench

import (
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

func TestComputeRatios(t *testing.T) {
	res := &Results{Rows: []Row{
		{Target: TargetDirect, Mode: "simple", Clients: 8, TPS: 1000, Latency: Latency{P99Ms: 2}},
		{Target: TargetPgBouncerSess, Mode: "simple", Clients: 8, TPS: 800},
		{Target: TargetPgBouncerTx, Mode: "simple", Clients: 8, TPS: 500},
		{Target: TargetPgtenantSpool, Mode: "simple", Clients: 8, TPS: 400, Latency: Latency{P99Ms: 5}},
		// Another mode: no reference rows, so no ratios.
		{Target: TargetPgtenantSpool, Mode: "prepared", Clients: 8, TPS: 450},
		// A reference with zero throughput gives no ratio rather than +Inf.
		{Target: TargetDirect, Mode: "extended", Clients: 1, TPS: 0},
		{Target: TargetPgtenantAsync, Mode: "extended", Clients: 1, TPS: 10},
	}}
	res.computeRatios()
	r := res.Rows[3]
	check := func(name string, got *float64, want float64) {
		t.Helper()
		if got == nil || *got != want {
			t.Errorf("%s = %v, want %v", name, deref(got), want)
		}
	}
	check("tps vs direct", r.TPSvsDirect, 0.4)
	check("tps vs pgbouncer session", r.TPSvsPgBouncer, 0.5)
	check("tps vs pgbouncer transaction", r.TPSvsPgBouncerTx, 0.8)
	check("p99 vs direct", r.P99vsDirect, 2.5)
	if p := res.Rows[4]; p.TPSvsDirect != nil || p.TPSvsPgBouncer != nil || p.TPSvsPgBouncerTx != nil {
		t.Errorf("prepared row got ratios without references: %+v", p)
	}
	if res.Rows[6].TPSvsDirect != nil {
		t.Errorf("ratio against a zero-TPS reference: %v", *res.Rows[6].TPSvsDirect)
	}
	for _, i := range []int{0, 1, 2} {
		if res.Rows[i].TPSvsDirect != nil {
			t.Errorf("reference row %s got a ratio", res.Rows[i].Target)
		}
	}
}

func deref(p *float64) any {
	if p == nil {
		return nil
	}
	return *p
}

func TestWriteJSONAndMarkdown(t *testing.T) {
	cpu, rss, ratio := 0.25, int64(30<<20), 0.5
	scale := &ScaleResult{Target: "pgtenant-spool", Requested: 100, Opened: 100, RSSBeforeBytes: 20 << 20, RSSAfterBytes: 30 << 20, RSSPerConnBytes: 104857.6}
	on := true
	res := &Results{StartedAt: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC), PolicyEnforced: &on, Scale: scale,
		Settings: Settings{DurationSeconds: 20, StatementsPerTx: 5, Tenants: 1000, RowsPerTenant: 1000, Tenant: 42},
		Rows: []Row{
			{Target: TargetDirect, Mode: "simple", Clients: 8, TPS: 1000, Latency: Latency{MeanMs: 8, P99Ms: 20}},
			{Target: TargetPgtenantStrict, Mode: "simple", Clients: 8, TPS: 500, ProxyCPUPer1kStatements: &cpu, ProxyRSSBytes: &rss, TPSvsDirect: &ratio},
			{Target: TargetPgtenantAsync, Mode: "simple", Clients: 64, Error: "pgbench: hung"},
		}, WarmupErrors: []string{"pgtenant-spool: boom"}}
	dir := filepath.Join(t.TempDir(), "out")
	if err := res.write(dir); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(filepath.Join(dir, "results.json"))
	if err != nil {
		t.Fatal(err)
	}
	var back Results
	if err := json.Unmarshal(b, &back); err != nil {
		t.Fatal(err)
	}
	if len(back.Rows) != 3 || back.Rows[2].Error != "pgbench: hung" || len(res.Failed()) != 1 || back.Rows[1].TPSvsDirect == nil || *back.Rows[1].TPSvsDirect != 0.5 ||
		back.Rows[0].ProxyRSSBytes != nil || back.Scale == nil || back.Scale.Opened != 100 {
		t.Errorf("JSON round trip: %+v", back)
	}
	md, err := os.ReadFile(filepath.Join(dir, "results.md"))
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		"| direct | simple | 8 | 1000 | 8.00 | 20.00 | – |",
		"| pgtenant-strict | simple | 8 | 500 |",
		"| 0.50 |", "| 250.0 | – | 30.0 |",
		"| pgtenant-spool | 100 | 100 | 0 |", "| 102.4 |",
		"policy was enforcing",
		"| pgtenant-async | simple | 64 | FAILED",
		"- pgtenant-async -M simple -c 64: pgbench: hung",
		"- warm-up pgtenant-spool: boom",
	} {
		if !strings.Contains(string(md), want) {
			t.Errorf("results.md lacks %q:\n%s", want, md)
		}
	}
}

func TestRelaySummary(t *testing.T) {
	pgtCPU, bSessCPU, bTxCPU := 0.009, 0.010, 0.012
	res := &Results{Rows: []Row{
		{Target: TargetPgBouncerSess, Mode: "extended", Clients: 8, TPS: 1000, ProxyCPUPer1kStatements: &bSessCPU},
		{Target: TargetPgBouncerTx, Mode: "extended", Clients: 8, TPS: 800, ProxyCPUPer1kStatements: &bTxCPU},
		{Target: TargetPgtenantNoAudit, Mode: "extended", Clients: 8, TPS: 1100, ProxyCPUPer1kStatements: &pgtCPU},
		{Target: TargetPgtenantAsync, Mode: "extended", Clients: 8, TPS: 300},
	}}
	res.computeRatios()
	var md strings.Builder
	res.Markdown(&md)
	want := "| extended | 8 | 1100 | 1.10 | 1.38 | 9.0 | 10.0 | 12.0 |"
	if !strings.Contains(md.String(), "## Relay: pgtenant") || !strings.Contains(md.String(), want) {
		t.Errorf("relay summary lacks %q:\n%s", want, md.String())
	}
	// Without a pgtenant-noaudit row there is no summary.
	res.Rows = res.Rows[:2]
	md.Reset()
	res.Markdown(&md)
	if strings.Contains(md.String(), "## Relay") {
		t.Errorf("relay summary without pgtenant-noaudit rows:\n%s", md.String())
	}
}

func TestTxSummary(t *testing.T) {
	pgtCPU, bTxCPU := 0.011, 0.010
	res := &Results{Settings: Settings{PoolSize: 20}, Rows: []Row{
		{Target: TargetPgBouncerTx, Mode: "simple", Clients: 500, TPS: 4000, ProxyCPUPer1kStatements: &bTxCPU},
		{Target: TargetPgtenantTx, Mode: "simple", Clients: 500, TPS: 4400, ProxyCPUPer1kStatements: &pgtCPU},
		{Target: TargetPgtenantTx, Mode: "prepared", Clients: 500, TPS: 5000, ProxyCPUPer1kStatements: &pgtCPU},
		{Target: TargetPgtenantTx, Mode: "extended", Clients: 64, Error: "pgbench: boom"},
		{Target: TargetPgBouncerTx, Mode: "extended", Clients: 64, TPS: 3000},
	}}
	res.computeRatios()
	var md strings.Builder
	res.Markdown(&md)
	for _, want := range []string{
		"## Transaction pooling", "Both pools hold 20 backends",
		"| simple | 500 | 4400 | 4000 | 1.10 | 11.0 | 10.0 |",
		"| prepared | 500 | 5000 | cannot (PgBouncer < 1.21) | – | 11.0 | – |",
		"| extended | 64 | FAILED | 3000 | – | – | – |",
	} {
		if !strings.Contains(md.String(), want) {
			t.Errorf("transaction pooling table lacks %q:\n%s", want, md.String())
		}
	}
	// Without a pgtenant-transaction row there is no table.
	res.Rows = res.Rows[:1]
	md.Reset()
	res.Markdown(&md)
	if strings.Contains(md.String(), "## Transaction pooling") {
		t.Errorf("transaction pooling table without pgtenant-transaction rows:\n%s", md.String())
	}
}

func TestOptionsValidate(t *testing.T) {
	for name, o := range map[string]Options{"default": DefaultOptions(), "smoke": SmokeOptions()} {
		if err := o.Validate(); err != nil {
			t.Errorf("%s options: %v", name, err)
		}
	}
	bad := map[string]func(*Options){
		"--duration":   func(o *Options) { o.Duration = 500 * time.Millisecond },
		"--rounds":     func(o *Options) { o.Rounds = 0 },
		"--warmup":     func(o *Options) { o.Warmup = -time.Second },
		"--clients 0":  func(o *Options) { o.Clients = []int{0} },
		"--clients":    func(o *Options) { o.Clients = nil },
		"--modes":      func(o *Options) { o.Modes = []string{"simple", "pipelined"} },
		"--targets":    func(o *Options) { o.Targets = []string{"pgpool"} },
		"--idle-conns": func(o *Options) { o.IdleConns = -1 },
		"--tenant":     func(o *Options) { o.Tenant = 1001 },
		"--tenants":    func(o *Options) { o.Tenants = 0 },
		"--out":        func(o *Options) { o.OutDir = "" },
		"--workload":   func(o *Options) { o.Workload = "tpcb" },
	}
	for flag, mutate := range bad {
		o := DefaultOptions()
		mutate(&o)
		err := o.Validate()
		if err == nil || !strings.Contains(err.Error(), strings.Fields(flag)[0]) {
			t.Errorf("%s: error %v, want one naming the flag", flag, err)
		}
	}
	o := DefaultOptions()
	o.Clients = []int{64, 1, 8, 8}
	o.Targets = []string{TargetPgtenantStrict, TargetDirect}
	o.Modes = []string{"prepared", "simple"}
	if err := o.Validate(); err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(o.Clients, []int{1, 8, 64}) || strings.Join(o.Targets, ",") != "direct,pgtenant-strict" || strings.Join(o.Modes, ",") != "simple,prepared" {
		t.Errorf("normalized: clients %v targets %v modes %v", o.Clients, o.Targets, o.Modes)
	}
}

func ptr(v float64) *float64 { return &v }

func TestMedianRunKeepsTheMedianRunAndEveryRoundsTPS(t *testing.T) {
	run := func(tps, cpu float64) Row {
		return Row{Target: TargetPgtenantAsync, Mode: "simple", Clients: 8, TPS: tps, ProxyCPUPer1kStatements: &cpu}
	}
	failed := Row{Target: TargetPgtenantAsync, Mode: "simple", Clients: 8, Error: "pgbench: timeout"}
	for _, tc := range []struct {
		name     string
		rows     []Row
		wantTPS  float64
		wantCPU  float64
		wantRuns []float64
	}{
		{"one run is kept as it is", []Row{run(900, 0.03)}, 900, 0.03, nil},
		{"odd count", []Row{run(900, 0.03), run(700, 0.05), run(800, 0.04)}, 800, 0.04, []float64{900, 700, 800}},
		{"even count: the lower middle", []Row{run(900, 0.03), run(700, 0.05), run(800, 0.04), run(1000, 0.02)}, 800, 0.04, []float64{900, 700, 800, 1000}},
		{"a failed run is left out", []Row{run(900, 0.03), failed, run(700, 0.05)}, 700, 0.05, []float64{900, 0, 700}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m := medianRun(tc.rows)
			if m.Error != "" || m.TPS != tc.wantTPS || deref(m.ProxyCPUPer1kStatements) != tc.wantCPU {
				t.Fatalf("median run %+v (cpu %v), want TPS %v with the CPU of that run, %v", m, deref(m.ProxyCPUPer1kStatements), tc.wantTPS, tc.wantCPU)
			}
			if !slices.Equal(m.RoundTPS, tc.wantRuns) {
				t.Fatalf("RoundTPS = %v, want %v", m.RoundTPS, tc.wantRuns)
			}
		})
	}
	if m := medianRun([]Row{failed, failed}); m.Error == "" {
		t.Fatalf("every run failed, got a successful row %+v", m)
	}
}

func TestRoundsSummary(t *testing.T) {
	res := &Results{Settings: Settings{Rounds: 3, Workload: "select"}, Rows: []Row{
		{Target: TargetPgtenantNoAudit, Mode: "prepared", Clients: 8, TPS: 20000, RoundTPS: []float64{21000, 20000, 19000}},
		{Target: TargetPgtenantAsync, Mode: "prepared", Clients: 8, TPS: 18000, RoundTPS: []float64{18000, 0, 17000}},
	}}
	markdownHas(t, res,
		"Each target ran 3 times",
		"## Rounds",
		"| pgtenant-noaudit | prepared | 8 | 21000 / 20000 / 19000 | 0.10 |",
		"| pgtenant-async | prepared | 8 | 18000 / 0 / 17000 | 1.00 |")
	res.Settings.Rounds = 1
	var b strings.Builder
	res.Markdown(&b)
	if strings.Contains(b.String(), "## Rounds") {
		t.Error("a run of one round printed a Rounds section")
	}
}

// markdownHas checks that res's Markdown report holds every one of wants.
func markdownHas(t *testing.T, res *Results, wants ...string) {
	t.Helper()
	var b strings.Builder
	res.Markdown(&b)
	for _, want := range wants {
		if !strings.Contains(b.String(), want) {
			t.Errorf("markdown lacks %q:\n%s", want, b.String())
		}
	}
}

func TestAuditSummaryShowsTheAuditsCPU(t *testing.T) {
	f := func(v float64) *float64 { return &v }
	res := &Results{Settings: Settings{Workload: "select"}, Rows: []Row{
		{Target: TargetPgtenantNoAudit, Mode: "prepared", Clients: 8, TPS: 20000,
			ProxyCPUPer1kStatements: f(0.020), ClusterCPUPer1kStatements: f(0.030)},
		{Target: TargetPgtenantAsync, Mode: "prepared", Clients: 8, TPS: 18000,
			ProxyCPUPer1kStatements: f(0.025), ClusterCPUPer1kStatements: f(0.045)},
	}}
	res.computeRatios()
	res.computeCeilings()
	markdownHas(t, res,
		"PostgreSQL CPU µs / stmt",
		"| pgtenant-noaudit | prepared | 8 | 20000 | 0.00 | 0.00 | – | – | – | – | 20.0 | 30.0 |",
		"| 5.0 + 15.0 |")
}

func TestAFailedRoundIsReportedBesideItsMedian(t *testing.T) {
	res := &Results{Settings: Settings{Rounds: 3, Workload: "select"},
		Rows:         []Row{{Target: TargetPgtenantAsync, Mode: "simple", Clients: 8, TPS: 900, RoundTPS: []float64{900, 0, 800}}},
		FailedRounds: []Row{{Target: TargetPgtenantAsync, Mode: "simple", Clients: 8, Error: "pgbench: hung"}}}
	if failed := res.Failed(); len(failed) != 1 || failed[0].Error != "pgbench: hung" {
		t.Fatalf("Failed() = %+v, want the failed round", failed)
	}
	markdownHas(t, res, "## Failed runs", "- pgtenant-async -M simple -c 8: pgbench: hung")
}

func TestAnAuditBehindIsReportedForEveryRound(t *testing.T) {
	stored, short := int64(54476), int64(36226)
	run := func(tps float64, audit *int64, err string) Row {
		return Row{Target: TargetPgtenantAsync, Mode: "extended", Clients: 8, TPS: tps, Statements: 54476, AuditStored: audit, Error: err}
	}
	// The short run is not the median, and a failed run's count is not
	// looked at.
	res := &Results{Settings: Settings{Rounds: 4, Workload: "select"}}
	res.addCell([]Row{run(900, &short, ""), run(1000, &stored, ""), run(1100, &stored, ""), run(0, &short, "pgbench: hung")})
	res.addCell([]Row{{Target: TargetPgtenantNoAudit, Mode: "extended", Clients: 8, TPS: 1200, Statements: 54476}})
	if len(res.Rows) != 2 || res.Rows[0].TPS != 1000 {
		t.Fatalf("rows %+v, want the median 1000 and noaudit's", res.Rows)
	}
	if len(res.AuditBehind) != 1 || *res.AuditBehind[0].AuditStored != short || res.AuditBehind[0].TPS != 900 {
		t.Fatalf("audit behind %+v, want the 900 TPS run alone", res.AuditBehind)
	}
	if len(res.FailedRounds) != 1 || res.FailedRounds[0].Error != "pgbench: hung" {
		t.Fatalf("failed rounds %+v, want the hung run", res.FailedRounds)
	}
	markdownHas(t, res, "## Audit behind when measured", "- pgtenant-async -M extended -c 8: 36226 of 54476 statements stored")
}
