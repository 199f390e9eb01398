package bench

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"
)

// Results is everything one harness run measured.
type Results struct {
	StartedAt      time.Time `json:"started_at"`
	FinishedAt     time.Time `json:"finished_at"`
	Machine        Machine   `json:"machine"`
	Settings       Settings  `json:"settings"`
	PolicyEnforced *bool     `json:"policy_enforced,omitempty"` // nil when no pgtenant target ran
	Rows           []Row     `json:"rows"`
	// FailedRounds are the failed runs of cells whose row is another
	// round's run (--rounds): a failure is reported even when the median
	// is not one.
	FailedRounds []Row `json:"failed_rounds,omitempty"`
	// AuditBehind are the runs (of every round) whose audit had stored
	// fewer events than the run's statements when it stopped growing
	// (auditQuietFor): an integrator that stalled, or lost events.
	AuditBehind  []Row        `json:"audit_behind,omitempty"`
	WarmupErrors []string     `json:"warmup_errors,omitempty"`
	Scale        *ScaleResult `json:"scale,omitempty"`
	// Durability is the fdatasync and commit latency measured in the run
	// (nil when no spool-group or strict target ran).
	Durability *Durability `json:"durability,omitempty"`
}

// Machine describes where the run happened.
type Machine struct {
	CPUs      int    `json:"cpus"`
	LoadAvg   string `json:"loadavg_at_start"` // /proc/loadavg: other load skews figures
	Kernel    string `json:"kernel"`
	DataFS    string `json:"data_fs"` // file system of the cluster's data directory
	Postgres  string `json:"postgres"`
	PgBouncer string `json:"pgbouncer,omitempty"`
	Pgbench   string `json:"pgbench"`
	Go        string `json:"go"`
}

// Settings records the options of the run.
type Settings struct {
	DurationSeconds float64  `json:"duration_seconds"`
	Rounds          int      `json:"rounds,omitempty"` // measured runs per target and cell (--rounds); rows are the median ones
	WarmupSeconds   float64  `json:"warmup_seconds"`
	Clients         []int    `json:"clients"`
	PoolSize        int      `json:"pool_size,omitempty"` // transaction-mode pools of PgBouncer and pgtenant
	Modes           []string `json:"modes"`
	Targets         []string `json:"targets"`
	IdleConns       int      `json:"idle_conns"`
	Tenants         int      `json:"tenants"`
	RowsPerTenant   int      `json:"rows_per_tenant"`
	Tenant          int64    `json:"tenant"`
	StatementsPerTx int      `json:"statements_per_tx"`
	Workload        string   `json:"workload"`
	Smoke           bool     `json:"smoke"`
	Script          string   `json:"script"`
}

