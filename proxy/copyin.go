package proxy

import (
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/jackc/pgerrcode"
	"github.com/jackc/pgx/v5/pgproto3"

	"github.com/pgtenant/pgtenant/tenancy"
)

// COPY ... FROM STDIN's sub-protocol. While the server is in COPY it reads
// only CopyData, CopyDone and CopyFail, ignores Sync and Flush, and fails
// the COPY (consuming the message) on anything else. A COPY that fails
// before it starts, or that the server skips after an error in an earlier
// extended-protocol message, leaves it reading messages as usual. Which
// holds is known only from what the server sends next (CopyInResponse; the
// Query's ReadyForQuery; that earlier error), so after forwarding a Query
// that may start a COPY, and after each CopyDone or CopyFail of one, the
// client loop reads nothing more until the server has told (copyGate). Were
// it to guess, a Sync the server ignores would become a reply pgtenant
// waits for forever, and CopyData after that Sync would pass unchecked.

// copyMode is the client loop's view of the server's COPY state.
type copyMode uint8

const (
	copyIdle    copyMode = iota // the server reads messages as usual
	copyReading                 // the server reads COPY data (CopyInResponse seen)
	// copyDropping: pgtenant ended the COPY with CopyFail (a refused row);
	// the client's remaining COPY messages, and the Syncs and Flushes among
	// them, are dropped until its own CopyDone or CopyFail
	copyDropping
)

// copyIn is the state of a COPY ... FROM STDIN. The client loop owns mode,
// check, stream and statement; gate and denial are shared with the backend
// loop.
type copyIn struct {
	mode copyMode
	// awaiting: the server's answer to the last message forwarded is
	// still to be waited for (copyGate.wait)
	awaiting bool
	// check is the row check of the allowed COPY in flight (rewrite mode),
	// nil when none was given; stream checks the rows of the COPY the server
	// is reading (nil: not checked).
	check     tenancy.CopyCheck
	stream    tenancy.CopyStream
	statement string // the COPY's audited text
	gate      copyGate
	// denial is the refusal whose CopyFail the server will answer with
	// 57014; the backend loop sends the client this denial instead.
	denial atomic.Pointer[tenancy.Decision]
}

// copyGate follows the one Query in flight that may start a COPY: the
// CopyInResponses the server sent for it (a Query may hold several COPYs),
// how many of them the client loop has acted on, and whether the Query has
// ended. The client loop waits on it after forwarding that Query and after
// each CopyDone or CopyFail; the backend loop reports what the server sends.
type copyGate struct {
	mu       sync.Mutex
	cond     sync.Cond
	inFlight bool   // the Query is in flight: neither its ReadyForQuery came nor did the server skip it
	starts   uint64 // its CopyInResponses
	taken    uint64 // of those, the ones the client loop has acted on
	ended    bool   // the session ended: nothing more will come
	// Whether the server skips the Query: it does when an extended-protocol
	// message after the last Sync before it failed. syncsBefore is the
	// number of Syncs the client loop had sent when it sent the Query;
	// syncsAnswered counts the ReadyForQuery messages answering Syncs, so
	// when an error comes, syncsAnswered is the number of Syncs before the
	// message that failed (replies come in order). errAfter is that number
	// for the latest extended-protocol error (valid when errSeen).
	// syncsAnswered is the backend loop's alone (syncAnswered).
	syncsBefore   uint64
	syncsAnswered uint64
	errAfter      uint64
	errSeen       bool
}

// condLocked is the gate's condition (mu held); the zero gate is ready to use.
func (g *copyGate) condLocked() *sync.Cond {
	if g.cond.L == nil {
		g.cond.L = &g.mu
	}
	return &g.cond
}

// begin marks a Query that may start a COPY as in flight (client loop),
// sent after syncsSent Syncs; false when the server is known to skip it (an
// extended-protocol message after the last of those Syncs failed already).
func (g *copyGate) begin(syncsSent uint64) bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.starts, g.taken, g.syncsBefore = 0, 0, syncsSent
	g.inFlight = !(g.errSeen && g.errAfter == syncsSent)
	return g.inFlight
}

