package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pgtenant/pgtenant/cluster"
	"github.com/pgtenant/pgtenant/config"
	"github.com/pgtenant/pgtenant/isolation"
	"github.com/pgtenant/pgtenant/test/pgtest"
)

// syncBuffer is a goroutine-safe log sink.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// serveTestConfig renders a serve config in front of c; extra is appended
// to the region's flow mapping (e.g. ", admin_user: postgres").
func serveTestConfig(t *testing.T, c *cluster.Cluster, listen, extra string) string {
	t.Helper()
	dir := t.TempDir()
	body := fmt.Sprintf(`listen: %s
admin_listen: ""
auth:
  hs256_secret: %s
regions:
  eu-west: { host: 127.0.0.1, port: %d, user: %s, password: %s, database: %s, connect_timeout: 2s%s }
audit:
  mode: spool
  spool_dir: %s
limits:
  shutdown_timeout: 30s
`, listen, strings.Repeat("s", 32), c.Port, c.ServiceUser, c.ServicePassword, c.Database, extra, filepath.Join(dir, "spool"))
	path := filepath.Join(dir, "pgtenant.yaml")
	if err := os.WriteFile(path, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

func exitCode(err error) int {
	if err == nil {
		return exitOK
	}
	var ee *exitError
	if errors.As(err, &ee) {
		return ee.code
	}
	return exitUsage
}

// The first serve on a fresh database without an admin role names the real
// cause (no role may create the audit schema) and the fix, not an outage.
func TestServeFreshDatabaseNamesTheCause(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a PostgreSQL cluster")
	}
	c := pgtest.Start(t, cluster.Config{Name: "serve-fresh"})
	path := serveTestConfig(t, c, "127.0.0.1:0", "")
	var log syncBuffer
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	err := runServe(ctx, path, &log)
	if exitCode(err) != exitUsage || err == nil {
		t.Fatalf("serve: exit %d, err %v; log:\n%s", exitCode(err), err, log.String())
	}
	if !strings.Contains(err.Error(), "admin_user") || strings.Contains(log.String()+err.Error(), "unreachable") {
		t.Fatalf("error %q does not name admin_user (or blames reachability); log:\n%s", err, log.String())
	}
	if strings.Contains(err.Error(), "\n") {
		t.Fatalf("error is not one line: %q", err)
	}
	// a wrong password is the server's answer too: named, with the fix
	bad := serveTestConfig(t, c, "127.0.0.1:0", ", admin_user: app, admin_password: wrong")
	err = runServe(ctx, bad, &log)
	if exitCode(err) != exitUsage || !strings.Contains(err.Error(), "28P01") || !strings.Contains(err.Error(), "fix: check regions.<name>.user and password") {
		t.Fatalf("wrong password: %v", err)
	}
}

// A port in use is one line naming the key and the fix, before any region is contacted.
func TestServePortInUseIsOneLine(t *testing.T) {
	held, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer held.Close()
	dir := t.TempDir()
	path := filepath.Join(dir, "pgtenant.yaml")
	// the region does not exist: binding must fail before it is contacted
	body := fmt.Sprintf("listen: %s\nauth: { hs256_secret: %s }\nregions:\n  eu-west: { host: 127.0.0.1, port: 1, user: app }\naudit: { spool_dir: %s }\n",
		held.Addr(), strings.Repeat("s", 32), dir)
	if err := os.WriteFile(path, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	var log syncBuffer
	err = runServe(context.Background(), path, &log)
	if exitCode(err) != exitUsage || err == nil {
		t.Fatalf("exit %d, err %v", exitCode(err), err)
	}
	want := fmt.Sprintf("listen %s: address already in use: stop the process holding the port or set listen to a free address", held.Addr())
	if !strings.HasPrefix(err.Error(), want) || strings.Contains(err.Error(), "\n") || log.String() != "" {
		t.Fatalf("error %q (log %q), want one line starting %q", err, log.String(), want)
	}
	// the demo reports it the same way before starting any cluster
	var out, errOut bytes.Buffer
	err = runDemo(context.Background(), &out, &errOut, held.Addr().String(), "")
	if err == nil || !strings.Contains(err.Error(), "address already in use") || strings.Contains(out.String(), "starting PostgreSQL") {
		t.Fatalf("demo: %v\n%s%s", err, out.String(), errOut.String())
	}
}

// SIGTERM (the context ending) with the region down exits 0 without waiting
// out limits.shutdown_timeout: the spool keeps the unshipped events.
func TestServeStopsPromptlyWithRegionDown(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a PostgreSQL cluster")
	}
	c := pgtest.Start(t, cluster.Config{Name: "serve-down"})
	addr := freeLoopback(t)
	path := serveTestConfig(t, c, addr, ", admin_user: postgres")
	var log syncBuffer
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- runServe(ctx, path, &log) }()
	waitListening(t, addr, done, &log)
	stopCtx, stopCancel := context.WithTimeout(context.Background(), time.Minute)
	defer stopCancel()
	if err := c.Stop(stopCtx); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	cancel()
	select {
	case err := <-done:
		took := time.Since(start)
		t.Logf("serve stopped in %s", took)
		if err != nil {
			t.Fatalf("serve exit %d: %v\n%s", exitCode(err), err, log.String())
		}
		// shutdown_timeout is 30s: stopping must not wait it out
		if took >= 30*time.Second {
			t.Fatalf("serve took %s to stop", took)
		}
	case <-time.After(45 * time.Second):
		t.Fatalf("serve did not stop:\n%s", log.String())
	}
}