// Row is one measured pgbench run.
type Row struct {
	Target       string  `json:"target"`
	Mode         string  `json:"mode"`
	Clients      int     `json:"clients"`
	Threads      int     `json:"threads"`
	Transactions int64   `json:"transactions"`
	Statements   int64   `json:"statements"`
	TPS          float64 `json:"tps"`
	Latency      Latency `json:"latency"`
	// Error is why the run failed (pgbench error, hung target); no figures then.
	Error string `json:"error,omitempty"`
	// RoundTPS is the TPS of every round's run of this target, mode and
	// client count in the order they ran (0 for a failed one), when there
	// were several (--rounds): the row is the run with the median TPS.
	RoundTPS []float64 `json:"round_tps,omitempty"`

	// The proxy process's resources (nil for direct).
	ProxyCPUPer1kStatements *float64 `json:"proxy_cpu_seconds_per_1k_statements,omitempty"`
	// ClusterCPUPer1kStatements is PostgreSQL's CPU (every process of the
	// run's cluster, clustercpu.go) from the run's start until its audit
	// drained: the audit's writes show here, not in the proxy's CPU.
	ClusterCPUPer1kStatements *float64 `json:"cluster_cpu_seconds_per_1k_statements,omitempty"`
	ProxyRSSBytes             *int64   `json:"proxy_rss_bytes,omitempty"`      // VmRSS after the run
	ProxyPeakRSSBytes         *int64   `json:"proxy_peak_rss_bytes,omitempty"` // VmHWM: the process's peak so far
	// From perf stat on the proxy during the run (nil without perf).
	ProxySyscallsPerStatement    *float64 `json:"proxy_syscalls_per_statement,omitempty"`
	ProxyCtxSwitchesPerStatement *float64 `json:"proxy_context_switches_per_statement,omitempty"`

	// The audit after the run (pgtenant targets with the audit on): events
	// chained during the run and its drain, and how long after pgbench
	// ended the audit kept growing (a backlog a queue hid).
	AuditStored       *int64   `json:"audit_stored,omitempty"`
	AuditDrainSeconds *float64 `json:"audit_drain_seconds,omitempty"`

	// Throughput ratios for pgtenant rows (nil when the reference did not run).
	TPSvsDirect      *float64 `json:"tps_vs_direct,omitempty"`
	TPSvsPgBouncer   *float64 `json:"tps_vs_pgbouncer_session,omitempty"`
	TPSvsPgBouncerTx *float64 `json:"tps_vs_pgbouncer_transaction,omitempty"`
	P99vsDirect      *float64 `json:"p99_vs_direct,omitempty"`
	// TPSvsNoAudit: against pgtenant-noaudit at the same mode and clients
	// (pgtenant rows with the audit on).
	TPSvsNoAudit *float64 `json:"tps_vs_noaudit,omitempty"`
	// For spool-group and strict rows (ceiling.go): the TPS that the
	// measured fdatasync (resp. commit) latency allows at this client
	// count, the ceiling (that bound, or pgtenant-noaudit's TPS when
	// smaller) and the measured TPS over the ceiling.
	DurabilityBoundTPS *float64 `json:"durability_bound_tps,omitempty"`
	CeilingTPS         *float64 `json:"ceiling_tps,omitempty"`
	TPSvsCeiling       *float64 `json:"tps_vs_ceiling,omitempty"`
	// SerialBoundTPS: the TPS if every statement took pgtenant-noaudit's
	// time plus the latency in series (the wait precedes forwarding), and
	// the measured TPS over it.
	SerialBoundTPS   *float64 `json:"serial_bound_tps,omitempty"`
	TPSvsSerialBound *float64 `json:"tps_vs_serial_bound,omitempty"`
	// InRunFsyncMs and InRunWriteMs: the mean spool fdatasync and audit
	// batch write the proxy itself timed during the run (its /metrics,
	// scrape.go), under the run's load; InRunBoundTPS is the durability
	// bound at that latency (spool-group: fdatasync, strict: batch write).
	InRunFsyncMs  *float64 `json:"in_run_fsync_ms,omitempty"`
	InRunWriteMs  *float64 `json:"in_run_write_ms,omitempty"`
	InRunBoundTPS *float64 `json:"in_run_bound_tps,omitempty"`
	// InRunOverheadMs: the mean time pgtenant added per statement in the
	// run (pgtenant_statement_overhead_seconds: parse, policy and the
	// audit's wait), audited rows only.
	InRunOverheadMs *float64 `json:"in_run_overhead_ms,omitempty"`
}

// Failed returns the runs that failed: rows, and failed rounds of cells
// whose row is another round's run.
func (res *Results) Failed() []Row {
	var out []Row
	for _, r := range res.Rows {
		if r.Error != "" {
			out = append(out, r)
		}
	}
	return append(out, res.FailedRounds...)
}

// auditBehind reports whether r's audit stored fewer events than r's
// statements (every statement is one event or more).
func (r Row) auditBehind() bool {
	return r.Error == "" && r.AuditStored != nil && *r.AuditStored < r.Statements
}

