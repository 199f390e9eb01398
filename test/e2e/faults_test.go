package e2e

import (
	"bytes"
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
	"runtime"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgproto3"

	"github.com/pgtenant/pgtenant/audit"
	"github.com/pgtenant/pgtenant/auth"
	"github.com/pgtenant/pgtenant/cluster"
	"github.com/pgtenant/pgtenant/config"
	"github.com/pgtenant/pgtenant/demo"
	"github.com/pgtenant/pgtenant/test/pgtest"
	"github.com/pgtenant/pgtenant/test/proxytest"
)

// Fault injection against real clusters: backends and servers that die
// under a running statement, clients that vanish, an audit store that goes
// away. Anything a test stops or kills is a cluster of its own.

// hangBound is how long a client may wait for an answer before the test
// calls it a hang. It detects hangs; it measures nothing.
const hangBound = 20 * time.Second

// ownCluster starts a throw-away cluster with the demo schema.
func ownCluster(t *testing.T, name string, settings map[string]string) *cluster.Cluster {
	t.Helper()
	c := pgtest.Start(t, cluster.Config{Name: name, Settings: settings})
	if err := demo.Install(ctxT(t), c); err != nil {
		t.Fatal(err)
	}
	return c
}

// regionFor is the proxy's configuration of c as a region.
func regionFor(c *cluster.Cluster) config.Region {
	return config.Region{Host: "127.0.0.1", Port: c.Port, User: c.ServiceUser, Password: c.ServicePassword,
		Database: c.Database, SSLMode: "disable", ConnectTimeout: 2 * time.Second, AdminUser: cluster.Superuser}
}

// faultEnv runs the in-process proxy with region eu-west on c (which the
// test may stop or kill) and us-east on the shared cluster.
func faultEnv(t *testing.T, c *cluster.Cluster, o proxytest.Options) *proxytest.Env {
	t.Helper()
	configure := o.Configure
	o.Configure = func(cfg *config.Config) {
		cfg.Regions["eu-west"] = regionFor(c)
		if configure != nil {
			configure(cfg)
		}
	}
	env := proxytest.Start(t, o)
	env.Clusters["eu-west"] = c
	return env
}

// backendPID waits until a statement of the session with application_name
// app runs on c and returns its backend's pid.
func backendPID(t *testing.T, admin *pgx.Conn, app string) int {
	t.Helper()
	deadline := time.Now().Add(hangBound)
	for time.Now().Before(deadline) {
		var pid int
		err := admin.QueryRow(ctxT(t), `SELECT pid FROM pg_stat_activity
			WHERE application_name = $1 AND state = 'active' AND query LIKE '%pg_sleep%'`, app).Scan(&pid)
		if err == nil {
			return pid
		}
		if !errors.Is(err, pgx.ErrNoRows) {
			t.Fatal(err)
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatalf("no running statement of %q on the backend", app)
	return 0
}

// execAsync runs sql on conn in the background; the error arrives on the channel.
func execAsync(conn *pgx.Conn, sql string) <-chan error {
	errc := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 2*hangBound)
		defer cancel()
		_, err := conn.Exec(ctx, sql)
		errc <- err
	}()
	return errc
}

// awaitErr waits for the outcome of execAsync; a client still waiting
// after hangBound is a hang.
func awaitErr(t *testing.T, errc <-chan error, what string) error {
	t.Helper()
	select {
	case err := <-errc:
		return err
	case <-time.After(hangBound):
		t.Fatalf("%s: the client is still waiting after %v", what, hangBound)
		return nil
	}
}

// mustServe runs a tenant-scoped query on conn.
func mustServe(t *testing.T, conn *pgx.Conn, what string) {
	t.Helper()
	var account string
	if err := conn.QueryRow(ctxT(t), "SELECT current_setting('app.current_account_id')").Scan(&account); err != nil || account != "42" {
		t.Fatalf("%s: got %q, %v", what, account, err)
	}
}

// settleClients waits until the proxy runs at most want client handlers.
func settleClients(t *testing.T, env *proxytest.Env, want int64) {
	t.Helper()
	if n := settle(func() int { return int(env.Server.ActiveClients()) }, int(want)); n > int(want) {
		t.Errorf("the proxy still runs %d client handlers, want %d", n, want)
	}
}

