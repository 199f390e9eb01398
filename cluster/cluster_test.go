package cluster_test

import (
	"context"
	"errors"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"golang.org/x/sys/unix"

	"github.com/pgtenant/pgtenant/cluster"
	"github.com/pgtenant/pgtenant/test/pgtest"
)

func ctxT(t *testing.T) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	t.Cleanup(cancel)
	return ctx
}

// sqlState returns the SQLSTATE of err, or "".
func sqlState(err error) string {
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) {
		return pgErr.Code
	}
	return ""
}

func TestStartTwoConcurrently(t *testing.T) {
	ctx := ctxT(t)
	var (
		wg       sync.WaitGroup
		clusters [2]*cluster.Cluster
	)
	for i, name := range []string{"eu-west", "us-east"} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			clusters[i] = pgtest.Start(t, cluster.Config{Name: name})
		}()
	}
	wg.Wait()
	if t.Failed() {
		t.FailNow()
	}
	a, b := clusters[0], clusters[1]
	if a.Port == b.Port || a.Dir == b.Dir {
		t.Fatalf("clusters share port or dir: %d %s / %d %s", a.Port, a.Dir, b.Port, b.Dir)
	}
	for _, c := range clusters {
		conn := pgtest.Conn(t, c.ServiceDSN())
		var user, db, port string
		if err := conn.QueryRow(ctx, "SELECT current_user, current_database(), current_setting('port')").Scan(&user, &db, &port); err != nil {
			t.Fatal(err)
		}
		if user != "app" || db != "app" || port != strconv.Itoa(c.Port) {
			t.Errorf("%s: connected as %s to %s on port %s", c.Name, user, db, port)
		}
	}
}

func TestServiceRoleIsUnprivilegedAndUsesSCRAM(t *testing.T) {
	ctx := ctxT(t)
	c := pgtest.Start(t, cluster.Config{Name: "roles", ServiceUser: "svc", ServicePassword: "s3cret'pw", Database: "shop"})
	su := pgtest.Conn(t, c.SuperuserDSN("postgres"))
	var super, bypass, createdb, createrole, login bool
	var verifier, dbOwner string
	err := su.QueryRow(ctx, `SELECT rolsuper, rolbypassrls, rolcreatedb, rolcreaterole, rolcanlogin, rolpassword
		FROM pg_authid WHERE rolname = 'svc'`).Scan(&super, &bypass, &createdb, &createrole, &login, &verifier)
	if err != nil {
		t.Fatal(err)
	}
	if super || bypass || createdb || createrole || !login {
		t.Errorf("svc: super=%v bypassrls=%v createdb=%v createrole=%v login=%v", super, bypass, createdb, createrole, login)
	}
	if !strings.HasPrefix(verifier, "SCRAM-SHA-256$") {
		t.Errorf("svc password stored as %.14q..., want a SCRAM-SHA-256 verifier", verifier)
	}
	if err := su.QueryRow(ctx, `SELECT pg_get_userbyid(datdba) FROM pg_database WHERE datname = 'shop'`).Scan(&dbOwner); err != nil {
		t.Fatal(err)
	}
	if dbOwner != "postgres" {
		t.Errorf("database shop owned by %s, want postgres", dbOwner)
	}
	// The right password logs in over TCP; pg_hba demands SCRAM for it.
	conn := pgtest.Conn(t, c.ServiceDSN())
	var user string
	if err := conn.QueryRow(ctx, "SELECT current_user").Scan(&user); err != nil || user != "svc" {
		t.Fatalf("service login: user %q, err %v", user, err)
	}
	var method string
	err = su.QueryRow(ctx, `SELECT auth_method FROM pg_hba_file_rules
		WHERE type = 'host' AND 'all' = ANY(user_name) ORDER BY line_number LIMIT 1`).Scan(&method)
	if err != nil || method != "scram-sha-256" {
		t.Errorf("host rule for all users: method %q, err %v", method, err)
	}
	// A wrong password and a password-less login are rejected.
	for _, dsn := range []string{c.DSN("svc", "wrong", "shop"), c.DSN("svc", "", "shop")} {
		bad, err := pgx.Connect(ctx, dsn)
		if err == nil {
			bad.Close(ctx)
			t.Fatalf("login with wrong/no password succeeded")
		}
		if got := sqlState(err); got != "28P01" {
			t.Errorf("wrong password: SQLSTATE %q (%v), want 28P01", got, err)
		}
	}
}

