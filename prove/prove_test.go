package prove

import (
	"bytes"
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/pgtenant/pgtenant/auth"
	"github.com/pgtenant/pgtenant/cluster"
	"github.com/pgtenant/pgtenant/demo"
	"github.com/pgtenant/pgtenant/test/pgtest"
	"github.com/pgtenant/pgtenant/test/proxytest"
)

func TestMain(m *testing.M) { pgtest.Main(m) }

// region is the one region these tests prove (a shared cluster with the demo schema).
const testRegion = "prove-eu"

// startEnv starts the real proxy with the real policy in front of the
// shared cluster; prepare runs as the superuser before the proxy discovers
// the catalog, and its undo in t.Cleanup.
func startEnv(t *testing.T, prepare, undo string) *proxytest.Env {
	t.Helper()
	if testing.Short() {
		t.Skip("starts a PostgreSQL cluster")
	}
	c := pgtest.Shared(t, testRegion)
	proxytest.InstallDemo(t, c)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if undo != "" {
		t.Cleanup(func() {
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			if err := c.Exec(ctx, c.Database, undo); err != nil {
				t.Errorf("undo: %v", err)
			}
			if err := demo.Install(ctx, c); err != nil {
				t.Errorf("reinstall demo: %v", err)
			}
		})
	}
	if prepare != "" {
		if err := c.Exec(ctx, c.Database, prepare); err != nil {
			t.Fatalf("prepare: %v", err)
		}
	}
	return proxytest.Start(t, proxytest.Options{Regions: []string{testRegion}, Policy: true})
}

// options runs against env with tokens minted from proxytest's secret.
func options(env *proxytest.Env) Options {
	return Options{Config: env.Config, Addr: env.Addr, SSLMode: "disable", Token: func(account, region string) (string, error) {
		return auth.Mint(auth.MintOptions{Secret: []byte(proxytest.Secret), Account: account, Region: region, Subject: "prove-test", TTL: time.Hour})
	}}
}

func run(t *testing.T, o Options) *Report {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	rep, err := Run(ctx, o)
	if err != nil {
		t.Fatalf("Run: %v", err)
	}
	var buf bytes.Buffer
	if err := rep.WriteTable(&buf); err != nil {
		t.Fatal(err)
	}
	t.Logf("report:\n%s", buf.String())
	return rep
}

// rowsOf counts, as the superuser (no RLS), the rows of the given tenants in every demo tenant table.
func rowsOf(t *testing.T, c *cluster.Cluster, ids ...string) int64 {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	conn := pgtest.Conn(t, c.SuperuserDSN(c.Database))
	var total int64
	for _, tbl := range append(demo.TenantTables, "prove_norls") {
		var n int64
		err := conn.QueryRow(ctx, "SELECT count(*) FROM public."+tbl+" WHERE account_id::text = ANY($1)", ids).Scan(&n)
		if err != nil && strings.Contains(err.Error(), "does not exist") {
			continue
		}
		if err != nil {
			t.Fatal(err)
		}
		total += n
	}
	return total
}

