package e2e

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/pgtenant/pgtenant/audit"
	"github.com/pgtenant/pgtenant/cluster"
	"github.com/pgtenant/pgtenant/config"
	"github.com/pgtenant/pgtenant/proxy"
	"github.com/pgtenant/pgtenant/test/pgtest"
	"github.com/pgtenant/pgtenant/test/proxytest"
)

// auditEnv runs the proxy with the real policy and a real Recorder in the
// given mode, writing to a cluster of its own.
func auditEnv(t *testing.T, mode, statement string) (*proxytest.Env, *audit.Recorder, *cluster.Cluster) {
	t.Helper()
	return auditEnvOn(t, "audit-"+mode, mode, statement)
}

// auditEnvOn is auditEnv on a cluster of the given name: tests that count
// events take one of their own.
func auditEnvOn(t *testing.T, clusterName, mode, statement string) (*proxytest.Env, *audit.Recorder, *cluster.Cluster) {
	t.Helper()
	c := pgtest.Start(t, cluster.Config{Name: clusterName})
	proxytest.InstallDemo(t, c)
	var rec *audit.Recorder
	env := proxytest.Start(t, proxytest.Options{Regions: []string{"eu-west"}, Policy: true,
		Configure: func(cfg *config.Config) {
			cfg.Regions["eu-west"] = auditRegion(c)
			cfg.Audit.Disabled, cfg.Audit.Mode, cfg.Audit.Statement = false, mode, statement
			cfg.Audit.SpoolDir = t.TempDir()
		},
		NewAuditor: func(t testing.TB, cfg *config.Config) proxy.Auditor {
			ctx := context.Background()
			if err := audit.Init(ctx, cfg.Regions, nil); err != nil {
				t.Fatal(err)
			}
			var err error
			rec, err = audit.NewRecorder(ctx, cfg.Audit, cfg.Regions, "e2e", slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn})))
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { _ = rec.Close(context.Background()) })
			return rec
		}})
	return env, rec, c
}

// auditRegion is c as a region whose admin role can run audit init and verify.
func auditRegion(c *cluster.Cluster) config.Region {
	return config.Region{Host: "127.0.0.1", Port: c.Port, User: c.ServiceUser, Password: c.ServicePassword,
		Database: c.Database, AdminUser: cluster.Superuser, SSLMode: "disable", ConnectTimeout: 5 * time.Second}
}

// writeAuditConfig writes a config for `pgtenant audit ...` against c.
func writeAuditConfig(t *testing.T, c *cluster.Cluster) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "audit.yaml")
	body := fmt.Sprintf("auth: {hs256_secret: %s}\nregions:\n  eu-west: {host: 127.0.0.1, port: %d, user: %s, password: %s, database: %s, admin_user: postgres}\n",
		strings.Repeat("s", 32), c.Port, c.ServiceUser, c.ServicePassword, c.Database)
	if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// runBinary runs the pgtenant binary and returns its combined output.
func runBinary(t *testing.T, args ...string) (string, error) {
	t.Helper()
	out, err := exec.Command(binary(t), args...).CombinedOutput()
	return string(out), err
}

func TestAuditRecordsEveryAccessExactly(t *testing.T) {
	// strict writes a statement's result as its own row; spool and async
	// merge it into the statement's row (one row per statement).
	for _, mode := range []string{"strict", "async", "spool"} {
		t.Run(mode, func(t *testing.T) { auditRecordsEveryAccessExactly(t, mode) })
	}
}

