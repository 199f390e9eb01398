package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/pgtenant/pgtenant/auth"
	"github.com/pgtenant/pgtenant/cluster"
	"github.com/pgtenant/pgtenant/config"
	"github.com/pgtenant/pgtenant/test/pgtest"
)

// tenantConn connects to the proxy at addr as account in region eu-west.
func tenantConn(t *testing.T, addr, account, db string) *pgx.Conn {
	t.Helper()
	tok, err := auth.Mint(auth.MintOptions{Secret: []byte(proveSecret), Account: account, Region: "eu-west", TTL: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	u := url.URL{Scheme: "postgres", User: url.UserPassword("tenant", tok), Host: addr, Path: "/" + db, RawQuery: "sslmode=disable"}
	return pgtest.Conn(t, u.String())
}

// usableWithin retries query through conn until it succeeds, giving up
// after limit; it returns how long it took.
func usableWithin(t *testing.T, conn *pgx.Conn, query string, limit time.Duration) time.Duration {
	t.Helper()
	start := time.Now()
	var last error
	for time.Since(start) < limit {
		ctx, cancel := context.WithTimeout(context.Background(), limit)
		_, last = conn.Exec(ctx, query)
		cancel()
		if last == nil {
			return time.Since(start)
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("%s still fails after %s: %v", query, limit, last)
	return 0
}

// A tenant table a migration creates is usable through the proxy right
// after the migration commits, in a session opened before it, without a
// restart: through the event trigger `setup` installs, and without it
// through the rediscovery on an unknown relation.
func TestMigrationTableUsableAtOnce(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a PostgreSQL cluster")
	}
	c := pgtest.Start(t, cluster.Config{Name: "migrations"})
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	if err := c.Exec(ctx, c.Database, `CREATE TABLE orders (id bigserial, account_id bigint NOT NULL)`); err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	cfgPath := writeProveConfig(t, dir, map[string]*cluster.Cluster{"eu-west": c}, "auth:\n  hs256_secret: "+proveSecret)
	if out, code, err := runSetupArgs(t, "--config", cfgPath, "--apply"); code != exitOK {
		t.Fatalf("setup --apply: %v\n%s", err, out)
	}
	cfg, err := config.Load(cfgPath)
	if err != nil {
		t.Fatal(err)
	}
	var log syncBuffer
	logger := slog.New(slog.NewTextHandler(&log, &slog.HandlerOptions{Level: slog.LevelDebug}))
	addr, stop, err := startProveApp(ctx, cfg, logger, new(slog.LevelVar))
	if err != nil {
		t.Fatal(err)
	}
	defer stop()
	tenant := tenantConn(t, addr, "42", c.Database)
	if _, err := tenant.Exec(ctx, "SELECT * FROM orders WHERE account_id = 42"); err != nil {
		t.Fatal(err)
	}
	// before the migration the table is unknown; the hint does not tell to register it by hand
	_, err = tenant.Exec(ctx, "SELECT * FROM invoices WHERE account_id = 42")
	if err == nil || !strings.Contains(err.Error(), "neither a tenant nor a global table") {
		t.Fatalf("unknown table: %v", err)
	}
	admin := pgtest.Conn(t, c.SuperuserDSN(c.Database))
	migrate := func(table string) {
		t.Helper()
		sql := fmt.Sprintf(`BEGIN;
			CREATE TABLE %[1]s (id bigserial, account_id bigint NOT NULL, amount numeric);
			ALTER TABLE %[1]s ENABLE ROW LEVEL SECURITY;
			ALTER TABLE %[1]s FORCE ROW LEVEL SECURITY;
			CREATE POLICY p ON %[1]s USING (account_id = NULLIF(current_setting('app.current_account_id', true), '')::bigint);
			COMMIT`, table)
		if _, err := admin.Exec(ctx, sql); err != nil {
			t.Fatal(err)
		}
	}

	// 1. the event trigger notifies the proxy at commit
	migrate("invoices")
	took := usableWithin(t, tenant, "INSERT INTO invoices (account_id, amount) VALUES (42, 1)", 5*time.Second)
	t.Logf("invoices usable %s after the migration committed (event trigger)", took)
	var n int
	if err := tenant.QueryRow(ctx, "SELECT count(*) FROM invoices WHERE account_id = 42").Scan(&n); err != nil || n != 1 {
		t.Fatalf("read back: %d, %v", n, err)
	}
	// unscoped use of the new table is a tenant-table denial, not an unknown one
	if _, err := tenant.Exec(ctx, "SELECT * FROM invoices"); err == nil || !strings.Contains(err.Error(), "42501") || strings.Contains(err.Error(), "neither a tenant") {
		t.Fatalf("unscoped: %v", err)
	}

	// 2. without the event trigger: the first use rediscovers before denying
	if _, err := admin.Exec(ctx, "DROP EVENT TRIGGER pgtenant_catalog_notify"); err != nil {
		t.Fatal(err)
	}
	migrate("refunds")
	if _, err := tenant.Exec(ctx, "INSERT INTO refunds (account_id, amount) VALUES (42, 1)"); err != nil {
		t.Fatalf("refunds right after its migration, without the event trigger: %v\n%s", err, log.String())
	}
	// a relation that does not exist stays denied, with a hint that does not say to register it by hand
	_, err = tenant.Exec(ctx, "SELECT * FROM nosuch WHERE account_id = 42")
	var pe *pgconn.PgError
	if !errors.As(err, &pe) || pe.Code != "42501" || strings.Contains(pe.Hint, "register it") || !strings.Contains(pe.Hint, "as soon as its migration commits") {
		t.Fatalf("nosuch: %v (hint %q)", err, hintOf(err))
	}
	if !strings.Contains(log.String(), "policy catalog re-read after a migration") {
		t.Fatalf("the event trigger's notification was not acted on:\n%s", log.String())
	}
	// every table above has forced RLS: no WARN about it
	if strings.Contains(log.String(), "without enabled and forced row-level security") {
		t.Fatalf("unexpected RLS warning:\n%s", log.String())
	}
	// a migration that adds a table without RLS is warned about
	if _, err := admin.Exec(ctx, "CREATE TABLE plain (account_id bigint)"); err != nil {
		t.Fatal(err)
	}
	if _, err := tenant.Exec(ctx, "SELECT * FROM plain WHERE account_id = 42"); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for !strings.Contains(log.String(), "without enabled and forced row-level security") {
		if time.Now().After(deadline) {
			t.Fatalf("no WARN for the table without RLS:\n%s", log.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func hintOf(err error) string {
	var pe *pgconn.PgError
	if errors.As(err, &pe) {
		return pe.Hint
	}
	return ""
}
