package proxy

import (
	"bytes"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgerrcode"
	"github.com/jackc/pgx/v5/pgproto3"

	"github.com/pgtenant/pgtenant/tenancy"
)

// backendLoop relays the backend's messages to the client, matching each
// reply to the frontend message it answers. It is the only writer to the
// client while the session runs.
func (s *session) backendLoop() error {
	for {
		t, n, err := s.br.header()
		if err != nil {
			if s.isParkDeadline(err) {
				if s.parkNow() {
					return errParked
				}
				continue
			}
			s.backendLost(err)
			return err
		}
		if t == 'Z' {
			s.batches.Add(1)
		}
		s.wmu.Lock()
		if s.fatalSent {
			// The client loop ended the session with a FATAL (a protocol
			// violation): replies still in flight must not follow it.
			s.wmu.Unlock()
			return nil
		}
		end, err := s.relay(t, n)
		if err == nil && (s.br.drained() || end) {
			err = s.cw.Flush()
		}
		s.wmu.Unlock()
		if len(s.events) > 0 {
			s.flushEvents()
		}
		if err != nil {
			return err
		}
		if end {
			return errAwaitBackend
		}
		if s.tx != nil && (t == 'Z' || t == 'E') {
			// a ReadyForQuery or an error to settle (the injected context
			// statement's error ended the session above)
			if s.settle(t == 'Z', s.tx.status) {
				return errDetached
			}
			if s.inline && s.yieldInline() {
				return errYield
			}
		}
		if s.inline {
			if t == 'G' || t == 'W' {
				return errGoAsync
			}
			if s.tx == nil && s.br.drained() && s.yieldInline() {
				// session mode: the replies are in and nothing is buffered,
				// so the backend socket may go unread (relaySession)
				return errYield
			}
		}
	}
}

// relay handles one backend message; end reports that the session is over.
func (s *session) relay(t byte, n int) (end bool, err error) {
	if s.tx != nil {
		if handled, end, err := s.relayPooled(t, n); handled || err != nil {
			return end, err
		}
	}
	switch t {
	case 'D', 'd', 'N', 'A', 'S', 'H', 'W', 'c', 'V':
		// Rows, COPY data, notices, notifications, parameter status and
		// COPY starts answer nothing by themselves.
	case 'G':
		if ce := s.copyStarted(); ce != nil {
			return true, encode(s.cw, ce.errorResponse("FATAL"))
		}
	case '1', '2', '3':
		p, ok := s.queue.pop()
		if !ok || !answers(t, p.kind) {
			return s.lostTrack(t, p.kind)
		}
		switch {
		case t == '2':
			s.portalBound(p.portal, p.stmt, p.changes, p.sets)
		case t == '3' && p.portalClose:
			s.portalDropped(p.portal)
		default:
			s.track.resolveAll(p.changes, tenancy.Confirmed)
		}
	case 't':
		if p, ok := s.queue.peek(); !ok || !answers(t, p.kind) {
			return s.lostTrack(t, p.kind)
		}
		return false, s.onParameterDescription(n)
	case 'C', 'I', 's':
		p, ok := s.queue.peek()
		if !ok || !answers(t, p.kind) {
			return s.lostTrack(t, p.kind)
		}
		return false, s.onCompletion(t, n, p)
	case 'T', 'n':
		if p, ok := s.queue.peek(); ok && p.kind == pendDescribe {
			s.queue.pop()
			s.track.resolveAll(p.changes, tenancy.Skipped) // no ParameterDescription came
		}
	case 'E':
		return s.onError(n)
	case 'Z':
		return s.onReady(n)
	}
	if err := writeHeader(s.cw, t, n); err != nil {
		return false, err
	}
	return false, s.br.forward(s.cw, n)
}

// answers reports whether reply t can answer a message of kind k, the
// head of the pending queue.
func answers(t byte, k pendingKind) bool {
	switch t {
	case '1':
		return k == pendParse
	case '2':
		return k == pendBind
	case '3':
		return k == pendClose
	case 't':
		return k == pendDescribe
	case 's':
		return k == pendExecute
	case 'C', 'I':
		return k == pendExecute || k == pendQuery
	}
	return true
}