// IsPgtenant reports whether the row measured pgtenant.
func (r Row) IsPgtenant() bool { return strings.HasPrefix(r.Target, "pgtenant-") }

// isAudited reports whether target is pgtenant with the audit on (the
// transaction-pooling target runs without it, as pgtenant-noaudit does).
func isAudited(target string) bool {
	return strings.HasPrefix(target, "pgtenant-") && target != TargetPgtenantNoAudit && target != TargetPgtenantTx
}

// computeRatios fills the ratio fields of every pgtenant row from the rows
// of the reference targets with the same mode and client count.
func (res *Results) computeRatios() {
	byKey, _ := res.index("", true)
	ratio := func(a, b float64) *float64 {
		if a <= 0 || b <= 0 {
			return nil
		}
		v := a / b
		return &v
	}
	for i, r := range res.Rows {
		if !r.IsPgtenant() {
			continue
		}
		row := &res.Rows[i]
		if d, ok := byKey[rowKey{TargetDirect, r.Mode, r.Clients}]; ok {
			row.TPSvsDirect = ratio(r.TPS, d.TPS)
			row.P99vsDirect = ratio(r.Latency.P99Ms, d.Latency.P99Ms)
		}
		if b, ok := byKey[rowKey{TargetPgBouncerSess, r.Mode, r.Clients}]; ok {
			row.TPSvsPgBouncer = ratio(r.TPS, b.TPS)
		}
		if b, ok := byKey[rowKey{TargetPgBouncerTx, r.Mode, r.Clients}]; ok {
			row.TPSvsPgBouncerTx = ratio(r.TPS, b.TPS)
		}
	}
}

// write stores results.json and results.md in dir.
func (res *Results) write(dir string) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("results: %w", err)
	}
	b, err := json.MarshalIndent(res, "", "  ")
	if err != nil {
		return fmt.Errorf("results: %w", err)
	}
	if err := os.WriteFile(filepath.Join(dir, "results.json"), append(b, '\n'), 0o644); err != nil {
		return fmt.Errorf("results: %w", err)
	}
	var md strings.Builder
	res.Markdown(&md)
	if err := os.WriteFile(filepath.Join(dir, "results.md"), []byte(md.String()), 0o644); err != nil {
		return fmt.Errorf("results: %w", err)
	}
	return nil
}

