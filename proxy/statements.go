package proxy

import (
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgerrcode"
	"github.com/jackc/pgx/v5/pgproto3"

	"github.com/pgtenant/pgtenant/tenancy"
)

// The checker's mirror of the server's prepared statements changes only on
// the server's word. Each checked message comes back with the Changes it
// makes (tenancy.Change); the pending entry of the message carries them, and
// the backend loop, matching the server's replies to the entries, learns
// each change's outcome: confirmed (ParseComplete, CloseComplete, a
// ParameterDescription, the expected command tag of a Query's statement or
// of a portal's Execute), skipped (an error, or skipped after one) or
// unknown (an unexpected tag). It queues the outcomes here, in the server's
// order; the client loop hands them to the checker before every decision,
// and when a check answers Wait (it depends on an earlier batch whose
// replies have not arrived), it waits here for more.

// resolution is the server's answer to one change.
type resolution struct {
	id      uint64
	outcome tenancy.Outcome
	oids    []uint32
}

// stmtTracker carries resolutions from the backend loop to the client loop.
type stmtTracker struct {
	mu     sync.Mutex
	queue  []resolution
	queued atomic.Bool
	// wake is made by a waiting await and closed by the next resolution or
	// by close (under mu): a session that never waits allocates nothing
	// (an idle session's memory is bounded).
	wake   chan struct{}
	closed bool // the session ended: nothing will resolve any more (mu)
}

func newStmtTracker() *stmtTracker { return &stmtTracker{} }

// resolve queues the outcome of change id (backend loop).
func (t *stmtTracker) resolve(id uint64, o tenancy.Outcome, oids []uint32) {
	t.mu.Lock()
	t.queue = append(t.queue, resolution{id: id, outcome: o, oids: oids})
	t.queued.Store(true)
	t.wakeLocked()
	t.mu.Unlock()
}

func (t *stmtTracker) wakeLocked() {
	if t.wake != nil {
		close(t.wake)
		t.wake = nil
	}
}

// resolveAll queues the same outcome for every change.
func (t *stmtTracker) resolveAll(changes []tenancy.Change, o tenancy.Outcome) {
	for _, c := range changes {
		t.resolve(c.ID, o, nil)
	}
}

// apply hands the queued resolutions to the checker, in order (client loop).
func (t *stmtTracker) apply(c StatementChecker) {
	if !t.queued.Load() {
		return
	}
	t.mu.Lock()
	queue := t.queue
	t.queue = nil
	t.queued.Store(false)
	t.mu.Unlock()
	for _, r := range queue {
		c.Resolve(r.id, r.outcome, r.oids)
	}
}

// await blocks until a resolution is queued, the session ends or d passes;
// it reports whether resolutions are queued and whether the session ended
// with none (client loop).
func (t *stmtTracker) await(d time.Duration) (resolved, ended bool) {
	t.mu.Lock()
	if len(t.queue) > 0 || t.closed {
		resolved = len(t.queue) > 0
		t.mu.Unlock()
		return resolved, !resolved
	}
	if t.wake == nil {
		t.wake = make(chan struct{})
	}
	wake := t.wake
	t.mu.Unlock()
	timer := time.NewTimer(d)
	select {
	case <-wake:
	case <-timer.C:
	}
	timer.Stop()
	t.mu.Lock()
	defer t.mu.Unlock()
	resolved = len(t.queue) > 0
	return resolved, t.closed && !resolved
}

// close wakes a client loop waiting for answers that will never come.
func (t *stmtTracker) close() {
	t.mu.Lock()
	t.closed = true
	t.wakeLocked()
	t.mu.Unlock()
}

// boundPortal is a portal the server confirmed (BindComplete), as the
// backend loop knows it: what its Execute audits, and the changes it makes
// when executed (a bound SQL PREPARE or DEALLOCATE).
type boundPortal struct {
	ref     *stmtRef
	changes []tenancy.Change
	sets    []tenancy.SessionSet // session-level SETs it runs (transaction mode)
}

// portalBound records a BindComplete (backend loop): the portal replaces any
// of the same name, whose changes will never happen.
func (s *session) portalBound(name string, ref *stmtRef, changes []tenancy.Change, sets []tenancy.SessionSet) {
	s.portalDropped(name)
	s.bportals[name] = boundPortal{ref: ref, changes: changes, sets: sets}
}

// portalDropped forgets a portal the server dropped (backend loop).
func (s *session) portalDropped(name string) {
	if bp, ok := s.bportals[name]; ok {
		s.track.resolveAll(bp.changes, tenancy.Skipped)
		delete(s.bportals, name)
	}
}

// portalsDropped forgets every portal: a transaction ended (backend loop).
func (s *session) portalsDropped() {
	for name := range s.bportals {
		s.portalDropped(name)
	}
}