func TestFaultBackendTerminatedMidQuery(t *testing.T) {
	c := ownCluster(t, "fault-term", nil)
	env := faultEnv(t, c, proxytest.Options{})
	admin := connect(t, c.SuperuserDSN(c.Database))
	victim := connect(t, env.DSN(t, "42", "eu-west")+"&application_name=fault-victim")
	neighbour := connect(t, env.DSN(t, "42", "eu-west"))
	us := connect(t, env.DSN(t, "42", "us-east"))
	before := env.Server.ActiveClients()

	errc := execAsync(victim, "SELECT pg_sleep(60)")
	pid := backendPID(t, admin, "fault-victim")
	var ok bool
	if err := admin.QueryRow(ctxT(t), "SELECT pg_terminate_backend($1)", pid).Scan(&ok); err != nil || !ok {
		t.Fatalf("pg_terminate_backend: %v, %v", ok, err)
	}
	err := awaitErr(t, errc, "terminated backend")
	var pe *pgconn.PgError
	if !errors.As(err, &pe) || pe.Code != "57P01" || pe.Severity != "FATAL" {
		t.Fatalf("terminated backend: got %v, want PostgreSQL's FATAL 57P01 passed through", err)
	}
	if strings.HasPrefix(pe.Message, "pgtenant:") {
		t.Errorf("the backend's own error was replaced: %q", pe.Message)
	}
	// The victim's handler ends; everyone else is unaffected.
	settleClients(t, env, before-1)
	mustServe(t, neighbour, "other session in the region")
	mustServe(t, us, "session in the other region")
	mustServe(t, connect(t, env.DSN(t, "42", "eu-west")), "new session in the region")
}

func TestFaultPostmasterKilledMidQuery(t *testing.T) {
	c := ownCluster(t, "fault-kill", nil)
	env := faultEnv(t, c, proxytest.Options{})
	admin := connect(t, c.SuperuserDSN(c.Database))
	victim := connect(t, env.DSN(t, "42", "eu-west")+"&application_name=fault-kill")
	us := connect(t, env.DSN(t, "42", "us-east"))
	base := env.Server.ActiveClients()

	errc := execAsync(victim, "SELECT pg_sleep(60)")
	backendPID(t, admin, "fault-kill")
	if err := c.Kill(); err != nil {
		t.Fatal(err)
	}
	err := awaitErr(t, errc, "killed server")
	if err == nil {
		t.Fatal("the statement succeeded on a killed server")
	}
	if pgCode(err) != "08006" {
		t.Errorf("killed server: got %v, want FATAL 08006 (lost the connection to the region)", err)
	}
	settleClients(t, env, base-1)

	// The proxy stays up and the other region serves.
	mustServe(t, us, "session in the other region")
	mustServe(t, connect(t, env.DSN(t, "42", "us-east")), "new session in the other region")
	// New connections to the dead region fail with 08006 naming it.
	_, err = pgx.Connect(ctxT(t), env.DSN(t, "42", "eu-west"))
	if pe := (*pgconn.PgError)(nil); !errors.As(err, &pe) || pe.Code != "08006" || !strings.Contains(pe.Message, "eu-west") {
		t.Fatalf("connect to the killed region: got %v, want FATAL 08006 naming eu-west", err)
	}
	// After a restart (crash recovery) the region serves again.
	if err := c.Restart(ctxT(t)); err != nil {
		t.Fatal(err)
	}
	fresh := connect(t, env.DSN(t, "42", "eu-west"))
	var n int
	if err := fresh.QueryRow(ctxT(t), "SELECT count(*) FROM orders").Scan(&n); err != nil || n == 0 {
		t.Fatalf("after restart: %d orders, %v", n, err)
	}
}

