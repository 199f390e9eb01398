package proxy

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/jackc/pgerrcode"

	"github.com/pgtenant/pgtenant/tenancy"
)

// Messages injected in place of a denied one. Each makes the server raise an
// error at exactly that point of the stream, so the transaction fails and the
// rest of an extended batch is skipped as for any PostgreSQL error; the
// backend loop replaces the server's error with the denial.
var (
	// injectedQuery is a syntax error: ErrorResponse, then ReadyForQuery.
	injectedQuery = append([]byte("pgtenant_denied"), 0)
	// injectedBind fails whatever the session holds, before any portal
	// changes: it binds a reserved name no client can create (26000), and
	// even if that statement existed, its two parameter format codes for
	// zero parameters are a protocol error (08P01) PostgreSQL raises before
	// creating the portal.
	injectedBind = append(append([]byte{0}, "pgtenant.denied"...), 0, 0, 2, 0, 0, 0, 0, 0, 0, 0, 0)
)

// clientLoop reads the client's messages, decides statements, and forwards
// allowed ones to the backend. It returns nil when the client terminates.
func (s *session) clientLoop() error {
	for {
		if !s.cr.nextBuffered() {
			if err := s.flushBackend(); err != nil {
				return err
			}
			if s.cr.r.raw != nil && s.cr.r.err == nil && s.cr.wantNext() {
				if stop, err := s.serveClient(); stop {
					return err
				}
				continue
			}
			// Wait for the next batch here (TLS, or a message to stream),
			// two frames above the poller, not under header: an idle
			// client goroutine's stack must stay under a quarter of 4 KiB
			// for the GC to shrink it to 2 KiB (the idle-client memory
			// bound, TestFloodIdleClients; serveClient parks as shallow).
			s.cr.r.awaitInput()
		}
		if stop, err := s.clientMsg(); stop {
			return err
		}
	}
}

// serveClient runs the client loop inside one raw read of the client
// socket (connReader.serve) while every message fits the read buffer: once
// a batch's replies are out, the client goroutine parks at once instead of
// first trying a socket the client has, most of the time, not written to
// yet. It returns stop when the session ends (err nil for a client that
// terminated), else when the next message must be read the streaming way or
// a read failed (kept in the reader for clientLoop to meet).
func (s *session) serveClient() (stop bool, err error) {
	if s.serveStep == nil {
		s.serveStep = s.serveBatches // built once: an idle session parks in it
	}
	s.cr.r.serve(s.serveStep)
	stop, err = s.serveStop, s.serveErr
	s.serveStop, s.serveErr = false, nil
	return stop, err
}

// serveBatches is serveClient's handler: it handles the messages buffered
// whole, then flushes the batch and relays its replies; false (with
// serveStop and serveErr set) to leave serve.
func (s *session) serveBatches() bool {
	for s.cr.nextBuffered() {
		if s.serveStop, s.serveErr = s.clientMsg(); s.serveStop {
			return false
		}
	}
	if err := s.flushBackend(); err != nil {
		s.serveStop, s.serveErr = true, err
		return false
	}
	return s.cr.wantNext()
}