// syncAnswered counts a ReadyForQuery that answers a Sync. Only the
// backend loop reads or writes syncsAnswered, so it takes no lock: this
// runs for every extended-protocol statement.
func (g *copyGate) syncAnswered() { g.syncsAnswered++ }

// extendedError records an error in an extended-protocol message (backend
// loop): the server skips up to the next Sync, and with it the Query in
// flight when no Sync lies between them.
func (g *copyGate) extendedError() {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.errSeen, g.errAfter = true, g.syncsAnswered
	if g.inFlight && g.syncsAnswered == g.syncsBefore {
		g.inFlight = false
		g.condLocked().Broadcast()
	}
}

// started records a CopyInResponse (backend loop); false when no Query that
// may start a COPY is in flight, a COPY pgtenant cannot follow.
func (g *copyGate) started() bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	if !g.inFlight {
		return false
	}
	g.starts++
	g.condLocked().Broadcast()
	return true
}

// finished records that the Query ended, or that the server skipped it
// (backend loop: the ReadyForQuery that answers or skips it): the server
// reads messages as usual.
func (g *copyGate) finished() {
	g.mu.Lock()
	g.inFlight = false
	g.condLocked().Broadcast()
	g.mu.Unlock()
}

// serverReading reports whether the Query is still in flight, so a COPY it
// started may still be reading: once it ended, the server reads messages as
// usual (it ended a COPY on an error of its own, say).
func (g *copyGate) serverReading() bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.inFlight
}

// end wakes a waiter for good: the session is over.
func (g *copyGate) end() {
	g.mu.Lock()
	g.ended = true
	g.condLocked().Broadcast()
	g.mu.Unlock()
}

// errSessionEnded is wait's error once the session ended.
var errSessionEnded = errors.New("session ended while waiting for the server")

// wait blocks until the server has answered the client loop's last message:
// a CopyInResponse not yet acted on (started), or the Query's end.
func (g *copyGate) wait() (started bool, err error) {
	g.mu.Lock()
	defer g.mu.Unlock()
	for g.starts == g.taken && g.inFlight && !g.ended {
		g.condLocked().Wait()
	}
	switch {
	case g.ended:
		return false, errSessionEnded
	case g.starts > g.taken:
		g.taken++
		return true, nil
	}
	return false, nil
}

// mayStartCopy reports whether a Query's text may hold a COPY: SQL keywords
// cannot be quoted or escaped, so a text without the letters "copy" (in any
// case) cannot start one. A false positive costs only the wait for the
// statement's answer.
func mayStartCopy(sql []byte) bool {
	for i := 0; i+4 <= len(sql); i++ {
		if sql[i]|0x20 == 'c' && sql[i+1]|0x20 == 'o' && sql[i+2]|0x20 == 'p' && sql[i+3]|0x20 == 'y' {
			return true
		}
	}
	return false
}

// begin marks the Query being forwarded, after syncsSent Syncs, as one
// that may start a COPY: the client loop reads nothing more until the
// server answers. false when the server will skip the Query.
func (c *copyIn) begin(check tenancy.CopyCheck, statement string, syncsSent uint64) bool {
	if !c.gate.begin(syncsSent) {
		return false
	}
	c.check, c.statement, c.awaiting = check, statement, true
	return true
}

// ended notes that the client ended the COPY (CopyDone or CopyFail, its own
// or pgtenant's): the Query ends, or starts another COPY.
func (c *copyIn) ended() {
	c.mode, c.stream, c.awaiting = copyIdle, nil, true
}

// awaitCopyAnswer sends what is buffered for the server and waits for its
// answer to the last message forwarded, then sets the COPY mode from it.
// The client loop calls it before handling its next message.
func (s *session) awaitCopyAnswer() error {
	if err := s.flushBackend(); err != nil {
		return err
	}
	started, err := s.copyIn.gate.wait()
	if err != nil {
		return err
	}
	s.copyIn.awaiting = false
	if !started {
		s.copyIn.mode, s.copyIn.check, s.copyIn.stream = copyIdle, nil, nil
		return nil
	}
	s.copyIn.mode = copyReading
	if s.copyIn.check != nil {
		s.copyIn.stream = s.copyIn.check.Stream()
	}
	return nil
}

