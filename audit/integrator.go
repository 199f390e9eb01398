package audit

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// The integrator turns appended rows into chained events. Every Recorder
// runs one per region; only the one whose connection holds the region's
// advisory lock integrates, the others wait to take over (the lock goes
// with the connection when a process dies). Writers therefore share no
// lock: they INSERT batches of unsequenced rows into
// pgtenant_audit.ingest_batches, and one process per region assigns each
// tenant's seq, links its hash chain and deletes the batches it chained.
// That process's own writers skip the batches: they hand their rows to its
// integrator (submit), whose next round writes them into events directly,
// so that they are written once.
const (
	// integrateBatch bounds the rows of one integration transaction.
	integrateBatch = 16384
	// integratePoll is how often an idle integrator looks for rows that
	// other proxies appended (its own writers wake it at once).
	integratePoll = 20 * time.Millisecond
	// takeoverPoll is how often a waiting integrator tries the lock.
	takeoverPoll = time.Second
	// integratePace is the least time between the starts of two rounds
	// that each took everything pending. A round has a fixed cost in the
	// database (a transaction of five statements, the plpgsql checks, the
	// delete trigger per batch, a WAL flush; about 2 ms of its backend's
	// CPU on 2 shared cores even with cached plans) that woken rounds, one
	// per writer batch, paid per few events: at 16k events/s the
	// integrator's backend took 85 µs of CPU per event. Pacing makes each
	// round carry what 300 ms brought (the integration lag grows by as
	// much, well inside its 1 s bound; writes themselves are not delayed,
	// and Close cuts the pause). With batchLinger, 300 ms rather than 100
	// took the audit's CPU per statement at the bench harness's rate from
	// about 48 to 29 µs, the database's and the proxy's together
	// (BenchmarkWriterPaced).
	integratePace = 300 * time.Millisecond
)

// integratorLockSQL takes the region's integrator lock for this session.
// Schema version 7 has its own key: a proxy of version 6 still holding the
// old one (its integrate now refuses) must not keep this build's integrator
// waiting during a rolling upgrade.
const integratorLockSQL = `SELECT pg_try_advisory_lock(hashtext('pgtenant_audit.integrator.v7'), hashtext($1))`

type integrator struct {
	region  string
	connect func(context.Context) (*pgx.Conn, error)
	logger  *slog.Logger

	kick     chan struct{} // a writer appended rows
	stop     chan struct{} // closed by Close: integrate what is there, then exit
	hardStop chan struct{}
	done     chan struct{}

	active     atomic.Bool  // this process holds the lock; changed under ownMu
	lagNanos   atomic.Int64 // age of the oldest event of the latest integration
	integrated atomic.Uint64
	dups       atomic.Uint64 // re-shipped events skipped

	// ahead is the second connection on which the active integrator reads
	// the next round's events during a round; next holds them. Both belong
	// to the integrator's goroutine.
	ahead *pgx.Conn
	next  []pending

	// own holds the batches this process's writers submitted for the next
	// round, while active.
	ownMu sync.Mutex
	own   []*submission
}

// ownRows is one writer batch for this process's integrator: its rows
// (content hashes computed) and their records of type
// pgtenant_audit.ingest_event (oid), encoded by the writer
// (appendEventRecords).
type ownRows struct {
	rows    []*Row
	oid     uint32
	records []byte
}

// submission is a submitted batch and the outcome of the round that
// carried it.
type submission struct {
	ownRows
	done chan error
}

// errNotIntegrating means this process does not hold the region's
// integrator lock: its writers append ingest batches instead.
var errNotIntegrating = errors.New("this process is not the region's integrator")

// submit has the next round write b's rows into events and waits for its
// outcome. A round runs at most integratePace
// after the previous one started, so the writer's next batch gathers
// meanwhile. It returns errNotIntegrating when this process does not hold
// the lock (or loses it before a round took the rows).
func (g *integrator) submit(ctx context.Context, b ownRows) error {
	o := &submission{ownRows: b, done: make(chan error, 1)}
	g.ownMu.Lock()
	if !g.active.Load() {
		g.ownMu.Unlock()
		return errNotIntegrating
	}
	g.own = append(g.own, o)
	g.ownMu.Unlock()
	g.wake()
	select {
	case err := <-o.done:
		return err
	case <-ctx.Done():
		// A round may still take them: the retry's copies are then
		// skipped as duplicates.
		return ctx.Err()
	}
}

