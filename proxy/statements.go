package proxy

import (
	"sync"
	"sync/atomic"
)

// skipAware is implemented by checkers that must learn which Parses the
// server did not execute: after an error in an extended-protocol batch,
// PostgreSQL skips every message up to Sync, so a Parse the checker allowed
// may never have replaced the statement the server holds under its name.
type skipAware interface {
	// ParseSkipped restores the statement the server still holds under name.
	ParseSkipped(name string)
	// Synced tells that the server answered up to a Sync.
	Synced()
}

// stmtTracker keeps the checker's view of prepared statements in step with
// the server's. The backend loop learns each Parse's fate (completed, failed
// or skipped) and queues it; the client loop applies the queue before every
// decision, and before checking a Bind of a statement parsed in an earlier
// batch whose answer has not arrived yet, it waits for that Parse's fate.
type stmtTracker struct {
	mu       sync.Mutex
	changed  sync.Cond
	effects  []stmtEffect
	queued   atomic.Bool
	resolved uint64 // Parses whose fate is known, in order (mu)
	closed   bool   // the session ended: nothing will resolve any more (mu)

	// client loop only
	parses    uint64            // Parses forwarded so far
	batchBase uint64            // parses at the last batch end (Sync or Query) forwarded
	parsedAt  map[string]uint64 // statement name -> number of its latest Parse
}

type stmtEffect struct {
	skipped bool // else: synced
	name    string
}

func newStmtTracker() *stmtTracker {
	t := &stmtTracker{parsedAt: map[string]uint64{}}
	t.changed.L = &t.mu
	return t
}

// parseSent records a forwarded Parse of name and returns its number.
func (t *stmtTracker) parseSent(name string) uint64 {
	t.parses++
	t.parsedAt[name] = t.parses
	return t.parses
}

// batchEnded records a forwarded Sync or Query: Parses before it are in a
// batch of their own from now on.
func (t *stmtTracker) batchEnded() { t.batchBase = t.parses }

// pendingParse returns the number of name's latest Parse when the checker
// must wait for its fate before a Bind: it belongs to an earlier batch than
// the current one and is not resolved yet. (A Bind in the Parse's own batch
// needs no wait: if the Parse is skipped, so is the Bind.)
func (t *stmtTracker) pendingParse(name string) (uint64, bool) {
	n, ok := t.parsedAt[name]
	if !ok || n > t.batchBase {
		return 0, false
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	return n, t.resolved < n && !t.closed
}

// awaitParse blocks until Parse number n is resolved or the session ends.
func (t *stmtTracker) awaitParse(n uint64) {
	t.mu.Lock()
	for t.resolved < n && !t.closed {
		t.changed.Wait()
	}
	t.mu.Unlock()
}

// resolveParse records, from the backend loop, that the next Parse's fate
// is known; skipped reports that the server did not execute it.
func (t *stmtTracker) resolveParse(name string, skipped bool) {
	t.mu.Lock()
	t.resolved++
	if skipped {
		t.effects = append(t.effects, stmtEffect{skipped: true, name: name})
		t.queued.Store(true)
	}
	t.changed.Broadcast()
	t.mu.Unlock()
}

// synced records, from the backend loop, a ReadyForQuery that ends a batch.
func (t *stmtTracker) synced() {
	t.mu.Lock()
	t.effects = append(t.effects, stmtEffect{})
	t.queued.Store(true)
	t.mu.Unlock()
}

// apply hands the queued effects to the checker, in order (client loop).
func (t *stmtTracker) apply(c skipAware) {
	if !t.queued.Load() {
		return
	}
	t.mu.Lock()
	effects := t.effects
	t.effects = nil
	t.queued.Store(false)
	t.mu.Unlock()
	if c == nil {
		return
	}
	for _, e := range effects {
		if e.skipped {
			c.ParseSkipped(e.name)
		} else {
			c.Synced()
		}
	}
}

// close wakes a client loop waiting for answers that will never come.
func (t *stmtTracker) close() {
	t.mu.Lock()
	t.closed = true
	t.changed.Broadcast()
	t.mu.Unlock()
}
