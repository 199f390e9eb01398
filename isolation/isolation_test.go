package isolation_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/pgtenant/pgtenant/cluster"
	"github.com/pgtenant/pgtenant/config"
	"github.com/pgtenant/pgtenant/isolation"
	"github.com/pgtenant/pgtenant/test/pgtest"
)

func TestMain(m *testing.M) { pgtest.Main(m) }

// fixture is one fresh database in the shared cluster with a tenant schema.
type fixture struct {
	t      *testing.T
	c      *cluster.Cluster
	db     string
	region config.Region
	policy config.Policy
}

var dbSeq int

func newFixture(t *testing.T) *fixture {
	t.Helper()
	c := pgtest.Shared(t, "isolation")
	dbSeq++
	f := &fixture{t: t, c: c, db: fmt.Sprintf("iso_%d_%d", time.Now().UnixNano()%1e6, dbSeq)}
	f.exec("postgres", "CREATE DATABASE "+f.db)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		_ = c.Exec(ctx, "postgres", "DROP DATABASE IF EXISTS "+f.db+" WITH (FORCE)")
		_ = c.Exec(ctx, "postgres", "ALTER ROLE "+c.ServiceUser+" NOSUPERUSER NOBYPASSRLS")
	})
	f.region = config.Region{Host: "127.0.0.1", Port: c.Port, User: c.ServiceUser, Password: c.ServicePassword,
		Database: f.db, SSLMode: "disable", ConnectTimeout: 5 * time.Second}
	f.policy = config.Default().Policy
	f.exec(f.db, `
CREATE TABLE public.orders (id bigint PRIMARY KEY, account_id bigint NOT NULL, total numeric);
CREATE TABLE public.items (id bigint PRIMARY KEY, account_id bigint NOT NULL, name text);
CREATE TABLE public.countries (code text PRIMARY KEY);
ALTER TABLE public.orders ENABLE ROW LEVEL SECURITY;
ALTER TABLE public.orders FORCE ROW LEVEL SECURITY;
ALTER TABLE public.items ENABLE ROW LEVEL SECURITY;
ALTER TABLE public.items FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant ON public.orders USING (account_id = current_setting('app.current_account_id')::bigint);
CREATE POLICY tenant ON public.items USING (account_id = current_setting('app.current_account_id')::bigint)
  WITH CHECK (account_id = current_setting('app.current_account_id')::bigint);
GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA public TO `+c.ServiceUser+`;
`)
	return f
}

func (f *fixture) exec(db, sql string) {
	f.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := f.c.Exec(ctx, db, sql); err != nil {
		f.t.Fatal(err)
	}
}

// installAudit creates a minimal pgtenant_audit.events with append-only
// triggers enabled as given (ALWAYS, or "" for the default origin mode).
func (f *fixture) installAudit(enable string) {
	f.t.Helper()
	f.exec(f.db, `
CREATE SCHEMA pgtenant_audit;
CREATE TABLE pgtenant_audit.events (chain_id text NOT NULL, seq bigint NOT NULL, ts timestamptz NOT NULL DEFAULT now(),
  account_id text, PRIMARY KEY (chain_id, seq));
CREATE FUNCTION pgtenant_audit.forbid() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN RAISE EXCEPTION 'pgtenant_audit.events is append-only'; END $$;
CREATE TRIGGER no_update_delete BEFORE UPDATE OR DELETE ON pgtenant_audit.events FOR EACH ROW EXECUTE FUNCTION pgtenant_audit.forbid();
CREATE TRIGGER no_truncate BEFORE TRUNCATE ON pgtenant_audit.events FOR EACH STATEMENT EXECUTE FUNCTION pgtenant_audit.forbid();
INSERT INTO pgtenant_audit.events (chain_id, seq) VALUES ('42', 1), ('42', 2), ('7', 1);
GRANT USAGE ON SCHEMA pgtenant_audit TO `+f.c.ServiceUser+`;
GRANT SELECT, INSERT ON pgtenant_audit.events TO `+f.c.ServiceUser+`;
`)
	if enable == "ALWAYS" {
		f.exec(f.db, `ALTER TABLE pgtenant_audit.events ENABLE ALWAYS TRIGGER no_update_delete;
ALTER TABLE pgtenant_audit.events ENABLE ALWAYS TRIGGER no_truncate;`)
	}
}

