package proxy

import (
	"context"
	"encoding/binary"
	"fmt"
	"time"

	"github.com/pgtenant/pgtenant/audit"
	"github.com/pgtenant/pgtenant/policy"
)

// Messages injected in place of a denied one. Each makes the server raise an
// error at exactly that point of the stream, so the transaction fails and the
// rest of an extended batch is skipped as for any PostgreSQL error; the
// backend loop replaces the server's error with the denial.
var (
	// injectedQuery is a syntax error: ErrorResponse, then ReadyForQuery.
	injectedQuery = append([]byte("pgtenant_denied"), 0)
	// injectedBind binds a statement name no client can create (Parse of a
	// "pgtenant." name is refused), failing with 26000 before any portal changes.
	injectedBind = append(append([]byte{0}, "pgtenant.denied"...), 0, 0, 0, 0, 0, 0, 0)
)

const reservedStmtPrefix = "pgtenant."

// clientLoop reads the client's messages, decides statements, and forwards
// allowed ones to the backend. It returns nil when the client terminates.
func (s *session) clientLoop() error {
	for {
		if !s.cr.nextBuffered() {
			if err := s.bw.Flush(); err != nil {
				return err
			}
		}
		t, n, err := s.cr.header()
		if err != nil {
			if isClosedErr(err) {
				return nil
			}
			s.fatal(newClientError(codeProtocolViolation, "protocol", "%v", err))
			return err
		}
		s.idle.Store(false)
		if s.skip && t != 'S' && t != 'X' {
			if _, err := s.cr.r.Discard(n); err != nil {
				return err
			}
			continue
		}
		if err := s.handleClientMsg(t, n); err != nil {
			return err
		}
	}
}

// handleClientMsg handles one message whose header has been read.
func (s *session) handleClientMsg(t byte, n int) error {
	s.track.apply(s.skips)
	switch t {
	case 'Q':
		return s.onQuery(n)
	case 'P':
		return s.onParse(n)
	case 'B':
		return s.onBind(n)
	case 'E':
		return s.onExecute(n)
	case 'C':
		return s.onClose(n)
	case 'D':
		s.queue.push(pending{kind: pendDescribe})
	case 'S':
		s.queue.push(pending{kind: pendSync})
		s.track.batchEnded()
		s.skip = false
	case 'H', 'd', 'c', 'f':
		// Flush and the COPY sub-protocol pass through as bytes.
	case 'X':
		if _, err := s.cr.r.Discard(n); err != nil {
			return err
		}
		s.terminateBackend()
		return nil
	case 'F':
		if _, err := s.cr.r.Discard(n); err != nil {
			return err
		}
		d := policy.Decision{SQLState: codeInsufficientPriv, Reason: "function_call",
			Message: "pgtenant: the FunctionCall protocol message is not allowed",
			Hint:    "call the function from a SQL statement instead"}
		s.srv.opts.Metrics.StatementDecided("deny", d.Reason)
		return s.denySimple(d, "", time.Now())
	default:
		ce := newClientError(codeProtocolViolation, "protocol", "invalid frontend message type %d", t)
		s.fatal(ce)
		return ce
	}
	if err := writeHeader(s.bw, t, n); err != nil {
		return err
	}
	return s.cr.forward(s.bw, n)
}

// expired reports whether the token has expired; if so it queues the FATAL
// that ends the session after the replies already in flight.
func (s *session) expired() bool {
	if s.expiresAt.IsZero() || time.Now().Before(s.expiresAt) {
		return false
	}
	ce := newClientError(codeInvalidAuthorization, "token_expired", "the token has expired; reconnect with a new one")
	s.queue.push(pending{kind: pendFatal, fatal: ce})
	_ = writeHeader(s.bw, 'S', 0)
	_ = s.bw.Flush()
	return true
}

func (s *session) onQuery(n int) error {
	body, err := s.cr.readBody(n)
	if err != nil {
		return err
	}
	if n == 0 || body[n-1] != 0 {
		return s.protocolError("unterminated query string")
	}
	if s.expired() {
		return errAwaitBackend
	}
	start := time.Now()
	sql := string(body[:n-1])
	d := s.checker.CheckQuery(sql)
	s.srv.opts.Metrics.StatementDecided(verdict(d), d.Reason)
	if !d.Allow {
		return s.denySimple(d, sql, start)
	}
	ref := &stmtRef{statement: d.Statement, full: sql, tables: d.Tables}
	if err := s.recordStatement(ref); err != nil {
		return s.denySimple(s.unavailable(err), sql, start)
	}
	s.queue.push(pending{kind: pendQuery, start: start, overhead: time.Since(start), stmt: ref})
	return writeMsg(s.bw, 'Q', body)
}