func TestSettingsAndHBA(t *testing.T) {
	ctx := ctxT(t)
	c := pgtest.Start(t, cluster.Config{
		Name:     "conf",
		Settings: map[string]string{"work_mem": "7MB", "max_connections": "50", "application_name": "it's"},
		HBA:      []string{"host all legacy 127.0.0.1/32 md5"},
	})
	if err := c.Exec(ctx, "app", "SET password_encryption = 'md5'; CREATE ROLE legacy LOGIN PASSWORD 'old'"); err != nil {
		t.Fatal(err)
	}
	su := pgtest.Conn(t, c.SuperuserDSN("app"))
	want := map[string]string{"work_mem": "7MB", "max_connections": "50", "fsync": "off", "dynamic_shared_memory_type": "mmap",
		"password_encryption": "scram-sha-256", "listen_addresses": "127.0.0.1", "application_name": "it's",
		"unix_socket_directories": c.SocketDir}
	for k, v := range want {
		var got string
		if err := su.QueryRow(ctx, "SELECT current_setting($1)", k).Scan(&got); err != nil {
			t.Fatal(err)
		}
		if k == "application_name" {
			// The session value comes from the client; check the file value.
			if err := su.QueryRow(ctx, "SELECT reset_val FROM pg_settings WHERE name = $1", k).Scan(&got); err != nil {
				t.Fatal(err)
			}
		}
		if got != v {
			t.Errorf("%s = %q, want %q", k, got, v)
		}
	}
	conn := pgtest.Conn(t, c.DSN("legacy", "old", "app"))
	var user string
	if err := conn.QueryRow(ctx, "SELECT current_user").Scan(&user); err != nil || user != "legacy" {
		t.Fatalf("md5 login: %q %v", user, err)
	}
	// Reserved settings are refused before anything starts.
	if _, err := cluster.Start(ctx, cluster.Config{Settings: map[string]string{"port": "1"}}); err == nil || !strings.Contains(err.Error(), `"port"`) {
		t.Errorf("Start with port setting: err %v", err)
	}
}

func TestStopRestartKeepsData(t *testing.T) {
	ctx := ctxT(t)
	c := pgtest.Start(t, cluster.Config{Name: "stop"})
	if err := c.Exec(ctx, "app", "CREATE TABLE t (v int); INSERT INTO t VALUES (1), (2)"); err != nil {
		t.Fatal(err)
	}
	if err := c.Stop(ctx); err != nil {
		t.Fatal(err)
	}
	if err := c.Exec(ctx, "app", "SELECT 1"); err == nil {
		t.Fatal("Exec succeeded on a stopped cluster")
	}
	if err := c.Stop(ctx); err != nil {
		t.Errorf("second Stop: %v", err)
	}
	port := c.Port
	if err := c.Restart(ctx); err != nil {
		t.Fatal(err)
	}
	if c.Port != port {
		t.Errorf("port changed on restart: %d -> %d", port, c.Port)
	}
	if err := c.Restart(ctx); err == nil {
		t.Error("Restart of a running cluster succeeded")
	}
	assertCount(t, c, "SELECT count(*) FROM t", 2)
}

func TestKillThenRestartRecovers(t *testing.T) {
	ctx := ctxT(t)
	c := pgtest.Start(t, cluster.Config{Name: "kill"})
	if err := c.Exec(ctx, "app", "CREATE TABLE t (v int); INSERT INTO t VALUES (1)"); err != nil {
		t.Fatal(err)
	}
	conn := pgtest.Conn(t, c.ServiceDSN())
	if err := c.Kill(); err != nil {
		t.Fatal(err)
	}
	// The open connection is dead and new ones are refused.
	if _, err := conn.Exec(ctx, "SELECT 1"); err == nil {
		t.Error("query on a connection to a killed server succeeded")
	}
	d := net.Dialer{Timeout: 2 * time.Second}
	if nc, err := d.DialContext(ctx, "tcp", c.Addr()); err == nil {
		nc.Close()
		t.Error("killed server still accepts TCP connections")
	}
	if err := c.Kill(); err == nil {
		t.Error("Kill of a killed cluster succeeded")
	}
	if err := c.Restart(ctx); err != nil {
		t.Fatal(err)
	}
	assertCount(t, c, "SELECT count(*) FROM t", 1)
}

