package proxy

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"io"
	"log/slog"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/jackc/pgerrcode"
	"github.com/jackc/pgx/v5/pgproto3"

	"github.com/pgtenant/pgtenant/auth"
	"github.com/pgtenant/pgtenant/config"
)

// Fuzzers of the pre-authentication path: arbitrary client bytes must end in
// a reply or a close, never a panic or a hang, and startup parameter parsing
// must never pass a token or a refused setting on to the backend.

const fuzzSecret = "fuzz-secret-0123456789abcdef0123456789abcdef"

// fuzzServer is a Server whose only region is unreachable (a token that
// verifies ends in a refused dial), optionally with TLS.
func fuzzServer(tb testing.TB, withTLS bool) *Server {
	tb.Helper()
	cfg := config.Default()
	cfg.Auth.Secret = []byte(fuzzSecret)
	cfg.Audit.Disabled = true
	cfg.AdminListen = ""
	cfg.Limits.StartupTimeout = time.Second
	cfg.Regions = map[string]config.Region{
		"eu-west": {Host: "127.0.0.1", Port: 1, User: "app", SSLMode: "disable", ConnectTimeout: time.Second},
	}
	if withTLS {
		cfg.TLS.CertFile, cfg.TLS.KeyFile = selfSignedCert(tb)
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

// selfSignedCert writes a throw-away ECDSA certificate and key.
func selfSignedCert(tb testing.TB) (certFile, keyFile string) {
	tb.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		tb.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "localhost"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour), DNSNames: []string{"localhost"}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		tb.Fatal(err)
	}
	kder, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		tb.Fatal(err)
	}
	dir := tb.TempDir()
	certFile, keyFile = filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	if err := os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600); err != nil {
		tb.Fatal(err)
	}
	if err := os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kder}), 0o600); err != nil {
		tb.Fatal(err)
	}
	return certFile, keyFile
}

// sentConn is the proxy's side of a client that sent its bytes and then shut
// down its sending side (as after shutdown(SHUT_WR)): reads return the bytes
// and then io.EOF, writes are kept. Unlike a net.Pipe, this lets the proxy
// answer after the input ends without waiting out the startup timeout, so
// the fuzzer runs fast and still sees every reply.
type sentConn struct {
	mu     sync.Mutex
	in     *bytes.Reader
	out    bytes.Buffer
	closed bool
}

func (c *sentConn) Read(p []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return 0, net.ErrClosed
	}
	return c.in.Read(p)
}

func (c *sentConn) Write(p []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return 0, net.ErrClosed
	}
	if c.out.Len()+len(p) > 1<<20 {
		return 0, errors.New("sentConn: the proxy wrote over 1 MiB before authentication")
	}
	return c.out.Write(p)
}

func (c *sentConn) Close() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return net.ErrClosed
	}
	c.closed = true
	return nil
}

func (c *sentConn) LocalAddr() net.Addr              { return sentAddr{} }
func (c *sentConn) RemoteAddr() net.Addr             { return sentAddr{} }
func (c *sentConn) SetDeadline(time.Time) error      { return nil }
func (c *sentConn) SetReadDeadline(time.Time) error  { return nil }
func (c *sentConn) SetWriteDeadline(time.Time) error { return nil }

type sentAddr struct{}

func (sentAddr) Network() string { return "pipe" }
func (sentAddr) String() string  { return "pipe" }

// handshake runs s.handle for a client that sends data and then shuts down
// its sending side, and returns what the proxy answered. It fails t when
// handle does not return, or returns without closing the connection.
func handshake(t *testing.T, s *Server, data []byte) []byte {
	t.Helper()
	c := &sentConn{in: bytes.NewReader(data)}
	done := make(chan struct{})
	go func() {
		defer close(done)
		s.handle(c)
	}()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatalf("handle did not return for input %q", truncate(string(data), 200))
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.closed {
		t.Fatalf("handle returned without closing the connection for input %q", truncate(string(data), 200))
	}
	return bytes.Clone(c.out.Bytes())
}

