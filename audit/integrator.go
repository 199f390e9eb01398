package audit

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"slices"
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
	overlapped atomic.Uint64 // rounds planned while the one before integrated

	// second is the connection of every other round: a round is planned
	// and started on it while the one before runs on the lock's
	// connection (and the other way round). It belongs to the integrator's
	// goroutine.
	second *pgx.Conn

	// own holds the batches this process's writers submitted for the next
	// round, while active.
	ownMu sync.Mutex
	own   []*submission
}

// ownRows is one writer batch for this process's integrator: its rows
// (content hashes computed) and, encoded by the writer (encodeEventArray),
// their binary array of pgtenant_audit.ingest_event (oid), as
// integrate_round takes it: a round that carries this batch alone sends
// array as it is.
type ownRows struct {
	rows  []*Row
	oid   uint32
	array []byte
}

// arrayHeaderSize is the size of a one-dimensional binary array's header
// (appendArrayHeader).
const arrayHeaderSize = 20

// records returns the elements of b's array, without its header.
func (b ownRows) records() []byte { return b.array[arrayHeaderSize:] }

// submission is a submitted batch and the outcome of the round that
// carried it.
type submission struct {
	ownRows
	// after is the writer's previous submission, still in flight when this
	// one was submitted: a round takes this one only with it or after it
	// was written, so that a writer's batches reach the chains in order.
	after *submission
	done  chan error
	// failed is set by the integrator's goroutine when a round did not
	// write it; read there only (takeOwn).
	failed bool
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
	o, err := g.submitAfter(b, nil)
	if err != nil {
		return err
	}
	return o.wait(ctx)
}

// submitAfter queues b for the next round without waiting for its
// outcome. A round takes it only together with after or once after was
// written: when after failed, so does it (errPredecessorFailed), and the
// writer, which retries both, keeps its order. It returns errNotIntegrating
// when this process does not hold the lock.
func (g *integrator) submitAfter(b ownRows, after *submission) (*submission, error) {
	o := &submission{ownRows: b, after: after, done: make(chan error, 1)}
	g.ownMu.Lock()
	if !g.active.Load() {
		g.ownMu.Unlock()
		return nil, errNotIntegrating
	}
	g.own = append(g.own, o)
	g.ownMu.Unlock()
	g.wake()
	return o, nil
}

// wait returns the outcome of the round that carried o.
func (o *submission) wait(ctx context.Context) error {
	select {
	case err := <-o.done:
		return err
	case <-ctx.Done():
		// A round may still take them: the retry's copies are then
		// skipped as duplicates.
		return ctx.Err()
	}
}

// errPredecessorFailed fails a submission whose writer's previous one was
// not written: taking it alone would chain the writer's batches out of
// order.
var errPredecessorFailed = errors.New("the writer's previous batch was not written")

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

// takeOwn takes every submitted batch for a round, except those whose
// predecessor an earlier round failed to write: they fail at once.
// Predecessors taken by earlier rounds have their outcome set, since
// rounds (and takeOwn, finishOwn) run one at a time on the integrator's
// goroutine; one taken in this round shares its outcome.
func (g *integrator) takeOwn() []*submission {
	g.ownMu.Lock()
	own := g.own
	g.own = nil
	g.ownMu.Unlock()
	keep := own[:0]
	var orphans []*submission
	for _, o := range own {
		if o.after != nil && o.after.failed {
			o.failed = true // before a later one of this round asks
			orphans = append(orphans, o)
			continue
		}
		keep = append(keep, o)
	}
	finishOwn(orphans, errPredecessorFailed)
	return keep
}