// portalRan resolves the changes of an executed portal by its command tag
// (empty when it failed) and returns what its Execute audits (backend loop).
func (s *session) portalRan(name, tag string) *stmtRef {
	bp, ok := s.bportals[name]
	if !ok {
		if tenancy.IsStatementTag(tag) {
			s.track.resolve(0, tenancy.Unknown, nil)
		}
		return nil
	}
	s.resolveByTag(bp.changes, tag)
	if s.tx != nil && len(bp.sets) > 0 {
		s.tx.stageSets(bp.sets, 0, tag)
	}
	if bp.changes != nil || bp.sets != nil {
		// a portal runs its statement once
		bp.changes, bp.sets = nil, nil
		s.bportals[name] = bp
	}
	return bp.ref
}

// resolveByTag resolves changes confirmed by a command tag: the expected tag
// confirms, another leaves the outcome unknown, no tag (an error) skips.
func (s *session) resolveByTag(changes []tenancy.Change, tag string) {
	if len(changes) == 0 && tenancy.IsStatementTag(tag) {
		s.track.resolve(0, tenancy.Unknown, nil)
		return
	}
	for _, c := range changes {
		switch {
		case tag == "":
			s.track.resolve(c.ID, tenancy.Skipped, nil)
		case tag == c.Tag:
			s.track.resolve(c.ID, tenancy.Confirmed, nil)
		default:
			s.track.resolve(c.ID, tenancy.Unknown, nil)
		}
	}
}

// queryStatementDone resolves the changes of the k-th statement of a Query
// from its CommandComplete tag; it returns the changes still unresolved.
func (s *session) queryStatementDone(changes []tenancy.Change, k int, tag string) []tenancy.Change {
	var now, rest []tenancy.Change
	for _, c := range changes {
		if c.Stmt == k {
			now = append(now, c)
		} else {
			rest = append(rest, c)
		}
	}
	s.resolveByTag(now, tag)
	return rest
}

// parameterTypes decodes a ParameterDescription body.
func parameterTypes(body []byte) ([]uint32, bool) {
	var pd pgproto3.ParameterDescription
	if err := pd.Decode(body); err != nil {
		return nil, false
	}
	if pd.ParameterOIDs == nil {
		return []uint32{}, true
	}
	return pd.ParameterOIDs, true
}

// decide runs check, waiting for the server's replies as long as the
// checker needs them to decide (client loop).
//
// The checker waits only for replies the server sends without more input
// from the client (see package policy's mirror). Should its model and the
// server's ever differ, the wait would last until the client's next
// message, which a client waiting for this one's answer never sends: the
// session would hang, holding its backend (in transaction mode a pooled
// one, which other tenants wait for). So while it waits, decide checks
// every awaitRecheck that the server still owes a reply (pendingQueue
// owesReply); when it owes none and nothing resolved twice in a row, the
// statement is denied as depending on a statement pgtenant cannot know.
func (s *session) decide(check func() tenancy.Decision) (tenancy.Decision, error) {
	idle := 0 // consecutive rechecks that found nothing owed or resolved
	for {
		s.track.apply(s.checker)
		d := check()
		if !d.Wait {
			return d, nil
		}
		if err := s.bw.Flush(); err != nil {
			return d, err
		}
		// a backend goroutine reads the replies while this one waits (in
		// session mode the socket may be nobody's between batches, bFree)
		s.relayAsync()
		resolved, ended := s.track.await(awaitRecheck)
		if ended {
			return d, errAwaitBackend
		}
		if resolved || s.queue.owesReply() {
			idle = 0
			continue
		}
		// twice: a reply popped just before the first look may still have
		// been about to resolve its changes
		if idle++; idle >= 2 {
			s.logger().Error("a policy check waited for a reply the server does not owe; the statement is denied",
				"statement", d.Statement)
			return unresolvableWait(d), nil
		}
	}
}

// awaitRecheck is how often a policy check that waits for the server's
// replies checks that the server still owes one.
const awaitRecheck = 100 * time.Millisecond

// unresolvableWait is the denial of a statement whose check waited for
// replies the server does not owe: it depends on a prepared statement whose
// state pgtenant cannot know.
func unresolvableWait(d tenancy.Decision) tenancy.Decision {
	return tenancy.Decision{SQLState: pgerrcode.InsufficientPrivilege, Reason: "prepare_unknown",
		Message:   "pgtenant cannot tell which prepared statement the server holds for this statement: a change to it awaits the server's answer, which comes only after your next Sync",
		Hint:      "send Sync after PREPARE, DEALLOCATE, Parse or Close before using the name",
		Statement: d.Statement, Text: d.Text, Tables: d.Tables}
}