func freeLoopback(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

func waitListening(t *testing.T, addr string, done <-chan error, log fmt.Stringer) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		if conn, err := net.Dial("tcp", addr); err == nil {
			conn.Close()
			// bound before start: wait for the app to report it serves
			if strings.Contains(log.String(), "pgtenant listening") {
				return
			}
		}
		select {
		case err := <-done:
			t.Fatalf("serve ended: %v\n%s", err, log)
		case <-time.After(50 * time.Millisecond):
		}
	}
	t.Fatalf("serve did not start:\n%s", log)
}

// audit seal warns when the checkpoint directory or the public key is unset.
func TestSealWarnsAboutMissingSettings(t *testing.T) {
	var buf bytes.Buffer
	log := newLogger(&buf, config.Log{Level: "info", Format: "text"}, new(slog.LevelVar))
	warnSealConfig(log, config.Audit{})
	out := buf.String()
	if strings.Count(out, "level=WARN") != 2 || !strings.Contains(out, "audit.checkpoint_dir is unset") || !strings.Contains(out, "audit.seal_public_key is unset") {
		t.Fatalf("warnings:\n%s", out)
	}
	buf.Reset()
	warnSealConfig(log, config.Audit{CheckpointDir: "/c", SealPublicKey: "/k.pem"})
	if buf.Len() != 0 {
		t.Fatalf("warned with both set:\n%s", buf.String())
	}
}

// The isolation WARNs name what makes RLS ineffective, and only that.
func TestIsolationWarnings(t *testing.T) {
	var buf bytes.Buffer
	log := newLogger(&buf, config.Log{Level: "info", Format: "text"}, new(slog.LevelVar))
	rep := isolation.Report{Region: "eu-west"}
	rep.Role = isolation.RoleLayer{Role: "app", BypassRLS: true, OwnsTables: []string{"public.notes"}}
	rep.RLS.Tables = []isolation.TableReport{{Table: "public.orders", RLSEnabled: true, RLSForced: false}, {Table: "public.notes", RLSEnabled: true, RLSForced: true}}
	logIsolationWarnings(log, rep)
	out := buf.String()
	if strings.Count(out, "level=WARN") != 2 || !strings.Contains(out, "bypassrls=true") || !strings.Contains(out, "owns_tenant_tables=[public.notes]") ||
		!strings.Contains(out, "tables=[public.orders]") || !strings.Contains(out, "pgtenant setup") {
		t.Fatalf("warnings:\n%s", out)
	}
	buf.Reset()
	rep.Role = isolation.RoleLayer{Role: "app"}
	rep.RLS.Tables = rep.RLS.Tables[1:]
	logIsolationWarnings(log, rep)
	if buf.Len() != 0 {
		t.Fatalf("warned about a sound region:\n%s", buf.String())
	}
}