// setActive records whether this process holds the lock; losing it fails
// the rows submitted and not yet taken by a round.
func (g *integrator) setActive(on bool) {
	g.ownMu.Lock()
	g.active.Store(on)
	left := g.own
	if !on {
		g.own = nil
	}
	g.ownMu.Unlock()
	if !on {
		finishOwn(left, errNotIntegrating)
	}
}

// takeOwn takes every submitted batch for a round.
func (g *integrator) takeOwn() []*submission {
	g.ownMu.Lock()
	defer g.ownMu.Unlock()
	own := g.own
	g.own = nil
	return own
}

// finishOwn reports a round's outcome to the writers of its own rows.
func finishOwn(own []*submission, err error) {
	for _, o := range own {
		o.done <- err
	}
}

func newIntegrator(region string, connect func(context.Context) (*pgx.Conn, error), logger *slog.Logger) *integrator {
	return &integrator{region: region, connect: connect, logger: logger,
		kick: make(chan struct{}, 1), stop: make(chan struct{}), hardStop: make(chan struct{}), done: make(chan struct{})}
}

// wake tells the integrator that rows were appended.
func (g *integrator) wake() {
	select {
	case g.kick <- struct{}{}:
	default:
	}
}

// wait sleeps d or until woken; it returns false when the integrator must exit.
func (g *integrator) wait(d time.Duration, stopping bool) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	stop := g.stop
	if stopping {
		stop = nil
	}
	select {
	case <-t.C:
	case <-g.kick:
	case <-stop:
	case <-g.hardStop:
		return false
	}
	return true
}

func (g *integrator) stopped() bool {
	select {
	case <-g.stop:
		return true
	default:
		return false
	}
}

// run holds or waits for the region's lock and integrates while it holds it.
func (g *integrator) run() {
	defer close(g.done)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() {
		<-g.hardStop
		cancel()
	}()
	for {
		// Until hardStop, even when stopping: a closing process that does
		// not hold the lock may have to take over to chain its own events.
		conn, err := g.connect(ctx)
		if err != nil {
			if !g.wait(takeoverPoll, true) {
				return
			}
			continue
		}
		err = g.hold(ctx, conn)
		g.setActive(false)
		conn.Close(context.Background())
		if err == nil {
			return
		}
		g.logger.Warn("audit integrator stopped", "region", g.region, "error", err)
		if !g.wait(takeoverPoll, true) {
			return
		}
	}
}

// hold tries the lock until it gets it (or hardStop), then integrates until
// stopped and drained (nil) or a database error.
func (g *integrator) hold(ctx context.Context, conn *pgx.Conn) error {
	for {
		var got bool
		if err := conn.QueryRow(ctx, integratorLockSQL, g.region).Scan(&got); err != nil {
			return fmt.Errorf("integrator lock: %w", err)
		}
		if got {
			break
		}
		if !g.wait(takeoverPoll, true) {
			return nil
		}
	}
	g.setActive(true)
	g.logger.Info("audit integrator active", "region", g.region)
	defer g.closeAhead()
	for {
		stopping := g.stopped()
		started := time.Now()
		n, ahead, err := g.round(ctx, conn)
		if err != nil {
			return err
		}
		// A round takes whole batches of at most batchMax events while they
		// fit in integrateBatch, so one that left more than batchMax of room
		// took every batch visible when it started; one that used events
		// read ahead during the previous round saw an older snapshot.
		if ahead || n > integrateBatch-batchMax {
			continue
		}
		if stopping {
			// A round that took every visible batch chained all this process
			// appended before Close stopped the integrator. Other proxies' rows are
			// left to whoever takes the lock over: waiting for the region to
			// fall quiet could take forever under load.
			return nil
		}
		if n > 0 {
			// Events keep coming: let the next round gather them.
			if !g.pause(integratePace - time.Since(started)) {
				return nil
			}
			continue
		}
		if !g.wait(integratePoll, stopping) {
			return nil
		}
	}
}