// lostTrack ends the session on a reply that does not answer the message
// in flight (pending, zero when none is): pgtenant no longer knows which of
// the client's messages the server is answering, so neither the prepared
// statements it believes confirmed nor the next denial could be trusted.
func (s *session) lostTrack(reply byte, pending pendingKind) (end bool, err error) {
	s.logger().Error("a server reply answers no message in flight; ending the session",
		"reply", string(reply), "pending", int(pending))
	ce := newClientError(pgerrcode.ProtocolViolation, "protocol", "pgtenant lost track of the server's replies; reconnect")
	return true, encode(s.cw, ce.errorResponse("FATAL"))
}

// onCompletion handles CommandComplete, EmptyQueryResponse and PortalSuspended.
func (s *session) onCompletion(t byte, n int, p pending) error {
	body, err := s.br.readBody(n)
	if err != nil {
		return err
	}
	return s.onCompletionBody(t, body, p)
}

// onCompletionBody is onCompletion with the body read; p is the head of
// the pending queue, the Execute or Query it answers (answers).
func (s *session) onCompletionBody(t byte, body []byte, p pending) error {
	rows := int64(-1)
	if t == 'C' {
		rows = commandRows(body)
	}
	tag := ""
	if t == 'C' {
		tag = string(bytes.TrimRight(body, "\x00"))
		if s.tx == nil && strings.HasPrefix(tag, "LISTEN") && !s.listening.Load() {
			s.listening.Store(true) // notifications may come while idle (park.go)
		}
	}
	switch p.kind {
	case pendExecute:
		s.queue.pop()
		if t == 's' {
			p.stmt = s.portalRef(p.portal) // suspended: not run to completion
		} else {
			p.stmt = s.portalRan(p.portal, tag)
		}
		s.finish(p, "", rows)
	case pendQuery:
		s.queue.update(func(p *pending) {
			if rows >= 0 {
				p.rows = max(p.rows, 0) + rows
			}
			if t == 'C' {
				p.changes = s.queryStatementDone(p.changes, p.done, tag)
				if s.tx != nil && len(p.sets) > 0 {
					s.tx.stageSets(p.sets, p.done, tag)
				}
				p.done++
			}
		})
	}
	return writeMsg(s.cw, t, body)
}

// onParameterDescription learns the parameter types of a described statement.
func (s *session) onParameterDescription(n int) error {
	body, err := s.br.readBody(n)
	if err != nil {
		return err
	}
	if p, ok := s.queue.peek(); ok && p.kind == pendDescribe {
		if oids, ok := parameterTypes(body); ok {
			for _, c := range p.changes {
				s.track.resolve(c.ID, tenancy.Confirmed, oids)
			}
			s.queue.update(func(p *pending) { p.changes = nil })
		}
	}
	return writeMsg(s.cw, 't', body)
}

// portalRef is what an Execute of a confirmed portal audits.
func (s *session) portalRef(name string) *stmtRef {
	return s.bportals[name].ref // nil when the server confirmed no such portal
}

// onError matches an ErrorResponse to the message it answers. The error for
// an injected message is replaced by the denial it stands for; end reports
// an ERROR that answers nothing (lostTrack).
func (s *session) onError(n int) (end bool, err error) {
	body, err := s.br.readBody(n)
	if err != nil {
		return false, err
	}
	var er pgproto3.ErrorResponse
	if err := er.Decode(body); err != nil {
		return false, err
	}
	if b, ok := s.copyDenied(&er); ok { // a COPY row refused (copyin.go)
		body = b
	}
	if s.batchErr == "" {
		s.batchErr = er.Code
	}
	fatal := er.Severity == "FATAL" || er.Severity == "PANIC"
	s.backendFatal = s.backendFatal || fatal
	p, ok := s.queue.peek()
	if ok && !fatal && er.Code == pgerrcode.QueryCanceled && p.ticket != nil && p.ticket.timedOut.Load() {
		// our statement timeout's cancel: say so instead of "user request"
		body = nil
	}
	switch {
	case fatal:
	case !ok:
		return s.lostTrack('E', 0)
	case p.kind == pendDenyQuery:
		return false, s.sendDenial(p)
	case p.kind == pendDeny:
		s.queue.pop()
		s.skipToSync = true
		s.copyIn.gate.extendedError()
		return false, s.sendDenial(p)
	case p.kind == pendQuery || p.kind == pendSync:
		s.queue.update(func(p *pending) {
			if p.sqlstate == "" {
				p.sqlstate = er.Code
			}
		})
	default:
		s.queue.pop()
		s.skipToSync = true                            // the server now skips everything up to Sync
		s.copyIn.gate.extendedError()                  // a Query behind it included
		s.track.resolveAll(p.changes, tenancy.Skipped) // failed: nothing changed
		s.dropFailedParse(p)
		if p.kind == pendExecute {
			p.stmt = s.portalRan(p.portal, "")
			s.finish(p, er.Code, -1)
		}
	}
	if body == nil {
		return false, encode(s.cw, timeoutError(p.ticket))
	}
	return false, writeMsg(s.cw, 'E', body)
}

