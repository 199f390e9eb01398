package audit

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"path/filepath"
	"sync"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgerrcode"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/pgtenant/pgtenant/config"
	"github.com/pgtenant/pgtenant/tenancy"
)

// Spool durability (audit.spool_fsync).
const (
	SpoolFsyncGroup    = "group"
	SpoolFsyncInterval = "interval"
)

// Audit modes (audit.mode).
const (
	ModeSpool  = "spool"
	ModeStrict = "strict"
	ModeAsync  = "async"
)

// Recorder writes the proxy's events to the audit trail of each region. It
// is safe for concurrent use.
type Recorder struct {
	cfg      config.Audit
	instance string
	logger   *slog.Logger
	writers  map[string]*regionWriter
	names    []string

	mu       sync.RWMutex
	closed   bool
	inflight sync.WaitGroup
	closeErr error
	once     sync.Once
}

// NewRecorder starts one writer per region. In spool mode it opens
// spool_dir/<region> and first ships whatever a previous run left there.
// An audit schema that is reachable but outdated is an error; an unreachable
// database is not (events wait in the spool or queue).
func NewRecorder(ctx context.Context, cfg config.Audit, regions map[string]config.Region, instance string, logger *slog.Logger) (*Recorder, error) {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	if len(regions) == 0 {
		return nil, errors.New("audit: no regions configured")
	}
	switch cfg.Mode {
	case ModeSpool, ModeStrict, ModeAsync:
	default:
		return nil, fmt.Errorf("audit.mode: %q is not one of spool, strict, async", cfg.Mode)
	}
	if cfg.QueueSize <= 0 {
		cfg.QueueSize = 65536
	}
	if cfg.OutageTimeout <= 0 {
		cfg.OutageTimeout = 10 * time.Second
	}
	if cfg.SpoolMaxBytes <= 0 {
		cfg.SpoolMaxBytes = 1 << 30
	}
	r := &Recorder{cfg: cfg, instance: instance, logger: logger, writers: map[string]*regionWriter{}, names: sortedRegions(regions)}
	for _, name := range r.names {
		w, err := r.startWriter(ctx, name, regions[name])
		if err != nil {
			for _, started := range r.writers {
				close(started.hardStop)
				<-started.done
			}
			r.shutdownNow()
			return nil, err
		}
		r.writers[name] = w
	}
	return r, nil
}

func (r *Recorder) startWriter(ctx context.Context, name string, reg config.Region) (*regionWriter, error) {
	pool, err := newPool(ctx, name, reg, 2)
	if err != nil {
		return nil, err
	}
	if err := checkSchema(ctx, pool); err != nil {
		if errors.Is(err, ErrSchemaOutdated) {
			pool.Close()
			return nil, fmt.Errorf("region %s: %w", name, err)
		}
		r.logger.Warn("audit database not reachable at start; events will wait", "region", name, "error", err)
	}
	w := &regionWriter{
		name: name, pool: pool, logger: r.logger, batchMax: batchMax, held: newMerger(),
		stop: make(chan struct{}), hardStop: make(chan struct{}), done: make(chan struct{}),
	}
	connect := func(ctx context.Context) (*pgx.Conn, error) {
		cc, err := connConfig(name, reg, false)
		if err != nil {
			return nil, err
		}
		return pgx.ConnectConfig(ctx, cc)
	}
	w.integ = newIntegrator(name, connect, r.logger)
	// Strict statements wait for their batch, which must not wait for a
	// paced round: only spool and async writers go to the integrator.
	if r.cfg.Mode != ModeStrict {
		w.direct, w.batchMax = true, directBatchMax
	}
	if r.cfg.Mode == ModeSpool {
		every := time.Duration(0)
		if r.cfg.SpoolFsync != SpoolFsyncGroup {
			every = r.cfg.SpoolFsyncInterval
			if every <= 0 {
				every = 10 * time.Millisecond
			}
		}
		sp, err := openSpoolSync(filepath.Join(r.cfg.SpoolDir, name), r.cfg.SpoolMaxBytes, every)
		if err != nil {
			pool.Close()
			return nil, fmt.Errorf("region %s: %w", name, err)
		}
		w.spool = sp
		if n := sp.Pending(); n > 0 {
			r.logger.Info("audit spool has unshipped events from a previous run", "region", name, "events", n)
		}
		go w.runSpool()
	} else {
		if r.cfg.Mode == ModeStrict {
			w.batchMax = strictBatchMax
		} else {
			w.linger = batchLinger
		}
		w.queue = make(chan *item, r.cfg.QueueSize)
		w.sweepStop, w.sweepDone = make(chan struct{}), make(chan struct{})
		go w.runQueue()
		go w.sweep()
	}
	go w.integ.run()
	return w, nil
}