// pause sleeps d, cut short by Close (stop) or hardStop; it returns false
// when the integrator must exit now. A writer's wake during the pause stays
// pending, so the next idle wait returns at once.
func (g *integrator) pause(d time.Duration) bool {
	if d <= 0 {
		return true
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
	case <-g.stop:
	case <-g.hardStop:
		return false
	}
	return true
}

// round integrates the oldest pending batches, up to integrateBatch events
// (at least one batch), then the rows this process's writers submitted, in
// one transaction: it skips events already chained (a re-shipped spool
// batch) or repeated within the round, assigns each tenant's next seq,
// links the chains, numbers the tree leaves in that order, and has
// integrate_round check and store them and delete the batches. It returns
// the number of events read and submitted.
// It reports whether it used events read ahead during the previous round.
func (g *integrator) round(ctx context.Context, conn *pgx.Conn) (int, bool, error) {
	ahead := g.next
	g.next = nil
	own := g.takeOwn()
	n, err := g.roundOnce(ctx, conn, false, ahead, own)
	var pe *pgconn.PgError
	if errors.As(err, &pe) && pe.Code == "23505" && pe.ConstraintName == "events_event_id_key" {
		// A batch repeats an event chained in an earlier round (a spool
		// batch re-shipped after a crash, a write retried after a lost
		// acknowledgement): look every event up this time.
		g.next = nil
		ahead = nil
		n, err = g.roundOnce(ctx, conn, true, nil, own)
	}
	if err != nil {
		g.next = nil
	}
	finishOwn(own, err)
	return n, ahead != nil && err == nil, err
}

// readAhead starts reading, on a second connection, the pending events of
// the round after the one integrating batches (excluded), so that reading
// them overlaps the integration instead of following it. The returned
// function waits for the result and keeps it for the next round (or drops
// it on any error: that round then reads as usual).
func (g *integrator) readAhead(ctx context.Context, batches []int64) func(keep bool) {
	if g.connect == nil {
		return func(bool) {}
	}
	if g.ahead == nil {
		c, err := g.connect(ctx)
		if err != nil {
			return func(bool) {}
		}
		g.ahead = c
	}
	conn := g.ahead
	type result struct {
		ps  []pending
		err error
	}
	ch := make(chan result, 1)
	go func() {
		ps, err := readPendingExcluding(ctx, conn.PgConn(), g.region, false, batches)
		ch <- result{ps, err}
	}()
	return func(keep bool) {
		r := <-ch
		if r.err != nil {
			g.closeAhead()
			return
		}
		if keep && len(r.ps) > 0 {
			g.next = r.ps
		}
	}
}

// closeAhead closes the read-ahead connection.
func (g *integrator) closeAhead() {
	if g.ahead != nil {
		g.ahead.Close(context.Background())
		g.ahead = nil
	}
	g.next = nil
}

// ownBatch marks, in a round's pending list, the rows of this process's own
// writers (which are in no batch).
const ownBatch = -1

