package audit

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/pgtenant/pgtenant/tenancy"
)

// batchMax is the most rows one transaction appends in async and spool
// mode. Per-batch costs (the reserve and append round trips, the commit) are
// amortised over up to this many rows: one busy chain went from about 25k to
// about 32k events/s when it was raised from 256 (BenchmarkRecordOneChain, 2
// shared cores).
const batchMax = 2048

// directBatchMax is the batch limit of a writer that may hand its batches
// to its own process's integrator: a batch then waits for the next round,
// up to integratePace, and must carry what arrived meanwhile (2048 per
// 300 ms is 6,800 events/s).
const directBatchMax = integrateBatch

// strictBatchMax is the batch limit in strict mode, where each statement
// waits for the commit of its batch and holds its chain's head row while it
// is written: latency matters more than throughput there.
const strictBatchMax = 256

// item is one queued row; done (strict statement events) receives the
// outcome of the transaction that carried it.
type item struct {
	row  *Row
	done chan error
}

// regionWriter ships one region's rows to its database: from the in-memory
// queue (strict, async) or from the spool (spool).
type regionWriter struct {
	name   string
	pool   *pgxpool.Pool
	queue  chan *item
	spool  *spool
	logger *slog.Logger
	// batchMax bounds the rows of one append transaction (by mode).
	batchMax int
	// linger is how long runQueue lets a batch fill before it looks at
	// the queue again (async mode: batchLinger); 0 in strict mode, where
	// a statement waits for its batch's commit.
	linger time.Duration

	stop     chan struct{} // closed by Close: drain, then exit
	hardStop chan struct{} // closed when Close's context ends: exit now
	done     chan struct{}

	queued  atomic.Int64
	batches atomic.Uint64
	written atomic.Uint64
	// writtenDirect counts the events of written handed to this
	// process's integrator rather than appended as ingest batches.
	writtenDirect atomic.Uint64
	failed        atomic.Uint64
	eventOID      atomic.Uint32 // of pgtenant_audit.ingest_event; 0 = not looked up yet
	copyBuf       []byte        // the encoded events of the latest batch, reused (one writer goroutine)
	writeNanos    atomic.Int64
	lastNanos     atomic.Int64
	failingSince  atomic.Int64 // unix nanos of the first failure of the current outage; 0 = healthy
	// recordSize is about the size of an encoded event record in this
	// writer's latest batch handed to the integrator (a batch's buffer is
	// sized once); 0 before the first. The writer's goroutine's.
	recordSize int

	mu      sync.Mutex
	lastErr error
	lastID  uuid.UUID // the last event appended, for Close to wait on

	integ *integrator
	// direct: while this process integrates the region, batches go to the
	// integrator rather than to ingest_batches (spool and async modes; a
	// strict statement waits for its batch, which must not wait for a
	// paced round).
	direct bool
	held   *merger // statements waiting for their results (spool, async)

	sweepStop, sweepDone chan struct{} // async: sweep
}

// sweep ships async statements whose result is late (holdMax); when
// stopped it ships every statement still waiting.
func (w *regionWriter) sweep() {
	defer close(w.sweepDone)
	t := time.NewTicker(holdMax / 4)
	defer t.Stop()
	for {
		cutoff := time.Now().Add(-holdMax)
		select {
		case <-t.C:
		case <-w.sweepStop:
			cutoff = time.Time{}
		}
		for _, h := range w.held.expired(cutoff) {
			select {
			case w.queue <- &item{row: h.row}:
			case <-w.hardStop:
				return
			}
		}
		if cutoff.IsZero() {
			return
		}
	}
}

// write ships rows and records the outcome; the region's
// integrator chains them.
func (w *regionWriter) write(ctx context.Context, rows []*Row) error {
	start := time.Now()
	hashRows(rows)
	err := w.ship(ctx, rows)
	w.shipped(rows, start, err)
	return err
}

// hashRows computes the content hashes rows do not have yet.
func hashRows(rows []*Row) {
	for _, r := range rows {
		if r.ContentHash == nil {
			r.HashVersion = r.hashVersionFor()
			r.ContentHash = r.ComputeContentHash()
		}
	}
}