// clientMsg reads the next client message's header and handles the
// message; stop reports the session's end (err nil for a client that
// terminated or is gone).
func (s *session) clientMsg() (stop bool, err error) {
	if s.copyIn.awaiting && s.copyIn.mode != copyDropping {
		if err := s.awaitCopyAnswer(); err != nil {
			return true, err
		}
	}
	t, n, err := s.cr.header()
	if err != nil {
		if isClosedErr(err) {
			return true, nil
		}
		s.fatal(newClientError(pgerrcode.ProtocolViolation, "protocol", "%v", err))
		return true, err
	}
	if (t == 'S' || t == 'H') && n != 0 {
		// PostgreSQL fails a Sync or Flush with a body as an
		// extended-protocol error and skips to Sync: a reply nobody could
		// match, in COPY or not
		return true, s.protocolError("malformed Sync or Flush message")
	}
	if s.idle.Swap(false) && (t == 'Q' || t == 'P' || t == 'B') {
		// a new transaction may start: the admin console's PAUSE holds it
		s.srv.pause.wait(s.ctx.Done())
	}
	if s.skip && t != 'S' && t != 'X' {
		if _, err := s.cr.r.Discard(n); err != nil {
			return true, err
		}
		return false, nil
	}
	if s.copyIn.mode == copyReading && !s.copyIn.gate.serverReading() {
		// the server ended the COPY's Query on its own (an error in the
		// data): it reads messages as usual again, ignoring the COPY's rest
		s.copyIn.mode, s.copyIn.stream = copyIdle, nil
	}
	var herr error
	switch {
	case s.copyIn.mode != copyIdle: // the server is in COPY FROM STDIN (copyin.go)
		herr = s.onCopyModeMsg(t, n)
	case s.tx != nil:
		herr = s.handlePooledMsg(t, n)
	default:
		herr = s.handleClientMsg(t, n)
	}
	if errors.Is(herr, errClientTerminated) {
		return true, nil
	}
	return herr != nil, herr
}

// testHookBatchSent, when set (tests only), runs after flushSession has
// sent a batch, before the replies are read: the moment a reply can be
// readable before the relay reads (or, when the relay's read sent it,
// before that read parks).
var testHookBatchSent func()

// flushSession writes what the client loop buffered for the backend
// (session mode) and, when no backend goroutine runs, relays the replies
// itself (relaySession). A failed write also takes the backend, so what the
// server said before it went away (or that it went) reaches the client.
func (s *session) flushSession() error {
	if s.bw.buffered() == 0 && s.queue.empty() {
		return nil // nothing to send, nothing to relay
	}
	// Take the backend socket before the batch leaves: the reply can come at
	// once, and a watcher that saw it while the session was still parked
	// would start a backend goroutine, which a busy session then keeps (it
	// parks only once idle), relaying every batch on two goroutines.
	st := s.bstate.Load()
	took := (st == bFree || st == bParked) && s.bstate.CompareAndSwap(st, bInline)
	if took && s.sendsFromRelay() {
		// the relay's first read sends the batch (connReader.sendFirst)
		s.br.r.sendFirst = s.bw
		return s.relaySession()
	}
	werr := s.bw.Flush()
	if testHookBatchSent != nil {
		testHookBatchSent()
	}
	if !took {
		return werr // a backend goroutine relays, or the session ends
	}
	if werr == nil && s.queue.empty() {
		// nothing to relay: hand the socket back as it was
		s.freeBackend(bInline)
		if st == bParked {
			s.parkFree() // re-arms the watcher, whose event may be spent
		}
		return nil
	}
	if werr != nil {
		// not inline: read to the end, whatever is in flight
		err := s.backendLoop()
		s.bstate.Store(bDone)
		s.close()
		s.backendDone <- err
		return errAwaitBackend
	}
	return s.relaySession()
}

// sendsFromRelay reports whether the batch the client loop buffered can be
// sent by the first read of its inline relay: both ends are plain sockets,
// nothing the backend sent is buffered (the relay's first step is then that
// read), and the batch ends in a Sync or Query the server answers without
// more client input.
func (s *session) sendsFromRelay() bool {
	skipping := s.skipToSync
	if s.tx != nil {
		skipping = s.tx.skipping
	}
	return s.br.r.raw != nil && s.bw.raw != nil && s.br.r.Buffered() == 0 &&
		s.bw.buffered() > 0 && !s.queue.empty() && s.queue.settles(skipping)
}

// handlePooledMsg handles one client message of a transaction-mode session.
func (s *session) handlePooledMsg(t byte, n int) error {
	local, err := s.beginPooled(t, n)
	if local || err != nil {
		return err
	}
	err = s.handleClientMsg(t, n)
	s.endPooled(t)
	return err
}