// sendDenial writes the denial in place of the injected message's error.
func (s *session) sendDenial(p pending) error {
	d := p.deny
	code := d.SQLState
	if code == "" {
		code = pgerrcode.InsufficientPrivilege
	}
	return encode(s.cw, &pgproto3.ErrorResponse{
		Severity: "ERROR", SeverityUnlocalized: "ERROR", Code: code, Message: d.Message, Hint: d.Hint,
	})
}

// onReady closes the batch a ReadyForQuery answers.
func (s *session) onReady(n int) (bool, error) {
	body, err := s.br.readBody(n)
	if err != nil {
		return false, err
	}
	batchErr := s.batchErr
	s.batchErr = ""
	if s.tx != nil && len(body) == 1 {
		s.tx.status = body[0]
		if body[0] == 'I' {
			// an implicit transaction ended: committed unless it failed
			s.tx.endStaged(batchErr == "")
		}
	}
	toSync := s.skipToSync
	s.skipToSync = false
	p, ok := s.queue.popBatch(toSync, func(skipped pending) {
		s.track.resolveAll(skipped.changes, tenancy.Skipped)
		if skipped.kind == pendExecute {
			skipped.stmt = s.portalRef(skipped.portal)
		}
		if skipped.kind == pendExecute || skipped.kind == pendQuery {
			s.finish(skipped, batchErr, -1)
		}
	})
	if !ok {
		return s.lostTrack('Z', 0)
	}
	if p.kind == pendSync {
		s.copyIn.gate.syncAnswered()
	}
	// a Query's statements after an error did not run
	s.track.resolveAll(p.changes, tenancy.Skipped)
	if p.mayCopy {
		s.copyIn.gate.finished()
	}
	if len(body) == 1 && body[0] == 'I' {
		// the transaction ended: the server dropped every portal
		s.portalsDropped()
	}
	switch p.kind {
	case pendFatal:
		if err := encode(s.cw, p.fatal.errorResponse("FATAL")); err != nil {
			return true, err
		}
		return true, nil
	case pendQuery:
		s.finish(p, p.sqlstate, p.rows)
	}
	if err := writeMsg(s.cw, 'Z', body); err != nil {
		return false, err
	}
	if len(body) == 1 && body[0] == 'I' && s.queue.empty() {
		s.idle.Store(true)
		s.startIdleTimer()
		if s.draining.Load() {
			if err := encode(s.cw, shutdownError().errorResponse("FATAL")); err != nil {
				return true, err
			}
			return true, nil
		}
	}
	return false, nil
}

// finish reports a completed statement to the metrics and the audit.
func (s *session) finish(p pending, sqlstate string, rows int64) {
	p.ticket.end()
	if p.start.IsZero() {
		return
	}
	total := time.Since(p.start)
	s.srv.opts.Metrics.StatementDone(s.region.name, p.overhead, total)
	if p.stmt == nil || !s.srv.auditing() {
		return
	}
	ev := s.event(tenancy.KindResult)
	ev.Statement, ev.FullStatement, ev.Tables = p.stmt.statement, p.stmt.full, p.stmt.tables
	ev.SQLState, ev.Rows, ev.DurationUS = sqlstate, rows, total.Microseconds()
	ev.Ref = p.stmt.auditRef
	s.deferEvent(ev)
}

// commandRows returns the row count at the end of a CommandComplete tag
// ("SELECT 5", "INSERT 0 3", "COPY 10"), or -1 when the tag has none.
func commandRows(body []byte) int64 {
	tag := bytes.TrimRight(body, "\x00")
	i := bytes.LastIndexByte(tag, ' ')
	if i < 0 {
		return -1
	}
	n, err := strconv.ParseInt(string(tag[i+1:]), 10, 64)
	if err != nil {
		return -1
	}
	return n
}