// shipped records the outcome of shipping rows, which started at start.
func (w *regionWriter) shipped(rows []*Row, start time.Time, err error) {
	d := time.Since(start)
	if err != nil {
		w.failingSince.CompareAndSwap(0, time.Now().UnixNano())
		w.mu.Lock()
		first := w.lastErr == nil
		w.lastErr = err
		w.mu.Unlock()
		if first {
			w.logger.Warn("audit write failed", "region", w.name, "events", len(rows), "error", err)
		}
		return
	}
	if w.failingSince.Swap(0) != 0 {
		w.logger.Info("audit writes recovered", "region", w.name)
	}
	w.batches.Add(1)
	w.written.Add(uint64(len(rows)))
	w.writeNanos.Add(int64(d))
	w.lastNanos.Store(int64(d))
	w.mu.Lock()
	w.lastErr = nil
	w.lastID = rows[len(rows)-1].EventID
	w.mu.Unlock()
}

// ship sends rows: to this process's integrator when it holds the
// region's lock (the rows are then written once, into events), otherwise
// as one ingest batch for whichever process does.
func (w *regionWriter) ship(ctx context.Context, rows []*Row) error {
	oid, err := w.typeOID(ctx)
	if err != nil {
		return err
	}
	if w.direct && w.integ.active.Load() {
		o, err := w.submit(rows, oid, nil)
		if !errors.Is(err, errNotIntegrating) {
			if err == nil {
				err = o.wait(ctx)
			}
			w.submitted(len(rows), err)
			return err
		}
	}
	return w.ingest(ctx, oid, rows)
}

// submit encodes rows and queues them for this process's integrator,
// after the writer's submission still in flight (nil: none). They are
// encoded here rather than in the round, which holds its transaction open
// meanwhile; into a buffer of their own, which the round may still read
// after the writer stopped waiting for it.
func (w *regionWriter) submit(rows []*Row, oid uint32, after *submission) (*submission, error) {
	buf := make([]byte, 0, arrayHeaderSize+cmp.Or(w.recordSize, 400)*len(rows))
	b := ownRows{rows: rows, oid: oid, array: encodeEventArray(buf, oid, rows)}
	// The next batch's buffer is sized after this one's records: a buffer
	// that grows by doubling copies a batch's records about once more.
	w.recordSize = len(b.records())/len(rows) + 16
	return w.integ.submitAfter(b, after)
}

// submitted records the outcome of n rows handed to the integrator.
func (w *regionWriter) submitted(n int, err error) {
	if err != nil {
		w.eventOID.Store(0)
		return
	}
	w.writtenDirect.Add(uint64(n))
}

// typeOID returns the OID of pgtenant_audit.ingest_event, which the
// batches' binary arrays name. It is looked up once, and again after any
// failed write (a re-created schema has a new one).
func (w *regionWriter) typeOID(ctx context.Context) (uint32, error) {
	if oid := w.eventOID.Load(); oid != 0 {
		return oid, nil
	}
	oid, err := ingestEventOID(ctx, w.pool)
	if err != nil {
		return 0, err
	}
	w.eventOID.Store(oid)
	return oid, nil
}

// ingest appends rows as one batch.
func (w *regionWriter) ingest(ctx context.Context, oid uint32, rows []*Row) error {
	buf, err := ingestRowsBuf(ctx, w.pool, w.name, oid, rows, w.copyBuf)
	w.copyBuf = buf
	if err != nil {
		w.eventOID.Store(0)
		return err
	}
	// This process's integrator, if it holds the lock, takes the batch at
	// once (a batch handed to it directly woke it when submitted).
	w.integ.wake()
	return nil
}

// pacer spaces a writer's retries after failed writes: 100 ms after the
// first, doubling up to 1 s, until a write succeeds.
type pacer struct {
	failures int
	hardStop <-chan struct{} // the writer's: closed, a wait ends at once
}

// failed records a failed write and waits before the retry; it returns
// false when the writer must exit now (hardStop closed).
func (p *pacer) failed() bool {
	p.failures++
	t := time.NewTimer(min(50*time.Millisecond<<min(p.failures, 5), time.Second))
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-p.hardStop:
		return false
	}
}

// written records a successful write: the next failure waits the least.
func (p *pacer) written() { p.failures = 0 }

// writeTimeout bounds one append transaction, so that a database that
// hangs (rather than refusing connections) is noticed as an outage too.
const writeTimeout = 15 * time.Second

