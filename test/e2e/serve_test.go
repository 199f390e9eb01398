package e2e

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/pgtenant/pgtenant/auth"
	"github.com/pgtenant/pgtenant/cluster"
	"github.com/pgtenant/pgtenant/demo"
	"github.com/pgtenant/pgtenant/test/pgtest"
	"github.com/pgtenant/pgtenant/test/proxytest"
)

var buildOnce struct {
	sync.Once
	path string
	err  error
}

// binary builds cmd/pgtenant once per test run.
func binary(t *testing.T) string {
	t.Helper()
	buildOnce.Do(func() {
		dir, err := os.MkdirTemp("", "pgtenant-bin-")
		if err != nil {
			buildOnce.err = err
			return
		}
		buildOnce.path = filepath.Join(dir, "pgtenant")
		out, err := exec.Command("go", "build", "-o", buildOnce.path, "../../cmd/pgtenant").CombinedOutput()
		if err != nil {
			buildOnce.err = fmt.Errorf("go build: %v\n%s", err, out)
		}
	})
	if buildOnce.err != nil {
		t.Fatal(buildOnce.err)
	}
	return buildOnce.path
}

// removeBinary deletes the binary binary built (and its directory) after the tests.
func removeBinary() {
	if buildOnce.path != "" {
		_ = os.RemoveAll(filepath.Dir(buildOnce.path))
	}
}

func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// serveConfig renders a config for `pgtenant serve` in front of c, with
// the HMAC secret taken from the environment variable secretEnv.
func serveConfig(c *cluster.Cluster, listen, dir, secretEnv string) string {
	return fmt.Sprintf(`listen: %s
admin_listen: ""
log: { level: info, format: json }
auth:
  hs256_secret_env: %s
regions:
  eu-west: { host: 127.0.0.1, port: %d, user: %s, password: %s, database: %s, admin_user: postgres }
audit:
  mode: spool
  spool_dir: %s
limits:
  shutdown_timeout: 5s
`, listen, secretEnv, c.Port, c.ServiceUser, c.ServicePassword, c.Database, filepath.Join(dir, "spool"))
}

type served struct {
	cmd    *exec.Cmd
	addr   string
	stderr *lockedBuffer
}

type lockedBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (l *lockedBuffer) String() string { l.mu.Lock(); defer l.mu.Unlock(); return l.b.String() }

// startServe runs the binary and waits until it accepts connections.
func startServe(t *testing.T, cfgPath, addr string, env ...string) *served {
	t.Helper()
	cmd := exec.Command(binary(t), "serve", "--config", cfgPath)
	cmd.Env = append(os.Environ(), env...)
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	s := &served{cmd: cmd, addr: addr, stderr: &lockedBuffer{}}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			s.stderr.mu.Lock()
			s.stderr.b.WriteString(sc.Text() + "\n")
			s.stderr.mu.Unlock()
		}
	}()
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		if c, err := net.Dial("tcp", addr); err == nil {
			c.Close()
			return s
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("pgtenant serve did not start:\n%s", s.stderr.String())
	return nil
}

