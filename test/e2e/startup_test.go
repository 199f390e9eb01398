package e2e

import (
	"crypto/rand"
	encbin "encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgproto3"

	"github.com/pgtenant/pgtenant/config"
	"github.com/pgtenant/pgtenant/test/proxytest"
)

// Raw-socket tests of the proxy's pre-authentication exchange and of
// protocol messages no driver sends.

// rawDeadline bounds every raw exchange: a hung proxy fails the test instead
// of hanging it.
const rawDeadline = 8 * time.Second

// dialRaw opens a TCP connection to the proxy with rawDeadline set.
func dialRaw(t *testing.T, env *proxytest.Env) net.Conn {
	t.Helper()
	conn, err := net.DialTimeout("tcp", env.Addr, rawDeadline)
	if err != nil {
		t.Fatal(err)
	}
	_ = conn.SetDeadline(time.Now().Add(rawDeadline))
	t.Cleanup(func() { _ = conn.Close() })
	return conn
}

// rawStartupMessage is a protocol 3.0 StartupMessage for user tester, database app.
func rawStartupMessage(extra map[string]string) *pgproto3.StartupMessage {
	params := map[string]string{"user": "tester", "database": "app"}
	for k, v := range extra {
		params[k] = v
	}
	return &pgproto3.StartupMessage{ProtocolVersion: pgproto3.ProtocolVersion30, Parameters: params}
}

// rawReceive reads one backend message, failing t on error.
func rawReceive(t *testing.T, fe *pgproto3.Frontend) pgproto3.BackendMessage {
	t.Helper()
	msg, err := fe.Receive()
	if err != nil {
		t.Fatalf("receive: %v", err)
	}
	return msg
}

// rawAuthenticate answers the proxy's password request with token and reads up
// to ReadyForQuery, returning the BackendKeyData.
func rawAuthenticate(t *testing.T, fe *pgproto3.Frontend, token string) *pgproto3.BackendKeyData {
	t.Helper()
	if _, ok := rawReceive(t, fe).(*pgproto3.AuthenticationCleartextPassword); !ok {
		t.Fatal("expected AuthenticationCleartextPassword")
	}
	fe.Send(&pgproto3.PasswordMessage{Password: token})
	if err := fe.Flush(); err != nil {
		t.Fatal(err)
	}
	var key *pgproto3.BackendKeyData
	for {
		switch m := rawReceive(t, fe).(type) {
		case *pgproto3.AuthenticationOk, *pgproto3.ParameterStatus:
		case *pgproto3.BackendKeyData:
			key = &pgproto3.BackendKeyData{ProcessID: m.ProcessID, SecretKey: append([]byte(nil), m.SecretKey...)}
		case *pgproto3.ReadyForQuery:
			if key == nil {
				t.Fatal("ReadyForQuery without BackendKeyData")
			}
			return key
		case *pgproto3.ErrorResponse:
			t.Fatalf("login failed: %s %s %s", m.Severity, m.Code, m.Message)
		default:
			t.Fatalf("unexpected %T during login", m)
		}
	}
}

// rawLogin sends a StartupMessage on conn and authenticates with a tenant 42 token.
func rawLogin(t *testing.T, conn net.Conn) (*pgproto3.Frontend, *pgproto3.BackendKeyData) {
	t.Helper()
	fe := pgproto3.NewFrontend(conn, conn)
	fe.Send(rawStartupMessage(nil))
	if err := fe.Flush(); err != nil {
		t.Fatal(err)
	}
	return fe, rawAuthenticate(t, fe, proxytest.Token(t, "42", "eu-west", 0))
}

// rawQuery runs sql and returns the first column of each row and the
// error, if the server sent one, reading through ReadyForQuery.
func rawQuery(t *testing.T, fe *pgproto3.Frontend, sql string) ([]string, *pgproto3.ErrorResponse) {
	t.Helper()
	fe.Send(&pgproto3.Query{String: sql})
	if err := fe.Flush(); err != nil {
		t.Fatal(err)
	}
	return rawResult(t, fe)
}

// rawResult reads one simple-query result through ReadyForQuery.
func rawResult(t *testing.T, fe *pgproto3.Frontend) ([]string, *pgproto3.ErrorResponse) {
	t.Helper()
	var rows []string
	var er *pgproto3.ErrorResponse
	for {
		switch m := rawReceive(t, fe).(type) {
		case *pgproto3.DataRow:
			rows = append(rows, string(m.Values[0]))
		case *pgproto3.ErrorResponse:
			c := *m
			er = &c
		case *pgproto3.ReadyForQuery:
			return rows, er
		}
	}
}