// writeCtx is canceled when the writer must stop now or the write takes
// longer than writeTimeout.
func (w *regionWriter) writeCtx() (context.Context, context.CancelFunc) {
	ctx, cancel := context.WithTimeout(context.Background(), writeTimeout)
	go func() {
		select {
		case <-w.hardStop:
			cancel()
		case <-ctx.Done():
		}
	}()
	return ctx, cancel
}

// runQueue ships the in-memory queue (strict and async modes). Statement
// events of strict mode fail with the transaction; queued events are kept
// and retried, so a full queue blocks producers rather than dropping.
//
// A direct writer keeps one batch in flight: while this process's
// integrator writes one, it gathers, hashes and encodes the next and
// submits it for the round after, so that its own work overlaps the
// database's instead of adding to it.
func (w *regionWriter) runQueue() {
	defer close(w.done)
	var held []*item
	var fly *flight[*item]
	pace := pacer{hardStop: w.hardStop}
	for {
		if len(held) == 0 && fly == nil {
			select {
			case it := <-w.queue:
				held = append(held, it)
			case <-w.stop:
				select {
				case it := <-w.queue:
					held = append(held, it)
				default:
					return
				}
			case <-w.hardStop:
				return
			}
		}
		if fly == nil {
			held = w.gather(held)
		} else {
			held = w.gatherQueued(held)
		}
		var next *flight[*item]
		if len(held) > 0 {
			if next = launch(w, held, rowsOf(held), fly.submission()); next != nil {
				held = nil
			}
		}
		if fly != nil {
			var written, ok bool
			next, written, ok = landFlights(&pace, fly, next, w.landQueued,
				func(failed []*item) { held = w.retry(append(failed, held...)) })
			fly = nil
			if !ok {
				w.abandon(held)
				return
			}
			if !written {
				continue
			}
		}
		if next != nil {
			fly = next
			continue
		}
		if len(held) == 0 {
			continue
		}
		// Not handed to the integrator: written now, in this goroutine.
		ctx, cancel := w.writeCtx()
		err := w.write(ctx, rowsOf(held))
		cancel()
		if err == nil {
			w.delivered(held)
			held = held[:0]
			pace.written()
			continue
		}
		held = w.retry(held)
		if !pace.failed() {
			w.abandon(held)
			return
		}
	}
}

// flight is a batch handed to this process's integrator whose round has
// not reported yet, with what the writer's loop keeps for it until then
// (the queued items, or the spool entries, its rows came from).
type flight[T any] struct {
	carried []T
	rows    []*Row
	sub     *submission
	start   time.Time
	ctx     context.Context
	cancel  context.CancelFunc
}

// submission returns f's submission (nil for no flight).
func (f *flight[T]) submission() *submission {
	if f == nil {
		return nil
	}
	return f.sub
}

// launch hashes and encodes rows and submits them to this process's
// integrator after the submission still in flight (nil: none), without
// waiting. It returns nil when they must be written the synchronous way:
// the writer is not direct, this process does not integrate the region,
// or the event type's OID cannot be looked up now.
func launch[T any](w *regionWriter, carried []T, rows []*Row, after *submission) *flight[T] {
	if !w.direct || !w.integ.active.Load() {
		return nil
	}
	f := &flight[T]{carried: carried, rows: rows, start: time.Now()}
	hashRows(f.rows)
	f.ctx, f.cancel = w.writeCtx()
	oid, err := w.typeOID(f.ctx)
	if err == nil {
		f.sub, err = w.submit(f.rows, oid, after)
	}
	if err != nil {
		f.cancel()
		return nil
	}
	return f
}

// land waits for f's round and records its outcome.
func (f *flight[T]) land(w *regionWriter) error {
	err := f.sub.wait(f.ctx)
	f.cancel()
	w.submitted(len(f.rows), err)
	w.shipped(f.rows, f.start, err)
	return err
}

// landFlights lands fly, and next with it when fly failed (landBoth).
// What neither wrote goes to requeue, fly's first, and pace waits before
// the retry; a success resets pace. It returns next while still in flight,
// whether all that landed was written, and false when the writer must exit
// now.
func landFlights[T any](pace *pacer, fly, next *flight[T], land func(*flight[T]) []T,
	requeue func([]T)) (stillFlying *flight[T], written, ok bool) {
	again, next := landBoth(fly, next, land)
	if again == nil {
		pace.written()
		return next, true, true
	}
	requeue(again)
	return nil, false, pace.failed()
}