// roundOnce is one attempt at a round; check looks each event up in events
// to skip those already chained, otherwise the unique event_id index
// refuses the round if one was. ahead, when not nil, are the round's
// events read ahead (without check); own are submitted rows.
func (g *integrator) roundOnce(ctx context.Context, conn *pgx.Conn, check bool, ahead []pending, own []*submission) (int, error) {
	n := 0
	var dups int
	var collect func(keep bool)
	defer func() {
		if collect != nil {
			collect(false)
		}
	}()
	err := pgx.BeginFunc(ctx, conn, func(tx pgx.Tx) error {
		ps := ahead
		if ps == nil {
			var err error
			if ps, err = readPending(ctx, tx.Conn().PgConn(), g.region, check); err != nil {
				return fmt.Errorf("pending: %w", err)
			}
		}
		ps, ownArray, err := appendOwn(ctx, tx.Conn().PgConn(), ps, own, check)
		if err != nil {
			return err
		}
		n = len(ps)
		if n == 0 {
			return nil
		}
		// seqs, prevs and entries have one element per batch element, in
		// the order read; nil (NULL) marks a skipped duplicate.
		var batches [][]byte
		var batchIDs []int64
		var chains, regions []string
		seenChain := map[string]bool{}
		seenID := make(map[[16]byte]bool, n)
		skip := make([]bool, n)
		oldest := ps[0].tsMicros
		for i, p := range ps {
			if p.batch != ownBatch && (i == 0 || p.batch != ps[i-1].batch) {
				batches = append(batches, binary.BigEndian.AppendUint64(nil, uint64(p.batch)))
				batchIDs = append(batchIDs, p.batch)
			}
			if p.integrated || seenID[p.id] {
				skip[i] = true
				dups++
				continue
			}
			seenID[p.id] = true
			if !seenChain[p.chain] {
				// Every event of a batch names the batch's region (integrate_round checks it).
				seenChain[p.chain] = true
				chains, regions = append(chains, p.chain), append(regions, g.region)
			}
			oldest = min(oldest, p.tsMicros)
		}
		type head struct {
			seq  int64
			hash []byte
		}
		heads := make(map[string]*head, len(chains))
		if len(chains) > 0 {
			hr, err := tx.Query(ctx, `SELECT chain_id, seq, head FROM pgtenant_audit.heads_of($1, $2)`, chains, regions)
			if err != nil {
				return fmt.Errorf("heads: %w", err)
			}
			for hr.Next() {
				var c string
				h := &head{}
				if err := hr.Scan(&c, &h.seq, &h.hash); err != nil {
					hr.Close()
					return fmt.Errorf("heads: %w", err)
				}
				heads[c] = h
			}
			if err := hr.Err(); err != nil {
				return fmt.Errorf("heads: %w", err)
			}
		}
		var size int64
		if err := tx.QueryRow(ctx, `SELECT pgtenant_audit.tree_size($1)`, g.region).Scan(&size); err != nil {
			return fmt.Errorf("tree size: %w", err)
		}
		seqs := make([][]byte, n)
		prevs := make([][]byte, n)
		entries := make([][]byte, n)
		leaves := make([][]byte, n)
		ints := make([]byte, 16*n) // seqs and leaves, one allocation
		leaf := size
		for i := range ps {
			if skip[i] {
				continue
			}
			leaves[i] = binary.BigEndian.AppendUint64(ints[16*i:16*i], uint64(leaf))
			leaf++
			p := &ps[i]
			h := heads[p.chain]
			if h == nil {
				return fmt.Errorf("chain %q has no head", p.chain)
			}
			h.seq++
			entry := EntryHash(p.chain, h.seq, h.hash, p.content)
			prevs[i], entries[i] = h.hash, entry
			seqs[i] = binary.BigEndian.AppendUint64(ints[16*i+8:16*i+8], uint64(h.seq))
			h.hash = entry
		}
		headChains := make([][]byte, len(chains))
		headSeqs := make([][]byte, len(chains))
		headEntries := make([][]byte, len(chains))
		for i, c := range chains {
			headChains[i], headEntries[i] = []byte(c), heads[c].hash
			headSeqs[i] = binary.BigEndian.AppendUint64(nil, uint64(heads[c].seq))
		}
		if n > integrateBatch-batchMax && !check {
			// More is likely pending: read it while this round integrates.
			collect = g.readAhead(ctx, batchIDs)
		}
		// The arrays are sent in binary as built here: pgx's generic array
		// encoding (reflection per element) cost a third of the integrator's CPU.
		// The own rows' array (ingest_event[], NULL when none) is sent with
		// no type OID: the server takes the parameter's.
		res := tx.Conn().PgConn().ExecParams(ctx, `SELECT pgtenant_audit.integrate_round($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)`,
			[][]byte{[]byte(g.region), binary.BigEndian.AppendUint64(nil, uint64(size)),
				binArray(oidInt8, batches), ownArray, binArray(oidInt8, seqs), binArray(oidBytea, prevs), binArray(oidBytea, entries),
				binArray(oidInt8, leaves), binArray(oidText, headChains), binArray(oidInt8, headSeqs), binArray(oidBytea, headEntries)},
			[]uint32{oidText, oidInt8, oidInt8Array, 0, oidInt8Array, oidByteaArray, oidByteaArray, oidInt8Array, oidTextArray,
				oidInt8Array, oidByteaArray},
			[]int16{1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1}, nil).Read()
		if res.Err != nil {
			return fmt.Errorf("integrate %d events of %d batches: %w", n-dups, len(batches), res.Err)
		}
		g.lagNanos.Store(int64(time.Since(pgEpoch.Add(time.Duration(oldest) * time.Microsecond))))
		return nil
	})
	if err != nil {
		return 0, fmt.Errorf("region %s: %w", g.region, err)
	}
	if collect != nil {
		// Committed: what was read ahead is the next round's.
		collect(true)
		collect = nil
	}
	g.integrated.Add(uint64(n - dups))
	g.dups.Add(uint64(dups))
	if n == 0 {
		g.lagNanos.Store(0)
	}
	return n, nil
}

