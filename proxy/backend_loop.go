package proxy

import (
	"bytes"
	"strconv"
	"time"

	"github.com/jackc/pgx/v5/pgproto3"

	"github.com/pgtenant/pgtenant/audit"
)

// backendLoop relays the backend's messages to the client, matching each
// reply to the frontend message it answers. It is the only writer to the
// client while the session runs.
func (s *session) backendLoop() error {
	for {
		t, n, err := s.br.header()
		if err != nil {
			s.backendLost(err)
			return err
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
		if err != nil {
			return err
		}
		if end {
			return errAwaitBackend
		}
	}
}

// relay handles one backend message; end reports that the session is over.
func (s *session) relay(t byte, n int) (end bool, err error) {
	switch t {
	case 'D', 'd', 'N', 'A', 'S', 't', 'G', 'H', 'W', 'c', 'V':
		// Rows, COPY data, notices, notifications, parameter status,
		// parameter descriptions and COPY starts answer nothing by themselves.
	case '1':
		if p, ok := s.queue.pop(); ok && p.kind == pendParse {
			s.track.resolveParse(p.name, false)
		}
	case '2', '3':
		s.queue.pop()
	case 'T', 'n':
		if p, ok := s.queue.peek(); ok && p.kind == pendDescribe {
			s.queue.pop()
		}
	case 'C', 'I', 's':
		return false, s.onCompletion(t, n)
	case 'E':
		return false, s.onError(n)
	case 'Z':
		return s.onReady(n)
	}
	if err := writeHeader(s.cw, t, n); err != nil {
		return false, err
	}
	return false, s.br.forward(s.cw, n)
}

// onCompletion handles CommandComplete, EmptyQueryResponse and PortalSuspended.
func (s *session) onCompletion(t byte, n int) error {
	body, err := s.br.readBody(n)
	if err != nil {
		return err
	}
	rows := int64(-1)
	if t == 'C' {
		rows = commandRows(body)
	}
	if p, ok := s.queue.peek(); ok {
		switch p.kind {
		case pendExecute:
			s.queue.pop()
			s.finish(p, "", rows)
		case pendQuery:
			s.queue.update(func(p *pending) {
				if rows >= 0 {
					p.rows = max(p.rows, 0) + rows
				}
			})
		}
	}
	return writeMsg(s.cw, t, body)
}

// onError matches an ErrorResponse to the message it answers. The error for
// an injected message is replaced by the denial it stands for.
func (s *session) onError(n int) error {
	body, err := s.br.readBody(n)
	if err != nil {
		return err
	}
	var er pgproto3.ErrorResponse
	if err := er.Decode(body); err != nil {
		return err
	}
	if s.batchErr == "" {
		s.batchErr = er.Code
	}
	fatal := er.Severity == "FATAL" || er.Severity == "PANIC"
	s.backendFatal = s.backendFatal || fatal
	p, ok := s.queue.peek()
	switch {
	case !ok || fatal:
	case p.kind == pendDenyQuery:
		return s.sendDenial(p)
	case p.kind == pendDeny:
		s.queue.pop()
		s.skipToSync = true
		return s.sendDenial(p)
	case p.kind == pendQuery || p.kind == pendSync:
		s.queue.update(func(p *pending) {
			if p.sqlstate == "" {
				p.sqlstate = er.Code
			}
		})
	default:
		s.queue.pop()
		s.skipToSync = true // the server now skips everything up to Sync
		if p.kind == pendParse {
			s.track.resolveParse(p.name, true) // failed: the server keeps the old statement
		}
		if p.kind == pendExecute {
			s.finish(p, er.Code, -1)
		}
	}
	return writeMsg(s.cw, 'E', body)
}

// sendDenial writes the denial in place of the injected message's error.
func (s *session) sendDenial(p pending) error {
	d := p.deny
	code := d.SQLState
	if code == "" {
		code = codeInsufficientPriv
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
	toSync := s.skipToSync
	s.skipToSync = false
	p, ok := s.queue.popBatch(toSync, func(skipped pending) {
		if skipped.kind == pendParse {
			s.track.resolveParse(skipped.name, true)
		}
		if skipped.kind == pendExecute || skipped.kind == pendQuery {
			s.finish(skipped, batchErr, -1)
		}
	})
	s.track.synced()
	if ok {
		switch p.kind {
		case pendFatal:
			if err := encode(s.cw, p.fatal.errorResponse("FATAL")); err != nil {
				return true, err
			}
			return true, nil
		case pendQuery:
			s.finish(p, p.sqlstate, p.rows)
		}
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
	if p.start.IsZero() {
		return
	}
	total := time.Since(p.start)
	s.srv.opts.Metrics.StatementDone(s.region.name, p.overhead, total)
	if p.stmt == nil || !s.srv.auditing() {
		return
	}
	ev := s.event(audit.KindResult)
	ev.Statement, ev.FullStatement, ev.Tables = p.stmt.statement, p.stmt.full, p.stmt.tables
	ev.SQLState, ev.Rows, ev.DurationUS = sqlstate, rows, total.Microseconds()
	ev.Ref = p.stmt.auditRef
	s.recordAsync(ev)
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
