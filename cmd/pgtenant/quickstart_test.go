package main

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"sigs.k8s.io/yaml"

	"github.com/pgtenant/pgtenant/cluster"
	"github.com/pgtenant/pgtenant/test/pgtest"
)

// The README's quick start, step by step, from examples/pgtenant.yaml:
// keep one region and point it at a database with plain tables, then
// setup (print), setup --apply, setup again (nothing pending), prove, and a
// token that logs in through the served proxy.
func TestReadmeQuickStart(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a PostgreSQL cluster")
	}
	c := pgtest.Start(t, cluster.Config{Name: "quickstart"})
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	if err := c.Exec(ctx, c.Database, `CREATE TABLE orders (id bigserial PRIMARY KEY, account_id bigint NOT NULL, total numeric);
		CREATE TABLE customers (id bigserial PRIMARY KEY, account_id bigint NOT NULL, name text);`); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile("../../examples/pgtenant.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var cfg map[string]any
	if err := yaml.Unmarshal(b, &cfg); err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	regions := cfg["regions"].(map[string]any)
	delete(regions, "us-east")
	eu := regions["eu-west"].(map[string]any)
	eu["port"], eu["user"], eu["database"] = c.Port, c.ServiceUser, c.Database
	cfg["listen"], cfg["admin_listen"] = freeLoopback(t), ""
	cfg["audit"].(map[string]any)["spool_dir"] = filepath.Join(dir, "spool")
	out, err := yaml.Marshal(cfg)
	if err != nil {
		t.Fatal(err)
	}
	cfgPath := filepath.Join(dir, "pgtenant.yaml")
	if err := os.WriteFile(cfgPath, out, 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv("PGTENANT_JWT_SECRET", strings.Repeat("q", 64))
	t.Setenv("EU_PW", c.ServicePassword)
	t.Setenv("EU_ADMIN_PW", "unused-the-test-cluster-trusts-its-superuser")

	plan, code, err := runSetupArgs(t, "--config", cfgPath)
	if code != exitOK || !strings.Contains(plan, "CREATE POLICY pgtenant_tenant_isolation ON public.orders") {
		t.Fatalf("setup: exit %d %v\n%s", code, err, plan)
	}
	if out, code, err := runSetupArgs(t, "--config", cfgPath, "--apply"); code != exitOK {
		t.Fatalf("setup --apply: exit %d %v\n%s", code, err, out)
	}
	if out, code, err := runSetupArgs(t, "--config", cfgPath); code != exitOK || !strings.Contains(out, "-- nothing pending") {
		t.Fatalf("second setup: exit %d %v\n%s", code, err, out)
	}
	if pout, perr, pcode := runProveArgs(t, "--config", cfgPath); pcode != exitOK {
		t.Fatalf("prove: exit %d\n%s\n%s", pcode, pout, perr)
	}

	var log syncBuffer
	sctx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- runServe(sctx, cfgPath, &log) }()
	defer func() {
		stop()
		if err := <-done; err != nil {
			t.Errorf("serve: %v", err)
		}
	}()
	listen := cfg["listen"].(string)
	waitListening(t, listen, done, &log)
	tok, code := runAuditCmd(t, "token", "--secret-env", "PGTENANT_JWT_SECRET", "--account", "42", "--region", "eu-west")
	if code != exitOK {
		t.Fatalf("token: %s", tok)
	}
	conn := pgtest.Conn(t, "postgresql://app:"+strings.TrimSpace(tok)+"@"+listen+"/"+c.Database+"?sslmode=disable")
	if _, err := conn.Exec(ctx, "INSERT INTO orders (account_id, total) VALUES (42, 9.5)"); err != nil {
		t.Fatal(err)
	}
	var n int
	if err := conn.QueryRow(ctx, "SELECT count(*) FROM orders WHERE account_id = 42").Scan(&n); err != nil || n != 1 {
		t.Fatalf("own rows: %d, %v", n, err)
	}
	if strings.Contains(log.String(), "level\":\"WARN") && strings.Contains(log.String(), "row-level security") {
		t.Fatalf("RLS warnings after setup:\n%s", log.String())
	}
}