func TestDemoSchemaPasses(t *testing.T) {
	env := startEnv(t, "", "")
	rep := run(t, options(env))
	if !rep.OK || rep.Failed != 0 || otherWarnings(rep) != 0 {
		t.Fatalf("report not clean: ok=%t failed=%d warned=%d: %+v", rep.OK, rep.Failed, otherWarnings(rep), rep.Failures())
	}
	// Every table got every check.
	for _, tbl := range demo.TenantTables {
		for _, check := range []string{"seed_as_a", "select_unscoped", "select_where_a", "select_param_a_text", "select_param_a_binary",
			"prepared_rebound_to_a", "update_a", "delete_a", "insert_for_a", "copy_to_stdout", "a_rows_intact",
			"rls_enabled_forced", "rls_select_a", "rls_update_a", "rls_delete_a", "rls_insert_a", "rls_fail_closed"} {
			if !hasResult(rep, "public."+tbl, check, Pass) {
				t.Errorf("no passing %s on %s", check, tbl)
			}
		}
	}
	for _, check := range []string{"escape_set_tenant_setting", "escape_set_config", "escape_reset_all", "escape_set_role",
		"escape_set_session_authorization", "escape_startup_options", "escape_startup_parameter", "no_rows_left"} {
		if !hasResult(rep, "", check, Pass) {
			t.Errorf("no passing %s", check)
		}
	}
	if n := rowsOf(t, env.Clusters[testRegion], rep.TenantA, rep.TenantB); n != 0 {
		t.Errorf("%d rows of the synthetic tenants left", n)
	}
	var buf bytes.Buffer
	if err := rep.WriteJSON(&buf); err != nil {
		t.Fatal(err)
	}
	var back Report
	if err := json.Unmarshal(buf.Bytes(), &back); err != nil || len(back.Results) != len(rep.Results) || back.TenantA != rep.TenantA {
		t.Fatalf("JSON round trip: %v", err)
	}
}

func hasResult(rep *Report, table, check, status string) bool {
	for _, r := range rep.Results {
		if r.Table == table && r.Check == check && r.Status == status {
			return true
		}
	}
	return false
}

// failed returns the failed checks on table, by check name.
func failed(rep *Report, table string) map[string]string {
	out := map[string]string{}
	for _, r := range rep.Failures() {
		if r.Table == table {
			out[r.Check] = r.Detail
		}
	}
	return out
}

// wantRLSFailures checks that the RLS layer failed on table for every
// check in want, while every attack through pgtenant still passed.
func wantRLSFailures(t *testing.T, rep *Report, table string, want ...string) {
	t.Helper()
	if rep.OK {
		t.Fatalf("the gate passed with the RLS layer weakened on %s", table)
	}
	got := failed(rep, table)
	for _, check := range want {
		if _, ok := got[check]; !ok {
			t.Errorf("%s: %s did not fail (failures: %v)", table, check, got)
		}
	}
	for _, r := range rep.Failures() {
		if r.Layer != LayerRLS || r.Table != table {
			t.Errorf("unexpected failure: %+v", r)
		}
	}
}

func TestNotForcedAndOwnedByServiceRoleFails(t *testing.T) {
	env := startEnv(t,
		"ALTER TABLE public.orders NO FORCE ROW LEVEL SECURITY; ALTER TABLE public.orders OWNER TO app",
		"ALTER TABLE public.orders OWNER TO postgres")
	rep := run(t, options(env))
	wantRLSFailures(t, rep, "public.orders", "rls_enabled_forced", "rls_select_a", "rls_update_a", "rls_delete_a", "rls_insert_a", "rls_fail_closed")
	if d := failed(rep, "public.orders")["rls_enabled_forced"]; !strings.Contains(d, "FORCE ROW LEVEL SECURITY") {
		t.Errorf("detail does not name the fix: %q", d)
	}
	if n := rowsOf(t, env.Clusters[testRegion], rep.TenantA, rep.TenantB); n != 0 {
		t.Errorf("%d rows of the synthetic tenants left", n)
	}
}

func TestPermissivePolicyFails(t *testing.T) {
	env := startEnv(t,
		"DROP POLICY tenant_isolation ON public.customers; CREATE POLICY prove_open ON public.customers USING (true) WITH CHECK (true)",
		"DROP POLICY IF EXISTS prove_open ON public.customers")
	rep := run(t, options(env))
	wantRLSFailures(t, rep, "public.customers", "rls_select_a", "rls_update_a", "rls_delete_a", "rls_insert_a", "rls_fail_closed")
	if hasResult(rep, "public.customers", "rls_enabled_forced", Fail) {
		t.Error("RLS is enabled and forced, yet rls_enabled_forced failed")
	}
}