// Markdown writes the results as Markdown tables.
func (res *Results) Markdown(w io.Writer) {
	s := res.Settings
	fmt.Fprintf(w, "# pgtenant benchmark\n\n")
	fmt.Fprintf(w, "%s; %d CPUs, load average at start %s; data on %s; %s; %s; %s.\n\n",
		res.StartedAt.UTC().Format(time.RFC3339), res.Machine.CPUs, res.Machine.LoadAvg, res.Machine.DataFS,
		res.Machine.Postgres, orDash(res.Machine.PgBouncer), res.Machine.Pgbench)
	title := workloadTitles[s.Workload]
	if title == "" {
		title = workloadTitles["rw"] // results written before --workload existed
	}
	fmt.Fprintf(w, "pgbench -n -T %.0f (after a %.0fs warm-up per target), %d tenants × %d rows, tenant %d, %d statements per transaction (%s).",
		s.DurationSeconds, s.WarmupSeconds, s.Tenants, s.RowsPerTenant, s.Tenant, s.StatementsPerTx, title)
	if res.PolicyEnforced != nil {
		if *res.PolicyEnforced {
			fmt.Fprint(w, " pgtenant's statement policy was enforcing (an unscoped read was refused).")
		} else {
			fmt.Fprint(w, " **pgtenant's statement policy was NOT enforcing in serve** (an unscoped read passed; only RLS scoped it): figures exclude policy cost.")
		}
	}
	if s.Rounds > 1 {
		fmt.Fprintf(w, " Each target ran %d times at each mode and client count, the targets' order reversed every other round; every figure below is from its median-TPS run (all runs' TPS under \"Rounds\"), and ratios are between medians.", s.Rounds)
	}
	if s.Smoke {
		fmt.Fprint(w, " Smoke run: figures are not meaningful.")
	}
	fmt.Fprint(w, "\n\n")
	fmt.Fprintln(w, "| target | mode | clients | TPS | mean ms | p99 ms | TPS vs direct | TPS vs PgBouncer session | TPS vs PgBouncer transaction | p99 vs direct | proxy CPU µs / stmt | PostgreSQL CPU µs / stmt | proxy RSS MiB | audit stored | audit drain s |")
	fmt.Fprintln(w, "|---|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|")
	for _, r := range res.Rows {
		if r.Error != "" {
			fmt.Fprintf(w, "| %s | %s | %d | FAILED (see below) | | | | | | | | | | | |\n", r.Target, r.Mode, r.Clients)
			continue
		}
		rss := "–"
		if r.ProxyRSSBytes != nil {
			rss = fmt.Sprintf("%.1f", float64(*r.ProxyRSSBytes)/(1<<20))
		}
		stored := "–"
		if r.AuditStored != nil {
			stored = fmt.Sprintf("%d", *r.AuditStored)
		}
		fmt.Fprintf(w, "| %s | %s | %d | %.0f | %.2f | %.2f | %s | %s | %s | %s | %s | %s | %s | %s | %s |\n",
			r.Target, r.Mode, r.Clients, r.TPS, r.Latency.MeanMs, r.Latency.P99Ms,
			fmtRatio(r.TPSvsDirect), fmtRatio(r.TPSvsPgBouncer), fmtRatio(r.TPSvsPgBouncerTx), fmtRatio(r.P99vsDirect),
			fmtFloat(cpuMicros(r), "%.1f"), fmtFloat(micros(r.ClusterCPUPer1kStatements), "%.1f"), rss, stored, fmtFloat(r.AuditDrainSeconds, "%.2f"))
	}
	res.relaySummary(w)
	res.txSummary(w)
	res.auditSummary(w)
	res.roundsSummary(w)
	if len(res.AuditBehind) > 0 {
		fmt.Fprintf(w, "\n## Audit behind when measured\n\n")
		fmt.Fprintf(w, "Runs whose audit had stored fewer events than statements once it stopped growing for %s (a stalled integrator, or lost events):\n\n", auditQuietFor)
		for _, r := range res.AuditBehind {
			fmt.Fprintf(w, "- %s -M %s -c %d: %d of %d statements stored\n", r.Target, r.Mode, r.Clients, *r.AuditStored, r.Statements)
		}
	}
	if failed := res.Failed(); len(failed) > 0 || len(res.WarmupErrors) > 0 {
		fmt.Fprintf(w, "\n## Failed runs\n\n")
		for _, r := range failed {
			fmt.Fprintf(w, "- %s -M %s -c %d: %s\n", r.Target, r.Mode, r.Clients, r.Error)
		}
		for _, e := range res.WarmupErrors {
			fmt.Fprintf(w, "- warm-up %s\n", e)
		}
	}
	if sc := res.Scale; sc != nil {
		fmt.Fprintf(w, "\n## Connection scale\n\n")
		fmt.Fprintln(w, "| target | idle connections | opened | failed | open time s | proxy RSS before MiB | proxy RSS after MiB | RSS per connection KiB | proxy CPU s to accept |")
		fmt.Fprintln(w, "|---|--:|--:|--:|--:|--:|--:|--:|--:|")
		fmt.Fprintf(w, "| %s | %d | %d | %d | %.1f | %.1f | %.1f | %.1f | %.2f |\n", sc.Target, sc.Requested, sc.Opened, sc.Failed,
			sc.OpenSeconds, float64(sc.RSSBeforeBytes)/(1<<20), float64(sc.RSSAfterBytes)/(1<<20), sc.RSSPerConnBytes/1024, sc.CPUSecondsOpen)
		if sc.Error != "" {
			fmt.Fprintf(w, "\nThe connection-scale run failed: %s\n", sc.Error)
		}
		if sc.FirstError != "" {
			fmt.Fprintf(w, "\nFirst connection error: %s\n", sc.FirstError)
		}
	}
}