func tokenWith(t *testing.T, secret, account string) string {
	t.Helper()
	tok, err := auth.Mint(auth.MintOptions{Secret: []byte(secret), Account: account, Region: "eu-west", TTL: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

func TestServeReloadsOnSIGHUPAndDrainsOnSIGTERM(t *testing.T) {
	c := pgtest.Shared(t, "eu-west")
	proxytest.InstallDemo(t, c)
	dir := t.TempDir()
	addr := freeAddr(t)
	oldSecret, newSecret := strings.Repeat("o", 32), strings.Repeat("n", 32)
	cfgPath := filepath.Join(dir, "pgtenant.yaml")
	write := func(body string) {
		if err := os.WriteFile(cfgPath+".tmp", []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(cfgPath+".tmp", cfgPath); err != nil {
			t.Fatal(err)
		}
	}
	write(serveConfig(c, addr, dir, "OLD_SECRET"))
	srv := startServe(t, cfgPath, addr, "OLD_SECRET="+oldSecret, "NEW_SECRET="+newSecret)
	dsn := func(secret string) string {
		return fmt.Sprintf("postgres://u:%s@%s/app?sslmode=disable", tokenWith(t, secret, "42"), addr)
	}
	ctx := ctxT(t)
	open, err := pgx.Connect(ctx, dsn(oldSecret))
	if err != nil {
		t.Fatalf("connect with the old secret: %v\n%s", err, srv.stderr.String())
	}
	defer open.Close(context.Background())

	// Rotate the secret: new connections need the new key, the open session keeps working.
	write(serveConfig(c, addr, dir, "NEW_SECRET"))
	if err := srv.cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	waitFor(t, func() bool { return strings.Count(srv.stderr.String(), "configuration reloaded") >= 1 }, srv)
	if _, err := pgx.Connect(ctx, dsn(oldSecret)); pgCode(err) != "28000" {
		t.Errorf("old secret after rotation: got %v, want 28000", err)
	}
	fresh, err := pgx.Connect(ctx, dsn(newSecret))
	if err != nil {
		t.Fatalf("new secret after rotation: %v", err)
	}
	fresh.Close(context.Background())
	var n int
	if err := open.QueryRow(ctx, "SELECT count(*) FROM orders WHERE account_id = 42").Scan(&n); err != nil {
		t.Fatalf("open session broke on reload: %v", err)
	}

	// A broken config is rejected and the running one stays in force.
	write("listen: [not valid\n")
	waitFor(t, func() bool { return strings.Contains(srv.stderr.String(), "configuration rejected") }, srv)
	again, err := pgx.Connect(ctx, dsn(newSecret))
	if err != nil {
		t.Fatalf("a rejected config replaced the running one: %v", err)
	}
	again.Close(context.Background())

	// Every configuration change is in the audit, with the config's hash.
	admin, err := pgx.Connect(ctx, c.SuperuserDSN(c.Database))
	if err != nil {
		t.Fatal(err)
	}
	defer admin.Close(context.Background())
	waitFor(t, func() bool {
		var applied, rejected int
		_ = admin.QueryRow(ctx, `SELECT count(*) FILTER (WHERE reason IN ('start','applied') AND statement LIKE 'config sha256:%'),
			count(*) FILTER (WHERE reason LIKE 'rejected%') FROM pgtenant_audit.events WHERE kind = 'config'`).Scan(&applied, &rejected)
		return applied >= 2 && rejected >= 1
	}, srv)

	// SIGTERM: the idle session gets 57P01, the process exits 0.
	if err := srv.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- srv.cmd.Wait() }()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("exit after SIGTERM: %v\n%s", err, srv.stderr.String())
		}
	case <-time.After(20 * time.Second):
		t.Fatal("pgtenant did not exit after SIGTERM")
	}
	if err := open.Ping(ctx); err == nil {
		t.Error("the session survived the drain")
	}
}

func waitFor(t *testing.T, cond func() bool, srv *served) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for time.Now().Before(deadline) {
		if cond() {
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatalf("condition not met; server log:\n%s", srv.stderr.String())
}

func TestServeRequireRLSRefusesToStartNamingTheTable(t *testing.T) {
	c := pgtest.Start(t, cluster.Config{Name: "weak-rls"})
	ctx := ctxT(t)
	if err := demo.Install(ctx, c); err != nil {
		t.Fatal(err)
	}
	if err := c.Exec(ctx, c.Database, "ALTER TABLE public.line_items NO FORCE ROW LEVEL SECURITY"); err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	cfgPath := filepath.Join(dir, "pgtenant.yaml")
	body := serveConfig(c, freeAddr(t), dir, "SECRET") + "policy:\n  require_rls: true\n"
	if err := os.WriteFile(cfgPath, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(binary(t), "serve", "--config", cfgPath)
	cmd.Env = append(os.Environ(), "SECRET="+strings.Repeat("s", 32))
	out, err := cmd.CombinedOutput()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != 2 {
		t.Fatalf("serve with weak RLS: err %v, want exit 2\n%s", err, out)
	}
	if !strings.Contains(string(out), "line_items") || !strings.Contains(string(out), "require_rls") {
		t.Errorf("error does not name the table and the setting:\n%s", out)
	}
}

func TestServeIsolationProof(t *testing.T) {
	c := pgtest.Shared(t, "eu-west")
	proxytest.InstallDemo(t, c)
	dir := t.TempDir()
	cfgPath := filepath.Join(dir, "pgtenant.yaml")
	adminAddr := freeAddr(t)
	body := strings.Replace(serveConfig(c, freeAddr(t), dir, "SECRET"), `admin_listen: ""`, "admin_listen: "+adminAddr, 1)
	if err := os.WriteFile(cfgPath, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	listen := strings.TrimPrefix(strings.SplitN(body, "\n", 2)[0], "listen: ")
	srv := startServe(t, cfgPath, listen, "SECRET="+strings.Repeat("s", 32))
	resp, err := http.Get("http://" + adminAddr + "/isolation-proof")
	if err != nil {
		t.Fatalf("%v\n%s", err, srv.stderr.String())
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	var proof struct {
		Regions []struct {
			Region string `json:"region"`
			Status string `json:"status"`
			Parser struct {
				Status string `json:"status"`
			} `json:"parser_enforcement"`
		} `json:"regions"`
	}
	if err := json.Unmarshal(raw, &proof); err != nil {
		t.Fatalf("proof is not JSON: %v\n%s", err, raw)
	}
	if len(proof.Regions) != 1 || proof.Regions[0].Parser.Status != "active" || proof.Regions[0].Status != "active" {
		t.Errorf("proof from serve: %s", raw)
	}

	// Real traffic moves the counters a platform team alerts on.
	ctx := ctxT(t)
	secret := strings.Repeat("s", 32)
	conn, err := pgx.Connect(ctx, fmt.Sprintf("postgres://u:%s@%s/app?sslmode=disable", tokenWith(t, secret, "42"), listen))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	for range 3 {
		if _, err := conn.Exec(ctx, "SELECT total FROM orders WHERE account_id = 42"); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := conn.Exec(ctx, "SELECT total FROM orders"); pgCode(err) != "42501" {
		t.Fatalf("unscoped: %v", err)
	}
	if _, err := pgx.Connect(ctx, fmt.Sprintf("postgres://u:%s@%s/app?sslmode=disable", tokenWith(t, strings.Repeat("x", 32), "42"), listen)); pgCode(err) != "28000" {
		t.Fatalf("bad signature: %v", err)
	}
	// The rejected connection's handler may still be returning when the
	// client has read its FATAL: wait for the open-connections gauge to settle.
	var metrics string
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		metrics = scrape(t, "http://"+adminAddr+"/metrics")
		if regexp.MustCompile(`(?m)^pgtenant_client_connections 1$`).MatchString(metrics) || time.Now().After(deadline) {
			break
		}
	}
	for _, want := range []string{
		`pgtenant_client_connections_accepted_total [1-9]`,
		`pgtenant_client_connections_rejected_total\{reason="auth_bad_signature"\} 1`,
		`pgtenant_statements_total\{reason="",verdict="allow"\} [3-9]`,
		`pgtenant_statements_total\{reason="[a-z_]+",verdict="deny"\} 1`,
		`pgtenant_statement_duration_seconds_count\{[^}]*\} [3-9]`,
		`pgtenant_backend_connections_total\{[^}]*region="eu-west"[^}]*\} [1-9]`,
		`pgtenant_client_connections 1`,
	} {
		if !regexp.MustCompile("(?m)^" + want).MatchString(metrics) {
			t.Errorf("/metrics after traffic lacks %s", want)
		}
	}
}

func scrape(t *testing.T, url string) string {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}