func TestFaultClientVanishes(t *testing.T) {
	c := ownCluster(t, "fault-vanish", nil)
	ctx := ctxT(t)
	if err := c.Exec(ctx, c.Database, `CREATE TABLE fault_scratch (id int, note text);
		GRANT ALL ON fault_scratch TO `+c.ServiceUser); err != nil {
		t.Fatal(err)
	}
	env := faultEnv(t, c, proxytest.Options{Regions: []string{"eu-west"}})
	admin := connect(t, c.SuperuserDSN(c.Database))
	backends := func() int {
		var n int
		if err := admin.QueryRow(ctx, `SELECT count(*) FROM pg_stat_activity
			WHERE usename = $1 AND backend_type = 'client backend'`, c.ServiceUser).Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n
	}
	warm := connect(t, env.DSN(t, "42", "eu-west"))
	mustServe(t, warm, "warm-up")
	_ = warm.Close(ctx)
	settle(backends, 0)
	time.Sleep(100 * time.Millisecond)
	baseG, baseFD := runtime.NumGoroutine(), openFDs(t)

	dsn := env.DSN(t, "42", "eu-west")
	for i := range 5 {
		// Mid-result: the client reads one row of a large result and vanishes.
		conn, err := pgx.Connect(ctx, dsn)
		if err != nil {
			t.Fatal(err)
		}
		rows, err := conn.Query(ctx, "SELECT repeat('x', 10000) FROM generate_series(1, 5000)")
		if err != nil {
			t.Fatal(err)
		}
		rows.Next()
		_ = conn.PgConn().Conn().Close()
		rows.Close()

		// Mid-transaction: an uncommitted INSERT, then the socket closes.
		conn, err = pgx.Connect(ctx, dsn)
		if err != nil {
			t.Fatal(err)
		}
		for _, sql := range []string{"BEGIN", fmt.Sprintf("INSERT INTO fault_scratch VALUES (%d, 'uncommitted')", i)} {
			if _, err := conn.Exec(ctx, sql); err != nil {
				t.Fatalf("%s: %v", sql, err)
			}
		}
		_ = conn.PgConn().Conn().Close()

		// Mid-COPY-in: some rows sent, no CopyDone.
		raw := dialRaw(t, env)
		fe, _ := rawLogin(t, raw)
		fe.Send(&pgproto3.Query{String: "COPY fault_scratch FROM STDIN"})
		if err := fe.Flush(); err != nil {
			t.Fatal(err)
		}
		if _, ok := rawReceive(t, fe).(*pgproto3.CopyInResponse); !ok {
			t.Fatal("expected CopyInResponse")
		}
		fe.Send(&pgproto3.CopyData{Data: []byte("1\tcopied\n2\tcopied\n")})
		if err := fe.Flush(); err != nil {
			t.Fatal(err)
		}
		_ = raw.Close()
	}

	// Every backend session ended, nothing half-done became visible.
	if n := settle(backends, 0); n > 0 {
		t.Errorf("%d backend sessions of vanished clients are still open", n)
	}
	var leftovers int
	if err := admin.QueryRow(ctx, "SELECT count(*) FROM fault_scratch").Scan(&leftovers); err != nil {
		t.Fatal(err)
	}
	if leftovers != 0 {
		t.Errorf("%d rows of uncommitted INSERTs or unfinished COPYs are visible", leftovers)
	}
	// The proxy holds nothing of them.
	settleClients(t, env, 0)
	if g := settle(runtime.NumGoroutine, baseG); g > baseG {
		buf := make([]byte, 1<<20)
		t.Errorf("goroutines: %d after, %d before\n%s", g, baseG, buf[:runtime.Stack(buf, true)])
	}
	if fd := settle(func() int { return openFDs(t) }, baseFD); fd > baseFD {
		t.Errorf("open file descriptors: %d after, %d before", fd, baseFD)
	}
}

// auditStoreEnv runs the proxy with eu-west on the shared cluster and its audit
// trail written by a real Recorder (mode) into the separate cluster ac.
func auditStoreEnv(t *testing.T, ac *cluster.Cluster, mode string) *proxytest.Env {
	t.Helper()
	ctx := ctxT(t)
	regions := map[string]config.Region{"eu-west": regionFor(ac)}
	if err := audit.Init(ctx, regions, nil); err != nil {
		t.Fatal(err)
	}
	cfg := config.Default().Audit
	cfg.Mode, cfg.SpoolDir, cfg.OutageTimeout = mode, t.TempDir(), time.Second
	rec, err := audit.NewRecorder(ctx, cfg, regions, "fault-test", nil)
	if err != nil {
		t.Fatal(err)
	}
	// Registered before the proxy's cleanup, so it runs after the drain.
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_ = rec.Close(ctx)
	})
	return proxytest.Start(t, proxytest.Options{Regions: []string{"eu-west"}, Auditor: rec})
}