// rawExpectFatalOrClose reads until the proxy closes the connection and checks that
// it either sent a FATAL with code (when code is not "") or just closed. A
// timeout (the proxy neither answered nor closed) fails.
func rawExpectFatalOrClose(t *testing.T, fe *pgproto3.Frontend, code string) *pgproto3.ErrorResponse {
	t.Helper()
	var fatal *pgproto3.ErrorResponse
	for {
		msg, err := fe.Receive()
		if err != nil {
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				t.Fatalf("the proxy neither answered nor closed the connection within %v", rawDeadline)
			}
			if code != "" && fatal == nil {
				t.Fatalf("connection closed (%v) without the FATAL %s", err, code)
			}
			return fatal
		}
		switch m := msg.(type) {
		case *pgproto3.ErrorResponse:
			if m.Severity != "FATAL" || (code != "" && m.Code != code) {
				t.Fatalf("got %s %s %q, want FATAL %s", m.Severity, m.Code, m.Message, code)
			}
			c := *m
			fatal = &c
		default:
			t.Fatalf("unexpected %T before the connection closed", m)
		}
	}
}

// rawStillServes checks the proxy accepts and serves a fresh raw login,
// then terminates that session.
func rawStillServes(t *testing.T, env *proxytest.Env) {
	t.Helper()
	conn := dialRaw(t, env)
	fe, _ := rawLogin(t, conn)
	rows, er := rawQuery(t, fe, "SELECT current_setting('app.current_account_id')")
	if er != nil || len(rows) != 1 || rows[0] != "42" {
		t.Fatalf("the proxy no longer serves: rows %v, error %+v", rows, er)
	}
	fe.Send(&pgproto3.Terminate{})
	_ = fe.Flush()
	_ = conn.Close()
}

func TestStartupOversizedPacket(t *testing.T) {
	env := proxytest.Start(t, proxytest.Options{})
	conn := dialRaw(t, env)
	msg := rawStartupMessage(map[string]string{"application_name": strings.Repeat("a", 20000)})
	b, err := msg.Encode(nil)
	if err != nil {
		t.Fatal(err)
	}
	// The proxy may close before reading it all: a failed write is fine.
	_, _ = conn.Write(b)
	fatal := rawExpectFatalOrClose(t, pgproto3.NewFrontend(conn, conn), "")
	if fatal != nil && fatal.Code != "08P01" {
		t.Errorf("oversized startup packet: FATAL %s %q, want 08P01", fatal.Code, fatal.Message)
	}
	rawStillServes(t, env)
}

func TestStartupTruncatedPacket(t *testing.T) {
	env := proxytest.Start(t, proxytest.Options{})
	before := env.Server.ActiveClients()
	for _, n := range []int{1, 3, 4, 12, 40} {
		conn := dialRaw(t, env)
		b, err := rawStartupMessage(map[string]string{"application_name": "truncated"}).Encode(nil)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := conn.Write(b[:n]); err != nil {
			t.Fatal(err)
		}
		_ = conn.Close()
	}
	rawStillServes(t, env)
	// Each abandoned connection's handler ends (the proxy leaks nothing);
	// waits at most rawDeadline for the handlers to notice the close.
	deadline := time.Now().Add(rawDeadline)
	for env.Server.ActiveClients() > before && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if n := env.Server.ActiveClients(); n > before {
		t.Errorf("%d client handlers still running after their clients left", n-before)
	}
}

func TestStartupTimeout(t *testing.T) {
	env := proxytest.Start(t, proxytest.Options{Configure: func(c *config.Config) {
		c.Limits.StartupTimeout = time.Second
	}})
	// A client that connects and sends nothing: closed after 1s, well
	// before rawDeadline (and the 10s default).
	conn := dialRaw(t, env)
	fatal := rawExpectFatalOrClose(t, pgproto3.NewFrontend(conn, conn), "")
	if fatal != nil && (fatal.Code != "08P01" || !strings.Contains(fatal.Message, "startup")) {
		t.Errorf("silent client: FATAL %s %q, want 08P01 about the startup timeout", fatal.Code, fatal.Message)
	}
	// One that stalls at the password prompt is closed too.
	conn = dialRaw(t, env)
	fe := pgproto3.NewFrontend(conn, conn)
	fe.Send(rawStartupMessage(nil))
	if err := fe.Flush(); err != nil {
		t.Fatal(err)
	}
	if _, ok := rawReceive(t, fe).(*pgproto3.AuthenticationCleartextPassword); !ok {
		t.Fatal("expected AuthenticationCleartextPassword")
	}
	rawExpectFatalOrClose(t, fe, "")
	rawStillServes(t, env)
}