// cpuMicros is the proxy's CPU time per statement in microseconds
// (seconds per 1,000 statements × 1,000), nil for direct.
func cpuMicros(r Row) *float64 { return micros(r.ProxyCPUPer1kStatements) }

// micros turns CPU seconds per 1,000 statements into µs per statement.
func micros(per1k *float64) *float64 {
	if per1k == nil {
		return nil
	}
	v := *per1k * 1000
	return &v
}

// rowKey names one measurement: a target at a mode and client count.
type rowKey struct {
	target, mode string
	clients      int
}

// index maps the rows of the run (the failed ones too when withFailed) by
// their rowKey and lists, in the run's order, the keys of target's rows.
func (res *Results) index(target string, withFailed bool) (map[rowKey]Row, []rowKey) {
	byKey := map[rowKey]Row{}
	var points []rowKey
	for _, r := range res.Rows {
		if r.Error != "" && !withFailed {
			continue
		}
		k := rowKey{r.Target, r.Mode, r.Clients}
		byKey[k] = r
		if r.Target == target {
			points = append(points, k)
		}
	}
	return byKey, points
}

// relaySummary compares pgtenant without audit (the relay and the policy)
// with PgBouncer point by point: TPS ratios against both pooling modes and
// the CPU each proxy spent per statement in the same run. It prints nothing
// when the run had no pgtenant-noaudit rows.
func (res *Results) relaySummary(w io.Writer) {
	byKey, points := res.index(TargetPgtenantNoAudit, false)
	if len(points) == 0 {
		return
	}
	cpu := func(target, mode string, clients int) string {
		r, ok := byKey[rowKey{target, mode, clients}]
		if !ok {
			return "–"
		}
		s := fmtFloat(cpuMicros(r), "%.1f")
		if r.ProxySyscallsPerStatement != nil && r.ProxyCtxSwitchesPerStatement != nil {
			s += fmt.Sprintf(" (%.1f sc, %.1f cs)", *r.ProxySyscallsPerStatement, *r.ProxyCtxSwitchesPerStatement)
		}
		return s
	}
	fmt.Fprintf(w, "\n## Relay: pgtenant (policy on, audit disabled) against PgBouncer\n\n")
	fmt.Fprintln(w, "CPU µs per statement from /proc; in parentheses syscalls (sc) and context switches (cs) per statement from perf stat, when available.")
	fmt.Fprintln(w)
	fmt.Fprintln(w, "| mode | clients | pgtenant TPS | vs PgBouncer session | vs PgBouncer transaction | pgtenant CPU µs / stmt | PgBouncer session CPU µs / stmt | PgBouncer transaction CPU µs / stmt |")
	fmt.Fprintln(w, "|---|--:|--:|--:|--:|--:|--:|--:|")
	for _, p := range points {
		r := byKey[p]
		fmt.Fprintf(w, "| %s | %d | %.0f | %s | %s | %s | %s | %s |\n", p.mode, p.clients, r.TPS,
			fmtRatio(r.TPSvsPgBouncer), fmtRatio(r.TPSvsPgBouncerTx), cpu(TargetPgtenantNoAudit, p.mode, p.clients),
			cpu(TargetPgBouncerSess, p.mode, p.clients), cpu(TargetPgBouncerTx, p.mode, p.clients))
	}
}