func (s *session) onParse(n int) error {
	body, err := s.cr.readBody(n)
	if err != nil {
		return err
	}
	name, rest, ok1 := cstring(body)
	query, rest, ok2 := cstring(rest)
	if !ok1 || !ok2 || len(rest) < 2 || len(rest) != 2+4*int(binary.BigEndian.Uint16(rest)) {
		return s.protocolError("malformed Parse message")
	}
	oids := make([]uint32, binary.BigEndian.Uint16(rest))
	for i := range oids {
		oids[i] = binary.BigEndian.Uint32(rest[2+4*i:])
	}
	if s.expired() {
		return errAwaitBackend
	}
	start := time.Now()
	var d policy.Decision
	if len(name) >= len(reservedStmtPrefix) && name[:len(reservedStmtPrefix)] == reservedStmtPrefix {
		d = policy.Decision{SQLState: codeInsufficientPriv, Reason: "reserved_name",
			Message: fmt.Sprintf("pgtenant: statement names starting with %q are reserved", reservedStmtPrefix)}
	} else {
		d = s.checker.CheckParse(name, query, oids)
	}
	s.srv.opts.Metrics.StatementDecided(verdict(d), d.Reason)
	if !d.Allow {
		return s.denyExtended(d, query, start)
	}
	s.stmts[name] = &stmtRef{statement: d.Statement, full: query, tables: d.Tables}
	s.queue.push(pending{kind: pendParse, name: name})
	s.track.parseSent(name)
	return writeMsg(s.bw, 'P', body)
}

func (s *session) onBind(n int) error {
	body, err := s.cr.readBody(n)
	if err != nil {
		return err
	}
	portal, stmt, err := s.decodeBind(body)
	if err != nil {
		return s.protocolError(err.Error())
	}
	if s.expired() {
		return errAwaitBackend
	}
	if err := s.awaitStatement(stmt); err != nil {
		return err
	}
	start := time.Now()
	d := s.checker.CheckBind(stmt, s.bindFmts, s.bindVals)
	s.srv.opts.Metrics.StatementDecided(verdict(d), d.Reason)
	if !d.Allow {
		return s.denyExtended(d, "", start)
	}
	ref := &stmtRef{}
	if named := s.stmts[stmt]; named != nil {
		c := *named // each Bind is its own audited execution
		ref = &c
	}
	if err := s.recordStatement(ref); err != nil {
		return s.denyExtended(s.unavailable(err), "", start)
	}
	s.portals[portal] = ref
	s.queue.push(pending{kind: pendBind})
	return writeMsg(s.bw, 'B', body)
}

func (s *session) onExecute(n int) error {
	body, err := s.cr.readBody(n)
	if err != nil {
		return err
	}
	portal, _, ok := cstring(body)
	if !ok {
		return s.protocolError("malformed Execute message")
	}
	s.queue.push(pending{kind: pendExecute, start: time.Now(), stmt: s.portals[portal]})
	return writeMsg(s.bw, 'E', body)
}

func (s *session) onClose(n int) error {
	body, err := s.cr.readBody(n)
	if err != nil {
		return err
	}
	if len(body) < 2 {
		return s.protocolError("malformed Close message")
	}
	name, _, ok := cstring(body[1:])
	if !ok {
		return s.protocolError("malformed Close message")
	}
	switch body[0] {
	case 'S':
		s.checker.CloseStatement(name)
		delete(s.stmts, name)
	case 'P':
		delete(s.portals, name)
	}
	s.queue.push(pending{kind: pendClose})
	return writeMsg(s.bw, 'C', body)
}