// allowedStatementEvents counts the allowed statement events in ac's audit trail.
func allowedStatementEvents(t *testing.T, ac *cluster.Cluster) int {
	t.Helper()
	conn := connect(t, ac.SuperuserDSN(ac.Database))
	defer conn.Close(context.Background())
	var n int
	// Durable in the regional database: chained into events, or appended in
	// a batch of ingest_batches and awaiting the integrator (which chains it
	// within about a second, after a restart of the database once it
	// reconnects).
	if err := conn.QueryRow(ctxT(t), `SELECT count(*) FROM (
		SELECT event_id FROM pgtenant_audit.events WHERE kind = 'statement' AND verdict = 'allow'
		UNION SELECT x.event_id FROM pgtenant_audit.ingest_batches b, unnest(b.events) x
			WHERE x.kind = 'statement' AND x.verdict = 'allow') s`).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

func TestFaultAuditStoreDownSpool(t *testing.T) {
	ac := pgtest.Start(t, cluster.Config{Name: "fault-audit-spool"})
	env := auditStoreEnv(t, ac, audit.ModeSpool)
	ctx := ctxT(t)
	conn := connect(t, env.DSN(t, "42", "eu-west"))
	acked := 0
	run := func() error {
		_, err := conn.Exec(ctx, "SELECT 1")
		if err == nil {
			acked++
		}
		return err
	}
	for range 5 {
		if err := run(); err != nil {
			t.Fatal(err)
		}
	}
	if err := ac.Stop(ctx); err != nil {
		t.Fatal(err)
	}
	// The spool takes statements for a while, then (audit.outage_timeout 1s
	// after the first failed write) new statements get 57P03.
	duringOutage := 0
	var refused error
	for deadline := time.Now().Add(hangBound); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		if err := run(); err != nil {
			refused = err
			break
		}
		duringOutage++
	}
	if duringOutage == 0 {
		t.Error("no statement was accepted into the spool after the audit database stopped")
	}
	var pe *pgconn.PgError
	if !errors.As(refused, &pe) || pe.Code != "57P03" || pe.Severity != "ERROR" || !strings.HasPrefix(pe.Message, "pgtenant:") {
		t.Fatalf("audit down past the outage timeout: got %v, want ERROR 57P03 from pgtenant", refused)
	}
	// Restarted: service resumes on the same connection.
	if err := ac.Restart(ctx); err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(hangBound); ; time.Sleep(100 * time.Millisecond) {
		err := run()
		if err == nil {
			break
		}
		if pgCode(err) != "57P03" || time.Now().After(deadline) {
			t.Fatalf("after the audit database restarted: %v", err)
		}
	}
	for range 3 {
		if err := run(); err != nil {
			t.Fatal(err)
		}
	}
	// Every acknowledged statement has its event in the database.
	n := settle(func() int { return acked - allowedStatementEvents(t, ac) }, 0)
	if got := acked - n; got != acked {
		t.Errorf("%d statements acknowledged (%d while the audit database was down), %d statement events recorded",
			acked, duringOutage, got)
	}
}

func TestFaultAuditStoreDownStrict(t *testing.T) {
	ac := pgtest.Start(t, cluster.Config{Name: "fault-audit-strict"})
	env := auditStoreEnv(t, ac, audit.ModeStrict)
	ctx := ctxT(t)
	conn := connect(t, env.DSN(t, "42", "eu-west"))
	if _, err := conn.Exec(ctx, "SELECT 1"); err != nil {
		t.Fatal(err)
	}
	if err := ac.Stop(ctx); err != nil {
		t.Fatal(err)
	}
	// The very first statement is refused: nothing runs unrecorded.
	_, err := conn.Exec(ctx, "SELECT 1")
	if pgCode(err) != "57P03" {
		t.Fatalf("strict audit with its database down: got %v, want 57P03", err)
	}
	if err := ac.Restart(ctx); err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(hangBound); ; time.Sleep(100 * time.Millisecond) {
		_, err := conn.Exec(ctx, "SELECT 1")
		if err == nil {
			break
		}
		if pgCode(err) != "57P03" || time.Now().After(deadline) {
			t.Fatalf("after the audit database restarted: %v", err)
		}
	}
	if n := allowedStatementEvents(t, ac); n != 2 {
		t.Errorf("strict mode: %d allowed statement events, want the 2 acknowledged statements", n)
	}
}

