package main

import (
	"context"
	"errors"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/pgtenant/pgtenant/audit"
	"github.com/pgtenant/pgtenant/isolation"
	"github.com/pgtenant/pgtenant/metrics"
	"github.com/pgtenant/pgtenant/regiondb"
)

// How often the audit watch samples the recorder and reads the audit
// summary (chain counts, last checkpoint) from each region.
var (
	auditSampleEvery  = time.Second
	auditSummaryEvery = 30 * time.Second
)

// auditWatch feeds the audit metrics and /isolation-proof's last
// verification. Batch size, write duration and write errors come from the
// recorder's cumulative counters, sampled every auditSampleEvery: each
// sampled batch is observed with the interval's average size and duration,
// and each sample in which the region's latest write failed counts as one
// failed write. Chain counts and the last verification (the newest
// checkpoint `audit seal` signed, which it does only after verifying the
// rows since the previous one) are read from the audit tables as the
// region's admin role; without one they are reported as unknown.
type auditWatch struct {
	a   *app
	rec *audit.Recorder
	// sampleEvery and summaryEvery are the intervals, fixed at construction.
	sampleEvery, summaryEvery time.Duration

	mu         sync.Mutex
	prev       map[string]audit.RegionStats
	lastAppend map[string]time.Time
	heads      map[string]isolation.ChainHeads
	verified   map[string]isolation.Verification
}

func newAuditWatch(a *app, rec *audit.Recorder) *auditWatch {
	return &auditWatch{a: a, rec: rec, sampleEvery: auditSampleEvery, summaryEvery: auditSummaryEvery, prev: map[string]audit.RegionStats{}, lastAppend: map[string]time.Time{},
		heads: map[string]isolation.ChainHeads{}, verified: map[string]isolation.Verification{}}
}

// run samples and summarises until ctx ends.
func (w *auditWatch) run(ctx context.Context, m *metrics.Metrics) {
	sample := time.NewTicker(w.sampleEvery)
	defer sample.Stop()
	summary := time.NewTimer(0)
	defer summary.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-sample.C:
			w.sample(m)
		case <-summary.C:
			w.summarise(ctx)
			summary.Reset(w.summaryEvery)
		}
	}
}

// maxObservedBatches bounds the observations of one sample.
const maxObservedBatches = 10000

func (w *auditWatch) sample(m *metrics.Metrics) {
	st := w.rec.Stats()
	now := time.Now()
	w.mu.Lock()
	defer w.mu.Unlock()
	for name, rs := range st.Regions {
		p, seen := w.prev[name]
		w.prev[name] = rs
		if !seen {
			p = audit.RegionStats{Healthy: true}
		}
		failed := 0
		if !rs.Healthy {
			failed = 1
		}
		n := 0
		var size float64
		var elapsed time.Duration
		if rs.Batches > p.Batches {
			d := rs.Batches - p.Batches
			n = int(min(d, maxObservedBatches))
			size = float64(rs.EventsWritten-p.EventsWritten) / float64(d)
			elapsed = time.Duration((rs.WriteSeconds - p.WriteSeconds) / float64(d) * float64(time.Second))
			w.lastAppend[name] = now
		}
		if n > 0 || failed > 0 {
			m.ObserveAuditBatches(name, n, size, elapsed, failed)
		}
	}
}

// summarise reads each region's chain summary and newest checkpoint.
func (w *auditWatch) summarise(ctx context.Context) {
	for _, name := range w.a.cfg.RegionNames() {
		r := w.a.cfg.Regions[name]
		if r.AdminUser == "" {
			continue
		}
		rctx, cancel := context.WithTimeout(ctx, r.ConnectTimeout+10*time.Second)
		heads, herr := chainHeads(rctx, w.a.cfg, name)
		v, vok := lastCheckpoint(rctx, w.a, name)
		cancel()
		w.mu.Lock()
		if herr == nil {
			w.heads[name] = heads
		} else {
			delete(w.heads, name)
			w.a.log.Debug("audit summary unavailable", "region", name, "error", herr)
		}
		if vok {
			w.verified[name] = v
		}
		w.mu.Unlock()
	}
}

// lastCheckpoint returns the newest checkpoint of region as its last
// verification: `audit seal` signs one only after verifying the rows.
func lastCheckpoint(ctx context.Context, a *app, region string) (isolation.Verification, bool) {
	r := a.cfg.Regions[region]
	l := regiondb.Admin(r, "pgtenant-audit-summary")
	l.Database = r.AuditDB()
	conn, err := regiondb.Connect(ctx, region, r, l)
	if err != nil {
		return isolation.Verification{}, false
	}
	defer conn.Close(context.Background())
	var ts *time.Time
	var n int64
	err = conn.QueryRow(ctx, `SELECT max(ts), count(*) FROM pgtenant_audit.checkpoints`).Scan(&ts, &n)
	if err != nil || ts == nil {
		if err != nil && !errors.Is(err, pgx.ErrNoRows) {
			a.log.Debug("audit checkpoints unreadable", "region", region, "error", err)
		}
		return isolation.Verification{}, false
	}
	return isolation.Verification{Time: ts.UTC(), Result: "intact",
		Detail: "rows verified and signed by `pgtenant audit seal` (newest of the region's checkpoints)"}, true
}

// stats builds the metrics' audit state from the recorder and the summary.
func (w *auditWatch) stats() metrics.AuditStats {
	st := w.rec.Stats()
	out := metrics.AuditStats{Chains: map[string]metrics.ChainHeads{}}
	w.mu.Lock()
	defer w.mu.Unlock()
	for name, rs := range st.Regions {
		out.QueueDepth += int(rs.QueueDepth)
		out.SpoolBytes += rs.SpoolBytes
		out.Written += rs.EventsWritten
		out.Failed += rs.EventsFailed
		out.SpoolFsyncs += rs.SpoolFsyncs
		out.SpoolFsyncSeconds += rs.SpoolFsyncSeconds
		h, known := w.heads[name]
		ch := metrics.ChainHeads{Chains: int(h.Chains), Entries: h.Entries, CountsUnknown: !known, LastAppend: w.lastAppend[name],
			IntegrationLagSeconds: rs.IntegrationLagSeconds}
		if h.LastAppend != nil && h.LastAppend.After(ch.LastAppend) {
			ch.LastAppend = *h.LastAppend
		}
		out.Chains[name] = ch
	}
	return out
}

// lastVerification is /isolation-proof's last verification of region.
func (w *auditWatch) lastVerification(region string) (isolation.Verification, bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	v, ok := w.verified[region]
	return v, ok
}