// checkSchema asks the (service-role) database for its audit schema
// version; ErrSchemaOutdated when it is reachable and behind this build.
func checkSchema(ctx context.Context, pool *pgxpool.Pool) error {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	var v int
	err := pool.QueryRow(ctx, `SELECT pgtenant_audit.schema_version()`).Scan(&v)
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) && (pgErr.Code == pgerrcode.InvalidSchemaName || pgErr.Code == pgerrcode.UndefinedFunction || pgErr.Code == pgerrcode.InsufficientPrivilege) {
		return fmt.Errorf("%w (%s)", ErrSchemaOutdated, pgErr.Message)
	}
	if err != nil {
		return err
	}
	if v < SchemaVersion {
		return fmt.Errorf("%w (version %d, need %d)", ErrSchemaOutdated, v, SchemaVersion)
	}
	return nil
}

// Record records ev. A statement event is as durable as audit.mode promises
// when Record returns nil: fsync'd to the spool (spool), committed to the
// regional database (strict), or queued (async). Any other event is queued.
// An error wrapping ErrUnavailable means the statement must be refused
// (SQLSTATE 57P03). An event with no region is recorded in every region.
func (r *Recorder) Record(ctx context.Context, ev tenancy.Event) error {
	r.mu.RLock()
	if r.closed {
		r.mu.RUnlock()
		return fmt.Errorf("%w: recorder closed", ErrUnavailable)
	}
	r.inflight.Add(1)
	r.mu.RUnlock()
	defer r.inflight.Done()

	targets, chain := r.names, NoTenantChain
	if ev.Region != "" {
		chain = ChainFor(ev.AccountID)
		if _, ok := r.writers[ev.Region]; !ok {
			return fmt.Errorf("audit: region %q is not configured", ev.Region)
		}
		targets = []string{ev.Region}
	}
	statement := ev.Kind == tenancy.KindStatement
	for _, name := range targets {
		w := r.writers[name]
		if merged, err := r.mergeHeld(ctx, w, ev); merged {
			if err != nil {
				return err
			}
			continue
		}
		if spooled, err := r.spoolResult(w, ev); spooled || err != nil {
			if err != nil {
				return err
			}
			continue
		}
		row, err := newRow(ev, chain, name, r.instance, r.cfg.Statement)
		if err != nil {
			return err
		}
		if err := r.recordIn(ctx, w, row, ev.Ref, statement); err != nil {
			return err
		}
	}
	return nil
}

// mergeHeld merges a result into its statement when, in async mode, the
// statement waits in memory for it (recordIn holds it), and queues the
// statement's row: one row per statement, and the result never made a row
// of its own. merged is false when ev is not such a result.
func (r *Recorder) mergeHeld(ctx context.Context, w *regionWriter, ev tenancy.Event) (merged bool, err error) {
	if r.cfg.Mode != ModeAsync || ev.Kind != tenancy.KindResult || ev.Ref == 0 || ev.SessionID == "" {
		return false, nil
	}
	h := w.held.take(stmtKey{clean(ev.SessionID), ev.Ref})
	if h == nil {
		return false, nil
	}
	mergeEvent(h.row, ev)
	return true, w.enqueue(ctx, &item{row: h.row})
}

// spoolResult writes a result that pairs with its statement to the spool
// in format 4 (spool_result.go), without making it a row. spooled is false
// when ev is not such a result (or its fields do not fit the format).
func (r *Recorder) spoolResult(w *regionWriter, ev tenancy.Event) (spooled bool, err error) {
	if w.spool == nil || ev.Kind != tenancy.KindResult || ev.Ref == 0 || ev.SessionID == "" || ev.Region == "" {
		return false, nil
	}
	res, err := newResultRec(ev, r.instance)
	if err != nil || !res.spoolable() {
		return false, nil // recorded as a row
	}
	if err := w.spool.AppendResult(res, ev.Ref); err != nil {
		return true, fmt.Errorf("%w: region %s: %w", ErrUnavailable, w.name, err)
	}
	return true, nil
}