// txSummary compares pgtenant in pool.mode transaction with PgBouncer in
// transaction mode, both with --pool-size backends, point by point: TPS,
// their ratio and the CPU each proxy spent per statement in the same run.
// PgBouncer 1.18 cannot keep protocol-level prepared statements in
// transaction mode, so prepared rows show pgtenant alone. It prints nothing
// when the run had no pgtenant-transaction rows.
func (res *Results) txSummary(w io.Writer) {
	byKey, points := res.index(TargetPgtenantTx, true)
	if len(points) == 0 {
		return
	}
	fmt.Fprintf(w, "\n## Transaction pooling: pgtenant (pool.mode transaction, policy on, audit disabled) against PgBouncer (pool_mode transaction)\n\n")
	fmt.Fprintf(w, "Both pools hold %d backends (pgtenant pool.size = PgBouncer default_pool_size). pgtenant sets the tenant transaction-locally in every transaction; PgBouncer's server connections carry one tenant set once (connect_query), which is only safe because every client of the run is that tenant. CPU µs per statement from /proc.\n\n", res.Settings.PoolSize)
	fmt.Fprintln(w, "| mode | clients | pgtenant TPS | PgBouncer TPS | pgtenant / PgBouncer | pgtenant CPU µs / stmt | PgBouncer CPU µs / stmt |")
	fmt.Fprintln(w, "|---|--:|--:|--:|--:|--:|--:|")
	for _, p := range points {
		r := byKey[p]
		b, haveB := byKey[rowKey{TargetPgBouncerTx, p.mode, p.clients}]
		tps, ratio, cpu, bTPS, bCPU := "FAILED", "–", "–", "–", "–"
		if r.Error == "" {
			tps, ratio, cpu = fmt.Sprintf("%.0f", r.TPS), fmtRatio(r.TPSvsPgBouncerTx), fmtFloat(cpuMicros(r), "%.1f")
		}
		switch {
		case p.mode == "prepared" && !haveB:
			bTPS = "cannot (PgBouncer < 1.21)"
		case haveB && b.Error != "":
			bTPS = "FAILED"
		case haveB:
			bTPS, bCPU = fmt.Sprintf("%.0f", b.TPS), fmtFloat(cpuMicros(b), "%.1f")
		}
		fmt.Fprintf(w, "| %s | %d | %s | %s | %s | %s | %s |\n", p.mode, p.clients, tps, bTPS, ratio, cpu, bCPU)
	}
}

