package bench

import (
	"cmp"
	"context"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"time"

	"github.com/pgtenant/pgtenant/cluster"
)

// target is one endpoint pgbench measures, with the proxy process in front
// of the cluster (nil for direct).
type target struct {
	name       string
	ep         Endpoint
	proc       *process
	goStacks   bool   // the proxy is a Go program: SIGQUIT dumps its goroutines
	metricsURL string // pgtenant's /metrics, "" for other targets
}

// supports reports whether the target can run mode: PgBouncer's
// transaction pooling cannot keep protocol-level prepared statements.
func (t target) supports(mode string) bool {
	return !(t.name == TargetPgBouncerTx && mode == "prepared")
}

// harness holds the state of one run.
type harness struct {
	o       Options
	log     *slog.Logger
	workDir string
	pgbench string
	bouncer string // pgbouncer binary, "" when not needed
	pgt     string // pgtenant binary, "" when not needed
	secret  string
	script  string // path of the workload's pgbench script
	stmtsTx int    // statements per transaction of the workload
	perf    bool   // perf stat can count the proxies' syscalls
	c       *cluster.Cluster
	stops   []func(failed bool) // in start order; the first closes the cluster
}

// Run runs the whole harness with o and writes the results to o.OutDir.
func Run(ctx context.Context, o Options, log *slog.Logger) (_ *Results, err error) {
	if err := o.Validate(); err != nil {
		return nil, err
	}
	h := &harness{o: o, log: log}
	defer func() {
		if kept := h.cleanup(err != nil); kept != "" {
			err = fmt.Errorf("%w (logs kept in %s)", err, kept)
		}
	}()
	res := &Results{StartedAt: time.Now().UTC()}
	if err := h.prepare(ctx, res); err != nil {
		return nil, err
	}
	var targets []target
	targets, err = h.startTargets(ctx, res)
	if err != nil {
		return nil, err
	}
	if err := h.warmUp(ctx, targets, res); err != nil {
		return nil, err
	}
	if slices.Contains(o.Targets, TargetPgtenantSpoolGroup) || slices.Contains(o.Targets, TargetPgtenantStrict) {
		// In the spools' file system (they live under workDir) and on the
		// run's cluster, just before the runs they bound.
		if res.Durability, err = measureDurability(ctx, h.workDir, h.c.SuperuserDSN(h.c.Database)); err != nil {
			return nil, err
		}
		h.log.Info("durability latency", "fdatasync_mean_ms", fmt.Sprintf("%.3f", res.Durability.FdatasyncMeanMs),
			"commit_mean_ms", fmt.Sprintf("%.3f", res.Durability.CommitMeanMs), "spool_fs", res.Durability.SpoolFS)
	}
	for _, mode := range o.Modes {
		for _, clients := range o.Clients {
			if err := h.measureCell(ctx, targets, mode, clients, res); err != nil {
				return nil, err
			}
		}
	}
	h.stopAll() // the scale run gets the machine to itself
	if o.IdleConns > 0 {
		// A failed scale run is reported, not fatal: the pgbench figures stand.
		if res.Scale, err = h.scaleRun(ctx); err != nil {
			if ctx.Err() != nil {
				return nil, err
			}
			h.log.Error("connection-scale run failed", "error", err)
			if res.Scale == nil {
				res.Scale = &ScaleResult{Target: "pgtenant-spool", Requested: o.IdleConns}
			}
			res.Scale.Error = err.Error()
		}
	}
	res.computeRatios()
	res.computeCeilings()
	res.FinishedAt = time.Now().UTC()
	if err := res.write(o.OutDir); err != nil {
		return nil, err
	}
	return res, nil
}

// measureCell measures every target at mode and clients, o.Rounds times,
// the targets' order reversed every other round so that a drift of the
// host's load favours none, and adds each target's median run to res.
func (h *harness) measureCell(ctx context.Context, targets []target, mode string, clients int, res *Results) error {
	runs := make([][]Row, len(targets))
	for round := range h.o.Rounds {
		for k := range targets {
			i := k
			if round%2 == 1 {
				i = len(targets) - 1 - k
			}
			t := &targets[i]
			if !t.supports(mode) {
				continue
			}
			row, err := h.measure(ctx, *t, mode, clients)
			if err != nil {
				// One failed run is reported in its row; the others still run.
				if ctx.Err() != nil {
					return ctx.Err()
				}
				h.log.Error("run failed", "target", t.name, "mode", mode, "clients", clients, "error", err)
				row = Row{Target: t.name, Mode: mode, Clients: clients, Threads: threads(clients), Error: err.Error()}
				if err := h.recoverTarget(ctx, t, fmt.Sprintf("%s-%s-c%d-r%d", t.name, mode, clients, round+1), res); err != nil {
					return err
				}
			}
			runs[i] = append(runs[i], row)
		}
	}
	for _, rows := range runs {
		res.addCell(rows)
	}
	return nil
}