// rawLoginAt logs in to the proxy at addr over a raw connection with token.
func rawLoginAt(t *testing.T, addr, token string) (net.Conn, *pgproto3.Frontend) {
	t.Helper()
	conn, err := net.DialTimeout("tcp", addr, rawDeadline)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	_ = conn.SetDeadline(time.Now().Add(hangBound))
	fe := pgproto3.NewFrontend(conn, conn)
	fe.Send(rawStartupMessage(nil))
	if err := fe.Flush(); err != nil {
		t.Fatal(err)
	}
	rawAuthenticate(t, fe, token)
	return conn, fe
}

// faultSecret signs the tokens of the serve-based fault tests.
var faultSecret = strings.Repeat("f", 32)

// twoRegionServeConfig renders a serve config with eu-west on eu and
// us-east on us, the spool audit and the admin endpoint on adminAddr.
func twoRegionServeConfig(eu, us *cluster.Cluster, listen, adminAddr, dir string, auditInit bool) string {
	region := func(c *cluster.Cluster) string {
		return fmt.Sprintf("{ host: 127.0.0.1, port: %d, user: %s, password: %s, database: %s, admin_user: postgres, connect_timeout: 2s }",
			c.Port, c.ServiceUser, c.ServicePassword, c.Database)
	}
	return fmt.Sprintf(`listen: %s
admin_listen: %s
log: { level: info, format: json }
auth:
  hs256_secret_env: FAULT_SECRET
regions:
  eu-west: %s
  us-east: %s
audit:
  mode: spool
  spool_dir: %s
  init: %v
limits:
  shutdown_timeout: 5s
`, listen, adminAddr, region(eu), region(us), filepath.Join(dir, "spool"), auditInit)
}

