package bench

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5"
)

// durabilitySamples is how many fdatasyncs and commits the run times: a
// fraction of a second on a disk, enough for a stable mean.
const durabilitySamples = 200

// Durability is what this machine's durability costs, measured in the
// run: an fdatasync of freshly appended data in the file system of the
// spools (audit.spool_fsync: group waits for one per statement group) and
// a single-row commit on the cluster (audit.mode: strict waits for one per
// statement group).
type Durability struct {
	Samples         int     `json:"samples"`
	SpoolFS         string  `json:"spool_fs"`
	FdatasyncMeanMs float64 `json:"fdatasync_mean_ms"`
	FdatasyncP50Ms  float64 `json:"fdatasync_p50_ms"`
	CommitMeanMs    float64 `json:"commit_mean_ms"`
	CommitP50Ms     float64 `json:"commit_p50_ms"`
}

// measureDurability times durabilitySamples fdatasyncs in dir and as many
// single-row commits through dsn.
func measureDurability(ctx context.Context, dir, dsn string) (*Durability, error) {
	d := &Durability{Samples: durabilitySamples, SpoolFS: fsType(dir)}
	fs, err := timeFdatasyncs(dir, durabilitySamples)
	if err != nil {
		return nil, err
	}
	cs, err := timeCommits(ctx, dsn, durabilitySamples)
	if err != nil {
		return nil, err
	}
	d.FdatasyncMeanMs, d.FdatasyncP50Ms = meanMs(fs), p50Ms(fs)
	d.CommitMeanMs, d.CommitP50Ms = meanMs(cs), p50Ms(cs)
	return d, nil
}

// timeFdatasyncs appends a small record to a file in dir and fdatasyncs it,
// n times, as the spool does for each group: every sync has new data to
// write, so none is a no-op.
func timeFdatasyncs(dir string, n int) ([]time.Duration, error) {
	f, err := os.CreateTemp(dir, "fdatasync-probe-")
	if err != nil {
		return nil, fmt.Errorf("fdatasync probe: %w", err)
	}
	defer os.Remove(f.Name())
	defer f.Close()
	rec := make([]byte, 256)
	out := make([]time.Duration, 0, n)
	for i := range n {
		rec[0] = byte(i)
		if _, err := f.Write(rec); err != nil {
			return nil, fmt.Errorf("fdatasync probe %s: %w", filepath.Base(f.Name()), err)
		}
		start := time.Now()
		if err := syscall.Fdatasync(int(f.Fd())); err != nil {
			return nil, fmt.Errorf("fdatasync probe %s: %w", filepath.Base(f.Name()), err)
		}
		out = append(out, time.Since(start))
	}
	return out, nil
}

// timeCommits inserts one row per transaction, n times: the latency of a
// commit is what a strict statement waits for at least (its group's COPY
// commits once).
func timeCommits(ctx context.Context, dsn string, n int) ([]time.Duration, error) {
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		return nil, fmt.Errorf("commit probe: %w", err)
	}
	defer conn.Close(context.Background())
	// A regular table, so that each commit writes and flushes WAL the way
	// the audit's COPY does (a temporary table's rows would write none).
	if _, err := conn.Exec(ctx, `CREATE TABLE IF NOT EXISTS pgtenant_bench_commit_probe (id bigint, at timestamptz DEFAULT now())`); err != nil {
		return nil, fmt.Errorf("commit probe: %w", err)
	}
	defer conn.Exec(context.Background(), `DROP TABLE IF EXISTS pgtenant_bench_commit_probe`) //nolint:errcheck // best effort
	out := make([]time.Duration, 0, n)
	for i := range n {
		start := time.Now()
		if _, err := conn.Exec(ctx, `INSERT INTO pgtenant_bench_commit_probe (id) VALUES ($1)`, i); err != nil {
			return nil, fmt.Errorf("commit probe: %w", err)
		}
		out = append(out, time.Since(start))
	}
	return out, nil
}

func meanMs(ds []time.Duration) float64 {
	if len(ds) == 0 {
		return 0
	}
	var sum time.Duration
	for _, d := range ds {
		sum += d
	}
	return float64(sum) / float64(len(ds)) / float64(time.Millisecond)
}

func p50Ms(ds []time.Duration) float64 {
	if len(ds) == 0 {
		return 0
	}
	s := slices.Clone(ds)
	slices.Sort(s)
	return float64(s[len(s)/2]) / float64(time.Millisecond)
}

// latencyMs is the latency a statement of target waits for at
// least once (0 for targets that wait for neither).
func (d *Durability) latencyMs(target string) float64 {
	if d == nil {
		return 0
	}
	switch target {
	case TargetPgtenantSpoolGroup:
		return d.FdatasyncMeanMs
	case TargetPgtenantStrict:
		return d.CommitMeanMs
	}
	return 0
}

// computeCeilings fills, for the spool-group and strict rows, the ceiling
// the durability latency sets and the ratio of the measured TPS to it, and
// for every pgtenant row with the audit on its TPS against
// pgtenant-noaudit at the same mode and client count.
//
// The model: every statement waits for at least one fdatasync (resp.
// commit) that began after it was recorded, and groups share one, so
// with C clients at most C statements complete per latency L:
// TPS <= C / (L × statements per transaction). The audit cannot make
// pgtenant faster than without it either, so the ceiling is the smaller of
// that bound and pgtenant-noaudit's TPS when that target ran.
//
// SPEC makes the wait come before the statement is forwarded, so it adds
// to the statement's time rather than overlapping it: a client's
// statement takes at least pgtenant-noaudit's time per statement at that
// client count (clients / its TPS) plus the latency, and TPS <= clients /
// (clients / noaudit TPS + L × statements per transaction). That serial
// bound is printed beside the ceiling, with the TPS over it.
func (res *Results) computeCeilings() {
	type key struct {
		mode    string
		clients int
	}
	noaudit := map[key]float64{}
	for _, r := range res.Rows {
		if r.Target == TargetPgtenantNoAudit && r.Error == "" {
			noaudit[key{r.Mode, r.Clients}] = r.TPS
		}
	}
	stmts := max(res.Settings.StatementsPerTx, 1)
	for i := range res.Rows {
		r := &res.Rows[i]
		// Only the audit modes are compared with the audit disabled: the
		// transaction-pooling target differs from it in pooling, not audit.
		if !isAudited(r.Target) || r.Error != "" || r.TPS <= 0 {
			continue
		}
		na, haveNA := noaudit[key{r.Mode, r.Clients}]
		if haveNA && na > 0 {
			v := r.TPS / na
			r.TPSvsNoAudit = &v
		}
		l := res.Durability.latencyMs(r.Target)
		if l <= 0 {
			continue
		}
		bound := float64(r.Clients) / (l / 1000) / float64(stmts)
		ceiling := bound
		if haveNA && na > 0 && na < ceiling {
			ceiling = na
		}
		ratio := r.TPS / ceiling
		r.DurabilityBoundTPS, r.CeilingTPS, r.TPSvsCeiling = &bound, &ceiling, &ratio
		if haveNA && na > 0 {
			serial := float64(r.Clients) / (float64(r.Clients)/na + l/1000*float64(stmts))
			vs := r.TPS / serial
			r.SerialBoundTPS, r.TPSvsSerialBound = &serial, &vs
		}
		inRun := r.InRunFsyncMs
		if r.Target == TargetPgtenantStrict {
			inRun = r.InRunWriteMs
		}
		if inRun != nil && *inRun > 0 {
			b := float64(r.Clients) / (*inRun / 1000) / float64(stmts)
			r.InRunBoundTPS = &b
		}
	}
}