// TestFuzzHarnessOverPipe runs the seed inputs over a net.Pipe whose
// client sends and then waits for the proxy to close, bounded by the 1s
// startup timeout: the real-connection counterpart of sentConn.
func TestFuzzHarnessOverPipe(t *testing.T) {
	s := fuzzServer(t, false)
	dir := filepath.Join("testdata", "fuzz", "FuzzStartup")
	for _, name := range []string{"plain_password", "ssl_then_startup", "oversized_length", "protocol_2"} {
		b, err := os.ReadFile(filepath.Join(dir, name))
		if err != nil {
			t.Fatal(err)
		}
		data := []byte(seedValue(t, string(b)))
		client, server := net.Pipe()
		done := make(chan struct{})
		go func() {
			defer close(done)
			s.handle(server)
		}()
		_ = client.SetDeadline(time.Now().Add(5 * time.Second))
		go func() { _, _ = client.Write(data) }()
		_, err = io.Copy(io.Discard, client)
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() {
			t.Errorf("%s: the proxy kept the connection open past the startup timeout", name)
		}
		_ = client.Close()
		<-done
	}
}

// seedValue decodes a one-value "go test fuzz v1" corpus file.
func seedValue(t *testing.T, file string) string {
	t.Helper()
	_, body, ok := strings.Cut(file, "\n")
	body = strings.TrimSpace(body)
	if !ok || !strings.HasPrefix(body, "[]byte(") || !strings.HasSuffix(body, ")") {
		t.Fatalf("not a []byte corpus file: %q", truncate(file, 80))
	}
	v, err := strconv.Unquote(body[len("[]byte(") : len(body)-1])
	if err != nil {
		t.Fatal(err)
	}
	return v
}