func TestCloseRemovesDirAndIsIdempotent(t *testing.T) {
	ctx := ctxT(t)
	c := pgtest.Start(t, cluster.Config{Name: "close"})
	if _, err := os.Stat(filepath.Join(c.DataDir, "PG_VERSION")); err != nil {
		t.Fatal(err)
	}
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(c.Dir); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("dir %s still exists after Close (stat err %v)", c.Dir, err)
	}
	if err := c.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
	if err := c.Exec(ctx, "app", "SELECT 1"); err == nil {
		t.Error("Exec after Close succeeded")
	}
	for name, err := range map[string]error{"Stop": c.Stop(ctx), "Restart": c.Restart(ctx), "Kill": c.Kill()} {
		if !errors.Is(err, cluster.ErrClosed) {
			t.Errorf("%s after Close: %v, want ErrClosed", name, err)
		}
	}
}

func TestPortInUseErrorHasLogTail(t *testing.T) {
	ctx := ctxT(t)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	port := l.Addr().(*net.TCPAddr).Port
	parent := t.TempDir()
	if os.Geteuid() == 0 {
		parent = "" // t.TempDir is not searchable by the postgres user
	}
	_, err = cluster.Start(ctx, cluster.Config{Name: "busy", Port: port, Dir: parent})
	if err == nil {
		t.Fatal("Start on a busy port succeeded")
	}
	if !strings.Contains(err.Error(), "server log") || !strings.Contains(err.Error(), "could not") {
		t.Errorf("error lacks the server log tail: %v", err)
	}
}

func assertCount(t *testing.T, c *cluster.Cluster, query string, want int) {
	t.Helper()
	conn := pgtest.Conn(t, c.SuperuserDSN("app"))
	var n int
	if err := conn.QueryRow(context.Background(), query).Scan(&n); err != nil {
		t.Fatal(err)
	}
	if n != want {
		t.Errorf("%s = %d, want %d", query, n, want)
	}
}

func TestStartWithoutTemplateAndLongDir(t *testing.T) {
	if testing.Short() {
		t.Skip("runs initdb")
	}
	t.Setenv(cluster.EnvNoTemplate, "1")
	base, err := os.MkdirTemp(scratchParent(), "long-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(base) })
	// Deep enough that Dir/sock/.s.PGSQL.<port> exceeds the socket name limit.
	parent := filepath.Join(base, strings.Repeat("d", 60), strings.Repeat("e", 60))
	if err := os.MkdirAll(parent, 0o755); err != nil {
		t.Fatal(err)
	}
	for p := parent; p != filepath.Dir(base); p = filepath.Dir(p) {
		if err := os.Chmod(p, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	c := pgtest.Start(t, cluster.Config{Name: "long", Dir: parent})
	if strings.HasPrefix(c.SocketDir, c.Dir) {
		t.Errorf("socket dir %s is inside the long dir %s", c.SocketDir, c.Dir)
	}
	if _, err := os.Stat(filepath.Join(c.SocketDir, ".s.PGSQL."+strconv.Itoa(c.Port))); err != nil {
		t.Errorf("no Unix socket: %v", err)
	}
	assertCount(t, c, "SELECT 1", 1)
	sock := c.SocketDir
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(sock); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("separate socket dir %s survived Close (err %v)", sock, err)
	}
}

// scratchParent is where tests make their own parent directories: /dev/shm
// when present (as the cluster package prefers), else the default temp dir.
func scratchParent() string {
	if fi, err := os.Stat("/dev/shm"); err == nil && fi.IsDir() {
		return "/dev/shm"
	}
	return ""
}

func TestKillThenCloseLeavesNoSharedMemory(t *testing.T) {
	c := pgtest.Start(t, cluster.Config{Name: "shm"})
	b, err := os.ReadFile(filepath.Join(c.DataDir, "postmaster.pid"))
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(string(b), "\n")
	if len(lines) < 7 || len(strings.Fields(lines[6])) != 2 {
		t.Fatalf("postmaster.pid has no shared memory line:\n%s", b)
	}
	shmid, err := strconv.Atoi(strings.Fields(lines[6])[1])
	if err != nil {
		t.Fatal(err)
	}
	var ds unix.SysvShmDesc
	if _, err := unix.SysvShmCtl(shmid, unix.IPC_STAT, &ds); err != nil {
		t.Fatalf("segment %d of the running server: %v", shmid, err)
	}
	if err := c.Kill(); err != nil {
		t.Fatal(err)
	}
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := unix.SysvShmCtl(shmid, unix.IPC_STAT, &ds); err == nil && int(int32(ds.Perm.Key)) != 0 && ds.Nattch == 0 {
		t.Errorf("SysV segment %d (key %#x) of the killed server survived Close", shmid, ds.Perm.Key)
	}
}