// serveDSN is a connection URL to a serve process for account in region.
func serveDSN(t *testing.T, addr, account, region string) string {
	t.Helper()
	tok, err := auth.Mint(auth.MintOptions{Secret: []byte(faultSecret), Account: account, Region: region, TTL: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	return fmt.Sprintf("postgres://u:%s@%s/app?sslmode=disable", tok, addr)
}

// readyz fetches /readyz and returns the status code and the failing checks.
func readyz(t *testing.T, adminAddr string) (int, map[string]string) {
	t.Helper()
	resp, err := http.Get("http://" + adminAddr + "/readyz")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var body struct {
		Ready  bool `json:"ready"`
		Checks []struct {
			Name  string `json:"name"`
			OK    bool   `json:"ok"`
			Error string `json:"error"`
		} `json:"checks"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&body); err != nil {
		t.Fatalf("/readyz body: %v", err)
	}
	failing := map[string]string{}
	for _, c := range body.Checks {
		if !c.OK {
			failing[c.Name] = c.Error
		}
	}
	if body.Ready != (resp.StatusCode == http.StatusOK) {
		t.Errorf("/readyz: status %d with ready=%v", resp.StatusCode, body.Ready)
	}
	return resp.StatusCode, failing
}

// waitReady polls /readyz until its status is want.
func waitReady(t *testing.T, srv *served, adminAddr string, want int) map[string]string {
	t.Helper()
	var failing map[string]string
	waitFor(t, func() bool {
		var code int
		code, failing = readyz(t, adminAddr)
		return code == want
	}, srv)
	return failing
}

func TestFaultRegionDownAtStartAndUnderLoad(t *testing.T) {
	eu := ownCluster(t, "fault-region", nil)
	us := pgtest.Shared(t, "us-east")
	proxytest.InstallDemo(t, us)
	ctx := ctxT(t)
	// The audit schema is installed while both regions are up: serve's own
	// audit init refuses to start with a region down (see
	// TestFaultServeStartsWithARegionDown), which is not what this tests.
	regions := map[string]config.Region{"eu-west": regionFor(eu), "us-east": regionFor(us)}
	if err := audit.Init(ctx, regions, nil); err != nil {
		t.Fatal(err)
	}
	if err := eu.Stop(ctx); err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	listen, adminAddr := freeAddr(t), freeAddr(t)
	cfgPath := filepath.Join(dir, "pgtenant.yaml")
	if err := os.WriteFile(cfgPath, []byte(twoRegionServeConfig(eu, us, listen, adminAddr, dir, false)), 0o600); err != nil {
		t.Fatal(err)
	}
	srv := startServe(t, cfgPath, listen, "FAULT_SECRET="+faultSecret)

	// Started with eu-west down: not ready, naming the region; us-east serves.
	failing := waitReady(t, srv, adminAddr, http.StatusServiceUnavailable)
	if _, ok := failing["region:eu-west"]; !ok {
		t.Errorf("/readyz does not name the down region: %v", failing)
	}
	if _, ok := failing["region:us-east"]; ok {
		t.Errorf("/readyz blames the healthy region: %v", failing)
	}
	usConn, err := pgx.Connect(ctx, serveDSN(t, listen, "42", "us-east"))
	if err != nil {
		t.Fatalf("us-east with eu-west down: %v\n%s", err, srv.stderr.String())
	}
	defer usConn.Close(context.Background())
	if _, err := pgx.Connect(ctx, serveDSN(t, listen, "42", "eu-west")); pgCode(err) != "08006" {
		t.Errorf("eu-west while down: got %v, want 08006", err)
	}

	// eu-west comes up: ready.
	if err := eu.Restart(ctx); err != nil {
		t.Fatal(err)
	}
	waitReady(t, srv, adminAddr, http.StatusOK)
	euConn, err := pgx.Connect(ctx, serveDSN(t, listen, "42", "eu-west"))
	if err != nil {
		t.Fatalf("eu-west after restart: %v\n%s", err, srv.stderr.String())
	}
	euConn.Close(context.Background())

	// Under load on us-east, eu-west goes down and comes back: /readyz
	// follows, and the us-east load sees no error at all.
	stop := make(chan struct{})
	loadErr := make(chan error, 1)
	var served int
	go func() {
		for {
			select {
			case <-stop:
				loadErr <- nil
				return
			default:
			}
			if _, err := usConn.Exec(ctx, "SELECT count(*) FROM orders WHERE account_id = 42"); err != nil {
				loadErr <- err
				return
			}
			served++
		}
	}()
	if err := eu.Stop(ctx); err != nil {
		t.Fatal(err)
	}
	failing = waitReady(t, srv, adminAddr, http.StatusServiceUnavailable)
	if _, ok := failing["region:eu-west"]; !ok {
		t.Errorf("/readyz does not name the stopped region: %v", failing)
	}
	if err := eu.Restart(ctx); err != nil {
		t.Fatal(err)
	}
	waitReady(t, srv, adminAddr, http.StatusOK)
	close(stop)
	if err := <-loadErr; err != nil {
		t.Fatalf("us-east load failed while eu-west was down: %v", err)
	}
	if served == 0 {
		t.Error("the us-east load ran no statement")
	}
	t.Logf("us-east served %d statements while eu-west went down and came back", served)
}

// With audit.init on (the default), serve must still start when a region is
// down: the other regions serve and /readyz names the down one.
func TestFaultServeStartsWithARegionDown(t *testing.T) {
	eu := ownCluster(t, "fault-region-init", nil)
	us := pgtest.Shared(t, "us-east")
	proxytest.InstallDemo(t, us)
	ctx := ctxT(t)
	if err := eu.Stop(ctx); err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	listen, adminAddr := freeAddr(t), freeAddr(t)
	cfgPath := filepath.Join(dir, "pgtenant.yaml")
	if err := os.WriteFile(cfgPath, []byte(twoRegionServeConfig(eu, us, listen, adminAddr, dir, true)), 0o600); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(binary(t), "serve", "--config", cfgPath)
	cmd.Env = append(os.Environ(), "FAULT_SECRET="+faultSecret)
	var out bytes.Buffer // read only after the process exited
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	t.Cleanup(func() { _ = cmd.Process.Kill(); <-exited })
	for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		select {
		case err := <-exited:
			exited <- err
			t.Fatalf("serve exited (%v) with a region down at start; it must warn and serve the other regions:\n%s", err, out.String())
		default:
		}
		if c, err := net.Dial("tcp", listen); err == nil {
			c.Close()
			break
		}
	}
	if code, failing := readyz(t, adminAddr); code != http.StatusServiceUnavailable || failing["region:eu-west"] == "" {
		t.Errorf("/readyz with eu-west down: %d %v", code, failing)
	}
	conn, err := pgx.Connect(ctx, serveDSN(t, listen, "42", "us-east"))
	if err != nil {
		t.Fatalf("us-east with eu-west down: %v", err)
	}
	conn.Close(ctx)

	// When the region comes back, its audit schema is created in the
	// background and its tenants are served (with their statements audited).
	if err := eu.Restart(ctx); err != nil {
		t.Fatal(err)
	}
	if err := demo.Install(ctx, eu); err != nil {
		t.Fatal(err)
	}
	var lastErr error
	for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); time.Sleep(250 * time.Millisecond) {
		var c *pgx.Conn
		if c, lastErr = pgx.Connect(ctx, serveDSN(t, listen, "42", "eu-west")); lastErr == nil {
			_, lastErr = c.Exec(ctx, "SELECT count(*) FROM orders WHERE account_id = 42")
			c.Close(ctx)
			if lastErr == nil {
				return
			}
		}
	}
	t.Fatalf("eu-west not served after it came back: %v\n%s", lastErr, out.String())
}

// drainServe starts serve with one region on c (spool audit, 5s drain).
func drainServe(t *testing.T, c *cluster.Cluster) (*served, string) {
	t.Helper()
	dir := t.TempDir()
	listen := freeAddr(t)
	cfgPath := filepath.Join(dir, "pgtenant.yaml")
	if err := os.WriteFile(cfgPath, []byte(serveConfig(c, listen, dir, "FAULT_SECRET")), 0o600); err != nil {
		t.Fatal(err)
	}
	return startServe(t, cfgPath, listen, "FAULT_SECRET="+faultSecret), listen
}

// terminate sends SIGTERM to srv.
func terminate(t *testing.T, srv *served) <-chan error {
	t.Helper()
	if err := srv.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- srv.cmd.Wait() }()
	return exited
}

// awaitExit waits for the process to exit and requires exit code 0.
func awaitExit(t *testing.T, srv *served, exited <-chan error) {
	t.Helper()
	select {
	case err := <-exited:
		if err != nil {
			t.Fatalf("exit after SIGTERM: %v\n%s", err, srv.stderr.String())
		}
	case <-time.After(hangBound):
		t.Fatalf("pgtenant did not exit after SIGTERM\n%s", srv.stderr.String())
	}
}

// endedByDrain reports whether err is how a drained session ends for a
// client that was writing when the FATAL came: the FATAL itself, or the
// closed connection behind it.
func endedByDrain(err error) bool {
	return pgCode(err) == "57P01" || errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) ||
		errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.EPIPE) || errors.Is(err, net.ErrClosed)
}

func TestFaultSIGTERMUnderLoad(t *testing.T) {
	c := ownCluster(t, "fault-sigterm", nil)
	srv, listen := drainServe(t, c)
	ctx := ctxT(t)
	dsn := serveDSN(t, listen, "42", "eu-west")
	admin := connect(t, c.SuperuserDSN(c.Database))

	// Clients running short transactions in a loop until the drain ends them.
	const loopers = 3
	var completed atomic.Int64
	loopErrs := make(chan error, loopers)
	for range loopers {
		conn := connect(t, dsn)
		go func() {
			for {
				for _, sql := range []string{"BEGIN", "SELECT count(*) FROM orders WHERE account_id = 42", "COMMIT"} {
					if _, err := conn.Exec(ctx, sql); err != nil {
						loopErrs <- err
						return
					}
					completed.Add(1)
				}
			}
		}()
	}
	sleeper := connect(t, dsn+"&application_name=fault-drain-sleep")
	slept := execAsync(sleeper, "SELECT pg_sleep(2)")
	idleConn, idle := rawLoginAt(t, listen, tokenWith(t, faultSecret, "42"))
	backendPID(t, admin, "fault-drain-sleep")
	for completed.Load() < 30 {
		time.Sleep(10 * time.Millisecond)
	}

	exited := terminate(t, srv)
	waitFor(t, func() bool { return strings.Contains(srv.stderr.String(), `"draining"`) }, srv)
	// New connections are refused at once.
	if conn, err := pgx.Connect(ctx, dsn); err == nil {
		conn.Close(ctx)
		t.Error("a new connection was accepted after SIGTERM")
	}
	// The idle client gets FATAL 57P01 without asking.
	_ = idleConn.SetReadDeadline(time.Now().Add(hangBound))
	if msg, err := idle.Receive(); err != nil {
		t.Errorf("idle client: %v, want FATAL 57P01", err)
	} else if er, ok := msg.(*pgproto3.ErrorResponse); !ok || er.Severity != "FATAL" || er.Code != "57P01" {
		t.Errorf("idle client got %#v, want FATAL 57P01", msg)
	}
	// The running statement completes within the drain deadline.
	if err := awaitErr(t, slept, "pg_sleep during the drain"); err != nil {
		t.Errorf("pg_sleep(2) cut by a 5s drain: %v", err)
	}
	for range loopers {
		if err := <-loopErrs; !endedByDrain(err) {
			t.Errorf("looping client ended with %v, want 57P01 or the closed connection", err)
		}
	}
	awaitExit(t, srv, exited)

	// The audit was flushed before exit: every completed statement (the
	// loops' and the pg_sleep) has its event.
	done := completed.Load() + 1
	var events int64
	if err := admin.QueryRow(ctx, `SELECT count(*) FROM pgtenant_audit.events
		WHERE kind = 'statement' AND verdict = 'allow' AND account_id = '42'`).Scan(&events); err != nil {
		t.Fatal(err)
	}
	if events < done {
		t.Errorf("%d statements completed, %d statement events in the audit after exit", done, events)
	}
	t.Logf("%d statements completed, %d statement events", done, events)
}

func TestFaultSIGTERMCutsAStatementPastTheDeadline(t *testing.T) {
	c := ownCluster(t, "fault-sigterm-cut", nil)
	srv, listen := drainServe(t, c)
	admin := connect(t, c.SuperuserDSN(c.Database))
	sleeper := connect(t, serveDSN(t, listen, "42", "eu-west")+"&application_name=fault-drain-cut")
	slept := execAsync(sleeper, "SELECT pg_sleep(60)")
	backendPID(t, admin, "fault-drain-cut")
	exited := terminate(t, srv)
	err := awaitErr(t, slept, "pg_sleep past the drain deadline")
	if pe := (*pgconn.PgError)(nil); !errors.As(err, &pe) || pe.Code != "57P01" || pe.Severity != "FATAL" {
		t.Errorf("statement past the 5s drain: got %v, want FATAL 57P01", err)
	}
	awaitExit(t, srv, exited)
}

func TestFaultAuditStoreSlowSpool(t *testing.T) {
	ac := pgtest.Start(t, cluster.Config{Name: "fault-audit-slow"})
	env := auditStoreEnv(t, ac, audit.ModeSpool)
	ctx := ctxT(t)
	conn := connect(t, env.DSN(t, "42", "eu-west"))
	if _, err := conn.Exec(ctx, "SELECT 1"); err != nil {
		t.Fatal(err)
	}
	if n := settle(func() int { return 1 - allowedStatementEvents(t, ac) }, 0); n != 0 {
		t.Fatal("the first statement event never reached the audit database")
	}
	// A transaction holding the audit tables exclusively stalls every append.
	locker := connect(t, ac.SuperuserDSN(ac.Database))
	tx, err := locker.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback(context.Background()) //nolint:errcheck // released below
	if _, err := tx.Exec(ctx, "LOCK TABLE pgtenant_audit.events, pgtenant_audit.chain_heads IN ACCESS EXCLUSIVE MODE"); err != nil {
		t.Fatal(err)
	}
	watcher := connect(t, ac.SuperuserDSN(ac.Database))
	stalled := func() bool {
		var waiting int
		if err := watcher.QueryRow(ctx, `SELECT count(*) FROM pg_locks WHERE NOT granted
			AND relation IN ('pgtenant_audit.events'::regclass, 'pgtenant_audit.chain_heads'::regclass)`).Scan(&waiting); err != nil {
			t.Fatal(err)
		}
		return waiting > 0
	}
	acked := 1
	if _, err := conn.Exec(ctx, "SELECT 1"); err != nil {
		t.Fatal(err)
	}
	acked++
	for deadline := time.Now().Add(hangBound); !stalled(); time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the audit writer never waited on the locked tables")
		}
	}
	// While the audit database stalls, the spool keeps taking statements.
	for range 20 {
		if _, err := conn.Exec(ctx, "SELECT 1"); err != nil {
			t.Fatalf("statement while the audit database stalls: %v", err)
		}
		acked++
	}
	if !stalled() {
		t.Fatal("the audit writer stopped waiting before the statements ran; the test proved nothing")
	}
	if err := tx.Rollback(ctx); err != nil {
		t.Fatal(err)
	}
	n := settle(func() int { return acked - allowedStatementEvents(t, ac) }, 0)
	if got := acked - n; got != acked {
		t.Errorf("%d statements acknowledged, %d statement events recorded after the stall", acked, got)
	}
}