func TestTableWithoutRLSFailsAndUnseedableTableWarns(t *testing.T) {
	env := startEnv(t, `
		CREATE TABLE public.prove_norls (id bigint GENERATED BY DEFAULT AS IDENTITY, account_id bigint NOT NULL, label text NOT NULL);
		GRANT SELECT, INSERT, UPDATE, DELETE ON public.prove_norls TO app;
		CREATE TABLE public.prove_unseedable (account_id bigint NOT NULL, spot point NOT NULL);
		ALTER TABLE public.prove_unseedable ENABLE ROW LEVEL SECURITY;
		ALTER TABLE public.prove_unseedable FORCE ROW LEVEL SECURITY;
		CREATE POLICY t ON public.prove_unseedable
		    USING (account_id = NULLIF(current_setting('app.current_account_id', true), '')::bigint);
		GRANT SELECT, INSERT, UPDATE, DELETE ON public.prove_unseedable TO app`,
		"DROP TABLE IF EXISTS public.prove_norls, public.prove_unseedable")
	rep := run(t, options(env))
	wantRLSFailures(t, rep, "public.prove_norls", "rls_enabled_forced", "rls_select_a", "rls_update_a", "rls_delete_a", "rls_insert_a", "rls_fail_closed")
	if d := failed(rep, "public.prove_norls")["rls_enabled_forced"]; !strings.Contains(d, "not enabled") {
		t.Errorf("detail: %q", d)
	}
	if !hasResult(rep, "public.prove_unseedable", "seed_as_a", Warn) {
		t.Error("the table with a point column was not reported as unseedable")
	}
	for _, check := range []string{"select_unscoped", "select_where_a", "update_a", "delete_a", "copy_to_stdout", "rls_enabled_forced"} {
		if !hasResult(rep, "public.prove_unseedable", check, Pass) {
			t.Errorf("%s did not run (and pass) on the unseedable table", check)
		}
	}
	if n := rowsOf(t, env.Clusters[testRegion], rep.TenantA, rep.TenantB); n != 0 {
		t.Errorf("%d rows of the synthetic tenants left", n)
	}
}

func TestTenantsThatOwnRowsAreRefused(t *testing.T) {
	env := startEnv(t, "", "")
	o := options(env)
	o.TenantA, o.TenantB = "42", "9100000000000001"
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if rep, err := Run(ctx, o); err == nil || !strings.Contains(err.Error(), "already has rows") {
		t.Fatalf("Run with a real tenant as A: report %v, error %v", rep, err)
	}
	o.Regions = []string{"nowhere"}
	if _, err := Run(ctx, o); err == nil || !strings.Contains(err.Error(), "not configured") {
		t.Fatalf("unknown region: %v", err)
	}
}

// TestAttacksDetectLeaks runs the gate against a proxy with no statement
// policy (every statement allowed) and RLS weakened on orders: the attacks
// themselves must then find the leaks, and the escapes must be caught.
func TestAttacksDetectLeaks(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a PostgreSQL cluster")
	}
	startEnv(t, "ALTER TABLE public.orders NO FORCE ROW LEVEL SECURITY; ALTER TABLE public.orders OWNER TO app",
		"ALTER TABLE public.orders OWNER TO postgres")
	env := proxytest.Start(t, proxytest.Options{Regions: []string{testRegion}}) // no policy: RLS only
	rep := run(t, options(env))
	for _, check := range []string{"select_unscoped", "select_where_a", "select_param_a_text", "select_param_a_binary",
		"prepared_rebound_to_a", "sql_prepare_execute_a", "select_in_b_a", "select_b_or_true", "subquery_exists_a",
		"subquery_from_unscoped", "cte_unscoped", "self_join", "lateral_a", "union_unscoped_arm",
		"update_a", "update_unscoped", "delete_a", "delete_unscoped", "multi_statement_delete_a", "insert_for_a", "copy_to_stdout"} {
		if !hasResult(rep, "public.orders", check, Fail) {
			t.Errorf("orders: %s did not detect the leak", check)
		}
		if !hasResult(rep, "public.customers", check, Pass) {
			t.Errorf("customers: %s failed although RLS holds there", check)
		}
	}
	if !hasResult(rep, "public.orders", "a_rows_intact", Pass) {
		t.Error("the attacks' writes were not rolled back")
	}
	// (RESET ALL keeps the tenant context even without a policy: pgtenant
	// makes it the backend session's startup value)
	for _, check := range []string{"escape_set_tenant_setting", "escape_set_config"} {
		if !hasResult(rep, "", check, Fail) {
			t.Errorf("%s was allowed without a policy, yet did not fail", check)
		}
	}
	found := false
	for _, r := range rep.Failures() {
		if r.Check == "escape_set_tenant_setting" && strings.Contains(r.Detail, "afterwards the session runs as app with app.current_account_id = \""+rep.TenantA+"\"") {
			found = true
		}
	}
	if !found {
		t.Errorf("the escape's effect was not reported: %+v", rep.Failures())
	}
	if n := rowsOf(t, env.Clusters[testRegion], rep.TenantA, rep.TenantB); n != 0 {
		t.Errorf("%d rows of the synthetic tenants left", n)
	}
}