// addCell adds one target's runs of a cell (in the order they ran) to res:
// the median run as its row, the failed rounds when that row is another
// run, and every run whose audit was behind when measured.
func (res *Results) addCell(rows []Row) {
	if len(rows) == 0 {
		return
	}
	m := medianRun(rows)
	res.Rows = append(res.Rows, m)
	for _, r := range rows {
		if r.Error != "" && m.Error == "" {
			res.FailedRounds = append(res.FailedRounds, r)
		}
		if r.auditBehind() {
			res.AuditBehind = append(res.AuditBehind, r)
		}
	}
}

// medianRun returns the run of rows (one target, mode and client count,
// in the order they ran) with the median TPS, the lower middle one of an
// even count, with every run's TPS in RoundTPS. Failed runs are left out
// of the median; when every run failed, the first is returned.
func medianRun(rows []Row) Row {
	if len(rows) == 1 {
		return rows[0]
	}
	var ok []Row
	for _, r := range rows {
		if r.Error == "" {
			ok = append(ok, r)
		}
	}
	if len(ok) == 0 {
		return rows[0]
	}
	slices.SortStableFunc(ok, func(a, b Row) int { return cmp.Compare(a.TPS, b.TPS) })
	m := ok[(len(ok)-1)/2]
	m.RoundTPS = make([]float64, len(rows))
	for i, r := range rows {
		if r.Error == "" {
			m.RoundTPS[i] = r.TPS
		}
	}
	return m
}

// prepare finds the tools, builds pgtenant and starts the cluster with the
// workload.
func (h *harness) prepare(ctx context.Context, res *Results) error {
	o := &h.o
	var err error
	if h.pgbench, err = findPgbench(); err != nil {
		return err
	}
	if slices.Contains(o.Targets, TargetPgBouncerSess) || slices.Contains(o.Targets, TargetPgBouncerTx) {
		if h.bouncer, err = findPgBouncer(); err != nil {
			return err
		}
	}
	needPgtenant := o.IdleConns > 0 || slices.ContainsFunc(o.Targets, func(t string) bool { return strings.HasPrefix(t, "pgtenant-") })
	if h.workDir, err = os.MkdirTemp("", "pgtenant-bench-"); err != nil {
		return fmt.Errorf("work directory: %w", err)
	}
	// The postgres OS user (PgBouncer) must reach its directory inside.
	if err := os.Chmod(h.workDir, 0o755); err != nil {
		return fmt.Errorf("work directory: %w", err)
	}
	// pgtenant holds a client and a backend socket per connection, PgBouncer's
	// session pool one per client of its largest run as well.
	if err := raiseNoFile(o.IdleConns + 2*o.maxClients()); err != nil {
		return err
	}
	if needPgtenant {
		if h.pgt = o.PgtenantBin; h.pgt == "" {
			h.log.Info("building pgtenant")
			if h.pgt, err = buildPgtenant(ctx, h.workDir); err != nil {
				return err
			}
		}
		if h.secret, err = newJWTSecret(); err != nil {
			return err
		}
	}
	h.log.Info("starting cluster and loading the workload", "tenants", o.Tenants, "rows_per_tenant", o.RowsPerTenant)
	parent := o.DataDir
	if parent == "" {
		parent = h.workDir
	}
	if fs := fsType(parent); fs == "tmpfs" || fs == "ramfs" {
		h.log.Warn("the cluster's data directory is on a RAM file system: fsync costs nothing there, figures flatter every target", "dir", parent, "fs", fs)
	}
	if h.c, err = startCluster(ctx, o, parent); err != nil {
		return err
	}
	h.stops = append(h.stops, func(bool) {
		if err := h.c.Close(); err != nil {
			h.log.Warn("close cluster", "error", err)
		}
	})
	if err := installWorkload(ctx, h.c, o); err != nil {
		return err
	}
	if h.script, err = writeScript(h.workDir, o.Workload); err != nil {
		return err
	}
	h.stmtsTx = statementsPerTx(Workloads[o.Workload])
	h.perf = perfUsable()
	if !h.perf {
		h.log.Warn("perf stat cannot count syscalls here (install linux-perf, run as root): no syscalls per statement in the report")
	}
	res.Machine = h.machine(ctx)
	res.Machine.DataFS = fsType(h.c.DataDir)
	res.Settings = Settings{
		DurationSeconds: o.Duration.Seconds(), Rounds: o.Rounds, WarmupSeconds: o.Warmup.Seconds(),
		Clients: o.Clients, PoolSize: o.PoolSize, Modes: o.Modes, Targets: o.Targets, IdleConns: o.IdleConns,
		Tenants: o.Tenants, RowsPerTenant: o.RowsPerTenant, Tenant: o.Tenant,
		StatementsPerTx: h.stmtsTx, Smoke: o.Smoke, Workload: o.Workload, Script: Workloads[o.Workload],
	}
	return nil
}