func (r *Recorder) recordIn(ctx context.Context, w *regionWriter, row *Row, ref uint64, statement bool) error {
	if w.spool != nil {
		if statement {
			if err := w.unavailable(r.cfg.OutageTimeout); err != nil {
				return err
			}
		}
		err := w.spool.AppendRef(row, ref, statement, statement)
		if errors.Is(err, ErrSpoolFull) {
			return fmt.Errorf("%w: region %s: spool holds %d bytes (audit.spool_max_bytes %d)",
				ErrUnavailable, w.name, w.spool.Bytes(), r.cfg.SpoolMaxBytes)
		}
		if err != nil {
			return fmt.Errorf("%w: region %s: %w", ErrUnavailable, w.name, err)
		}
		return nil
	}
	if r.cfg.Mode == ModeAsync {
		// One row per statement: park it until its result comes.
		// (A result whose statement is held never gets here: mergeHeld.)
		if k, ok := keyOf(row, ref); ok && waitsForResult(row, ref) {
			if w.held.hold(k, &held{row: row, since: time.Now()}) {
				w.queued.Add(1)
				return nil
			}
		}
		if row.Kind == tenancy.KindDisconnect && row.SessionID != nil {
			for _, h := range w.held.takeSession(*row.SessionID) {
				if err := w.enqueue(ctx, &item{row: h.row}); err != nil {
					return err
				}
			}
		}
	}
	it := &item{row: row}
	if statement && r.cfg.Mode == ModeStrict {
		it.done = make(chan error, 1)
	}
	w.queued.Add(1)
	return w.enqueue(ctx, it)
}

// enqueue puts an item, already counted in queued, on the writer's queue
// (blocking while it is full) and, for strict statement events, waits for
// its commit.
func (w *regionWriter) enqueue(ctx context.Context, it *item) error {
	select {
	case w.queue <- it:
	default:
		// Full: wait. Only now is ctx's Done asked for (a caller's bound
		// may arm a timer on that).
		select {
		case w.queue <- it:
		case <-ctx.Done():
			w.queued.Add(-1)
			return fmt.Errorf("%w: region %s: %w", ErrUnavailable, w.name, ctx.Err())
		}
	}
	if it.done == nil {
		return nil
	}
	select {
	case err := <-it.done:
		return err
	case <-ctx.Done():
		return fmt.Errorf("%w: region %s: %w", ErrUnavailable, w.name, ctx.Err())
	}
}

// Close stops accepting events, ships everything accepted (until ctx ends;
// in spool mode what is left stays in the spool for the next start), then
// stops the writers and closes their pools.
func (r *Recorder) Close(ctx context.Context) error {
	r.once.Do(func() {
		r.mu.Lock()
		r.closed = true
		r.mu.Unlock()
		waited := make(chan struct{})
		go func() { r.inflight.Wait(); close(waited) }()
		select {
		case <-waited:
		case <-ctx.Done():
		}
		for _, w := range r.writers {
			if w.sweepStop != nil {
				close(w.sweepStop)
				<-w.sweepDone
			}
			close(w.stop)
		}
		for _, name := range r.names {
			w := r.writers[name]
			select {
			case <-w.done:
			case <-ctx.Done():
				close(w.hardStop)
				<-w.done
				if r.closeErr == nil {
					r.closeErr = fmt.Errorf("audit: region %s: close: %w", name, ctx.Err())
				}
			}
		}
		for _, name := range r.names {
			if err := r.writers[name].closeIntegrator(ctx); err != nil && r.closeErr == nil {
				r.closeErr = fmt.Errorf("audit: region %s: close: %w", name, err)
			}
		}
		r.shutdownNow()
	})
	return r.closeErr
}