// landBoth lands fly with land (which returns what was not written, nil
// when all was). When fly failed, next (nil: none), submitted after it,
// failed with it or (if fly's round wrote it after all) was written: it is
// landed too, and what neither wrote comes back in order, fly's first.
// next is returned while still in flight.
func landBoth[T any](fly, next *flight[T], land func(*flight[T]) []T) (again []T, stillFlying *flight[T]) {
	again = land(fly)
	if again == nil || next == nil {
		return again, next
	}
	return append(again, land(next)...), nil
}

// landQueued lands f: it delivers f's items and returns nil, or returns
// them all for a retry.
func (w *regionWriter) landQueued(f *flight[*item]) []*item {
	if f.land(w) != nil {
		return f.carried
	}
	w.delivered(f.carried)
	return nil
}

// rowsOf returns the rows of held.
func rowsOf(held []*item) []*Row {
	rows := make([]*Row, len(held))
	for i, it := range held {
		rows[i] = it.row
	}
	return rows
}

// delivered reports written items to those waiting for them.
func (w *regionWriter) delivered(held []*item) {
	for _, it := range held {
		if it.done != nil {
			it.done <- nil
		}
	}
	w.queued.Add(-int64(len(held)))
}

// retry fails the items of a failed write that somebody waits for (a
// strict statement fails with its transaction) and returns the others, to
// be written again in the same order.
func (w *regionWriter) retry(held []*item) []*item {
	w.mu.Lock()
	err := w.lastErr
	w.mu.Unlock()
	keep := held[:0]
	for _, it := range held {
		if it.done != nil {
			it.done <- fmt.Errorf("%w: region %s: %w", ErrUnavailable, w.name, err)
			w.failed.Add(1)
			w.queued.Add(-1)
			continue
		}
		keep = append(keep, it)
	}
	return keep
}

// batchLinger is how long a writer lets a batch that nobody waits for fill
// before it ships it. A batch costs the database an INSERT, a row with its
// TOAST chunks and, at integration, a deletion with its trigger, whatever
// it carries; a writer that shipped whatever was queued sent a few events
// per batch at 16k events/s, and its backend took about 30 µs of CPU per
// event. Lingering makes the batch carry what 50 ms brought (that much
// more until an async event is in the database; a spool record's
// durability does not depend on it): at 12k statements/s about 650 rows
// where 10 ms gave 170 (BenchmarkWriterPaced, with integratePace).
const batchLinger = 50 * time.Millisecond

// gatherQueued adds to held what is queued now, up to batchMax, without
// waiting.
func (w *regionWriter) gatherQueued(held []*item) []*item {
	for len(held) < w.batchMax {
		select {
		case it := <-w.queue:
			held = append(held, it)
		default:
			return held
		}
	}
	return held
}

// gather adds queued items to held, up to batchMax. In async mode (linger
// set) it first lets the batch fill: it sleeps out the linger rather than
// waking for each event, which would cost a goroutine handoff per event.
// Otherwise it waits for more only while nobody waits for the batch's
// commit (a strict statement event), at most batchLinger; Close (stop)
// ends any wait.
func (w *regionWriter) gather(held []*item) []*item {
	if w.linger > 0 && len(held)+len(w.queue) < w.batchMax { // a backlog ships at once
		t := time.NewTimer(w.linger)
		select {
		case <-t.C:
		case <-w.stop:
		case <-w.hardStop:
		}
		t.Stop()
	}
	waited := false
	for _, it := range held {
		waited = waited || it.done != nil
	}
	var linger *time.Timer
	defer func() {
		if linger != nil {
			linger.Stop()
		}
	}()
	for len(held) < w.batchMax {
		var it *item
		select {
		case it = <-w.queue:
		default:
			if waited || w.linger > 0 {
				return held
			}
			if linger == nil {
				linger = time.NewTimer(batchLinger)
			}
			select {
			case it = <-w.queue:
			case <-linger.C:
				return held
			case <-w.stop:
				return held
			case <-w.hardStop:
				return held
			}
		}
		held = append(held, it)
		waited = waited || it.done != nil
	}
	return held
}

// abandon reports events still held when Close gave up.
func (w *regionWriter) abandon(held []*item) {
	for {
		select {
		case it := <-w.queue:
			held = append(held, it)
			continue
		default:
		}
		break
	}
	for _, it := range held {
		if it.done != nil {
			it.done <- fmt.Errorf("%w: region %s: recorder closed", ErrUnavailable, w.name)
		}
	}
	if len(held) > 0 {
		w.failed.Add(uint64(len(held)))
		w.logger.Error("audit events lost at shutdown", "region", w.name, "events", len(held))
	}
}

