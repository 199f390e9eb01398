package proxy

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgerrcode"
	"github.com/jackc/pgx/v5/pgproto3"

	"github.com/pgtenant/pgtenant/auth"
	"github.com/pgtenant/pgtenant/config"
	"github.com/pgtenant/pgtenant/tenancy"
)

// FuzzSession drives an authenticated session with arbitrary client bytes
// against a fake backend that answers as PostgreSQL would. Invariants: no
// panic; the session ends once the input is exhausted; the client receives
// only well-formed backend messages; no denied text reaches the backend; the
// client gets one ReadyForQuery per Query or Sync the backend processed
// (fewer only when the session ended with FATAL); the client never sees the
// server's error for an injected message; and a session that went quiet has
// no reply outstanding in the pending queue.

// fuzzDenyMarker makes fuzzChecker deny a statement or bound value.
const fuzzDenyMarker = "DENYME"

// fuzzChecker denies any statement text or bound value holding the marker.
type fuzzChecker struct{}

func fuzzDecision(s string) tenancy.Decision {
	if strings.Contains(s, fuzzDenyMarker) {
		return tenancy.Decision{SQLState: pgerrcode.InsufficientPrivilege, Reason: "fuzz_marker",
			Message: "pgtenant: fuzz marker denied", Hint: "drop the marker"}
	}
	return tenancy.Decision{Allow: true}
}

func (fuzzChecker) CheckQuery(sql string) tenancy.Decision { return fuzzDecision(sql) }
func (fuzzChecker) CheckParse(_, sql string, _ []uint32) tenancy.Decision {
	return fuzzDecision(sql)
}
func (fuzzChecker) CheckBind(_ string, _ []int16, values [][]byte) tenancy.Decision {
	for _, v := range values {
		if d := fuzzDecision(string(v)); !d.Allow {
			return d
		}
	}
	return tenancy.Decision{Allow: true}
}
func (fuzzChecker) CloseStatement(string) tenancy.Change      { return tenancy.Change{} }
func (fuzzChecker) DescribeStatement(string) tenancy.Change   { return tenancy.Change{} }
func (fuzzChecker) Sent(byte)                                 {}
func (fuzzChecker) Resolve(uint64, tenancy.Outcome, []uint32) {}

// memPipe is one direction of an in-memory connection: writes never block,
// and a reader waiting on an empty pipe is visible to the harness, so it can
// tell when every party is waiting for input (the session is quiet) without
// sleeping for a fixed time.
type memPipe struct {
	mu      sync.Mutex
	cond    *sync.Cond
	buf     bytes.Buffer
	waiting int
	closed  bool
}

func newMemPipe() *memPipe {
	p := &memPipe{}
	p.cond = sync.NewCond(&p.mu)
	return p
}

func (p *memPipe) read(b []byte) (int, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for p.buf.Len() == 0 && !p.closed {
		p.waiting++
		p.cond.Wait()
		p.waiting--
	}
	if p.buf.Len() == 0 {
		return 0, io.EOF
	}
	return p.buf.Read(b)
}

func (p *memPipe) write(b []byte) (int, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return 0, net.ErrClosed
	}
	if p.buf.Len()+len(b) > 8<<20 {
		return 0, errors.New("memPipe: over 8 MiB unread")
	}
	p.buf.Write(b)
	p.cond.Broadcast()
	return len(b), nil
}

func (p *memPipe) close() {
	p.mu.Lock()
	p.closed = true
	p.cond.Broadcast()
	p.mu.Unlock()
}

// idleReader reports whether a reader waits on the pipe with nothing in it.
func (p *memPipe) idleReader() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.waiting > 0 && p.buf.Len() == 0
}

// memConn is one end of a pair of memPipes.
type memConn struct {
	r, w *memPipe
	once sync.Once
}

// memConnPair returns the two ends of an in-memory connection.
func memConnPair() (*memConn, *memConn) {
	a, b := newMemPipe(), newMemPipe()
	return &memConn{r: a, w: b}, &memConn{r: b, w: a}
}

func (c *memConn) Read(p []byte) (int, error)  { return c.r.read(p) }
func (c *memConn) Write(p []byte) (int, error) { return c.w.write(p) }
func (c *memConn) Close() error {
	c.once.Do(func() { c.r.close(); c.w.close() })
	return nil
}
func (c *memConn) LocalAddr() net.Addr              { return sentAddr{} }
func (c *memConn) RemoteAddr() net.Addr             { return sentAddr{} }
func (c *memConn) SetDeadline(time.Time) error      { return nil }
func (c *memConn) SetReadDeadline(time.Time) error  { return nil }
func (c *memConn) SetWriteDeadline(time.Time) error { return nil }