// TestFuzzHarnessReachesEachStage checks that the harness FuzzStartup uses
// gets as far as the proxy can without a backend: a verified token ends in
// the region dial's 08006, a bad one in 28000, an SSLRequest is answered.
func TestFuzzHarnessReachesEachStage(t *testing.T) {
	tok, err := auth.Mint(auth.MintOptions{Secret: []byte(fuzzSecret), Account: "42", Region: "eu-west", Subject: "fuzz", TTL: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	s := fuzzServer(t, false)
	startup := fuzzStartupPacket(pgproto3.ProtocolVersion30, map[string]string{"user": "u"})
	cases := []struct {
		name  string
		input []byte
		ssl   bool   // expect the 'N' answer first
		code  string // SQLSTATE of the final FATAL
	}{
		{"token as password", append(slices.Clone(startup), fuzzMsg(&pgproto3.PasswordMessage{Password: tok})...), false, "08006"},
		{"token in jwt parameter", fuzzStartupPacket(pgproto3.ProtocolVersion30, map[string]string{"user": "u", "jwt": tok}), false, "08006"},
		{"bad token", append(slices.Clone(startup), fuzzMsg(&pgproto3.PasswordMessage{Password: "x"})...), false, "28000"},
		{"SSLRequest then protocol 2", append(fuzzMsg(&pgproto3.SSLRequest{}), fuzzStartupPacket(2<<16, map[string]string{"user": "u"})...), true, "0A000"},
	}
	for _, tc := range cases {
		reply := handshake(t, s, tc.input)
		if tc.ssl {
			if len(reply) == 0 || reply[0] != 'N' {
				t.Errorf("%s: reply %q does not start with 'N'", tc.name, reply)
				continue
			}
			reply = reply[1:]
		}
		fe := pgproto3.NewFrontend(bytes.NewReader(reply), io.Discard)
		var last pgproto3.BackendMessage
		for {
			msg, err := fe.Receive()
			if err != nil {
				break
			}
			last = msg
		}
		if er, ok := last.(*pgproto3.ErrorResponse); !ok || er.Severity != "FATAL" || er.Code != tc.code {
			t.Errorf("%s: last reply %#v, want FATAL %s", tc.name, last, tc.code)
		}
	}
}

func FuzzStartup(f *testing.F) {
	tok, err := auth.Mint(auth.MintOptions{Secret: []byte(fuzzSecret), Account: "42", Region: "eu-west", Subject: "fuzz", TTL: time.Hour})
	if err != nil {
		f.Fatal(err)
	}
	// A verified token goes as far as the (refused) region dial.
	f.Add(fuzzStartupPacket(pgproto3.ProtocolVersion30, map[string]string{"user": "u", "jwt": tok}))
	f.Add(append(fuzzStartupPacket(pgproto3.ProtocolVersion30, map[string]string{"user": "u"}), fuzzMsg(&pgproto3.PasswordMessage{Password: tok})...))
	plain, withTLS := fuzzServer(f, false), fuzzServer(f, true)
	f.Fuzz(func(t *testing.T, data []byte) {
		handshake(t, plain, data)
		handshake(t, withTLS, data)
		if n := plain.ActiveClients() + withTLS.ActiveClients(); n != 0 {
			t.Fatalf("%d client handlers still counted after handle returned", n)
		}
	})
}

// fuzzStartupPacket encodes a StartupMessage with any version number.
func fuzzStartupPacket(version uint32, params map[string]string) []byte {
	return fuzzMsg(&pgproto3.StartupMessage{ProtocolVersion: version, Parameters: params})
}

func fuzzMsg(m pgproto3.FrontendMessage) []byte {
	b, err := m.Encode(nil)
	if err != nil {
		panic(err)
	}
	return b
}

// fuzzRules are the parameter rules under test: the defaults plus an extra
// allowlisted setting.
var fuzzRules = newParamRules("app.current_account_id", "public", []string{"app.locale"})

func FuzzStartupParams(f *testing.F) {
	f.Fuzz(func(t *testing.T, body []byte) {
		params, err := startupParams(body)
		if err != nil {
			if !errors.Is(err, errProtocol) {
				t.Fatalf("startupParams error %v is not a protocol violation", err)
			}
			return
		}
		req, err := fuzzRules.parseStartup(params)
		if err != nil {
			checkRefusal(t, err)
			return
		}
		for k := range params {
			if lk := strings.ToLower(k); lk == fuzzRules.tenantSetting || refusedSettings[lk] {
				t.Fatalf("startup parameter %q was accepted", k)
			}
		}
		checkPassedOn(t, req)
		if tok, ok := params["jwt"]; ok && countFolded(params, "jwt") == 1 && req.Token != tok {
			t.Fatalf("jwt parameter %q not taken as the token (got %q)", tok, req.Token)
		}
	})
}

func FuzzSplitOptions(f *testing.F) {
	f.Fuzz(func(t *testing.T, opts string) {
		words := splitOptions(opts)
		// Words as PostgreSQL's pg_split_opts would read them, except where
		// the proxy knowingly differs: it splits valid UTF-8 by runes (invalid
		// bytes become U+FFFD) and does not treat \v and \f as white space.
		// Neither matters for safety, since the proxy never forwards options.
		if utf8.ValidString(opts) && !strings.ContainsAny(opts, "\v\f") {
			if want := pgSplitOpts(opts); !slices.Equal(words, want) {
				t.Fatalf("splitOptions(%q) = %q, PostgreSQL reads %q", opts, words, want)
			}
		}
		// Escaping each word and splitting again gives the same words (an
		// empty word, from a trailing backslash, has no escaped form).
		if !slices.Contains(words, "") {
			quoted := make([]string, len(words))
			for i, w := range words {
				quoted[i] = escapeOption(w)
			}
			if again := splitOptions(strings.Join(quoted, " ")); !slices.Equal(again, words) {
				t.Fatalf("splitOptions(%q) = %q, but its escaped join splits into %q", opts, words, again)
			}
		}
		req := &startupRequest{Params: map[string]string{}}
		if err := fuzzRules.parseOptions(opts, req); err != nil {
			checkRefusal(t, err)
			return
		}
		checkPassedOn(t, req)
	})
}

// countFolded counts the keys of params equal to name ignoring case.
func countFolded(params map[string]string, name string) int {
	n := 0
	for k := range params {
		if strings.EqualFold(k, name) {
			n++
		}
	}
	return n
}

// pgSplitOpts is PostgreSQL 15's pg_split_opts (src/backend/utils/init/postinit.c):
// words end at unescaped white space (C isspace), a backslash takes the
// next byte literally.
func pgSplitOpts(s string) []string {
	isSpace := func(c byte) bool { return c == ' ' || (c >= '\t' && c <= '\r') }
	var words []string
	i := 0
	for {
		for i < len(s) && isSpace(s[i]) {
			i++
		}
		if i == len(s) {
			return words
		}
		var w []byte
		escape := false
		for ; i < len(s); i++ {
			c := s[i]
			if isSpace(c) && !escape {
				break
			}
			if !escape && c == '\\' {
				escape = true
			} else {
				escape = false
				w = append(w, c)
			}
		}
		words = append(words, string(w))
	}
}

// escapeOption backslash-escapes what splitOptions treats specially.
func escapeOption(w string) string {
	var b strings.Builder
	for _, c := range w {
		if c == '\\' || c == ' ' || c == '\t' || c == '\n' || c == '\r' {
			b.WriteByte('\\')
		}
		b.WriteRune(c)
	}
	return b.String()
}

// checkRefusal requires a refused startup to be a protocol violation or a
// client error with 28000 and a pgtenant: message.
func checkRefusal(t *testing.T, err error) {
	t.Helper()
	if errors.Is(err, errProtocol) {
		return
	}
	var ce *clientError
	if !errors.As(err, &ce) || ce.Code != pgerrcode.InvalidAuthorizationSpecification || !strings.HasPrefix(ce.Message, "pgtenant: ") {
		t.Fatalf("refusal %v is not a 28000 client error", err)
	}
}

// checkPassedOn checks what parseStartup passes to the backend: only
// allowlisted settings, never the token, identity fields, the tenant or a
// refused setting, search_path or a client encoding unsafe for pg_query.
func checkPassedOn(t *testing.T, req *startupRequest) {
	t.Helper()
	for k, v := range req.Params {
		lk := strings.ToLower(k)
		switch {
		case lk == "jwt", lk == "user", lk == "database", lk == "options", lk == "search_path",
			strings.HasPrefix(lk, "_pq_."):
			t.Fatalf("%q passed on to the backend", k)
		case lk == fuzzRules.tenantSetting, refusedSettings[lk]:
			t.Fatalf("refused setting %q=%q passed on to the backend", k, v)
		case !fuzzRules.allowed[lk]:
			t.Fatalf("setting %q is not on the allowlist but was passed on", k)
		case lk == "client_encoding" && pgUnsafeEncoding(v):
			t.Fatalf("client_encoding %q passed on: PostgreSQL reads it as a client-only encoding unsafe for pg_query", v)
		}
	}
}

// pgUnsafeEncoding reports whether PostgreSQL would select a client-only
// encoding whose multibyte characters may contain 0x5C for name. It follows
// PostgreSQL 15's pg_char_to_encoding: every character but ASCII letters and
// digits is dropped, letters are lower-cased, and the result is looked up in
// pg_encname_tbl (src/common/encnames.c), aliases included.
func pgUnsafeEncoding(name string) bool {
	var b strings.Builder
	for i := 0; i < len(name); i++ {
		c := name[i]
		switch {
		case c >= 'A' && c <= 'Z':
			b.WriteByte(c + 'a' - 'A')
		case c >= 'a' && c <= 'z', c >= '0' && c <= '9':
			b.WriteByte(c)
		}
	}
	switch b.String() {
	case "sjis", "shiftjis", "mskanji", "win932", "windows932", // SJIS
		"shiftjis2004",                 // SHIFT_JIS_2004
		"big5", "win950", "windows950", // BIG5
		"gbk", "win936", "windows936", // GBK
		"gb18030",                     // GB18030
		"uhc", "win949", "windows949", // UHC
		"johab": // JOHAB
		return true
	}
	return false
}