// spoolEntry is a record read from the spool and not yet released; done
// once its row (or the statement it was merged into) is in the database.
type spoolEntry struct {
	end  spoolPos
	done bool
}

// shipRow is a row ready to ship and the spool records it carries.
type shipRow struct {
	row     *Row
	entries []*spoolEntry
}

// runSpool ships the spool in log order, merging each statement with its
// result (merge.go); failed batches are retried, and the spool is released
// (its segments deleted) up to the first record not yet in the database.
func (w *regionWriter) runSpool() {
	defer close(w.done)
	var fifo []*spoolEntry // read, not yet released, in log order
	var ready []shipRow
	var recBuf []spoolRec // nextRecs' buffer
	pace := pacer{hardStop: w.hardStop}
	draining := false
	var lingerFrom time.Time // when the batch being gathered became non-empty
	// A direct writer keeps one batch in flight, as runQueue does: its
	// entries are done (and released) only once its round wrote it.
	var fly *flight[shipRow]
	// A landed flight's entries are done: the fifo releases what it can.
	land := func(f *flight[shipRow]) []shipRow {
		again := w.landSpool(f)
		fifo = w.release(fifo)
		return again
	}
	requeue := func(again []shipRow) { ready = append(again, ready...) }
	for {
		var notify <-chan struct{}
		if len(ready) < w.batchMax {
			recs, ch, err := w.spool.nextRecs(recBuf, w.batchMax-len(ready))
			if err != nil {
				w.logger.Error("audit spool segment unreadable, skipping the rest of it", "region", w.name, "error", err)
				w.spool.SkipSegment()
				continue
			}
			notify = ch
			for _, rec := range recs {
				e := &spoolEntry{end: rec.end}
				fifo = append(fifo, e)
				if rec.res != nil {
					ready = w.takeResult(ready, rec.res, rec.ref, e)
					continue
				}
				ready = w.take(ready, rec.row, rec.ref, e)
			}
			clear(recs) // the rows are ready's or held's now
			recBuf = recs
		}
		for _, h := range w.held.expired(time.Now().Add(-holdMax)) {
			ready = append(ready, shipRow{h.row, []*spoolEntry{h.pos.(*spoolEntry)}})
		}
		if len(ready) == 0 {
			if fly != nil {
				// Nothing more to send now: wait for the batch in flight.
				_, _, ok := landFlights(&pace, fly, nil, land, requeue)
				fly = nil
				if !ok {
					return
				}
				continue
			}
			if draining {
				if w.held.len() > 0 {
					for _, h := range w.held.expired(time.Time{}) {
						ready = append(ready, shipRow{h.row, []*spoolEntry{h.pos.(*spoolEntry)}})
					}
					continue
				}
				fifo = w.release(fifo)
				return
			}
			if notify == nil {
				continue
			}
			t := time.NewTimer(holdMax / 4)
			tick := t.C
			if w.held.len() == 0 {
				tick = nil
			}
			select {
			case <-notify:
			case <-tick:
			case <-w.stop:
				draining = true
			case <-w.hardStop:
				t.Stop()
				return
			}
			t.Stop()
			continue
		}
		if len(ready) < w.batchMax && !draining && fly == nil {
			// Let the batch fill for batchLinger (gather) once nothing more
			// is readable now (a batch submitted after one in flight waits
			// for a round anyway).
			if lingerFrom.IsZero() {
				lingerFrom = time.Now()
			}
			if rest := batchLinger - time.Since(lingerFrom); rest > 0 {
				// Asleep, not woken by each record the spool appends.
				t := time.NewTimer(rest)
				select {
				case <-t.C:
				case <-w.stop:
					draining = true
				case <-w.hardStop:
					t.Stop()
					return
				}
				t.Stop()
				continue
			}
		}
		lingerFrom = time.Time{}
		n := min(len(ready), w.batchMax)
		rows := make([]*Row, n)
		for i := range n {
			rows[i] = ready[i].row
		}
		next := launch(w, slices.Clone(ready[:n]), rows, fly.submission())
		if next != nil {
			ready = append(ready[:0], ready[n:]...)
		}
		if fly != nil {
			var written, ok bool
			next, written, ok = landFlights(&pace, fly, next, land, requeue)
			fly = nil
			if !ok {
				return
			}
			if !written {
				continue
			}
		}
		if next != nil {
			fly = next
			continue
		}
		// Not handed to the integrator: written now.
		ctx, cancel := w.writeCtx()
		err := w.write(ctx, rows)
		cancel()
		if err != nil {
			if !pace.failed() {
				return
			}
			continue
		}
		pace.written()
		for _, r := range ready[:n] {
			for _, e := range r.entries {
				e.done = true
			}
		}
		ready = append(ready[:0], ready[n:]...)
		fifo = w.release(fifo)
	}
}