func (f *fixture) inspect() isolation.Report {
	f.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	return isolation.Inspect(ctx, "eu-west", f.region, isolation.Options{Policy: f.policy, ParserActive: true, PolicyVersion: "test-1"})
}

func table(t *testing.T, rep isolation.Report, name string) isolation.TableReport {
	t.Helper()
	for _, tr := range rep.RLS.Tables {
		if tr.Table == name {
			return tr
		}
	}
	t.Fatalf("table %s not in report: %+v", name, rep.RLS.Tables)
	return isolation.TableReport{}
}

func TestFullyActiveRegion(t *testing.T) {
	f := newFixture(t)
	f.installAudit("ALWAYS")
	rep := f.inspect()
	if rep.Status != isolation.Active || rep.Error != "" {
		t.Fatalf("status %s (error %q), want active; report %+v", rep.Status, rep.Error, rep)
	}
	if len(rep.RLS.Tables) != 2 {
		t.Fatalf("tenant tables %+v, want orders and items only (countries has no account_id, audit schema excluded)", rep.RLS.Tables)
	}
	for _, name := range []string{"public.orders", "public.items"} {
		tr := table(t, rep, name)
		if tr.Status != isolation.Active || !tr.RLSEnabled || !tr.RLSForced || len(tr.Policies) != 1 {
			t.Errorf("%s: %+v", name, tr)
		}
	}
	if rep.Role.Status != isolation.Active || rep.Role.Superuser || rep.Role.BypassRLS || rep.Role.Role != f.c.ServiceUser {
		t.Errorf("role layer %+v", rep.Role)
	}
	if rep.Audit.Status != isolation.Active || len(rep.Audit.Triggers) != 2 {
		t.Errorf("audit layer %+v", rep.Audit)
	}
	if rep.Parser.Status != isolation.Active || rep.Parser.PolicyVersion != "test-1" {
		t.Errorf("parser layer %+v", rep.Parser)
	}
	if rep.ChainHeads == nil || rep.ChainHeads.Chains != 2 || rep.ChainHeads.Entries != 3 || rep.ChainHeads.LastAppend == nil {
		t.Errorf("chain heads %+v", rep.ChainHeads)
	}
	if rep.Database != f.db || !strings.HasPrefix(rep.ServerVersion, "1") {
		t.Errorf("database %q server_version %q", rep.Database, rep.ServerVersion)
	}
	ctx := context.Background()
	if err := isolation.CheckRLS(ctx, "eu-west", f.region, f.policy); err != nil {
		t.Errorf("CheckRLS: %v", err)
	}
}

func TestTableWithoutForcedRLSIsMissingThenActive(t *testing.T) {
	f := newFixture(t)
	f.installAudit("ALWAYS")
	f.exec(f.db, "ALTER TABLE public.orders NO FORCE ROW LEVEL SECURITY")
	rep := f.inspect()
	orders := table(t, rep, "public.orders")
	if orders.Status != isolation.Missing || orders.RLSForced || !strings.Contains(strings.Join(orders.Problems, ";"), "not forced") {
		t.Fatalf("orders %+v, want missing because not forced", orders)
	}
	if items := table(t, rep, "public.items"); items.Status != isolation.Active {
		t.Fatalf("items %+v, want active", items)
	}
	if rep.RLS.Status != isolation.Missing || rep.Status != isolation.Missing {
		t.Fatalf("rls %s region %s, want missing", rep.RLS.Status, rep.Status)
	}
	err := isolation.CheckRLS(context.Background(), "eu-west", f.region, f.policy)
	if !errors.Is(err, isolation.ErrRLSNotActive) || !strings.Contains(err.Error(), "public.orders") || strings.Contains(err.Error(), "public.items") {
		t.Fatalf("CheckRLS = %v, want an error naming public.orders only", err)
	}

	f.exec(f.db, "ALTER TABLE public.orders FORCE ROW LEVEL SECURITY")
	if rep := f.inspect(); rep.Status != isolation.Active {
		t.Fatalf("after FORCE: status %s, tables %+v", rep.Status, rep.RLS.Tables)
	}
	if err := isolation.CheckRLS(context.Background(), "eu-west", f.region, f.policy); err != nil {
		t.Fatalf("CheckRLS after FORCE: %v", err)
	}
}