// auditSummary prints each audit mode against pgtenant without the audit,
// and the spool-group and strict rows against the ceiling their durability
// latency sets (ceiling.go), with the latencies measured in the run. It
// prints nothing when no row has either figure.
func (res *Results) auditSummary(w io.Writer) {
	var rows []Row
	for _, r := range res.Rows {
		if r.TPSvsNoAudit != nil || r.TPSvsCeiling != nil {
			rows = append(rows, r)
		}
	}
	if len(rows) == 0 {
		return
	}
	fmt.Fprintf(w, "\n## Audit modes against the audit disabled and their durability ceiling\n\n")
	if d := res.Durability; d != nil {
		fmt.Fprintf(w, "Measured in this run (%d samples each): fdatasync of appended data on the spools' file system (%s) mean %.3f ms (p50 %.3f); single-row commit on the cluster mean %.3f ms (p50 %.3f). ",
			d.Samples, orUnknown(d.SpoolFS), d.FdatasyncMeanMs, d.FdatasyncP50Ms, d.CommitMeanMs, d.CommitP50Ms)
	}
	fmt.Fprintln(w, "Durability bound = clients / (latency × statements per transaction): every statement waits for at least one fdatasync (spool-group) or commit (strict), shared by its group; ceiling = the smaller of that bound and pgtenant-noaudit's TPS.")
	fmt.Fprintln(w, "Serial bound = clients / (clients / pgtenant-noaudit TPS + latency × statements per transaction): the wait precedes forwarding (SPEC), so it adds to each statement's time instead of overlapping it.")
	fmt.Fprintln(w, "In-run: the mean spool fdatasync and audit batch write (insert and commit) that pgtenant itself timed during the run (its /metrics), the same bound at that latency (the ceiling uses the idle probes above), and the mean time pgtenant added per statement (parse, policy and the audit's wait: pgtenant_statement_overhead_seconds).")
	fmt.Fprintln(w, "Audit CPU: what the audit added to the CPU of a statement, pgtenant's and PostgreSQL's (until the audit drained), over pgtenant-noaudit's at the same mode and clients.")
	fmt.Fprintln(w)
	fmt.Fprintln(w, "| target | mode | clients | TPS | vs noaudit | durability bound TPS | ceiling TPS | TPS / ceiling | serial bound TPS | TPS / serial bound | in-run fdatasync ms | in-run batch write ms | bound at in-run latency TPS | in-run pgtenant ms / stmt | audit CPU µs / stmt: pgtenant + PostgreSQL |")
	fmt.Fprintln(w, "|---|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|")
	byKey, _ := res.index("", false)
	for _, r := range rows {
		added := "–"
		if n, ok := byKey[rowKey{TargetPgtenantNoAudit, r.Mode, r.Clients}]; ok {
			if p, pn, c, cn := cpuMicros(r), cpuMicros(n), micros(r.ClusterCPUPer1kStatements), micros(n.ClusterCPUPer1kStatements); p != nil && pn != nil && c != nil && cn != nil {
				added = fmt.Sprintf("%.1f + %.1f", *p-*pn, *c-*cn)
			}
		}
		fmt.Fprintf(w, "| %s | %s | %d | %.0f | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s |\n", r.Target, r.Mode, r.Clients, r.TPS,
			fmtRatio(r.TPSvsNoAudit), fmtFloat(r.DurabilityBoundTPS, "%.0f"), fmtFloat(r.CeilingTPS, "%.0f"), fmtRatio(r.TPSvsCeiling),
			fmtFloat(r.SerialBoundTPS, "%.0f"), fmtRatio(r.TPSvsSerialBound), fmtFloat(r.InRunFsyncMs, "%.3f"), fmtFloat(r.InRunWriteMs, "%.3f"), fmtFloat(r.InRunBoundTPS, "%.0f"), fmtFloat(r.InRunOverheadMs, "%.3f"), added)
	}
}

func orUnknown(s string) string {
	if s == "" {
		return "unknown"
	}
	return s
}

func fmtRatio(v *float64) string { return fmtFloat(v, "%.2f") }

func fmtFloat(v *float64, format string) string {
	if v == nil {
		return "–"
	}
	return fmt.Sprintf(format, *v)
}

func orDash(s string) string {
	if s == "" {
		return "no PgBouncer"
	}
	return s
}

// roundsSummary lists every round's TPS of each row measured more than
// once (--rounds), with their spread: how far one run could be off.
func (res *Results) roundsSummary(w io.Writer) {
	if res.Settings.Rounds <= 1 {
		return
	}
	fmt.Fprintf(w, "\n## Rounds\n\nTPS of each round's run, in the order they ran (0 = failed); spread = (max - min) / median.\n\n")
	fmt.Fprintln(w, "| target | mode | clients | TPS per round | spread |")
	fmt.Fprintln(w, "|---|---|--:|---|--:|")
	for _, r := range res.Rows {
		if len(r.RoundTPS) == 0 {
			continue
		}
		tps := make([]string, len(r.RoundTPS))
		for i, v := range r.RoundTPS {
			tps[i] = fmt.Sprintf("%.0f", v)
		}
		spread := "–"
		if r.TPS > 0 {
			spread = fmt.Sprintf("%.2f", (slices.Max(r.RoundTPS)-slices.Min(r.RoundTPS))/r.TPS)
		}
		fmt.Fprintf(w, "| %s | %s | %d | %s | %s |\n", r.Target, r.Mode, r.Clients, strings.Join(tps, " / "), spread)
	}
}