func TestStartupSSLRequestWithoutTLS(t *testing.T) {
	env := proxytest.Start(t, proxytest.Options{})
	conn := dialRaw(t, env)
	b, _ := (&pgproto3.SSLRequest{}).Encode(nil)
	if _, err := conn.Write(b); err != nil {
		t.Fatal(err)
	}
	var answer [1]byte
	if _, err := io.ReadFull(conn, answer[:]); err != nil || answer[0] != 'N' {
		t.Fatalf("SSLRequest answer = %q, %v; want 'N'", answer[0], err)
	}
	fe, _ := rawLogin(t, conn)
	rows, er := rawQuery(t, fe, "SELECT current_setting('app.current_account_id')")
	if er != nil || len(rows) != 1 || rows[0] != "42" {
		t.Fatalf("after 'N': rows %v, error %+v", rows, er)
	}
}

func TestStartupGSSENCRequest(t *testing.T) {
	env := proxytest.Start(t, proxytest.Options{})
	conn := dialRaw(t, env)
	b, _ := (&pgproto3.GSSEncRequest{}).Encode(nil)
	if _, err := conn.Write(b); err != nil {
		t.Fatal(err)
	}
	var answer [1]byte
	if _, err := io.ReadFull(conn, answer[:]); err != nil || answer[0] != 'N' {
		t.Fatalf("GSSENCRequest answer = %q, %v; want 'N'", answer[0], err)
	}
	// libpq then falls back to a plain startup on the same connection.
	fe, _ := rawLogin(t, conn)
	if rows, er := rawQuery(t, fe, "SELECT 1"); er != nil || len(rows) != 1 {
		t.Fatalf("after 'N': rows %v, error %+v", rows, er)
	}
}

// rawCancel delivers a CancelRequest on a new connection and waits for the
// proxy to close it (which it does once it has handled the request).
func rawCancel(t *testing.T, env *proxytest.Env, pid uint32, secret []byte) {
	t.Helper()
	conn := dialRaw(t, env)
	b, err := (&pgproto3.CancelRequest{ProcessID: pid, SecretKey: secret}).Encode(nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := conn.Write(b); err != nil {
		t.Fatal(err)
	}
	var one [1]byte
	n, err := conn.Read(one[:])
	if n != 0 || err == nil {
		t.Fatalf("the proxy answered a CancelRequest with %q", one[:n])
	}
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		t.Fatal("the proxy did not close the CancelRequest connection")
	}
}