func TestRLSDisabledAndNoPolicy(t *testing.T) {
	f := newFixture(t)
	f.installAudit("ALWAYS")
	f.exec(f.db, `ALTER TABLE public.orders DISABLE ROW LEVEL SECURITY; DROP POLICY tenant ON public.items;`)
	rep := f.inspect()
	if o := table(t, rep, "public.orders"); o.Status != isolation.Missing || o.RLSEnabled {
		t.Errorf("orders %+v", o)
	}
	i := table(t, rep, "public.items")
	if i.Status != isolation.Missing || !strings.Contains(strings.Join(i.Problems, ";"), "no policy") {
		t.Errorf("items %+v", i)
	}
}

func TestSuperuserServiceRoleMakesRLSInert(t *testing.T) {
	f := newFixture(t)
	f.installAudit("ALWAYS")
	f.exec("postgres", "ALTER ROLE "+f.c.ServiceUser+" SUPERUSER")
	rep := f.inspect()
	if rep.Role.Status != isolation.Missing || !rep.Role.Superuser {
		t.Fatalf("role layer %+v, want missing for a superuser", rep.Role)
	}
	if o := table(t, rep, "public.orders"); o.Status != isolation.DeployedInert {
		t.Fatalf("orders %+v, want deployed_inert under a superuser", o)
	}
	if rep.Status != isolation.Missing {
		t.Fatalf("region status %s, want missing", rep.Status)
	}
	if err := isolation.CheckRLS(context.Background(), "eu-west", f.region, f.policy); !errors.Is(err, isolation.ErrRLSNotActive) {
		t.Fatalf("CheckRLS under superuser = %v", err)
	}
	f.exec("postgres", "ALTER ROLE "+f.c.ServiceUser+" NOSUPERUSER BYPASSRLS")
	if rep := f.inspect(); rep.Role.Status != isolation.Missing || !rep.Role.BypassRLS {
		t.Fatalf("role layer %+v, want missing for BYPASSRLS", rep.Role)
	}
	f.exec("postgres", "ALTER ROLE "+f.c.ServiceUser+" NOBYPASSRLS")
	if rep := f.inspect(); rep.Status != isolation.Active {
		t.Fatalf("after fixing the role: %s %+v", rep.Status, rep.Role)
	}
}

func TestServiceRoleOwningTable(t *testing.T) {
	f := newFixture(t)
	f.installAudit("ALWAYS")
	f.exec(f.db, "ALTER TABLE public.items OWNER TO "+f.c.ServiceUser)
	rep := f.inspect()
	if rep.Role.Status != isolation.Missing || len(rep.Role.OwnsTables) != 1 || rep.Role.OwnsTables[0] != "public.items" {
		t.Fatalf("role layer %+v, want missing naming public.items", rep.Role)
	}
}