// scriptConn is the client side of a fuzzed session: Reads return the
// script, then wait for more (as a client waiting for replies would) until
// the harness feeds more or closes; Writes are kept, up to a cap.
type scriptConn struct {
	in   *memPipe
	once sync.Once

	mu     sync.Mutex
	out    bytes.Buffer
	closed bool
}

func newScriptConn(script []byte) *scriptConn {
	c := &scriptConn{in: newMemPipe()}
	_, _ = c.in.write(script)
	return c
}

func (c *scriptConn) Read(p []byte) (int, error) {
	n, err := c.in.read(p)
	if errors.Is(err, io.EOF) {
		err = net.ErrClosed // the harness closed the connection
	}
	return n, err
}

func (c *scriptConn) Write(p []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return 0, net.ErrClosed
	}
	if c.out.Len()+len(p) > 8<<20 {
		return 0, errors.New("scriptConn: the proxy wrote over 8 MiB")
	}
	return c.out.Write(p)
}

func (c *scriptConn) Close() error {
	c.once.Do(func() {
		c.mu.Lock()
		c.closed = true
		c.mu.Unlock()
		c.in.close()
	})
	return nil
}

func (c *scriptConn) output() []byte {
	c.mu.Lock()
	defer c.mu.Unlock()
	return bytes.Clone(c.out.Bytes())
}

func (c *scriptConn) LocalAddr() net.Addr              { return sentAddr{} }
func (c *scriptConn) RemoteAddr() net.Addr             { return sentAddr{} }
func (c *scriptConn) SetDeadline(time.Time) error      { return nil }
func (c *scriptConn) SetReadDeadline(time.Time) error  { return nil }
func (c *scriptConn) SetWriteDeadline(time.Time) error { return nil }

// fakeBackend answers the proxy's backend-side messages as PostgreSQL 15
// would, closely enough for the proxy's reply matching: prepared statements
// and portals, errors that start skip-until-Sync, the injected denials.
type fakeBackend struct {
	conn    net.Conn
	r       *bufio.Reader
	w       *bufio.Writer
	stmts   map[string]bool
	portals map[string]bool
	skip    bool
	copyIn  bool // in COPY FROM STDIN: reading CopyData

	// results, read after the backend's goroutine ended
	ready      int      // ReadyForQuery messages sent
	violations []string // denied text that reached the backend
	fatal      bool     // the backend ended the session with FATAL
	terminated bool     // the client's Terminate reached the backend
}

// Texts of the server's errors for the proxy's injected messages: the client
// must never see them.
const (
	fakeInjectedQueryError = "syntax error at or near \"pgtenant_denied\""
	fakeInjectedBindError  = "prepared statement \"pgtenant.denied\" does not exist"
)

func newFakeBackend(conn net.Conn) *fakeBackend {
	return &fakeBackend{conn: conn, r: bufio.NewReader(conn), w: bufio.NewWriter(conn),
		stmts: map[string]bool{}, portals: map[string]bool{}}
}

func (b *fakeBackend) send(msgs ...pgproto3.BackendMessage) {
	for _, m := range msgs {
		buf, err := m.Encode(nil)
		if err != nil {
			panic(err)
		}
		_, _ = b.w.Write(buf)
	}
}

func fakeError(code, msg string) *pgproto3.ErrorResponse {
	return &pgproto3.ErrorResponse{Severity: "ERROR", SeverityUnlocalized: "ERROR", Code: code, Message: msg}
}

var fakeRow = []pgproto3.BackendMessage{
	&pgproto3.RowDescription{Fields: []pgproto3.FieldDescription{{Name: []byte("x"), DataTypeOID: 25, DataTypeSize: -1, TypeModifier: -1}}},
	&pgproto3.DataRow{Values: [][]byte{[]byte("row")}},
	&pgproto3.CommandComplete{CommandTag: []byte("SELECT 1")},
}

// extError sends an error for an extended-protocol message and starts
// skipping until Sync.
func (b *fakeBackend) extError(code, msg string) {
	b.send(fakeError(code, msg))
	b.skip = true
}

func (b *fakeBackend) readyForQuery() {
	b.send(&pgproto3.ReadyForQuery{TxStatus: 'I'})
	b.ready++
}

func (b *fakeBackend) protocolFatal(msg string) {
	b.send(&pgproto3.ErrorResponse{Severity: "FATAL", SeverityUnlocalized: "FATAL", Code: "08P01", Message: msg})
	b.fatal = true
}