// startTargets starts the proxies of the selected targets, one at a time.
func (h *harness) startTargets(ctx context.Context, res *Results) ([]target, error) {
	var targets []target
	for _, name := range h.o.Targets {
		t, err := h.startTarget(ctx, name, res)
		if err != nil {
			return nil, err
		}
		targets = append(targets, t)
	}
	return targets, nil
}

// startTarget starts one target's proxy (none for direct) and probes it.
func (h *harness) startTarget(ctx context.Context, name string, res *Results) (target, error) {
	t := target{name: name}
	switch name {
	case TargetDirect:
		// The application sets the tenant itself on a direct connection.
		t.ep = Endpoint{Host: "127.0.0.1", Port: h.c.Port, User: h.c.ServiceUser, Database: h.c.Database,
			Password: h.c.ServicePassword, Options: fmt.Sprintf("-c %s=%d", TenantSetting, h.o.Tenant)}
		if err := probe(ctx, t.ep); err != nil {
			return t, fmt.Errorf("direct: %w", err)
		}
	case TargetPgBouncerSess, TargetPgBouncerTx:
		mode := strings.TrimPrefix(name, "pgbouncer-")
		b, err := startPgBouncer(ctx, h.bouncer, h.workDir, mode, h.c, &h.o)
		if err != nil {
			return t, err
		}
		h.track(b.process, false)
		t.ep, t.proc = b.endpoint(h.c), b.process
	default:
		mode := strings.TrimPrefix(name, "pgtenant-")
		p, err := startPgtenant(ctx, h.pgt, h.workDir, mode, h.secret, h.c, &h.o)
		if err != nil {
			return t, err
		}
		h.track(p.process, true)
		t.ep, t.proc, t.goStacks, t.metricsURL = p.endpoint(h.c), p.process, true, p.metricsURL()
		if res.PolicyEnforced == nil {
			on, err := p.policyEnforced(ctx, h.c)
			if err != nil {
				return t, err
			}
			res.PolicyEnforced = &on
			if !on {
				h.log.Warn("pgtenant serve did not refuse an unscoped statement: the statement policy is not enforcing, figures exclude its cost")
			}
		}
	}
	h.log.Info("target ready", "target", name, "port", t.ep.Port)
	return t, nil
}

// recoverTarget handles a failed pgbench run on t: it stops t's proxy
// (pgtenant with SIGQUIT, so its log ends with every goroutine's stack),
// keeps that log as OutDir/failures/<what>.log, and starts the proxy
// afresh, which also ends its backend sessions and releases the row locks
// they held, so that the other targets' runs are not blocked.
func (h *harness) recoverTarget(ctx context.Context, t *target, what string, res *Results) error {
	if t.proc == nil {
		return nil
	}
	if t.goStacks {
		t.proc.quit(10 * time.Second)
	} else if err := t.proc.stop(15 * time.Second); err != nil {
		h.log.Warn("stop", "process", t.proc.name, "error", err)
	}
	if b, err := os.ReadFile(t.proc.logFile); err == nil {
		dir := filepath.Join(h.o.OutDir, "failures")
		if err := os.MkdirAll(dir, 0o755); err == nil {
			path := filepath.Join(dir, what+".log")
			if err := os.WriteFile(path, b, 0o644); err == nil {
				h.log.Warn("kept the proxy's log", "target", t.name, "path", path)
			}
		}
	}
	nt, err := h.startTarget(ctx, t.name, res)
	if err != nil {
		return fmt.Errorf("restart %s after a failed run: %w", t.name, err)
	}
	*t = nt
	return nil
}

// track registers a started process for stopping. When the run failed, a
// Go process (goStacks) is stopped with SIGQUIT so that its log ends with
// every goroutine's stack: the evidence of where a hung proxy was stuck.
func (h *harness) track(p *process, goStacks bool) {
	h.stops = append(h.stops, func(failed bool) {
		if failed && goStacks {
			p.quit(10 * time.Second)
			return
		}
		if err := p.stop(15 * time.Second); err != nil {
			h.log.Warn("stop", "process", p.name, "error", err)
		}
	})
}