func TestPermissivePolicies(t *testing.T) {
	f := newFixture(t)
	f.installAudit("ALWAYS")
	f.exec(f.db, "CREATE POLICY open_read ON public.orders FOR SELECT USING (true)")
	o := table(t, f.inspect(), "public.orders")
	if o.Status != isolation.Missing || !strings.Contains(strings.Join(o.Problems, ";"), "open_read") {
		t.Fatalf("orders with an open permissive policy: %+v", o)
	}
	// A restrictive policy comparing the tenant column closes it again.
	f.exec(f.db, "CREATE POLICY pin ON public.orders AS RESTRICTIVE USING (account_id = current_setting('app.current_account_id')::bigint)")
	if o := table(t, f.inspect(), "public.orders"); o.Status != isolation.Active {
		t.Fatalf("orders with a restrictive tenant policy: %+v", o)
	}
	// A policy that reads another setting does not scope to the tenant.
	f.exec(f.db, `DROP POLICY open_read ON public.orders; DROP POLICY pin ON public.orders; DROP POLICY tenant ON public.orders;
CREATE POLICY other ON public.orders USING (account_id = current_setting('app.other')::bigint);`)
	if o := table(t, f.inspect(), "public.orders"); o.Status != isolation.Missing {
		t.Fatalf("orders with a policy on another setting: %+v", o)
	}
}

func TestConfiguredTenantTables(t *testing.T) {
	f := newFixture(t)
	f.installAudit("ALWAYS")
	f.exec(f.db, `CREATE TABLE public.notes (id int, tenant bigint);`)
	f.policy.TenantTables = []string{"public.notes:tenant", "public.nope", "public.orders"}
	rep := f.inspect()
	if n := table(t, rep, "public.notes"); n.Status != isolation.Missing || n.TenantColumn != "tenant" || n.RLSEnabled {
		t.Errorf("notes %+v", n)
	}
	if n := table(t, rep, "public.nope"); n.Status != isolation.Missing || !strings.Contains(n.Problems[0], "does not exist") {
		t.Errorf("nope %+v", n)
	}
	if len(rep.RLS.Tables) != 4 {
		t.Errorf("tables %+v: orders must not be listed twice", rep.RLS.Tables)
	}
}

func TestAuditProtections(t *testing.T) {
	f := newFixture(t)
	rep := f.inspect()
	if rep.Audit.Status != isolation.Missing || !strings.Contains(rep.Audit.Problems[0], "does not exist") {
		t.Fatalf("no audit schema: %+v", rep.Audit)
	}
	f.installAudit("")
	rep = f.inspect()
	if rep.Audit.Status != isolation.DeployedInert {
		t.Fatalf("origin-mode triggers: %+v, want deployed_inert", rep.Audit)
	}
	f.exec(f.db, "ALTER TABLE pgtenant_audit.events ENABLE ALWAYS TRIGGER no_update_delete; ALTER TABLE pgtenant_audit.events ENABLE ALWAYS TRIGGER no_truncate")
	if rep := f.inspect(); rep.Audit.Status != isolation.Active {
		t.Fatalf("always triggers: %+v", rep.Audit)
	}
	f.exec(f.db, "DROP TRIGGER no_truncate ON pgtenant_audit.events")
	rep = f.inspect()
	if rep.Audit.Status != isolation.Missing || !strings.Contains(strings.Join(rep.Audit.Problems, ";"), "TRUNCATE") {
		t.Fatalf("without truncate trigger: %+v", rep.Audit)
	}
}

func TestUnreachableRegion(t *testing.T) {
	r := config.Region{Host: "127.0.0.1", Port: 1, User: "app", Password: "secret-pw", Database: "app", ConnectTimeout: 2 * time.Second}
	rep := isolation.Inspect(context.Background(), "us-east", r, isolation.Options{Policy: config.Default().Policy, ParserActive: true})
	if rep.Status != isolation.Unknown || rep.Error == "" || rep.RLS.Status != isolation.Unknown {
		t.Fatalf("unreachable: %+v", rep)
	}
	if strings.Contains(rep.Error, "secret-pw") {
		t.Fatalf("error leaks the password: %s", rep.Error)
	}
	if err := isolation.CheckRLS(context.Background(), "us-east", r, config.Default().Policy); err == nil {
		t.Fatal("CheckRLS on an unreachable region returned nil")
	}
}