func (b *fakeBackend) checkText(what string, text []byte) {
	if bytes.Contains(text, []byte(fuzzDenyMarker)) {
		b.violations = append(b.violations, fmt.Sprintf("%s %q", what, truncate(string(text), 80)))
	}
}

// run serves until the proxy closes the connection or the session ends.
func (b *fakeBackend) run() {
	defer b.conn.Close()
	for {
		if b.r.Buffered() == 0 {
			if b.w.Flush() != nil {
				return
			}
		}
		var h [5]byte
		if _, err := io.ReadFull(b.r, h[:]); err != nil {
			return
		}
		n := int(int32(binary.BigEndian.Uint32(h[1:]))) - 4
		if n < 0 || n > 1<<30 {
			b.protocolFatal("invalid message length")
			_ = b.w.Flush()
			return
		}
		body := make([]byte, n)
		if _, err := io.ReadFull(b.r, body); err != nil {
			return
		}
		if !b.handle(h[0], body) {
			_ = b.w.Flush()
			return
		}
	}
}

// handleCopy answers a message in COPY FROM STDIN as CopyGetData does: it
// ignores Sync and Flush and fails the COPY on any other non-COPY message
// (consuming it); CopyData holding "copy_err" fails it as bad data would.
func (b *fakeBackend) handleCopy(t byte, body []byte) bool {
	switch t {
	case 'd':
		if !bytes.Contains(body, []byte("copy_err")) {
			return true
		}
		b.send(fakeError("22P04", "extra data after last expected column"))
	case 'c':
		b.send(&pgproto3.CommandComplete{CommandTag: []byte("COPY 1")})
	case 'f':
		b.send(fakeError("57014", "COPY from stdin failed"))
	case 'S', 'H':
		return true
	case 'X':
		b.terminated = true
		return false
	default:
		b.send(fakeError("08P01", "unexpected message type during COPY from stdin"))
	}
	b.copyIn = false
	b.readyForQuery()
	return true
}

// handle answers one message; false ends the session.
func (b *fakeBackend) handle(t byte, body []byte) bool {
	// checked even when skipped: a denied text must not arrive at all
	switch t {
	case 'Q':
		b.checkText("Q", body)
	case 'P':
		// the statement's text, not its name (which fuzzChecker does not check)
		if i := bytes.IndexByte(body, 0); i >= 0 {
			b.checkText("P", body[i+1:])
		}
	}
	if b.copyIn {
		return b.handleCopy(t, body)
	}
	switch t {
	case 'S':
		b.skip = false
		if len(body) != 0 { // pq_getmsgend; Sync is not an extended message
			b.send(fakeError("08P01", "invalid message format"))
		}
		b.readyForQuery()
		return true
	case 'X':
		b.terminated = true
		return false
	}
	if b.skip {
		return true
	}
	switch t {
	case 'Q':
		q, rest, ok := cstring(body)
		switch {
		case !ok || len(rest) != 0:
			b.send(fakeError("08P01", "invalid message format"))
		case q == "pgtenant_denied":
			b.send(fakeError("42601", fakeInjectedQueryError))
		case strings.TrimSpace(q) == "":
			b.send(&pgproto3.EmptyQueryResponse{})
		case strings.Contains(q, "terminate_me"): // as pg_terminate_backend
			b.send(&pgproto3.ErrorResponse{Severity: "FATAL", SeverityUnlocalized: "FATAL", Code: "57P01",
				Message: "terminating connection due to administrator command"})
			b.fatal = true
			return false
		case strings.Contains(q, "fail"):
			b.send(fakeError("22012", "division by zero"))
		case strings.Contains(q, "copy_out"):
			b.send(&pgproto3.CopyOutResponse{}, &pgproto3.CopyData{Data: []byte("1\n")}, &pgproto3.CopyDone{},
				&pgproto3.CommandComplete{CommandTag: []byte("COPY 1")})
		case strings.Contains(q, "copy_in"):
			b.send(&pgproto3.CopyInResponse{})
			b.copyIn = true
			return true
		case strings.Contains(q, "notice"):
			b.send(&pgproto3.NoticeResponse{Severity: "NOTICE", Code: "00000", Message: "hello"})
			b.send(fakeRow...)
		default:
			b.send(fakeRow...)
		}
		b.readyForQuery()
	case 'P':
		name, rest, ok1 := cstring(body)
		_, rest, ok2 := cstring(rest)
		if !ok1 || !ok2 || len(rest) < 2 {
			b.protocolFatal("invalid Parse message")
			return false
		}
		if name != "" && b.stmts[name] {
			b.extError("42P05", "prepared statement already exists")
			return true
		}
		b.stmts[name] = true
		b.send(&pgproto3.ParseComplete{})
	case 'B':
		portal, stmt, values, ok := fakeDecodeBind(body)
		for _, v := range values {
			b.checkText("Bind value", v) // as PostgreSQL reads the values
		}
		switch {
		case stmt == "pgtenant.denied":
			b.extError("26000", fakeInjectedBindError)
		case !ok:
			b.extError("08P01", "invalid Bind message format")
		case !b.stmts[stmt]:
			b.extError("26000", "prepared statement does not exist")
		case portal != "" && b.portals[portal]:
			b.extError("42P03", "cursor already exists")
		default:
			b.portals[portal] = true
			b.send(&pgproto3.BindComplete{})
		}
	case 'D':
		if len(body) < 2 {
			b.extError("08P01", "invalid message format")
			return true
		}
		name, _, ok := cstring(body[1:])
		switch {
		case !ok || (body[0] != 'S' && body[0] != 'P'):
			b.extError("08P01", "invalid DESCRIBE message subtype")
		case body[0] == 'S' && b.stmts[name]:
			b.send(&pgproto3.ParameterDescription{}, fakeRow[0])
		case body[0] == 'P' && b.portals[name]:
			b.send(fakeRow[0])
		default:
			b.extError("26000", "does not exist")
		}
	case 'E':
		portal, _, ok := cstring(body)
		switch {
		case !ok:
			b.protocolFatal("invalid Execute message")
			return false
		case !b.portals[portal]:
			b.extError("34000", "portal does not exist")
		default:
			b.send(fakeRow[1:]...)
		}
	case 'C':
		if len(body) < 2 || (body[0] != 'S' && body[0] != 'P') {
			b.extError("08P01", "invalid CLOSE message subtype")
			return true
		}
		name, _, _ := cstring(body[1:])
		if body[0] == 'S' {
			delete(b.stmts, name)
		} else {
			delete(b.portals, name)
		}
		b.send(&pgproto3.CloseComplete{})
	case 'H':
		if len(body) != 0 {
			b.extError("08P01", "invalid message format")
			return true
		}
		_ = b.w.Flush()
	case 'd', 'c', 'f':
		// Ignored outside COPY, as PostgreSQL does.
	default:
		b.protocolFatal(fmt.Sprintf("invalid frontend message type %d", t))
		return false
	}
	return true
}