// finishOwn reports a round's outcome to the writers of its own rows.
func finishOwn(own []*submission, err error) {
	for _, o := range own {
		o.failed = err != nil
		o.after = nil // the chain of predecessors ends here
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
	defer g.closeSecond()
	for {
		stopping := g.stopped()
		started := time.Now()
		n, err := g.rounds(ctx, conn)
		if err != nil {
			return err
		}
		// A round takes whole batches of at most batchMax events while they
		// fit in integrateBatch, so one that left more than batchMax of room
		// took every batch visible when it started. Rounds that took more
		// together (overlapping under a backlog) go on at once too.
		if n > integrateBatch-batchMax {
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

// pause sleeps d, cut short by Close (stop), by hardStop, or once this
// process's writers have submitted a full round (a backlog the pace would
// only stall: a small round after a backlog, such as a spool's last records
// before its next segment, would otherwise hold the next full batches back
// for most of integratePace); it returns false when the integrator must
// exit now.
func (g *integrator) pause(d time.Duration) bool {
	if d <= 0 {
		return true
	}
	t := time.NewTimer(d)
	defer t.Stop()
	for {
		select {
		case <-t.C:
			return true
		case <-g.stop:
			return true
		case <-g.hardStop:
			return false
		case <-g.kick:
			if g.ownQueuedRows() > integrateBatch-batchMax {
				return true
			}
		}
	}
}

// ownQueuedRows is the number of rows submitted and not yet taken.
func (g *integrator) ownQueuedRows() int {
	g.ownMu.Lock()
	defer g.ownMu.Unlock()
	n := 0
	for _, o := range g.own {
		n += len(o.rows)
	}
	return n
}

// rounds integrates, in one transaction, the oldest pending batches (up to
// integrateBatch events, at least one batch) and then the rows this
// process's writers submitted: it skips events already chained (a
// re-shipped spool batch) or repeated within the round, assigns each
// tenant's next seq, links the chains, numbers the tree leaves in that
// order, and has integrate_round check and store them and delete the
// batches. It repeats while each round is full (a backlog) and more is
// pending (more): the next round is then planned and started on the
// other connection while the one before integrates,
// so that its planning (reading batches, hashing) and its insert overlap
// that round, which integrate_round waits for before its checks. It
// returns the number of events its rounds read and took, so that a backlog
// whose last round was small is not taken for a quiet region (and paced).
func (g *integrator) rounds(ctx context.Context, conn *pgx.Conn) (int, error) {
	conns := [2]*pgx.Conn{conn, g.secondConn(ctx)}
	own := g.takeOwn()
	r, err := g.start(ctx, conn, false, own, nil)
	if err != nil {
		return g.recover(ctx, conn, own, err)
	}
	before := 0 // events of the rounds before r, all written
	for k := 1; conns[1] != nil && r.plan.n > integrateBatch-batchMax && g.more(r); k++ {
		own := g.takeOwn()
		next, err := g.start(ctx, conns[k%2], false, own, r.plan)
		if err != nil {
			rerr := g.finish(r)
			g.closeSecond()
			if rerr != nil {
				return g.recover(ctx, conn, append(r.plan.own, own...), rerr)
			}
			finishOwn(r.plan.own, nil)
			return g.recover(ctx, conn, own, err)
		}
		g.overlapped.Add(1)
		if err := g.finish(r); err != nil {
			// next was planned on r's outcome: it cannot commit unless r
			// wrote no leaf. What neither wrote is retried, in order.
			nerr := g.finish(next)
			g.closeSecond()
			if nerr == nil {
				finishOwn(next.plan.own, nil)
				return g.recover(ctx, conn, r.plan.own, err)
			}
			return g.recover(ctx, conn, append(r.plan.own, next.plan.own...), err)
		}
		finishOwn(r.plan.own, nil)
		before += r.plan.n
		r = next
	}
	if err := g.finish(r); err != nil {
		g.closeSecond()
		n, err := g.recover(ctx, conn, r.plan.own, err)
		return before + n, err
	}
	finishOwn(r.plan.own, nil)
	return before + r.plan.n, nil
}

// more reports whether to plan the next round while r integrates: at once
// when r carried other proxies' batches (a full round of them leaves more
// pending), otherwise once this process's writers submit more rows before
// r ends.
func (g *integrator) more(r *runningRound) bool {
	if len(r.plan.batches) > 0 {
		return true
	}
	for {
		if g.ownQueuedRows() > 0 {
			return true
		}
		select {
		case <-g.kick:
		case <-r.done:
			return false
		case <-g.hardStop:
			return false
		}
	}
}

// recover deals with a round that failed, own being its submissions. When
// the unique event_id index refused it (a batch repeats an event chained
// in an earlier round: a spool batch re-shipped after a crash, a write
// retried after a lost acknowledgement), one round that looks every event
// up retries them; a round refused as out of date (SQLSTATE 40001, as the
// round planned beside one that failed is) or aborted as a deadlock
// (40P01: rounds no longer deadlock each other, but an operator's session
// holding what a round needs can) is retried once as it is.
// Otherwise, or if the retry fails, own fail (their writers retry them)
// and the error ends this hold of the lock.
func (g *integrator) recover(ctx context.Context, conn *pgx.Conn, own []*submission, err error) (int, error) {
	var pe *pgconn.PgError
	if errors.As(err, &pe) && (pe.Code == "40001" || pe.Code == "40P01" || pe.Code == "23505" && pe.ConstraintName == "events_event_id_key") {
		var r *runningRound
		r, err = g.start(ctx, conn, pe.Code == "23505", own, nil)
		if err == nil {
			if err = g.finish(r); err == nil {
				finishOwn(own, nil)
				return r.plan.n, nil
			}
		}
	}
	finishOwn(own, err)
	return 0, err
}

// roundPlan is a round as integrate_round takes it, and the chain heads
// and tree size it leaves: where the round planned beside it starts.
type roundPlan struct {
	n, dups int              // events read and submitted; those skipped
	own     []*submission    // the submitted batches it carries
	batches []int64          // the ingest batches it carries
	heads   map[string]*head // of its chains, after it
	size    int64            // the tree's size after it
	oldest  int64            // its oldest event's ts, µs since pgEpoch
	args    [][]byte         // integrate_round's parameters
}

// head is a chain's last event, as a round leaves it.
type head struct {
	seq  int64
	hash []byte
}

// runningRound is a planned round whose integrate_round and commit run in
// a goroutine of their own; err is set when done is closed.
type runningRound struct {
	plan *roundPlan
	done chan struct{}
	err  error
}

// start begins a round on conn: it prepares it (prepare) and has a
// goroutine run its integrate_round and commit (launch).
func (g *integrator) start(ctx context.Context, conn *pgx.Conn, check bool, own []*submission, after *roundPlan) (*runningRound, error) {
	tx, p, err := g.prepare(ctx, conn, check, own, after)
	if err != nil {
		return nil, err
	}
	return g.launch(ctx, tx, p), nil
}

// prepare plans a round in a transaction on conn (after, when not nil, is
// the round still integrating before it, whose batches it leaves out and
// whose chain heads and tree size it starts from; check looks each event
// up in events to skip those already chained, otherwise the unique
// event_id index refuses the round if one was) and takes the round's end
// key (roundEndSQL) before it returns.
//
// The key orders overlapping rounds: integrate_round waits for the key of
// the leaf it starts at, which the round before it holds until it ends.
// integrate_round takes its own end key too, but only once its goroutine
// has sent it: a round planned next on the other connection could take
// that key first (a scheduling delay is enough), then wait for the tree's
// row, which the round before holds since tree_size locked it while
// planning, while that round waited for its key: a deadlock (SQLSTATE
// 40P01) that failed the round and stopped the integrator for
// takeoverPoll, leaving a backlog unintegrated for over a second (the bench
// harness's async runs, twice in one run).
func (g *integrator) prepare(ctx context.Context, conn *pgx.Conn, check bool, own []*submission, after *roundPlan) (pgx.Tx, *roundPlan, error) {
	tx, err := conn.Begin(ctx)
	if err != nil {
		return nil, nil, fmt.Errorf("region %s: begin round: %w", g.region, err)
	}
	p, err := g.plan(ctx, tx, check, own, after)
	if err == nil && p.n > 0 {
		if _, err = tx.Exec(ctx, roundEndSQL, g.region, p.size); err != nil {
			err = fmt.Errorf("round end key: %w", err)
		}
	}
	if err != nil {
		tx.Rollback(ctx) //nolint:errcheck // the planning error is the one to report
		return nil, nil, fmt.Errorf("region %s: %w", g.region, err)
	}
	return tx, p, nil
}

// roundEndSQL takes the advisory key of a round that ends at leaf $2 of
// region $1's tree, as integrate_round computes it (schema versions 10 to
// 13, which cannot be changed to share it): held until the round's
// transaction ends. Were the two to differ, rounds would deadlock again,
// and TestOverlappingRoundSentFirstWaitsForTheRoundBefore fails.
const roundEndSQL = `SELECT pg_advisory_xact_lock(hashtext('pgtenant_audit.round.' || $1::text), ($2::bigint % 2147483648)::integer)`

// launch runs p's integrate_round and commits tx in a goroutine of its own.
func (g *integrator) launch(ctx context.Context, tx pgx.Tx, p *roundPlan) *runningRound {
	r := &runningRound{plan: p, done: make(chan struct{})}
	go func() {
		defer close(r.done)
		if p.n > 0 {
			res := tx.Conn().PgConn().ExecParams(ctx, `SELECT pgtenant_audit.integrate_round($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)`,
				p.args, []uint32{oidText, oidInt8, oidInt8Array, 0, oidInt8Array, oidBytea, oidBytea, oidInt8Array,
					oidTextArray, oidInt8Array, oidByteaArray},
				[]int16{1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1}, nil).Read()
			if res.Err != nil {
				tx.Rollback(ctx) //nolint:errcheck // the round's error is the one to report
				r.err = fmt.Errorf("region %s: integrate %d events of %d batches: %w", g.region, p.n-p.dups, len(p.batches), res.Err)
				return
			}
		}
		if err := tx.Commit(ctx); err != nil {
			r.err = fmt.Errorf("region %s: commit round: %w", g.region, err)
		}
	}()
	return r
}

// finish waits for r to end and counts what it integrated.
func (g *integrator) finish(r *runningRound) error {
	<-r.done
	if r.err != nil {
		return r.err
	}
	p := r.plan
	g.integrated.Add(uint64(p.n - p.dups))
	g.dups.Add(uint64(p.dups))
	if p.n == 0 {
		g.lagNanos.Store(0)
	} else {
		g.lagNanos.Store(int64(time.Since(pgEpoch.Add(time.Duration(p.oldest) * time.Microsecond))))
	}
	return nil
}

// plan reads the round's pending batches and takes own, looks up the heads
// of its chains and the tree's size (or takes them from after), and
// computes every event's seq, links and leaf.
func (g *integrator) plan(ctx context.Context, tx pgx.Tx, check bool, own []*submission, after *roundPlan) (*roundPlan, error) {
	pc := tx.Conn().PgConn()
	var exclude []int64
	if after != nil {
		exclude = after.batches
	}
	ps, err := readPendingExcluding(ctx, pc, g.region, check, exclude)
	if err != nil {
		return nil, fmt.Errorf("pending: %w", err)
	}
	ps, ownArray, err := appendOwn(ctx, pc, ps, own, check)
	if err != nil {
		return nil, err
	}
	p := &roundPlan{n: len(ps), own: own}
	if p.n == 0 {
		return p, nil
	}
	n := p.n
	// seqs and leaves have one element per batch element, in the order
	// read; nil (NULL) marks a skipped duplicate.
	var batches [][]byte
	var chains []string
	seenChain := map[string]bool{}
	seenID := make(map[[16]byte]bool, n)
	skip := make([]bool, n)
	p.oldest = ps[0].tsMicros
	for i, e := range ps {
		if e.batch != ownBatch && (i == 0 || e.batch != ps[i-1].batch) {
			batches = append(batches, binary.BigEndian.AppendUint64(nil, uint64(e.batch)))
			p.batches = append(p.batches, e.batch)
		}
		if e.integrated || seenID[e.id] {
			skip[i] = true
			p.dups++
			continue
		}
		seenID[e.id] = true
		if !seenChain[e.chain] {
			seenChain[e.chain] = true
			chains = append(chains, e.chain)
		}
		p.oldest = min(p.oldest, e.tsMicros)
	}
	p.heads = make(map[string]*head, len(chains))
	// Chains of the round still integrating start where it leaves them;
	// the others' heads are read (and locked). Every event of a round
	// names its region (integrate_round checks it).
	var ask, regions []string
	for _, c := range chains {
		if after != nil && after.heads[c] != nil {
			h := *after.heads[c]
			p.heads[c] = &h
			continue
		}
		ask, regions = append(ask, c), append(regions, g.region)
	}
	if len(ask) > 0 {
		hr, err := tx.Query(ctx, `SELECT chain_id, seq, head FROM pgtenant_audit.heads_of($1, $2)`, ask, regions)
		if err != nil {
			return nil, fmt.Errorf("heads: %w", err)
		}
		for hr.Next() {
			var c string
			h := &head{}
			if err := hr.Scan(&c, &h.seq, &h.hash); err != nil {
				hr.Close()
				return nil, fmt.Errorf("heads: %w", err)
			}
			if len(h.hash) != HashSize {
				// integrate_round takes the round's hashes 32 bytes each
				hr.Close()
				return nil, fmt.Errorf("heads: chain %q's head is a hash of %d bytes, not %d", c, len(h.hash), HashSize)
			}
			p.heads[c] = h
		}
		if err := hr.Err(); err != nil {
			return nil, fmt.Errorf("heads: %w", err)
		}
	}
	var size int64
	if after != nil {
		size = after.size
	} else if err := tx.QueryRow(ctx, `SELECT pgtenant_audit.tree_size($1)`, g.region).Scan(&size); err != nil {
		return nil, fmt.Errorf("tree size: %w", err)
	}
	seqs := make([][]byte, n)
	// prevs and entries: 32 bytes per element (HashSize), zeros for a
	// skipped one (schema version 12's integrate_round cuts them by offset)
	prevs := make([]byte, HashSize*n)
	entries := make([]byte, HashSize*n)
	leaves := make([][]byte, n)
	ints := make([]byte, 16*n) // seqs and leaves, one allocation
	leaf := size
	for i := range ps {
		if skip[i] {
			continue
		}
		leaves[i] = binary.BigEndian.AppendUint64(ints[16*i:16*i], uint64(leaf))
		leaf++
		e := &ps[i]
		h := p.heads[e.chain]
		if h == nil {
			return nil, fmt.Errorf("chain %q has no head", e.chain)
		}
		h.seq++
		entry := EntryHash(e.chain, h.seq, h.hash, e.content)
		copy(prevs[HashSize*i:], h.hash)
		copy(entries[HashSize*i:], entry)
		seqs[i] = binary.BigEndian.AppendUint64(ints[16*i+8:16*i+8], uint64(h.seq))
		h.hash = entry
	}
	p.size = leaf
	headChains := make([][]byte, len(chains))
	headSeqs := make([][]byte, len(chains))
	headEntries := make([][]byte, len(chains))
	for i, c := range chains {
		headChains[i], headEntries[i] = []byte(c), p.heads[c].hash
		headSeqs[i] = binary.BigEndian.AppendUint64(nil, uint64(p.heads[c].seq))
	}
	// The arrays are sent in binary as built here: pgx's generic array
	// encoding (reflection per element) cost a third of the integrator's CPU.
	// The own rows' array (ingest_event[], NULL when none) is sent with
	// no type OID: the server takes the parameter's.
	p.args = [][]byte{[]byte(g.region), binary.BigEndian.AppendUint64(nil, uint64(size)),
		binArray(oidInt8, batches), ownArray, binArray(oidInt8, seqs), prevs, entries,
		binArray(oidInt8, leaves), binArray(oidText, headChains), binArray(oidInt8, headSeqs), binArray(oidBytea, headEntries)}
	return p, nil
}

// secondConn returns the connection of every other round, connecting it
// when there is none (nil if that fails: rounds then run one at a time).
func (g *integrator) secondConn(ctx context.Context) *pgx.Conn {
	if g.second == nil && g.connect != nil {
		if c, err := g.connect(ctx); err == nil {
			g.second = c
		}
	}
	return g.second
}

// closeSecond closes the second connection (after a failed round, which
// may have left it unusable; the next rounds connect it again).
func (g *integrator) closeSecond() {
	if g.second != nil {
		g.second.Close(context.Background())
		g.second = nil
	}
}

// ownBatch marks, in a round's pending list, the rows of this process's own
// writers (which are in no batch).
const ownBatch = -1

// appendOwn appends the submitted rows own to a round's pending events ps,
// and returns them also as the binary ingest_event[] integrate_round takes
// (nil when there are none): one header before the writers' records. With
// check it looks them up in events, as pending_events does for the
// batches.
func appendOwn(ctx context.Context, conn *pgconn.PgConn, ps []pending, own []*submission, check bool) ([]pending, []byte, error) {
	count, size := 0, arrayHeaderSize
	for _, o := range own {
		count += len(o.rows)
		size += len(o.records())
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
	ps = slices.Grow(ps, count)
	var arr []byte
	if len(own) == 1 {
		// The usual round under load carries one batch: sent as the writer
		// encoded it, its records not copied.
		arr = own[0].array
	} else {
		arr = appendArrayHeader(make([]byte, 0, size), own[0].oid, count, 0)
	}
	for _, o := range own {
		for _, r := range o.rows {
			ps = append(ps, pending{batch: ownBatch, id: r.EventID, chain: r.ChainID,
				tsMicros: r.TS.Sub(pgEpoch).Microseconds(), content: r.ContentHash, integrated: chained[r.EventID]})
		}
		if len(own) > 1 {
			arr = append(arr, o.records()...)
		}
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