// TestTextTenantColumnAndCompositeForeignKey proves tables with a text
// tenant column, assorted required column types and a composite foreign key
// whose child sorts before its parent.
func TestTextTenantColumnAndCompositeForeignKey(t *testing.T) {
	const policy = `(account_id = NULLIF(current_setting('app.current_account_id', true), ''))`
	env := startEnv(t, `
		CREATE TABLE public.prove_text (id uuid PRIMARY KEY DEFAULT gen_random_uuid(), account_id text NOT NULL,
		    code varchar(4) NOT NULL, amount integer NOT NULL, at timestamptz NOT NULL, flag boolean NOT NULL,
		    doc jsonb NOT NULL, tags text[] NOT NULL, UNIQUE (account_id, code));
		CREATE TABLE public.prove_a_child (account_id text NOT NULL, code varchar(4) NOT NULL, qty smallint NOT NULL,
		    FOREIGN KEY (account_id, code) REFERENCES public.prove_text (account_id, code) ON DELETE CASCADE);
		ALTER TABLE public.prove_text ENABLE ROW LEVEL SECURITY;
		ALTER TABLE public.prove_text FORCE ROW LEVEL SECURITY;
		ALTER TABLE public.prove_a_child ENABLE ROW LEVEL SECURITY;
		ALTER TABLE public.prove_a_child FORCE ROW LEVEL SECURITY;
		CREATE POLICY t ON public.prove_text USING `+policy+` WITH CHECK `+policy+`;
		CREATE POLICY t ON public.prove_a_child USING `+policy+` WITH CHECK `+policy+`;
		GRANT SELECT, INSERT, UPDATE, DELETE ON public.prove_text, public.prove_a_child TO app`,
		"DROP TABLE IF EXISTS public.prove_a_child, public.prove_text")
	rep := run(t, options(env))
	if !rep.OK || otherWarnings(rep) != 0 {
		t.Fatalf("ok=%t warned=%d failures=%+v", rep.OK, otherWarnings(rep), rep.Failures())
	}
	for _, tbl := range []string{"public.prove_text", "public.prove_a_child"} {
		for _, check := range []string{"seed_as_a", "a_rows_intact", "rls_select_a", "rls_insert_a", "select_param_a_text"} {
			if !hasResult(rep, tbl, check, Pass) {
				t.Errorf("%s: no passing %s", tbl, check)
			}
		}
		if hasResult(rep, tbl, "select_param_a_binary", Pass) {
			t.Errorf("%s: a binary integer parameter was tried on a text tenant column", tbl)
		}
	}
	var seedOrder []string
	for _, r := range rep.Results {
		if r.Check == "seed_as_a" {
			seedOrder = append(seedOrder, r.Table)
		}
	}
	joined := strings.Join(seedOrder, ",")
	if !strings.Contains(joined, "public.prove_a_child") || strings.Index(joined, "public.prove_text") > strings.Index(joined, "public.prove_a_child") {
		t.Errorf("seed order %v: the child came before its parent", seedOrder)
	}
}