// waitActive waits until query runs on the eu-west backend, as the service
// role sees in pg_stat_activity: a cancel that reaches an idle backend is a
// no-op, so a cancel test must not race the statement's start.
func waitActive(t *testing.T, env *proxytest.Env, query string) {
	t.Helper()
	direct := connect(t, env.DirectDSN("eu-west"))
	deadline := time.Now().Add(rawDeadline / 2)
	for {
		var running int
		if err := direct.QueryRow(ctxT(t), "SELECT count(*) FROM pg_stat_activity WHERE state = 'active' AND query = $1", query).Scan(&running); err != nil {
			t.Fatal(err)
		}
		if running > 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%q never started on the backend", query)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestStartupCancelRequestWithUnknownKeyIsIgnored(t *testing.T) {
	env := proxytest.Start(t, proxytest.Options{})
	conn := dialRaw(t, env)
	fe, key := rawLogin(t, conn)

	fe.Send(&pgproto3.Query{String: "SELECT pg_sleep(1.5)"})
	if err := fe.Flush(); err != nil {
		t.Fatal(err)
	}
	waitActive(t, env, "SELECT pg_sleep(1.5)")
	random := make([]byte, 8)
	_, _ = rand.Read(random)
	wrongSecret := append([]byte(nil), key.SecretKey...)
	wrongSecret[0] ^= 0xff
	// A random key, the right pid with a wrong secret, and a short secret.
	rawCancel(t, env, encbin.BigEndian.Uint32(random), random[4:])
	rawCancel(t, env, key.ProcessID, wrongSecret)
	rawCancel(t, env, key.ProcessID, key.SecretKey[:2])
	if _, er := rawResult(t, fe); er != nil {
		t.Fatalf("a CancelRequest with a wrong key canceled the query: %s %s", er.Code, er.Message)
	}

	// Control: the issued key does cancel, so the requests above were heard and ignored.
	fe.Send(&pgproto3.Query{String: "SELECT pg_sleep(30)"})
	if err := fe.Flush(); err != nil {
		t.Fatal(err)
	}
	waitActive(t, env, "SELECT pg_sleep(30)")
	rawCancel(t, env, key.ProcessID, key.SecretKey)
	if _, er := rawResult(t, fe); er == nil || er.Code != "57014" {
		t.Fatalf("the issued key did not cancel pg_sleep(30): %+v", er)
	}
	if rows, er := rawQuery(t, fe, "SELECT 1"); er != nil || len(rows) != 1 {
		t.Fatalf("after cancel: rows %v, error %+v", rows, er)
	}
}

func TestStartupProtocolNegotiation(t *testing.T) {
	env := proxytest.Start(t, proxytest.Options{})
	cases := []struct {
		name    string
		version uint32
		extra   map[string]string
		options []string
	}{
		{"3.2", pgproto3.ProtocolVersion32, nil, nil},
		{"3.0 with a protocol option", pgproto3.ProtocolVersion30, map[string]string{"_pq_.e2e_option": "on"}, []string{"_pq_.e2e_option"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			conn := dialRaw(t, env)
			fe := pgproto3.NewFrontend(conn, conn)
			msg := rawStartupMessage(tc.extra)
			msg.ProtocolVersion = tc.version
			fe.Send(msg)
			if err := fe.Flush(); err != nil {
				t.Fatal(err)
			}
			nv, ok := rawReceive(t, fe).(*pgproto3.NegotiateProtocolVersion)
			if !ok {
				t.Fatal("expected NegotiateProtocolVersion first")
			}
			if nv.NewestMinorProtocol != 0 || strings.Join(nv.UnrecognizedOptions, ",") != strings.Join(tc.options, ",") {
				t.Errorf("NegotiateProtocolVersion = minor %d, options %v; want 0, %v", nv.NewestMinorProtocol, nv.UnrecognizedOptions, tc.options)
			}
			key := rawAuthenticate(t, fe, proxytest.Token(t, "42", "eu-west", 0))
			if len(key.SecretKey) != 4 {
				t.Errorf("protocol 3.0 BackendKeyData secret has %d bytes, want 4", len(key.SecretKey))
			}
			if rows, er := rawQuery(t, fe, "SELECT current_setting('app.current_account_id')"); er != nil || len(rows) != 1 || rows[0] != "42" {
				t.Fatalf("after negotiation: rows %v, error %+v", rows, er)
			}
		})
	}
}

func TestStartupProtocol2IsRefused(t *testing.T) {
	env := proxytest.Start(t, proxytest.Options{})
	conn := dialRaw(t, env)
	// pgproto3 encodes any version number it is given.
	msg := rawStartupMessage(nil)
	msg.ProtocolVersion = 2 << 16
	b, err := msg.Encode(nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := conn.Write(b); err != nil {
		t.Fatal(err)
	}
	fatal := rawExpectFatalOrClose(t, pgproto3.NewFrontend(conn, conn), "0A000")
	if !strings.Contains(fatal.Message, "protocol") {
		t.Errorf("FATAL message %q does not mention the protocol", fatal.Message)
	}
	rawStillServes(t, env)
}

func TestFunctionCallIsDenied(t *testing.T) {
	env := proxytest.Start(t, proxytest.Options{})
	fe, _ := rawLogin(t, dialRaw(t, env))
	// 1299 is now(); the fast-path interface could call any function by oid.
	fe.Send(&pgproto3.FunctionCall{Function: 1299, ResultFormatCode: 0})
	if err := fe.Flush(); err != nil {
		t.Fatal(err)
	}
	_, er := rawResult(t, fe)
	if er == nil || er.Code != "42501" || er.Severity != "ERROR" {
		t.Fatalf("FunctionCall: error %+v, want ERROR 42501 then ReadyForQuery", er)
	}
	rows, er := rawQuery(t, fe, "SELECT count(*) FROM orders")
	if er != nil || len(rows) != 1 || rows[0] != "4" {
		t.Fatalf("after the denied FunctionCall: rows %v, error %+v", rows, er)
	}
}

func TestUnknownMessageTypeIsFatal(t *testing.T) {
	env := proxytest.Start(t, proxytest.Options{})
	conn := dialRaw(t, env)
	rawLogin(t, conn)
	if _, err := conn.Write([]byte{'z', 0, 0, 0, 4}); err != nil {
		t.Fatal(err)
	}
	rawExpectFatalOrClose(t, pgproto3.NewFrontend(conn, conn), "08P01")
	rawStillServes(t, env)
}

// rawTryLogin logs in with extra startup parameters and reports the FATAL the
// proxy refused it with, or the server's ParameterStatus values on success.
func rawTryLogin(t *testing.T, env *proxytest.Env, extra map[string]string) (*pgproto3.ErrorResponse, map[string]string) {
	t.Helper()
	conn := dialRaw(t, env)
	defer conn.Close()
	fe := pgproto3.NewFrontend(conn, conn)
	fe.Send(rawStartupMessage(extra))
	if err := fe.Flush(); err != nil {
		t.Fatal(err)
	}
	status := map[string]string{}
	for {
		switch m := rawReceive(t, fe).(type) {
		case *pgproto3.AuthenticationCleartextPassword:
			fe.Send(&pgproto3.PasswordMessage{Password: proxytest.Token(t, "42", "eu-west", 0)})
			if err := fe.Flush(); err != nil {
				t.Fatal(err)
			}
		case *pgproto3.ErrorResponse:
			c := *m
			return &c, nil
		case *pgproto3.ParameterStatus:
			status[m.Name] = m.Value
		case *pgproto3.ReadyForQuery:
			return nil, status
		}
	}
}

// PostgreSQL looks encoding names up after dropping every character that is
// not a letter or digit (clean_encoding_name), and knows aliases such as
// mskanji and windows932: all of these select a client-only encoding whose
// multibyte characters may contain 0x5C, which POLICY.md 1.6 forbids.
func TestStartupRefusesUnsafeClientEncodings(t *testing.T) {
	env := proxytest.Start(t, proxytest.Options{})
	for _, enc := range []string{"SJIS", "ShiftJIS", "mskanji", "s.j.i.s", "Windows932", "BIG-5", "gb-18030", "ShiftJIS2004", "win_950", "UHC", "Johab"} {
		for _, via := range []string{"parameter", "options"} {
			t.Run(enc+" via "+via, func(t *testing.T) {
				extra := map[string]string{"client_encoding": enc}
				if via == "options" {
					extra = map[string]string{"options": "-c client_encoding=" + enc}
				}
				fatal, status := rawTryLogin(t, env, extra)
				if fatal == nil {
					t.Fatalf("client_encoding %q was accepted: the server now uses %s", enc, status["client_encoding"])
				}
				if fatal.Severity != "FATAL" || fatal.Code != "28000" {
					t.Errorf("client_encoding %q: %s %s %q, want FATAL 28000", enc, fatal.Severity, fatal.Code, fatal.Message)
				}
			})
		}
	}
	// Control: UTF8 spelled the ways drivers send it is accepted.
	for _, enc := range []string{"UTF8", "utf-8", "unicode"} {
		if fatal, status := rawTryLogin(t, env, map[string]string{"client_encoding": enc}); fatal != nil || status["client_encoding"] != "UTF8" {
			t.Errorf("client_encoding %q: refused %+v / server encoding %q, want UTF8", enc, fatal, status["client_encoding"])
		}
	}
}

// loginRaw logs in over a bare connection to addr and returns it after the
// first ReadyForQuery, keeping nothing else of the client. The token goes in
// the jwt startup parameter, or as the cleartext password when asPassword.
// Failures are errors, so it can run outside the test goroutine.
func loginRaw(addr, token string, asPassword bool, timeout time.Duration) (net.Conn, error) {
	conn, err := net.DialTimeout("tcp", addr, timeout)
	if err != nil {
		return nil, err
	}
	_ = conn.SetDeadline(time.Now().Add(timeout))
	fe := pgproto3.NewFrontend(conn, conn)
	if asPassword {
		fe.Send(rawStartupMessage(nil))
		fe.Send(&pgproto3.PasswordMessage{Password: token})
	} else {
		fe.Send(rawStartupMessage(map[string]string{"jwt": token}))
	}
	if err := fe.Flush(); err != nil {
		conn.Close()
		return nil, err
	}
	for {
		msg, err := fe.Receive()
		if err != nil {
			conn.Close()
			return nil, err
		}
		switch m := msg.(type) {
		case *pgproto3.ErrorResponse:
			conn.Close()
			return nil, fmt.Errorf("login refused: %s %s %s", m.Severity, m.Code, m.Message)
		case *pgproto3.ReadyForQuery:
			// The proxy sends nothing more until the client speaks, so the
			// frontend holds no unread bytes.
			_ = conn.SetDeadline(time.Time{})
			return conn, nil
		}
	}
}