func auditRecordsEveryAccessExactly(t *testing.T, mode string) {
	env, rec, c := auditEnv(t, mode, "normalized")
	ctx := ctxT(t)
	if _, err := pgx.Connect(ctx, env.DSNWithToken("garbage")); pgCode(err) != "28000" {
		t.Fatalf("bad token: %v", err)
	}
	conn, err := pgx.Connect(ctx, env.DSN(t, "42", "eu-west"))
	if err != nil {
		t.Fatal(err)
	}
	simple := pgx.QueryExecModeSimpleProtocol
	for _, q := range []string{"SELECT 1", "SELECT note FROM orders WHERE account_id = 42 AND note = 'secret-literal'"} {
		if _, err := conn.Exec(ctx, q, simple); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := conn.Exec(ctx, "SELECT * FROM orders", simple); pgCode(err) != "42501" {
		t.Fatalf("unscoped: %v", err)
	}
	// Extended: one Parse, two Binds to the tenant, one Bind to another tenant.
	if _, err := conn.Prepare(ctx, "by_account", "SELECT count(*) FROM orders WHERE account_id = $1"); err != nil {
		t.Fatal(err)
	}
	for _, account := range []string{"42", "42", "7"} {
		var n int
		err := conn.QueryRow(ctx, "by_account", account).Scan(&n)
		if (account == "7") != (pgCode(err) == "42501") {
			t.Fatalf("bind %s: %v", account, err)
		}
	}
	conn.Close(ctx)
	time.Sleep(200 * time.Millisecond) // the disconnect event is queued after the session ends
	if err := rec.Close(ctx); err != nil {
		t.Fatal(err)
	}

	admin := connect(t, c.SuperuserDSN(c.Database))
	count := func(where string) int {
		var n int
		if err := admin.QueryRow(ctx, "SELECT count(*) FROM pgtenant_audit.events WHERE "+where).Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n
	}
	results, merged := 4, 0
	if mode != "strict" {
		results, merged = 0, 4
	}
	checks := []struct {
		where string
		want  int
	}{
		{"chain_id = '-' AND kind = 'reject'", 1},
		{"chain_id = '42' AND kind = 'connect'", 1},
		{"chain_id = '42' AND kind = 'disconnect'", 1},
		// 2 simple allowed + 2 allowed Binds; pgx's Prepare is a Parse (not executed: no event).
		{"chain_id = '42' AND kind = 'statement' AND verdict = 'allow'", 4},
		{"chain_id = '42' AND kind = 'statement' AND verdict = 'deny'", 2},
		{"chain_id = '42' AND kind = 'result'", results},
		{"chain_id = '42' AND kind = 'statement' AND verdict = 'allow' AND duration_us IS NOT NULL AND rows IS NOT NULL", merged},
		{"chain_id = '42' AND kind = 'statement' AND verdict = 'deny' AND sqlstate = '42501' AND reason <> ''", 2},
		{"statement LIKE '%secret-literal%'", 0}, // normalized: no literal in the log
		{"chain_id = '42' AND kind = 'statement' AND verdict = 'allow' AND 'public.orders' = ANY(tables)", 3},
		{"chain_id = '42' AND kind = 'statement' AND verdict = 'deny' AND 'public.orders' = ANY(tables)", 2},
	}
	for _, ch := range checks {
		if got := count(ch.where); got != ch.want {
			t.Errorf("events where %s: %d, want %d", ch.where, got, ch.want)
		}
	}
	var rows int64
	kind := "result"
	if mode != "strict" {
		kind = "statement"
	}
	if err := admin.QueryRow(ctx, "SELECT rows FROM pgtenant_audit.events WHERE chain_id = '42' AND kind = $1 AND verdict IS DISTINCT FROM 'deny' AND statement LIKE '%note = $%'", kind).Scan(&rows); err != nil {
		t.Fatalf("result event of the scoped read: %v", err)
	}
	if rows != 0 {
		t.Errorf("result rows = %d, want 0 (no order has that note)", rows)
	}
	out, err := runBinary(t, "audit", "verify", "--config", writeAuditConfig(t, c))
	if err != nil || !strings.Contains(out, "every chain verifies") {
		t.Errorf("audit verify after proxy traffic: %v\n%s", err, out)
	}
}

func TestAuditFullStatementMode(t *testing.T) {
	env, rec, c := auditEnv(t, "async", "full")
	ctx := ctxT(t)
	conn := connect(t, env.DSN(t, "42", "eu-west"))
	if _, err := conn.Exec(ctx, "SELECT note FROM orders WHERE account_id = 42 AND note = 'full-literal'", pgx.QueryExecModeSimpleProtocol); err != nil {
		t.Fatal(err)
	}
	if _, err := conn.Exec(ctx, "SELECT note FROM orders WHERE note = 'denied-literal'", pgx.QueryExecModeSimpleProtocol); pgCode(err) != "42501" {
		t.Fatalf("unscoped: %v", err)
	}
	conn.Close(ctx)
	if err := rec.Close(ctx); err != nil {
		t.Fatal(err)
	}
	admin := connect(t, c.SuperuserDSN(c.Database))
	for _, lit := range []string{"full-literal", "denied-literal"} {
		var n int
		if err := admin.QueryRow(ctx, "SELECT count(*) FROM pgtenant_audit.events WHERE kind = 'statement' AND statement LIKE '%'||$1||'%'", lit).Scan(&n); err != nil || n != 1 {
			t.Errorf("statement events with %q in full mode: %d (%v), want 1", lit, n, err)
		}
	}
}