// landSpool lands f: its entries are done and nil is returned, or its
// rows are returned to be shipped again.
func (w *regionWriter) landSpool(f *flight[shipRow]) []shipRow {
	if f.land(w) != nil {
		return f.carried
	}
	for _, r := range f.carried {
		for _, e := range r.entries {
			e.done = true
		}
	}
	return nil
}

// take routes one spooled row: a statement waits for its result, a result
// joins its waiting statement, a disconnect first releases its session's
// statements; everything else is ready to ship.
func (w *regionWriter) take(ready []shipRow, row *Row, ref uint64, e *spoolEntry) []shipRow {
	k, paired := keyOf(row, ref)
	switch {
	case paired && waitsForResult(row, ref):
		if w.held.hold(k, &held{row: row, since: time.Now(), pos: e}) {
			return ready
		}
	case paired && row.Kind == tenancy.KindResult:
		if h := w.held.take(k); h != nil {
			mergeResult(h.row, row)
			return append(ready, shipRow{h.row, []*spoolEntry{h.pos.(*spoolEntry), e}})
		}
	case row.Kind == tenancy.KindDisconnect && row.SessionID != nil:
		for _, h := range w.held.takeSession(*row.SessionID) {
			ready = append(ready, shipRow{h.row, []*spoolEntry{h.pos.(*spoolEntry)}})
		}
	}
	return append(ready, shipRow{row, []*spoolEntry{e}})
}

// takeResult routes a result spooled in format 4: into its waiting
// statement, or, when that statement was shipped without it, as a row of
// its own.
func (w *regionWriter) takeResult(ready []shipRow, res *resultRec, ref uint64, e *spoolEntry) []shipRow {
	if h := w.held.take(res.key(ref)); h != nil {
		res.mergeInto(h.row)
		return append(ready, shipRow{h.row, []*spoolEntry{h.pos.(*spoolEntry), e}})
	}
	row, err := res.row(w.name, ref)
	if err != nil {
		// Only a record this build did not write could fail here (its
		// CRC held): released, counted and logged, never shipped.
		w.failed.Add(1)
		w.logger.Error("audit spool result record unusable", "region", w.name, "error", err)
		e.done = true
		return ready
	}
	return append(ready, shipRow{row, []*spoolEntry{e}})
}

// release pops the shipped prefix of fifo and releases it in the spool.
func (w *regionWriter) release(fifo []*spoolEntry) []*spoolEntry {
	i := 0
	var bytes int64
	for i < len(fifo) && fifo[i].done {
		bytes += fifo[i].end.bytes
		i++
	}
	if i == 0 {
		return fifo
	}
	pos := fifo[i-1].end
	pos.bytes = bytes
	if err := w.spool.Release(pos, i); err != nil {
		w.logger.Warn("audit spool release failed", "region", w.name, "error", err)
	}
	return append(fifo[:0], fifo[i:]...)
}

// unavailable returns ErrUnavailable when the region's database has been
// unwritable for longer than outage, or nil.
func (w *regionWriter) unavailable(outage time.Duration) error {
	since := w.failingSince.Load()
	if since == 0 || time.Since(time.Unix(0, since)) < outage {
		return nil
	}
	w.mu.Lock()
	last := w.lastErr
	w.mu.Unlock()
	return fmt.Errorf("%w: region %s: database unwritable since %s: %w", ErrUnavailable, w.name,
		time.Unix(0, since).UTC().Format(time.RFC3339), last)
}

// ErrUnavailable means the audit trail cannot currently make an event
// durable (database unreachable, spool full, recorder closed). The proxy
// refuses the statement with SQLSTATE 57P03.
var ErrUnavailable = errors.New("audit trail unavailable")