// handleClientMsg handles one message whose header has been read.
func (s *session) handleClientMsg(t byte, n int) error {
	s.track.apply(s.checker)
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
		return s.onDescribe(n)
	case 'S':
		s.syncsSent++
		s.queue.push(pending{kind: pendSync})
		s.checker.Sent('S')
		s.skip = false
	case 'H':
	case 'd', 'c', 'f':
		// outside COPY the server ignores them: so does pgtenant
		_, err := s.cr.r.Discard(n)
		return err
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
		d := tenancy.Decision{SQLState: pgerrcode.InsufficientPrivilege, Reason: "function_call",
			Message: "pgtenant: the FunctionCall protocol message is not allowed",
			Hint:    "call the function from a SQL statement instead"}
		s.decided(d)
		s.checker.Sent('Q') // the injected Query is a batch boundary
		return s.denySimple(d, "", time.Now())
	default:
		ce := newClientError(pgerrcode.ProtocolViolation, "protocol", "invalid frontend message type %d", t)
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
	ce := newClientError(pgerrcode.InvalidAuthorizationSpecification, "token_expired", "the token has expired; reconnect with a new one")
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
	if n == 0 || bytes.IndexByte(body, 0) != n-1 {
		return s.protocolError("malformed Query message")
	}
	if s.expired() {
		return errAwaitBackend
	}
	start := time.Now()
	sql := string(body[:n-1])
	d, err := s.decide(func() tenancy.Decision { return s.checker.CheckQuery(sql) })
	if err != nil {
		return err
	}
	s.checker.Sent('Q')
	s.decided(d)
	if !d.Allow {
		return s.denySimple(d, sql, start)
	}
	tk, refusal := s.admit()
	if refusal != nil {
		s.track.resolveAll(d.Changes, tenancy.Skipped)
		refusal.Statement, refusal.Tables = d.Statement, d.Tables
		return s.denySimple(*refusal, sql, start)
	}
	ref := &stmtRef{statement: d.Statement, full: sql, tables: d.Tables}
	if d.Rewritten != "" { // policy.unscoped: rewrite: the server runs (and the audit records) the rewrite
		body = append([]byte(d.Rewritten), 0)
		ref.full, ref.rewritten = d.Rewritten, true
	}
	if err := s.recordStatement(ref); err != nil {
		tk.end()
		s.track.resolveAll(d.Changes, tenancy.Skipped)
		return s.denySimple(s.unavailable(err), sql, start)
	}
	// the client loop waits for the server's answer to a Query that may
	// start a COPY FROM STDIN before it reads on (copyin.go)
	mayCopy := (d.Copy != nil || mayStartCopy(body)) && s.copyIn.begin(d.Copy, d.Statement, s.syncsSent)
	s.queue.push(pending{kind: pendQuery, start: start, overhead: time.Since(start), stmt: ref, changes: d.Changes, ticket: tk, sets: d.Sets, mayCopy: mayCopy})
	s.armTimeout(tk)
	return writeMsg(s.bw, 'Q', body)
}

func (s *session) onParse(n int) error {
	body, err := s.cr.readBody(n)
	if err != nil {
		return err
	}
	name, rest, ok1 := cstring(body)
	queryText, rest, ok2 := cstringBytes(rest)
	if !ok1 || !ok2 || len(rest) < 2 || len(rest) != 2+4*int(binary.BigEndian.Uint16(rest)) {
		return s.protocolError("malformed Parse message")
	}
	query := s.parsedText(queryText)
	oids := make([]uint32, binary.BigEndian.Uint16(rest))
	for i := range oids {
		oids[i] = binary.BigEndian.Uint32(rest[2+4*i:])
	}
	if s.expired() {
		return errAwaitBackend
	}
	start := time.Now()
	var d tenancy.Decision
	if strings.HasPrefix(name, tenancy.ReservedPrefix) {
		d = reservedName("statement", "-- Parse of a reserved statement name", query)
	} else if d, err = s.decide(func() tenancy.Decision { return s.checker.CheckParse(name, query, oids) }); err != nil {
		return err
	}
	s.decided(d)
	if !d.Allow {
		return s.denyExtended(d, query, start)
	}
	if d.Rewritten != "" { // policy.unscoped: rewrite: same name and parameter types, rewritten text
		body = rewriteParse(name, d.Rewritten, rest)
	}
	if s.tx != nil {
		if name != "" {
			return s.parsePooled(name, body, d.Changes)
		}
		s.parseUnnamed(body)
	}
	s.queue.push(pending{kind: pendParse, changes: d.Changes})
	return writeMsg(s.bw, 'P', body)
}