// stopAll stops every process started so far except the cluster (the
// first stop function).
func (h *harness) stopAll() {
	for len(h.stops) > 1 {
		last := h.stops[len(h.stops)-1]
		h.stops = h.stops[:len(h.stops)-1]
		last(false)
	}
}

// cleanup stops everything and removes the work directory, except after a
// failure: then it keeps the work directory (the proxies' logs) and
// returns its path.
func (h *harness) cleanup(failed bool) (kept string) {
	for i := len(h.stops) - 1; i >= 0; i-- {
		h.stops[i](failed)
	}
	h.stops = nil
	if h.workDir == "" {
		return ""
	}
	if failed {
		return h.workDir
	}
	_ = os.RemoveAll(h.workDir)
	return ""
}

// threads is pgbench -j: one thread per CPU, at most one per client.
func threads(clients int) int { return max(1, min(clients, runtime.NumCPU())) }

// warmUp runs each target once, unmeasured, at the highest client count:
// it fills caches, pgtenant's analysis cache and PgBouncer's pools.
func (h *harness) warmUp(ctx context.Context, targets []target, res *Results) error {
	if h.o.Warmup <= 0 {
		return nil
	}
	for i := range targets {
		t := &targets[i]
		mode := h.o.Modes[0]
		if !t.supports(mode) {
			mode = "simple"
		}
		h.log.Info("warm-up", "target", t.name, "mode", mode, "clients", h.o.maxClients())
		r := h.pgbenchRun(*t, mode, h.o.maxClients(), h.o.Warmup, "")
		if _, err := r.run(ctx); err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			// Reported, not fatal: the measured runs will show whether it recurs.
			h.log.Error("warm-up failed", "target", t.name, "error", err)
			res.WarmupErrors = append(res.WarmupErrors, fmt.Sprintf("%s: %v", t.name, err))
			if err := h.recoverTarget(ctx, t, t.name+"-warmup", res); err != nil {
				return err
			}
		}
	}
	return nil
}

func (h *harness) pgbenchRun(t target, mode string, clients int, d time.Duration, logDir string) pgbenchRun {
	return pgbenchRun{Bin: h.pgbench, Endpoint: t.ep, Script: h.script, Vars: scriptVars(&h.o),
		Mode: mode, Clients: clients, Threads: threads(clients), Duration: d, LogDir: logDir}
}

