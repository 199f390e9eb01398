package proxy

import (
	"sync"
	"time"

	"github.com/pgtenant/pgtenant/tenancy"
)

// pendingKind is a frontend message awaiting the backend's reply.
type pendingKind uint8

const (
	pendParse pendingKind = iota + 1
	pendBind
	pendDescribe
	pendExecute
	pendClose
	pendSync
	pendQuery
	pendDeny      // extended-protocol message denied: its injected Bind fails
	pendDenyQuery // simple Query denied: its injected Query fails
	pendFatal     // end the session (expired token) once earlier replies are out
	// pendInject is the Bind+Execute of ctxStatement that sets a pooled
	// transaction's context (txmode.go): its replies are not relayed.
	pendInject
)

// endsBatch reports whether ReadyForQuery answers this entry.
func (k pendingKind) endsBatch() bool {
	return k == pendSync || k == pendQuery || k == pendDenyQuery || k == pendFatal
}

// stmtRef describes an executed statement for the audit's result event.
type stmtRef struct {
	statement string // normalized text (literals as $n)
	full      string // the text the client sent, for audit.statement: full
	tables    []string
	rewritten bool   // policy.unscoped: rewrite changed the text (full holds the rewrite)
	auditRef  uint64 // pairs the statement's audit event with its result (tenancy.Event.Ref)
}

// pending is one frontend message whose reply has not been relayed yet.
type pending struct {
	kind pendingKind
	// portal names the portal of Bind, Execute and portal Close entries.
	portal      string
	portalClose bool // a Close of a portal (else of a statement)
	// changes are the checker's changes the message makes once the server
	// confirms them (see statements.go); done counts a Query's completed
	// statements, to match its changes to their CommandCompletes.
	changes  []tenancy.Change
	done     int
	start    time.Time
	overhead time.Duration // time pgtenant spent deciding and auditing
	stmt     *stmtRef      // query and bind entries; execute entries once answered
	deny     *tenancy.Decision
	fatal    *clientError
	rows     int64
	sqlstate string
	// ticket is a Query's or Execute's hold on its tenant's budget.
	ticket *ticket
	// Transaction mode (txmode.go): injected marks a Parse or Close the
	// proxy added (its reply is not relayed); alias marks a client's Parse
	// of a statement the backend already holds, answered by the server's
	// CloseComplete of a no-op Close and relayed as ParseComplete; srv is
	// the server-side name a Parse prepares.
	injected, alias bool
	srv             string
	// sets are the session-level SETs a Query or Bind runs, tracked once
	// confirmed (transaction mode).
	sets []tenancy.SessionSet
	// mayCopy marks a Query that may start a COPY FROM STDIN: the client
	// loop waits for the server's answer (copyin.go).
	mayCopy bool
	// afterExt marks a Query sent after an extended message with no Sync
	// in between: after an error in that message the server skips it
	// silently until the next Sync (set by push).
	afterExt bool
}

// pendingQueue is the FIFO of frontend messages in flight. The client loop
// pushes; the backend loop matches each reply to the head. Replies arrive in
// message order, so the head is always the message being answered.
type pendingQueue struct {
	mu    sync.Mutex
	items []pending
	head  int
	// holds counts ReadyForQuery messages being settled (transaction mode):
	// the queue is not idle until the pool knows the transaction status.
	holds int
	// extOpen: an extended message was pushed since the last Sync.
	extOpen bool
}

// hold marks a ReadyForQuery being handled; unhold ends it.
func (q *pendingQueue) hold() {
	q.mu.Lock()
	q.holds++
	q.mu.Unlock()
}

func (q *pendingQueue) unhold() {
	q.mu.Lock()
	q.holds--
	q.mu.Unlock()
}

// idle reports whether no reply is outstanding and none is being settled.
func (q *pendingQueue) idle() bool {
	q.mu.Lock()
	defer q.mu.Unlock()
	return q.head == len(q.items) && q.holds == 0
}

func (q *pendingQueue) push(p pending) {
	q.mu.Lock()
	if q.head > 0 && q.head == len(q.items) {
		q.items, q.head = q.items[:0], 0
	}
	switch p.kind {
	case pendParse, pendBind, pendDescribe, pendExecute, pendClose, pendDeny:
		q.extOpen = true
	case pendSync, pendFatal:
		q.extOpen = false
	case pendQuery, pendDenyQuery:
		p.afterExt = q.extOpen
	}
	q.items = append(q.items, p)
	q.mu.Unlock()
}