// closeIntegrator stops the region's integrator once what this recorder
// appended is chained: by integrating it (when this process holds the
// lock) or by waiting for the process that does.
func (w *regionWriter) closeIntegrator(ctx context.Context) error {
	g := w.integ
	if g == nil {
		return nil
	}
	defer func() {
		select {
		case <-g.hardStop:
		default:
			close(g.hardStop)
		}
		<-g.done
	}()
	close(g.stop)
	if g.active.Load() {
		select {
		case <-g.done:
			return nil
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	w.mu.Lock()
	last := w.lastID
	w.mu.Unlock()
	if last == (uuid.UUID{}) {
		return nil
	}
	for {
		var ok bool
		err := w.pool.QueryRow(ctx, `SELECT pgtenant_audit.is_integrated($1)`, last).Scan(&ok)
		if err == nil && ok {
			return nil
		}
		t := time.NewTimer(integratePoll)
		select {
		case <-t.C:
		case <-g.done: // took the lock over and drained
			t.Stop()
			return nil
		case <-ctx.Done():
			t.Stop()
			return fmt.Errorf("waiting for the integrator: %w", ctx.Err())
		}
	}
}

// shutdownNow releases resources without waiting for writers.
func (r *Recorder) shutdownNow() {
	for _, w := range r.writers {
		if w.integ != nil {
			select {
			case <-w.integ.hardStop:
			default:
				close(w.integ.hardStop)
			}
		}
		if w.spool != nil {
			if err := w.spool.Close(); err != nil && r.closeErr == nil {
				r.closeErr = err
			}
		}
		w.pool.Close()
	}
}

// Healthy returns nil when region's audit store is writable: its last write
// succeeded (or none failed yet) and its spool is below the high-water mark.
func (r *Recorder) Healthy(region string) error {
	w, ok := r.writers[region]
	if !ok {
		return fmt.Errorf("audit: region %q is not configured", region)
	}
	if w.failingSince.Load() != 0 {
		w.mu.Lock()
		err := w.lastErr
		w.mu.Unlock()
		return fmt.Errorf("%w: region %s: %w", ErrUnavailable, region, err)
	}
	if w.spool != nil && w.spool.Bytes() >= r.cfg.SpoolMaxBytes {
		return fmt.Errorf("%w: region %s: spool is full", ErrUnavailable, region)
	}
	return nil
}

// Stats is a snapshot of the recorder's measurements, per region.
type Stats struct {
	Regions map[string]RegionStats
}

// RegionStats are one region's audit measurements.
type RegionStats struct {
	// QueueDepth is the events accepted and not yet in the database.
	QueueDepth int64
	// SpoolBytes is the size of the region's spool (spool mode).
	SpoolBytes int64
	// SpoolFsyncs and SpoolFsyncSeconds count the spool's fdatasyncs and
	// the time spent in them (spool mode): their ratio is the latency the
	// disk gives under the proxy's own load.
	SpoolFsyncs       uint64
	SpoolFsyncSeconds float64
	// Batches is the number of committed append transactions.
	Batches uint64
	// EventsWritten is the number of rows appended.
	EventsWritten uint64
	// EventsWrittenDirect is the part of EventsWritten this process's own
	// integrator wrote straight into events (no ingest batch).
	EventsWrittenDirect uint64
	// EventsFailed counts events that could not be written (their Record
	// returned an error, or they were still queued when Close gave up).
	EventsFailed uint64
	// Duplicates counts re-shipped events this process's integrator skipped
	// because their event_id was already chained.
	Duplicates uint64
	// WriteSeconds is the total time spent in append transactions.
	WriteSeconds float64
	// LastWriteSeconds is the duration of the latest append transaction.
	LastWriteSeconds float64
	// Integrating reports whether this process holds the region's
	// integrator lock (integrator.go).
	Integrating bool
	// EventsIntegrated is the number of events this process chained.
	EventsIntegrated uint64
	// IntegrationLagSeconds is how old the oldest event of the latest
	// integration was when it was chained (0 when nothing was pending).
	IntegrationLagSeconds float64
	// Healthy reports whether the latest write succeeded.
	Healthy bool
}

// Stats returns the current measurements.
func (r *Recorder) Stats() Stats {
	s := Stats{Regions: make(map[string]RegionStats, len(r.writers))}
	for name, w := range r.writers {
		rs := RegionStats{
			Batches:             w.batches.Load(),
			EventsWritten:       w.written.Load(),
			EventsWrittenDirect: w.writtenDirect.Load(),
			EventsFailed:        w.failed.Load(),
			WriteSeconds:        time.Duration(w.writeNanos.Load()).Seconds(),
			LastWriteSeconds:    time.Duration(w.lastNanos.Load()).Seconds(),
			Healthy:             w.failingSince.Load() == 0,
		}
		if w.spool != nil {
			rs.QueueDepth = w.spool.Pending()
			rs.SpoolBytes = w.spool.Bytes()
			rs.SpoolFsyncs = w.spool.syncs.Load()
			rs.SpoolFsyncSeconds = time.Duration(w.spool.syncNanos.Load()).Seconds()
		} else {
			rs.QueueDepth = w.queued.Load()
		}
		rs.Integrating = w.integ.active.Load()
		rs.EventsIntegrated = w.integ.integrated.Load()
		rs.Duplicates = w.integ.dups.Load()
		rs.IntegrationLagSeconds = time.Duration(w.integ.lagNanos.Load()).Seconds()
		s.Regions[name] = rs
	}
	return s
}