// decodeBind parses a Bind body into the session's reused format and value
// slices (values alias body) and returns the portal and statement names.
func (s *session) decodeBind(b []byte) (portal, stmt string, err error) {
	portal, b, ok1 := cstring(b)
	stmt, b, ok2 := cstring(b)
	if !ok1 || !ok2 || len(b) < 2 {
		return "", "", errMalformedBind
	}
	nf := int(binary.BigEndian.Uint16(b))
	b = b[2:]
	if len(b) < 2*nf+2 {
		return "", "", errMalformedBind
	}
	s.bindFmts = s.bindFmts[:0]
	for i := range nf {
		s.bindFmts = append(s.bindFmts, int16(binary.BigEndian.Uint16(b[2*i:])))
	}
	b = b[2*nf:]
	np := int(binary.BigEndian.Uint16(b))
	b = b[2:]
	s.bindVals = s.bindVals[:0]
	for range np {
		if len(b) < 4 {
			return "", "", errMalformedBind
		}
		l := int(int32(binary.BigEndian.Uint32(b)))
		b = b[4:]
		if l < 0 {
			s.bindVals = append(s.bindVals, nil)
			continue
		}
		if l > len(b) {
			return "", "", errMalformedBind
		}
		s.bindVals = append(s.bindVals, b[:l:l])
		b = b[l:]
	}
	return portal, stmt, nil
}

var errMalformedBind = fmt.Errorf("malformed Bind message")

// denySimple answers a denied simple Query (or FunctionCall): the injected
// query fails on the server, the backend loop sends the denial in its place.
func (s *session) denySimple(d policy.Decision, sql string, start time.Time) error {
	s.recordDenial(d, sql)
	s.queue.push(pending{kind: pendDenyQuery, start: start, deny: &d})
	return writeMsg(s.bw, 'Q', injectedQuery)
}

// denyExtended answers a denied Parse or Bind and skips the client's
// messages up to Sync, as the server does after an error.
func (s *session) denyExtended(d policy.Decision, sql string, start time.Time) error {
	s.recordDenial(d, sql)
	s.queue.push(pending{kind: pendDeny, start: start, deny: &d})
	s.skip = true
	return writeMsg(s.bw, 'B', injectedBind)
}

func (s *session) recordDenial(d policy.Decision, sql string) {
	s.log.Info("statement denied", "reason", d.Reason, "sqlstate", d.SQLState, "tables", d.Tables)
	if !s.srv.auditing() {
		return
	}
	ev := s.event(audit.KindStatement)
	ev.Verdict, ev.Reason, ev.SQLState = audit.VerdictDeny, d.Reason, d.SQLState
	ev.Statement, ev.FullStatement, ev.Tables = d.Statement, sql, d.Tables
	s.recordAsync(ev)
}

// recordStatement records an allowed statement before it is forwarded.
func (s *session) recordStatement(ref *stmtRef) error {
	if !s.srv.auditing() {
		return nil
	}
	s.auditRefs++
	ref.auditRef = s.auditRefs
	ev := s.event(audit.KindStatement)
	ev.Verdict, ev.Statement, ev.FullStatement, ev.Tables = audit.VerdictAllow, ref.statement, ref.full, ref.tables
	ev.Ref = ref.auditRef
	return s.srv.opts.Auditor.Record(context.Background(), ev)
}

// unavailable is the answer when the audit cannot take a statement's event.
func (s *session) unavailable(err error) policy.Decision {
	s.log.Warn("audit unavailable: statement refused", "error", err)
	return policy.Decision{SQLState: codeCannotConnectNow, Reason: "audit_unavailable",
		Message: "pgtenant: the audit trail is unavailable; statements are refused until it recovers",
		Hint:    "retry shortly"}
}

func (s *session) protocolError(msg string) error {
	ce := newClientError(codeProtocolViolation, "protocol", "%s", msg)
	s.fatal(ce)
	return ce
}

func verdict(d policy.Decision) string {
	if d.Allow {
		return audit.VerdictAllow
	}
	return audit.VerdictDeny
}

// awaitStatement makes sure the checker knows which statement the server
// holds under name before a Bind of it is checked: when name was parsed in an
// earlier batch whose replies have not arrived, it flushes and waits for them
// (rare: a client pipelining past its own Sync). Otherwise it costs a map
// lookup, no flush.
func (s *session) awaitStatement(name string) error {
	if n, wait := s.track.pendingParse(name); wait {
		if err := s.bw.Flush(); err != nil {
			return err
		}
		s.track.awaitParse(n)
	}
	s.track.apply(s.skips)
	return nil
}