// owesReply reports whether the server will send a reply without more input
// from the client: a Sync (or the injected Sync of a pendFatal) is in
// flight, or a Query sent with no extended message since the last Sync
// (which the server may be skipping), or a ReadyForQuery is being settled.
func (q *pendingQueue) owesReply() bool {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.holds > 0 {
		return true
	}
	for i := q.head; i < len(q.items); i++ {
		switch p := &q.items[i]; p.kind {
		case pendSync, pendFatal:
			return true
		case pendQuery, pendDenyQuery:
			if !p.afterExt {
				return true
			}
		}
	}
	return false
}

// peek returns a copy of the head entry.
func (q *pendingQueue) peek() (pending, bool) {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.head == len(q.items) {
		return pending{}, false
	}
	return q.items[q.head], true
}

// injectInFlight reports whether a transaction's context statement is in
// flight: written, and its reply not yet all read.
func (q *pendingQueue) injectInFlight() bool {
	q.mu.Lock()
	defer q.mu.Unlock()
	for i := q.head; i < len(q.items); i++ {
		if q.items[i].kind == pendInject {
			return true
		}
	}
	return false
}

// update changes the head entry in place.
func (q *pendingQueue) update(f func(*pending)) {
	q.mu.Lock()
	if q.head < len(q.items) {
		f(&q.items[q.head])
	}
	q.mu.Unlock()
}

// pop removes and returns the head entry.
func (q *pendingQueue) pop() (pending, bool) {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.head == len(q.items) {
		return pending{}, false
	}
	p := q.items[q.head]
	q.items[q.head] = pending{}
	q.head++
	return p, true
}

// popBatch removes every entry up to and including the first one answered by
// ReadyForQuery; the others were skipped by the server after an error. After
// an error in an extended-protocol message (toSync) the server skips every
// message up to Sync, simple Queries included, so only a Sync (or the
// injected Sync of a pendFatal) ends the batch. It calls skipped for each
// skipped entry and returns the batch end.
func (q *pendingQueue) popBatch(toSync bool, skipped func(pending)) (pending, bool) {
	for {
		p, ok := q.pop()
		if !ok {
			return pending{}, false
		}
		if p.kind.endsBatch() && (!toSync || p.kind == pendSync || p.kind == pendFatal) {
			return p, true
		}
		skipped(p)
	}
}

// syncPending reports whether a Sync (or the injected Sync of a pendFatal)
// is in flight, or its ReadyForQuery is being settled: that ReadyForQuery
// comes even while the server skips messages after an error.
func (q *pendingQueue) syncPending() bool {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.holds > 0 {
		return true
	}
	for i := q.head; i < len(q.items); i++ {
		if k := q.items[i].kind; k == pendSync || k == pendFatal {
			return true
		}
	}
	return false
}

// settles reports whether the server answers every entry in flight up to a
// last ReadyForQuery without more input from the client: the last entry ends
// a batch, and when it is a Query, no extended message since the last Sync
// precedes it (after an error in one the server skips up to Sync, Queries
// included) and the server is not skipping already. The injected context
// statement does not count: its failure ends the session.
func (q *pendingQueue) settles(skipping bool) bool {
	q.mu.Lock()
	defer q.mu.Unlock()
	for i := len(q.items) - 1; i >= q.head; i-- {
		switch k := q.items[i].kind; {
		case k == pendSync || k == pendFatal:
			return true
		case skipping || (k != pendQuery && k != pendDenyQuery && k != pendInject):
			return false
		case i == len(q.items)-1 && k == pendInject:
			return false // nothing of the client's follows it
		}
	}
	return q.head < len(q.items) && !skipping
}

// empty reports whether no reply is outstanding.
func (q *pendingQueue) empty() bool {
	q.mu.Lock()
	defer q.mu.Unlock()
	return q.head == len(q.items)
}

// releaseAll ends the budget tickets of every entry still in flight, when
// the session ends with statements unanswered.
func (q *pendingQueue) releaseAll() {
	// Collect under the lock (the backend loop may be popping), end after:
	// a ticket ends once, whoever gets there first.
	var tickets []*ticket
	q.mu.Lock()
	for i := q.head; i < len(q.items); i++ {
		if t := q.items[i].ticket; t != nil {
			tickets = append(tickets, t)
		}
	}
	q.mu.Unlock()
	for _, t := range tickets {
		t.end()
	}
}