// fakeDecodeBind reads a Bind body as PostgreSQL's exec_bind_message does:
// names, parameter formats, values, result formats, and nothing after.
func fakeDecodeBind(b []byte) (portal, stmt string, values [][]byte, ok bool) {
	portal, b, ok1 := cstring(b)
	stmt, b, ok2 := cstring(b)
	if !ok1 || !ok2 {
		return portal, stmt, nil, false
	}
	u16 := func() (int, bool) {
		if len(b) < 2 {
			return 0, false
		}
		v := int(binary.BigEndian.Uint16(b))
		b = b[2:]
		return v, true
	}
	nf, ok := u16()
	if !ok || len(b) < 2*nf {
		return portal, stmt, nil, false
	}
	b = b[2*nf:]
	np, ok := u16()
	if !ok {
		return portal, stmt, nil, false
	}
	for range np {
		if len(b) < 4 {
			return portal, stmt, values, false
		}
		l := int(int32(binary.BigEndian.Uint32(b)))
		b = b[4:]
		if l < 0 {
			values = append(values, nil)
			continue
		}
		if l > len(b) {
			return portal, stmt, values, false
		}
		values = append(values, b[:l])
		b = b[l:]
	}
	nr, ok := u16()
	if !ok || len(b) != 2*nr {
		return portal, stmt, values, false
	}
	return portal, stmt, values, true
}

// fuzzSessionServer is a Server for sessions built by runFuzzSession.
func fuzzSessionServer(tb testing.TB) *Server {
	tb.Helper()
	cfg := config.Default()
	cfg.Auth.Secret = []byte(fuzzSecret)
	cfg.Audit.Disabled = true
	cfg.AdminListen = ""
	cfg.Limits.IdleTimeout = 0
	cfg.Limits.MaxMessageBytes = 1 << 20 // the default 64 MiB only makes lying lengths slower
	cfg.Regions = map[string]config.Region{
		"eu-west": {Host: "127.0.0.1", Port: 1, User: "app", SSLMode: "disable", ConnectTimeout: time.Second},
	}
	v, err := auth.NewVerifier(cfg.Auth)
	if err != nil {
		tb.Fatal(err)
	}
	s, err := New(Options{Config: cfg, Authenticator: v, Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
		Checkers: func(auth.Principal) StatementChecker { return fuzzChecker{} }})
	if err != nil {
		tb.Fatal(err)
	}
	return s
}