// appendOwn appends the submitted rows own to a round's pending events ps,
// and returns them also as the binary ingest_event[] integrate_round takes
// (nil when there are none): one header before the writers' records. With
// check it looks them up in events, as pending_events does for the
// batches.
func appendOwn(ctx context.Context, conn *pgconn.PgConn, ps []pending, own []*submission, check bool) ([]pending, []byte, error) {
	count, size := 0, 20
	for _, o := range own {
		count += len(o.rows)
		size += len(o.records)
	}
	if count == 0 {
		return ps, nil, nil
	}
	var chained map[[16]byte]bool
	if check {
		ids := make([][]byte, 0, count)
		for _, o := range own {
			for _, r := range o.rows {
				ids = append(ids, r.EventID[:])
			}
		}
		rr := conn.ExecParams(ctx, `SELECT pgtenant_audit.integrated_ids($1)`, [][]byte{binArray(oidUUID, ids)},
			[]uint32{oidUUIDArray}, []int16{1}, []int16{1}).Read()
		if rr.Err != nil {
			return nil, nil, fmt.Errorf("look up own events: %w", rr.Err)
		}
		chained = make(map[[16]byte]bool, len(rr.Rows))
		for _, row := range rr.Rows {
			if len(row[0]) != 16 {
				return nil, nil, fmt.Errorf("look up own events: malformed uuid")
			}
			chained[[16]byte(row[0])] = true
		}
	}
	// Every writer of the process names the same type (a batch encoded
	// before the schema was re-created fails the round, and its writer
	// looks the type up again).
	arr := appendArrayHeader(make([]byte, 0, size), own[0].oid, count, 0)
	for _, o := range own {
		for _, r := range o.rows {
			ps = append(ps, pending{batch: ownBatch, id: r.EventID, chain: r.ChainID,
				tsMicros: r.TS.Sub(pgEpoch).Microseconds(), content: r.ContentHash, integrated: chained[r.EventID]})
		}
		arr = append(arr, o.records...)
	}
	return ps, arr, nil
}

// pending is one element of a pending batch, as the integrator needs it.
type pending struct {
	batch      int64 // ownBatch for a submitted row
	id         [16]byte
	chain      string
	tsMicros   int64 // since 2000-01-01 (PostgreSQL's epoch)
	content    []byte
	integrated bool
}

// pendingSQL reads the oldest pending batches of a region (pending_events)
// in binary: batch, event_id, chain_id, ts, content_hash, integrated.
const pendingSQL = `SELECT batch, event_id, chain_id, ts, content_hash, integrated FROM pgtenant_audit.pending_events($1, $2, $3, $4)`