// parsedText returns a Parse's query text as a string, the previous Parse's
// when it is the same: drivers parse the same unnamed statements again and
// again, and the text then costs no copy (client loop).
func (s *session) parsedText(q []byte) string {
	if string(q) != s.lastParsed { // compared without a copy
		s.lastParsed = string(q)
	}
	return s.lastParsed
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
	start := time.Now()
	var d tenancy.Decision
	if strings.HasPrefix(portal, tenancy.ReservedPrefix) {
		d = reservedName("portal", "-- Bind to a reserved portal name", "")
	} else if d, err = s.decide(func() tenancy.Decision { return s.checker.CheckBind(stmt, s.bindFmts, s.bindVals) }); err != nil {
		return err
	}
	s.decided(d)
	if !d.Allow {
		return s.denyExtended(d, d.Text, start)
	}
	// the audit records the statement the checker checked: the one the
	// server binds
	ref := &stmtRef{statement: d.Statement, full: d.Text, tables: d.Tables, rewritten: d.Rewritten != ""}
	if err := s.recordStatement(ref); err != nil {
		s.track.resolveAll(d.Changes, tenancy.Skipped)
		return s.denyExtended(s.unavailable(err), d.Text, start)
	}
	var srv []byte // transaction mode: the statement's server-side name, nil when unchanged
	if s.tx != nil {
		if srv, err = s.pooledStatement(stmt); err != nil {
			return err
		}
	}
	s.queue.push(pending{kind: pendBind, portal: portal, stmt: ref, changes: d.Changes, sets: d.Sets})
	s.lastBind.portal, s.lastBind.ref, s.lastBind.overhead = portal, ref, time.Since(start)
	if srv != nil {
		return writeRenamed(s.bw, 'B', body[:len(portal)+1], srv, body[len(portal)+1+len(stmt)+1:])
	}
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
	s.checker.Sent('E')
	start := time.Now()
	tk, refusal := s.admit()
	if refusal != nil {
		full := ""
		if s.lastBind.ref != nil && s.lastBind.portal == portal {
			ref := s.lastBind.ref
			refusal.Statement, refusal.Tables, full = ref.statement, ref.tables, ref.full
		}
		return s.denyExtended(*refusal, full, start)
	}
	// The extended protocol's check and audit ran at Bind: their time is
	// this Execute's overhead (a portal's later Executes add none).
	overhead := time.Since(start)
	if s.lastBind.portal == portal {
		overhead += s.lastBind.overhead
		s.lastBind.overhead = 0
	}
	s.queue.push(pending{kind: pendExecute, start: start, overhead: overhead, portal: portal, ticket: tk})
	s.armTimeout(tk)
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
		s.queue.push(pending{kind: pendClose, changes: []tenancy.Change{s.checker.CloseStatement(name)}})
	case 'P':
		s.checker.Sent('C')
		s.queue.push(pending{kind: pendClose, portal: name, portalClose: true})
	default:
		// the server fails it (08P01): nothing changes, but it skips to Sync
		s.checker.Sent('C')
		s.queue.push(pending{kind: pendClose})
	}
	if s.tx != nil {
		if body, err = s.describeOrClosePooled('C', body, name); err != nil {
			return err
		}
	}
	return writeMsg(s.bw, 'C', body)
}