// fuzzSessionResult is what a fuzzed session produced.
type fuzzSessionResult struct {
	out        []byte   // everything the client received
	ready      int      // ReadyForQuery messages the backend sent
	violations []string // denied text seen by the backend
	backendEnd bool     // the backend ended the session with FATAL
	terminated bool     // the client ended the session with Terminate
	finalSync  bool     // the harness sent a closing Sync after the script
	queueLeft  int      // pending entries left when the session went quiet after it (-1: it ended)
}

// runFuzzSession runs one session after authentication as handle would,
// with script as the client's input and a fakeBackend as the region.
func runFuzzSession(t *testing.T, srv *Server, script []byte) fuzzSessionResult {
	t.Helper()
	client := newScriptConn(script)
	bconn, backendEnd := memConnPair()
	fb := newFakeBackend(backendEnd)
	ss := newFuzzSession(srv, client, bconn)
	if err := ss.sendStartupReply(); err != nil {
		t.Fatal(err)
	}
	backendDone := make(chan struct{})
	go func() { defer close(backendDone); fb.run() }()
	sessionDone := make(chan struct{})
	go func() { defer close(sessionDone); ss.run() }()

	res := fuzzSessionResult{queueLeft: -1}
	deadline := time.Now().Add(10 * time.Second)
	// Quiet: the proxy waits for the client with all input read, and both
	// relay directions wait on empty pipes. Only these three goroutines
	// write, so nothing moves until the harness feeds the client more.
	quiet := func() bool {
		return client.in.idleReader() && bconn.w.idleReader() && bconn.r.idleReader()
	}
	waitQuiet := func() bool {
		for {
			select {
			case <-sessionDone:
				return false
			default:
			}
			if quiet() {
				return true
			}
			if time.Now().After(deadline) {
				t.Fatalf("session neither ended nor went quiet within 10s for input %q", truncate(string(script), 200))
			}
			time.Sleep(50 * time.Microsecond)
		}
	}
	// Once the script is consumed, a client that ends it with Sync (after
	// a CopyDone, in COPY) gets every outstanding reply: then nothing may be
	// left pending.
	if waitQuiet() && atBoundary(script) {
		if fb.copyIn {
			// the script left a COPY open, whose Syncs the server ignores:
			// end it first (read while the backend waits for input)
			_, _ = client.in.write(fuzzMsg(&pgproto3.CopyDone{}))
		}
		_, _ = client.in.write(fuzzMsg(&pgproto3.Sync{}))
		res.finalSync = true
		if waitQuiet() {
			res.queueLeft = queueLen(&ss.queue)
		}
	}
	_ = client.Close() // the client hangs up
	select {
	case <-sessionDone:
	case <-time.After(10 * time.Second):
		t.Fatalf("session did not end after the client closed, input %q", truncate(string(script), 200))
	}
	select {
	case <-backendDone:
	case <-time.After(10 * time.Second):
		t.Fatal("the backend connection was not closed when the session ended")
	}
	res.out = client.output()
	res.ready, res.violations, res.backendEnd, res.terminated = fb.ready, fb.violations, fb.fatal, fb.terminated
	return res
}

// newFuzzSession builds an authenticated session as authenticate would,
// for account 42, with fuzzChecker as its policy.
func newFuzzSession(srv *Server, client net.Conn, bconn net.Conn) *session {
	ss := &session{
		srv: srv, rt: srv.runtime(), id: "fuzz", connID: "fuzz", client: client, addr: "",
		principal: auth.Principal{Account: "42", Region: "eu-west", Subject: "fuzz"},
		region:    &region{name: "eu-west"},
		cr:        &msgReader{r: newConnReader(client)},
		cw:        newConnWriter(client),
	}
	ss.attach(&backendConn{conn: bconn}, fuzzChecker{})
	return ss
}

func queueLen(q *pendingQueue) int {
	q.mu.Lock()
	defer q.mu.Unlock()
	return len(q.items) - q.head
}