// readPending reads region's pending events in binary and decodes them
// by hand: a round reads 16384 rows, and scanning them through pgx's
// generic path (a string and a byte slice allocated per row, a time.Time
// built) was a fifth of the integrator's CPU. Chain names are interned and
// content hashes share one slab.
func readPending(ctx context.Context, conn *pgconn.PgConn, region string, check bool) ([]pending, error) {
	return readPendingExcluding(ctx, conn, region, check, nil)
}

// readPendingExcluding is readPending leaving out the batches exclude.
func readPendingExcluding(ctx context.Context, conn *pgconn.PgConn, region string, check bool, exclude []int64) ([]pending, error) {
	limit := binary.BigEndian.AppendUint32(nil, integrateBatch)
	checkArg := []byte{0}
	if check {
		checkArg[0] = 1
	}
	ids := make([][]byte, len(exclude))
	for i, id := range exclude {
		ids[i] = binary.BigEndian.AppendUint64(nil, uint64(id))
	}
	rr := conn.ExecParams(ctx, pendingSQL, [][]byte{[]byte(region), limit, checkArg, binArray(oidInt8, ids)},
		[]uint32{oidText, oidInt4, oidBool, oidInt8Array}, []int16{1, 1, 1, 1}, []int16{1, 1, 1, 1, 1, 1})
	var ps []pending
	names := map[string]string{}
	var slab []byte
	for rr.NextRow() {
		v := rr.Values()
		if len(v) != 6 || len(v[0]) != 8 || len(v[1]) != 16 || len(v[3]) != 8 || len(v[4]) != HashSize || len(v[5]) != 1 {
			rr.Close() //nolint:errcheck // the malformed row is the error
			return nil, fmt.Errorf("malformed pending row")
		}
		chain, ok := names[string(v[2])]
		if !ok {
			chain = string(v[2])
			names[chain] = chain
		}
		if len(slab)+HashSize > cap(slab) {
			slab = make([]byte, 0, 1024*HashSize)
		}
		at := len(slab)
		slab = append(slab, v[4]...)
		p := pending{batch: int64(binary.BigEndian.Uint64(v[0])), chain: chain,
			tsMicros: int64(binary.BigEndian.Uint64(v[3])), content: slab[at : at+HashSize : at+HashSize], integrated: v[5][0] != 0}
		copy(p.id[:], v[1])
		ps = append(ps, p)
	}
	if _, err := rr.Close(); err != nil {
		return nil, err
	}
	return ps, nil
}

// Type OIDs of the binary arrays the integrator sends and of their elements.
const (
	oidBytea      = 17
	oidInt8       = 20
	oidUUID       = 2950
	oidUUIDArray  = 2951
	oidByteaArray = 1001
	oidInt8Array  = 1016
)

// appendArrayHeader appends the header of a one-dimensional binary array of
// n elements of type elemOID (nulls = 1 when some element is NULL): ndim,
// the NULL flag, the element type, the dimension and its lower bound 1.
func appendArrayHeader(buf []byte, elemOID uint32, n int, nulls uint32) []byte {
	buf = binary.BigEndian.AppendUint32(buf, 1) // ndim
	buf = binary.BigEndian.AppendUint32(buf, nulls)
	buf = binary.BigEndian.AppendUint32(buf, elemOID)
	buf = binary.BigEndian.AppendUint32(buf, uint32(n))
	return binary.BigEndian.AppendUint32(buf, 1) // lower bound
}

// binArray is a one-dimensional array in PostgreSQL's binary format; a nil
// element is NULL.
func binArray(elemOID uint32, elems [][]byte) []byte {
	size := 20
	nulls := uint32(0)
	for _, e := range elems {
		size += 4 + len(e)
		if e == nil {
			nulls = 1
		}
	}
	buf := appendArrayHeader(make([]byte, 0, size), elemOID, len(elems), nulls)
	for _, e := range elems {
		if e == nil {
			buf = binary.BigEndian.AppendUint32(buf, 0xffffffff)
			continue
		}
		buf = binary.BigEndian.AppendUint32(buf, uint32(len(e)))
		buf = append(buf, e...)
	}
	return buf
}
