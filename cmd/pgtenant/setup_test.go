package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/pgtenant/pgtenant/cluster"
	"github.com/pgtenant/pgtenant/config"
	"github.com/pgtenant/pgtenant/isolation"
	"github.com/pgtenant/pgtenant/test/pgtest"
)

// runSetupArgs runs `pgtenant setup args...` in-process.
func runSetupArgs(t *testing.T, args ...string) (string, int, error) {
	t.Helper()
	root := newRootCmd()
	var out, errOut bytes.Buffer
	root.SetOut(&out)
	root.SetErr(&errOut)
	root.SetArgs(append([]string{"setup"}, args...))
	err := root.Execute()
	var ee *exitError
	switch {
	case err == nil:
		return out.String(), exitOK, nil
	case errors.As(err, &ee):
		return out.String() + errOut.String(), ee.code, err
	}
	return out.String() + errOut.String(), exitUsage, err
}

// From a fresh database with plain tables to a served region with all three
// layers active: setup prints the plan, applies it, finds nothing pending
// the second time, and the isolation proof and the proxy's attacks pass.
func TestSetupFreshDatabase(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a PostgreSQL cluster")
	}
	c := pgtest.Start(t, cluster.Config{Name: "setup-fresh"})
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	// plain tables, as an application's migrations leave them; the service
	// role can bypass RLS and owns one tenant table: setup must fix both
	if err := c.Exec(ctx, c.Database, `
		CREATE TABLE orders (id bigserial PRIMARY KEY, account_id bigint NOT NULL, total numeric);
		CREATE TABLE notes (id int GENERATED ALWAYS AS IDENTITY, account_id text NOT NULL, body text);
		CREATE TABLE countries (code text PRIMARY KEY, name text);
		INSERT INTO countries VALUES ('fr', 'France');
		INSERT INTO orders (account_id, total) VALUES (42, 1), (7, 2);
		ALTER ROLE app BYPASSRLS;
		ALTER TABLE notes OWNER TO app;
		CREATE POLICY open ON orders USING (true);`); err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	cfgPath := writeProveConfig(t, dir, map[string]*cluster.Cluster{"eu-west": c}, "auth:\n  hs256_secret: "+proveSecret)

	out, code, err := runSetupArgs(t, "--config", cfgPath)
	if code != exitOK {
		t.Fatalf("setup: exit %d: %v\n%s", code, err, out)
	}
	for _, want := range []string{
		`ALTER ROLE app NOSUPERUSER NOBYPASSRLS;`,
		`ALTER TABLE public.notes OWNER TO postgres;`,
		`GRANT SELECT, INSERT, UPDATE, DELETE ON TABLE public.orders TO app;`,
		`GRANT USAGE ON SEQUENCE public.orders_id_seq TO app;`,
		`GRANT USAGE ON SEQUENCE public.notes_id_seq TO app;`,
		`ALTER TABLE public.orders ENABLE ROW LEVEL SECURITY;`,
		`ALTER TABLE public.orders FORCE ROW LEVEL SECURITY;`,
		`CREATE POLICY pgtenant_tenant_isolation ON public.orders USING (account_id = NULLIF(pg_catalog.current_setting('app.current_account_id', true), '')::bigint)`,
		`CREATE POLICY pgtenant_tenant_isolation ON public.notes USING (account_id = NULLIF(pg_catalog.current_setting('app.current_account_id', true), '')::text)`,
		`ALTER DEFAULT PRIVILEGES FOR ROLE postgres IN SCHEMA public GRANT SELECT, INSERT, UPDATE, DELETE ON TABLES TO app;`,
		`CREATE EVENT TRIGGER pgtenant_catalog_notify ON ddl_command_end`,
		`-- audit schema pgtenant_audit is missing`,
		`-- review: permissive policy "open" on public.orders`,
	} {
		if !strings.Contains(out, want) {
			t.Errorf("plan lacks %q", want)
		}
	}
	if t.Failed() {
		t.Fatalf("plan:\n%s", out)
	}
	// printing changed nothing
	if n := superCount(t, c, "SELECT count(*) FROM pg_policy WHERE polname = 'pgtenant_tenant_isolation'"); n != 0 {
		t.Fatalf("setup without --apply created %d policies", n)
	}
	if err := c.Exec(ctx, c.Database, `DROP POLICY open ON orders`); err != nil {
		t.Fatal(err)
	}

	out, code, err = runSetupArgs(t, "--config", cfgPath, "--apply")
	if code != exitOK {
		t.Fatalf("setup --apply: exit %d: %v\n%s", code, err, out)
	}
	t.Logf("setup --apply:\n%s", out)
	out, code, err = runSetupArgs(t, "--config", cfgPath)
	if code != exitOK || !strings.Contains(out, "-- nothing pending") || strings.Contains(out, ";\n") {
		t.Fatalf("second setup: exit %d: %v\n%s", code, err, out)
	}

	// fail closed: the service role without the tenant setting sees nothing
	svc := pgtest.Conn(t, c.ServiceDSN())
	var n int
	if err := svc.QueryRow(ctx, "SELECT count(*) FROM orders").Scan(&n); err != nil || n != 0 {
		t.Fatalf("service role without the setting: %d rows, %v", n, err)
	}
	if _, err := svc.Exec(ctx, "SELECT set_config('app.current_account_id', '', false)"); err != nil {
		t.Fatal(err)
	}
	if err := svc.QueryRow(ctx, "SELECT count(*) FROM orders").Scan(&n); err != nil || n != 0 {
		t.Fatalf("service role with an empty setting: %d rows, %v", n, err)
	}
	if err := svc.QueryRow(ctx, "SELECT set_config('app.current_account_id', '42', false), (SELECT count(*) FROM orders)").Scan(new(string), &n); err != nil || n != 1 {
		t.Fatalf("service role as 42: %d rows, %v", n, err)
	}

	// the isolation proof is green in every layer
	cfg, err := config.Load(cfgPath)
	if err != nil {
		t.Fatal(err)
	}
	rep := isolation.Inspect(ctx, "eu-west", cfg.Regions["eu-west"], isolation.Options{Policy: cfg.Policy, ParserActive: true})
	if rep.Status != "active" {
		t.Fatalf("isolation proof: %s (%s): rls=%+v role=%+v audit=%+v", rep.Status, rep.Error, rep.RLS, rep.Role, rep.Audit)
	}

	// the proxy serves, and the attack suite finds no way across tenants
	pout, perr, pcode := runProveArgs(t, "--config", cfgPath)
	if pcode != exitOK || !strings.Contains(pout, "PASS:") {
		t.Fatalf("prove after setup: exit %d\n%s\n%s", pcode, pout, perr)
	}
}