// measure runs one measured pgbench run after a checkpoint (so no run
// pays for another's dirty pages) and samples the proxy around it.
func (h *harness) measure(ctx context.Context, t target, mode string, clients int) (Row, error) {
	row := Row{Target: t.name, Mode: mode, Clients: clients, Threads: threads(clients)}
	if err := h.awaitAuditIdle(ctx, auditDatabases(h.o.Targets)...); err != nil {
		return row, err
	}
	if err := h.c.Exec(ctx, h.c.Database, "CHECKPOINT"); err != nil {
		return row, err
	}
	logDir, err := os.MkdirTemp(h.workDir, fmt.Sprintf("log-%s-%s-c%d-", t.name, mode, clients))
	if err != nil {
		return row, fmt.Errorf("log directory: %w", err)
	}
	var (
		before ProcSample
		perf   *perfCounter
	)
	pgBefore, err := clusterCPU(h.c.DataDir)
	if err != nil {
		return row, err
	}
	if t.proc != nil {
		if before, err = sampleProc(t.proc.pid()); err != nil {
			return row, err
		}
		if h.perf {
			if perf, err = startPerf(t.proc.pid(), h.workDir); err != nil {
				h.log.Warn("perf stat", "error", err)
			}
		}
	}
	stored := int64(-1)
	var latBefore auditLatency
	auditDB := auditDatabase(t.name)
	auditOn := auditDB != ""
	if auditOn {
		if stored, err = h.auditStored(ctx, auditDB); err != nil {
			return row, err
		}
		if latBefore, err = scrapeAuditLatency(ctx, t.metricsURL); err != nil {
			return row, err
		}
	}
	sum, err := h.pgbenchRun(t, mode, clients, h.o.Duration, logDir).run(ctx)
	var counts *PerfCounts
	if perf != nil {
		c, perr := perf.stop()
		if perr != nil {
			h.log.Warn("perf stat", "error", perr)
		} else {
			counts = &c
		}
	}
	if err != nil {
		return row, err
	}
	if err := h.measureDrain(ctx, auditDB, stored, time.Now(), &row); err != nil {
		return row, err
	}
	if auditOn {
		latAfter, err := scrapeAuditLatency(ctx, t.metricsURL)
		if err != nil {
			return row, err
		}
		row.InRunFsyncMs, row.InRunWriteMs, row.InRunOverheadMs = inRunMs(latBefore, latAfter)
	}
	stmts := sum.Processed * int64(h.stmtsTx)
	pgAfter, err := clusterCPU(h.c.DataDir)
	if err != nil {
		return row, err
	}
	if stmts > 0 {
		cpu := (pgAfter - pgBefore).Seconds() / float64(stmts) * 1000
		row.ClusterCPUPer1kStatements = &cpu
	}
	if t.proc != nil {
		after, err := sampleProc(t.proc.pid())
		if err != nil {
			return row, err
		}
		if stmts > 0 {
			cpu := (after.CPU - before.CPU).Seconds() / float64(stmts) * 1000
			row.ProxyCPUPer1kStatements = &cpu
			if counts != nil {
				sys, cs := float64(counts.Syscalls)/float64(stmts), float64(counts.ContextSwitches)/float64(stmts)
				row.ProxySyscallsPerStatement, row.ProxyCtxSwitchesPerStatement = &sys, &cs
			}
		}
		rss, hwm := after.RSSBytes, after.HWMBytes
		row.ProxyRSSBytes, row.ProxyPeakRSSBytes = &rss, &hwm
	}
	if row.Latency, err = readTxLogs(logDir); err != nil {
		return row, err
	}
	if h.o.KeepLogs {
		dst := filepath.Join(h.o.OutDir, "logs", filepath.Base(logDir))
		if err := os.MkdirAll(filepath.Dir(dst), 0o755); err == nil {
			_ = os.Rename(logDir, dst)
		}
	} else {
		_ = os.RemoveAll(logDir)
	}
	row.Transactions = sum.Processed
	row.Statements = sum.Processed * int64(h.stmtsTx)
	row.TPS = sum.TPS
	h.log.Info("measured", "target", t.name, "mode", mode, "clients", clients,
		"tps", fmt.Sprintf("%.0f", row.TPS), "p99_ms", fmt.Sprintf("%.2f", row.Latency.P99Ms))
	if row.AuditStored != nil {
		h.log.Info("audit after the run", "target", t.name, "stored", *row.AuditStored,
			"statements", row.Statements, "drain_seconds", fmt.Sprintf("%.2f", *row.AuditDrainSeconds))
	}
	return row, nil
}

// scaleRun holds IdleConns idle clients through a fresh pgtenant (spool mode,
// the default).
func (h *harness) scaleRun(ctx context.Context) (*ScaleResult, error) {
	h.log.Info("connection-scale run", "idle_conns", h.o.IdleConns)
	p, err := startPgtenant(ctx, h.pgt, h.workDir, "spool", h.secret, h.c, &h.o)
	if err != nil {
		return nil, err
	}
	h.track(p.process, true)
	ep := p.endpoint(h.c)
	dsn := fmt.Sprintf("host=%s port=%d user=%s dbname=%s sslmode=disable password=%s connect_timeout=60",
		ep.Host, ep.Port, ep.User, ep.Database, ep.Password)
	res, err := holdIdle(ctx, p.process, dsn, h.o.IdleConns)
	if res != nil {
		res.Target = "pgtenant-spool"
	}
	if err != nil {
		return res, err
	}
	h.log.Info("connection scale", "opened", res.Opened, "failed", res.Failed,
		"rss_per_conn_kib", fmt.Sprintf("%.1f", res.RSSPerConnBytes/1024))
	return res, nil
}

// machine describes the host and the tool versions.
func (h *harness) machine(ctx context.Context) Machine {
	m := Machine{CPUs: runtime.NumCPU(), Go: runtime.Version()}
	if b, err := os.ReadFile("/proc/loadavg"); err == nil {
		f := strings.Fields(string(b))
		m.LoadAvg = strings.Join(f[:min(3, len(f))], " ")
	}
	if b, err := os.ReadFile("/proc/sys/kernel/osrelease"); err == nil {
		m.Kernel = strings.TrimSpace(string(b))
	}
	if out, err := exec.CommandContext(ctx, h.pgbench, "--version").Output(); err == nil {
		m.Pgbench = strings.TrimSpace(string(out))
	}
	if out, err := exec.CommandContext(ctx, filepath.Join(h.c.BinDir, "postgres"), "--version").Output(); err == nil {
		m.Postgres = strings.TrimSpace(string(out))
	}
	if h.bouncer != "" {
		m.PgBouncer = pgbouncerVersion(h.bouncer)
	}
	return m
}