// checkFuzzSession checks a session's result against the invariants.
func checkFuzzSession(t *testing.T, script []byte, res fuzzSessionResult) {
	t.Helper()
	in := truncate(string(script), 300)
	if len(res.violations) > 0 {
		t.Fatalf("denied text reached the backend: %v (input %q)", res.violations, in)
	}
	ready, fatal := 0, false
	for out := res.out; len(out) > 0; {
		// Frame each message first: pgproto3 reports a clean end of input
		// and a truncated message alike.
		if len(out) < 5 {
			t.Fatalf("client received a truncated message header %q (input %q)", out, in)
		}
		n := int(binary.BigEndian.Uint32(out[1:5]))
		if n < 4 || n > len(out)-1 {
			t.Fatalf("client received a message %q with length %d of %d bytes left (input %q)", out[0], n, len(out)-1, in)
		}
		fe := pgproto3.NewFrontend(bytes.NewReader(out[:1+n]), io.Discard)
		out = out[1+n:]
		msg, err := fe.Receive()
		if err != nil {
			t.Fatalf("client received a malformed message: %v (input %q)", err, in)
		}
		if fatal {
			t.Fatalf("client received %T after a FATAL error (input %q)", msg, in)
		}
		switch m := msg.(type) {
		case *pgproto3.ReadyForQuery:
			ready++
		case *pgproto3.ErrorResponse:
			if m.Message == fakeInjectedQueryError || m.Message == fakeInjectedBindError {
				t.Fatalf("client received the server's error for an injected message: %q (input %q)", m.Message, in)
			}
			fatal = m.Severity == "FATAL"
		}
	}
	ready-- // the startup reply's
	// A FATAL ends the session at once, and a client that sent Terminate
	// does not wait for the replies to what it sent before.
	if fatal || res.backendEnd || res.terminated {
		if ready > res.ready {
			t.Fatalf("client received %d ReadyForQuery, the backend sent %d (input %q)", ready, res.ready, in)
		}
		return
	}
	if ready != res.ready {
		t.Fatalf("client received %d ReadyForQuery, the backend sent %d (input %q)", ready, res.ready, in)
	}
	if res.queueLeft > 0 {
		t.Fatalf("after a closing Sync the session went quiet with %d replies still pending (input %q)", res.queueLeft, in)
	}
	if res.queueLeft == 0 && !bytes.HasSuffix(res.out, []byte{'Z', 0, 0, 0, 5, 'I'}) {
		t.Fatalf("the closing Sync was not answered with ReadyForQuery last (input %q)", in)
	}
}

// atBoundary reports whether script is a sequence of complete messages.
func atBoundary(script []byte) bool {
	for len(script) > 0 {
		if len(script) < 5 {
			return false
		}
		n := int(int32(binary.BigEndian.Uint32(script[1:5])))
		if n < 4 || len(script)-1 < n {
			return false
		}
		script = script[1+n:]
	}
	return true
}