// A service role that does not exist is created with the configured
// password (as a SCRAM verifier the plan can show), able to log in and
// without any bypass; setup refuses to apply as the service role itself.
func TestSetupCreatesTheServiceRole(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a PostgreSQL cluster")
	}
	c := pgtest.Start(t, cluster.Config{Name: "setup-role"})
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := c.Exec(ctx, c.Database, `CREATE TABLE orders (id bigint, account_id uuid)`); err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	body := fmt.Sprintf(`auth: { hs256_secret: %s }
regions:
  eu-west: { host: 127.0.0.1, port: %d, user: tenant_svc, password_env: SETUP_TEST_PW, database: %s, admin_user: postgres }
audit: { spool_dir: %s }
`, proveSecret, c.Port, c.Database, dir)
	cfgPath := filepath.Join(dir, "pgtenant.yaml")
	if err := os.WriteFile(cfgPath, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv("SETUP_TEST_PW", "s3cret-of-the-service-role")
	out, code, err := runSetupArgs(t, "--config", cfgPath)
	if code != exitOK || !strings.Contains(out, "CREATE ROLE tenant_svc LOGIN NOSUPERUSER NOBYPASSRLS") ||
		!strings.Contains(out, "PASSWORD 'SCRAM-SHA-256$4096:") || strings.Contains(out, "s3cret") ||
		!strings.Contains(out, "::uuid") {
		t.Fatalf("plan: exit %d %v\n%s", code, err, out)
	}
	if out, code, err := runSetupArgs(t, "--config", cfgPath, "--apply"); code != exitOK {
		t.Fatalf("apply: exit %d %v\n%s", code, err, out)
	}
	conn := pgtest.Conn(t, c.DSN("tenant_svc", "s3cret-of-the-service-role", c.Database))
	var super, bypass bool
	if err := conn.QueryRow(ctx, `SELECT rolsuper, rolbypassrls FROM pg_roles WHERE rolname = current_user`).Scan(&super, &bypass); err != nil || super || bypass {
		t.Fatalf("new role: super %v bypass %v err %v", super, bypass, err)
	}
	if _, err := conn.Exec(ctx, `SELECT set_config('app.current_account_id', 'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11', false);
		INSERT INTO orders VALUES (1, 'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11')`); err != nil {
		t.Fatalf("insert as the new role in its own tenant: %v", err)
	}
	if _, err := conn.Exec(ctx, `INSERT INTO orders VALUES (2, 'b0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11')`); err == nil {
		t.Fatal("the policy's WITH CHECK let a row of another tenant in")
	}
	// applying as the service role itself is refused, naming admin_user
	noAdmin := strings.Replace(body, ", admin_user: postgres", "", 1)
	if err := os.WriteFile(cfgPath, []byte(noAdmin), 0o600); err != nil {
		t.Fatal(err)
	}
	if out, code, err := runSetupArgs(t, "--config", cfgPath, "--apply"); code != exitUsage || err == nil || !strings.Contains(err.Error(), "admin_user") {
		t.Fatalf("apply without admin_user: exit %d %v\n%s", code, err, out)
	}
}