// onCopyModeMsg handles a client message while the server reads COPY data,
// or while pgtenant drops the rest of a COPY it ended.
func (s *session) onCopyModeMsg(t byte, n int) error {
	if s.tx != nil {
		// as for the messages heldDuring a transaction: the backend stays
		// attached while a COPY message goes to it. A message that would
		// start a batch must not reach beginPooled: it would wait for the
		// COPY's end
		s.tx.mu.Lock()
		defer s.tx.mu.Unlock()
	}
	switch t {
	case 'd', 'c', 'f':
		if s.copyIn.mode == copyDropping {
			if _, err := s.cr.r.Discard(n); err != nil {
				return err
			}
			if t != 'd' {
				s.copyIn.ended()
			}
			return nil
		}
		return s.onCopyMsg(t, n)
	case 'S', 'H':
		// the server ignores them in COPY; after pgtenant's CopyFail it
		// would answer a Sync the client does not expect an answer to
		return nil
	case 'X':
		// the client leaves while the server waits for its data, and will
		// answer nothing: the backend goes with the session (closed, or
		// in transaction mode discarded rather than waited for)
		if _, err := s.cr.r.Discard(n); err != nil {
			return err
		}
		return errClientTerminated
	}
	return s.protocolError(fmt.Sprintf("unexpected message type 0x%02X during COPY FROM STDIN", t))
}

// onCopyMsg relays one CopyData, CopyDone or CopyFail. With a row check,
// the first refused row turns into a CopyFail to the server (which rolls the
// whole COPY back); the client's messages after it are dropped.
func (s *session) onCopyMsg(t byte, n int) error {
	st := s.copyIn.stream
	if st == nil {
		if t != 'd' {
			s.copyIn.ended()
		}
		if err := writeHeader(s.bw, t, n); err != nil {
			return err
		}
		return s.cr.forward(s.bw, n)
	}
	body, err := s.cr.readBody(n)
	if err != nil {
		return err
	}
	switch t {
	case 'd':
		if den := st.Write(body); den != nil {
			s.copyIn.mode = copyDropping
			return s.copyFail(den)
		}
	case 'c':
		s.copyIn.ended()
		if den := st.Close(); den != nil {
			return s.copyFail(den)
		}
	case 'f':
		s.copyIn.ended()
	}
	return writeMsg(s.bw, t, body)
}

// copyFail aborts the COPY at the server with the denial's message, and
// records the denial.
func (s *session) copyFail(den *tenancy.Decision) error {
	s.copyIn.stream = nil
	d := *den
	d.Statement = s.copyIn.statement
	s.copyIn.denial.Store(&d)
	s.srv.opts.Metrics.StatementDecided("deny", d.Reason)
	s.recordDenial(d, "")
	return writeMsg(s.bw, 'f', append([]byte(d.Message), 0))
}

// copyStarted handles the server's CopyInResponse; a COPY that no Query in
// flight may have started is one pgtenant cannot follow.
func (s *session) copyStarted() *clientError {
	if p, ok := s.queue.peek(); ok && p.mayCopy && s.copyIn.gate.started() {
		return nil
	}
	return newClientError(pgerrcode.ProtocolViolation, "protocol",
		"the server started a COPY FROM STDIN pgtenant did not expect; COPY FROM STDIN runs from a simple Query only")
}

// copyDenied replaces the server's answer to pgtenant's CopyFail (57014,
// "COPY from stdin failed: pgtenant: ...") by the denial; other errors are
// left alone.
func (s *session) copyDenied(er *pgproto3.ErrorResponse) ([]byte, bool) {
	d := s.copyIn.denial.Load()
	if d == nil || er.Code != "57014" || !strings.Contains(er.Message, d.Message) {
		return nil, false
	}
	s.copyIn.denial.CompareAndSwap(d, nil)
	out := pgproto3.ErrorResponse{Severity: er.Severity, SeverityUnlocalized: er.SeverityUnlocalized,
		Code: pgerrcode.InsufficientPrivilege, Message: d.Message, Hint: d.Hint, Where: er.Where}
	b, err := out.Encode(nil)
	if err != nil || len(b) < 5 {
		return nil, false
	}
	*er = out
	return b[5:], true
}