// fuzzSessionSeeds are the seed scripts also stored in testdata.
func fuzzSessionSeeds() map[string][]byte {
	cat := func(msgs ...pgproto3.FrontendMessage) []byte {
		var b []byte
		for _, m := range msgs {
			b = append(b, fuzzMsg(m)...)
		}
		return b
	}
	q := func(s string) pgproto3.FrontendMessage { return &pgproto3.Query{String: s} }
	parse := func(name, s string) pgproto3.FrontendMessage { return &pgproto3.Parse{Name: name, Query: s} }
	bind := func(portal, stmt string, vals ...string) pgproto3.FrontendMessage {
		m := &pgproto3.Bind{DestinationPortal: portal, PreparedStatement: stmt}
		for _, v := range vals {
			m.Parameters = append(m.Parameters, []byte(v))
		}
		return m
	}
	exec := func(portal string) pgproto3.FrontendMessage { return &pgproto3.Execute{Portal: portal} }
	sync := &pgproto3.Sync{}
	seeds := map[string][]byte{
		"simple":          cat(q("SELECT 1"), &pgproto3.Terminate{}),
		"simple_denied":   cat(q("SELECT DENYME"), q("SELECT 1")),
		"extended":        cat(parse("", "SELECT $1"), bind("", "", "42"), &pgproto3.Describe{ObjectType: 'P'}, exec(""), sync),
		"extended_denied": cat(parse("s1", "SELECT DENYME"), bind("", "s1"), exec(""), sync, q("SELECT 1")),
		"bind_denied":     cat(parse("s1", "SELECT $1"), bind("p", "s1", "DENYME"), exec("p"), sync),
		"named_pipeline": cat(parse("a", "SELECT 1"), parse("b", "SELECT 2"), bind("pa", "a"), bind("pb", "b"),
			exec("pa"), exec("pb"), &pgproto3.Close{ObjectType: 'P', Name: "pa"}, &pgproto3.Close{ObjectType: 'S', Name: "a"}, sync),
		"backend_error_then_query": cat(bind("", "missing"), q("SELECT 1"), sync, q("SELECT 2")),
		"backend_error_then_denied_query": cat(parse("", "SELECT 1"), exec("nope"), q("SELECT DENYME"), sync,
			q("SELECT DENYME"), q("SELECT 1")),
		"sync_storm":           bytes.Repeat(cat(sync), 64),
		"copydata_outside":     cat(&pgproto3.CopyData{Data: []byte("x")}, &pgproto3.CopyDone{}, &pgproto3.CopyFail{Message: "x"}, q("SELECT 1")),
		"copy_out":             cat(q("COPY t TO STDOUT -- copy_out"), q("SELECT notice")),
		"function_call":        cat(&pgproto3.FunctionCall{Function: 1}, q("SELECT 1")),
		"flush":                cat(parse("", "SELECT 1"), &pgproto3.Flush{}, bind("", ""), exec(""), &pgproto3.Flush{}, sync),
		"terminate_mid":        cat(parse("", "SELECT 1"), &pgproto3.Terminate{}, q("SELECT 1")),
		"reserved_name":        cat(parse("pgtenant.denied", "SELECT 1"), sync),
		"empty_and_fail":       cat(q(""), q("SELECT fail"), q("   ")),
		"truncated":            cat(q("SELECT 1"))[:7],
		"length_lies_short":    append([]byte{'Q', 0, 0, 0, 6}, "SELECT 1\x00"...),
		"length_lies_long":     append([]byte{'Q', 0, 0, 0, 200}, "SELECT 1\x00"...),
		"huge_length":          []byte{'Q', 0x7f, 0xff, 0xff, 0xff},
		"negative_length":      []byte{'P', 0xff, 0xff, 0xff, 0xf0},
		"unterminated_query":   []byte{'Q', 0, 0, 0, 5, 'x'},
		"unknown_type":         append(cat(q("SELECT 1")), 'z', 0, 0, 0, 4),
		"describe_bad":         append(cat(parse("", "SELECT 1")), 'D', 0, 0, 0, 5, 'Z', 'S', 0, 0, 0, 4),
		"close_bad":            append([]byte{'C', 0, 0, 0, 4}, cat(sync)...),
		"backend_fatal":        cat(q("SELECT terminate_me")),
		"partial_next":         append(cat(parse("", "SELECT 1"), sync), 'Q', 0, 0, 0, 20, 'S'),
		"duplicate_statement":  cat(parse("a", "SELECT 1"), parse("a", "SELECT 1"), bind("", "a"), sync, q("SELECT 1")),
		"flush_with_body":      append(append(cat(parse("s1", "SELECT 1")), 'H', 0, 0, 0, 5, 'x'), cat(q("SELECT 1"), q("SELECT 2"), sync)...),
		"sync_with_body":       append([]byte{'S', 0, 0, 0, 5, 'x'}, cat(q("SELECT 1"))...),
		"query_inner_nul":      append([]byte{'Q', 0, 0, 0, 9, 'x', 0, 'y', 0}, cat(q("SELECT 1"))...),
		"copy_in":              cat(q("COPY t FROM STDIN -- copy_in"), &pgproto3.CopyData{Data: []byte("1\n")}, &pgproto3.CopyDone{}, q("SELECT 1")),
		"copy_in_sync_inside":  cat(q("COPY t FROM STDIN -- copy_in"), sync, &pgproto3.Flush{}, &pgproto3.CopyData{Data: []byte("1\n")}, &pgproto3.CopyDone{}, sync, q("SELECT 1")),
		"copy_in_query_inside": cat(q("COPY t FROM STDIN -- copy_in"), q("SELECT 1"), &pgproto3.CopyDone{}, q("SELECT 2")),
		"copy_in_server_error": cat(q("COPY t FROM STDIN -- copy_in"), &pgproto3.CopyData{Data: []byte("copy_err\n")}, &pgproto3.CopyData{Data: []byte("1\n")},
			sync, &pgproto3.CopyDone{}, sync, q("SELECT 1")),
		"copy_in_fail":           cat(q("COPY t FROM STDIN -- copy_in"), &pgproto3.CopyFail{Message: "client gave up"}, sync, q("SELECT 1")),
		"copy_in_after_extended": cat(parse("", "SELECT 1"), q("COPY t FROM STDIN -- copy_in"), &pgproto3.CopyDone{}, sync, q("SELECT 1")),
		"copy_in_skipped":        cat(bind("", "missing"), q("COPY t FROM STDIN -- copy_in"), sync, q("SELECT 1")),
		"copy_in_skipped_error_first": cat(bind("", "missing"), &pgproto3.Flush{}, q("SELECT 1"), q("COPY t FROM STDIN -- copy_in"),
			&pgproto3.CopyDone{}, sync, q("SELECT 1")),
		"copy_in_after_error_and_sync": cat(bind("", "missing"), sync, q("COPY t FROM STDIN -- copy_in"), &pgproto3.CopyData{Data: []byte("1\n")},
			&pgproto3.CopyDone{}, q("SELECT 1")),
	}
	return seeds
}

