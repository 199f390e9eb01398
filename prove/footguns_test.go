package prove

import (
	"slices"
	"strings"
	"testing"

	"github.com/pgtenant/pgtenant/isolation"
)

// otherWarnings counts the warnings that are not RLS footgun warnings (the
// demo schema has documented ones: UNIQUE (id) on orders, identity sequences).
func otherWarnings(rep *Report) int {
	n := 0
	for _, r := range rep.Results {
		if r.Status == Warn && !slices.Contains(isolation.FootgunChecks, r.Check) {
			n++
		}
	}
	return n
}

// result returns the first result of check on table whose detail contains s.
func resultWith(rep *Report, table, check, s string) (Result, bool) {
	for _, r := range rep.Results {
		if r.Table == table && r.Check == check && strings.Contains(r.Detail, s) {
			return r, true
		}
	}
	return Result{}, false
}

// TestDemoFootguns: the demo schema has no footgun that leaks, and its two
// documented warnings are reported with their fix.
func TestDemoFootguns(t *testing.T) {
	env := startEnv(t, "", "")
	rep := run(t, options(env))
	if !rep.OK {
		t.Fatalf("demo failed: %+v", rep.Failures())
	}
	for _, check := range []string{isolation.CheckPolicyFailOpen, isolation.CheckPolicyNotEvaluated, isolation.CheckSettingDefault, isolation.CheckTableOwner, isolation.CheckViewDefiner,
		isolation.CheckMaterializedView, isolation.CheckSecurityDefiner, isolation.CheckLargeObjects} {
		if !hasResult(rep, "", check, Pass) {
			t.Errorf("no passing %s on the demo", check)
		}
	}
	if r, ok := resultWith(rep, "public.orders", isolation.CheckExistenceOracle, "orders_id_key"); !ok || r.Status != Warn || !strings.Contains(r.Detail, "Fix: include account_id") {
		t.Errorf("UNIQUE (id) of orders: %+v", r)
	}
	if r, ok := resultWith(rep, "public.orders", isolation.CheckSharedSequence, "public.orders_id_seq"); !ok || r.Status != Warn {
		t.Errorf("orders' identity sequence: %+v", r)
	}
	for _, tbl := range []string{"public.orders", "public.customers", "public.line_items"} {
		if !hasResult(rep, tbl, "rls_fail_closed_unset", Pass) {
			t.Errorf("%s: no passing rls_fail_closed_unset", tbl)
		}
	}
}

// TestFootgunsFailTheGate builds four footguns the direct RLS checks do not
// see (a policy that fails open on a default tenant 0, a definer view, a
// SECURITY DEFINER function, a forced table owned by the service role) and
// checks that each fails the gate by name.
func TestFootgunsFailTheGate(t *testing.T) {
	env := startEnv(t, `
		CREATE POLICY prove_fg_open ON public.customers
		    USING (account_id = COALESCE(NULLIF(current_setting('app.current_account_id', true), ''), '0')::bigint);
		CREATE VIEW public.prove_fg_v AS SELECT id, account_id, total FROM public.orders;
		GRANT SELECT ON public.prove_fg_v TO app;
		CREATE FUNCTION public.prove_fg_f() RETURNS bigint LANGUAGE sql SECURITY DEFINER AS 'SELECT count(*) FROM public.orders';
		ALTER TABLE public.line_items OWNER TO app;
		CREATE POLICY prove_fg_unset ON public.orders USING (current_setting('app.current_account_id', true) IS NULL);`,
		`DROP POLICY IF EXISTS prove_fg_open ON public.customers; DROP VIEW IF EXISTS public.prove_fg_v;
		DROP FUNCTION IF EXISTS public.prove_fg_f(); ALTER TABLE public.line_items OWNER TO postgres;
		DROP POLICY IF EXISTS prove_fg_unset ON public.orders`)
	rep := run(t, options(env))
	if rep.OK {
		t.Fatal("the gate passed with four leaking footguns")
	}
	for _, want := range []struct{ table, check, detail string }{
		{"public.customers", isolation.CheckPolicyFailOpen, "policy prove_fg_open, tenant_isolation on public.customers"},
		{"public.orders", isolation.CheckViewDefiner, "view public.prove_fg_v"},
		{"", isolation.CheckSecurityDefiner, "function public.prove_fg_f()"},
		{"public.line_items", isolation.CheckTableOwner, "table public.line_items"},
		{"public.orders", isolation.CheckPolicyFailOpen, "policy prove_fg_unset, tenant_isolation on public.orders"},
		{"public.orders", "rls_fail_closed_unset", "with app.current_account_id unset the service role sees rows"},
	} {
		r, ok := resultWith(rep, want.table, want.check, want.detail)
		if !ok || r.Status != Fail || r.Layer != LayerRLS || !strings.Contains(r.Detail, "Fix: ") {
			t.Errorf("%s %s: want a failure naming %q with a fix, got %+v", want.table, want.check, want.detail, r)
		}
	}
	for _, r := range rep.Failures() {
		if !slices.Contains(isolation.FootgunChecks, r.Check) && r.Check != "rls_fail_closed_unset" {
			t.Errorf("unexpected failure outside the footgun checks: %+v", r)
		}
	}
}