// onDescribe forwards a Describe; a Describe of a statement learns the
// types the server gives its parameters (ParameterDescription).
func (s *session) onDescribe(n int) error {
	body, err := s.cr.readBody(n)
	if err != nil {
		return err
	}
	name, _, ok := cstring(body[min(1, len(body)):])
	if len(body) < 2 || !ok {
		return s.protocolError("malformed Describe message")
	}
	p := pending{kind: pendDescribe}
	if body[0] == 'S' {
		p.changes = []tenancy.Change{s.checker.DescribeStatement(name)}
	} else {
		// a portal's Describe fails when it does not exist
		s.checker.Sent('D')
	}
	if s.tx != nil {
		// before the push: an injected Parse goes ahead of the Describe
		if body, err = s.describeOrClosePooled('D', body, name); err != nil {
			return err
		}
	}
	s.queue.push(p)
	return writeMsg(s.bw, 'D', body)
}

// reservedName is the denial of a client's use of a name pgtenant reserves.
func reservedName(what, stmt, text string) tenancy.Decision {
	return tenancy.Decision{SQLState: pgerrcode.InsufficientPrivilege, Reason: "reserved_name", Statement: stmt, Text: text,
		Message: fmt.Sprintf("pgtenant: %s names starting with %q are reserved", what, tenancy.ReservedPrefix),
		Hint:    "choose another name"}
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
func (s *session) denySimple(d tenancy.Decision, sql string, start time.Time) error {
	s.recordDenial(d, sql)
	s.queue.push(pending{kind: pendDenyQuery, start: start, deny: &d})
	return writeMsg(s.bw, 'Q', injectedQuery)
}

// denyExtended answers a denied Parse or Bind and skips the client's
// messages up to Sync, as the server does after an error.
func (s *session) denyExtended(d tenancy.Decision, sql string, start time.Time) error {
	s.recordDenial(d, sql)
	s.queue.push(pending{kind: pendDeny, start: start, deny: &d})
	s.skip = true
	return writeMsg(s.bw, 'B', injectedBind)
}

func (s *session) recordDenial(d tenancy.Decision, sql string) {
	s.logger().Info("statement denied", "reason", d.Reason, "sqlstate", d.SQLState, "tables", d.Tables)
	if !s.srv.auditing() || d.Reason == reasonAuditUnavailable {
		// the audit just failed to take an event: waiting on it again
		// would only hold the session longer
		return
	}
	ev := s.event(tenancy.KindStatement)
	ev.Verdict, ev.Reason, ev.SQLState = tenancy.VerdictDeny, d.Reason, d.SQLState
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
	ev := s.event(tenancy.KindStatement)
	ev.Verdict, ev.Statement, ev.FullStatement, ev.Tables = tenancy.VerdictAllow, ref.statement, ref.full, ref.tables
	ev.Ref = ref.auditRef
	if ref.rewritten {
		ev.Rewritten, ev.Reason = true, tenancy.ReasonRewritten
	}
	return s.record(s.ctx, ev)
}

// reasonAuditUnavailable is the reason of a statement refused because the
// audit could not take its event.
const reasonAuditUnavailable = "audit_unavailable"

// unavailable is the answer when the audit cannot take a statement's event.
func (s *session) unavailable(err error) tenancy.Decision {
	s.logger().Warn("audit unavailable: statement refused", "error", err)
	return tenancy.Decision{SQLState: pgerrcode.CannotConnectNow, Reason: reasonAuditUnavailable,
		Message: "pgtenant: the audit trail is unavailable; statements are refused until it recovers",
		Hint:    "retry shortly"}
}

func (s *session) protocolError(msg string) error {
	ce := newClientError(pgerrcode.ProtocolViolation, "protocol", "%s", msg)
	s.fatal(ce)
	return ce
}

func verdict(d tenancy.Decision) string {
	if d.Allow {
		return tenancy.VerdictAllow
	}
	return tenancy.VerdictDeny
}