func FuzzSession(f *testing.F) {
	for _, s := range fuzzSessionSeeds() {
		f.Add(s)
	}
	srv := fuzzSessionServer(f)
	f.Fuzz(func(t *testing.T, script []byte) {
		res := runFuzzSession(t, srv, script)
		checkFuzzSession(t, script, res)
	})
}

// TestSessionQueryDuringSkipToSync: after an extended-protocol error the
// server ignores everything up to Sync, simple Queries included, so the
// proxy must not take the next ReadyForQuery as the answer to such a Query.
// It did, and every later reply was matched to the wrong message: a later
// denial showed the server's syntax error for the injected query instead.
func TestSessionQueryDuringSkipToSync(t *testing.T) {
	srv := fuzzSessionServer(t)
	seeds := fuzzSessionSeeds()
	for _, name := range []string{"backend_error_then_query", "backend_error_then_denied_query"} {
		res := runFuzzSession(t, srv, seeds[name])
		checkFuzzSession(t, seeds[name], res)
		if res.queueLeft != 0 {
			t.Errorf("%s: the session did not go quiet with an empty queue (%d)", name, res.queueLeft)
		}
	}
	// The denied Query after the Sync gets the denial, not the server's error.
	res := runFuzzSession(t, srv, seeds["backend_error_then_denied_query"])
	if !bytes.Contains(res.out, []byte("pgtenant: fuzz marker denied")) {
		t.Errorf("the denied query after Sync did not get its denial: %q", res.out)
	}
}

// TestSessionEndsWhenBackendEnds: a backend that ends the session (here on a
// malformed Describe) ends the client's connection too, without waiting for
// the client to speak.
func TestSessionEndsWhenBackendEnds(t *testing.T) {
	script := fuzzSessionSeeds()["backend_fatal"]
	res := runFuzzSession(t, fuzzSessionServer(t), script)
	checkFuzzSession(t, script, res)
	if !res.backendEnd || res.queueLeft != -1 {
		t.Errorf("backend FATAL %v, queue left %d: want the session to end by itself", res.backendEnd, res.queueLeft)
	}
}

// TestSessionFlushesBeforeWaitingForPartialMessage: complete messages reach
// the backend even when the client's input ends inside the next message.
// The fuzzer found the proxy holding a Close in its write buffer while it
// waited for the rest of a message header.
func TestSessionFlushesBeforeWaitingForPartialMessage(t *testing.T) {
	srv := fuzzSessionServer(t)
	for _, tc := range []struct {
		script []byte
		want   string // in the replies the client receives before it sends more
	}{
		{fuzzSessionSeeds()["partial_next"], "1\x00\x00\x00\x04"},                       // ParseComplete
		{[]byte("C\x00\x00\x00\x11000000000000\x000"), "invalid CLOSE message subtype"}, // the fuzzer's input
	} {
		res := runFuzzSession(t, srv, tc.script)
		checkFuzzSession(t, tc.script, res)
		if !bytes.Contains(res.out, []byte(tc.want)) {
			t.Errorf("input %q: the reply %q was held back while the proxy waited for the rest of a message (got %q)", tc.script, tc.want, res.out)
		}
	}
}

// TestSessionNothingAfterFatal: once the proxy has sent a FATAL for a
// protocol violation, replies to messages forwarded before it must not
// follow. The fuzzer found a ParseComplete relayed after the FATAL for a
// Bind with a 1.6 GB length (kept as a seed); here the race is forced: the
// FATAL goes out first, then the backend's replies arrive.
func TestSessionNothingAfterFatal(t *testing.T) {
	srv := fuzzSessionServer(t)
	client := newScriptConn(nil)
	bconn, backendEnd := memConnPair()
	ss := newFuzzSession(srv, client, bconn)
	ss.queue.push(pending{kind: pendParse})
	ss.fatal(newClientError(pgerrcode.ProtocolViolation, "protocol", "invalid message length"))
	for _, m := range []pgproto3.BackendMessage{&pgproto3.ParseComplete{}, &pgproto3.ReadyForQuery{TxStatus: 'I'}} {
		b, _ := m.Encode(nil)
		_, _ = backendEnd.Write(b)
	}
	_ = backendEnd.Close()
	_ = ss.backendLoop()
	out := client.output()
	res := fuzzSessionResult{out: out, queueLeft: -1}
	checkFuzzSession(t, nil, res)
	if !bytes.Contains(out, []byte("invalid message length")) {
		t.Fatalf("the FATAL was not sent: %q", out)
	}
}
