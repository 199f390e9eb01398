package isolation

import (
	"slices"
	"strconv"
	"strings"
	"testing"
)

func TestBuildPredicatesCombinesLikePostgreSQL(t *testing.T) {
	policies := []policyRow{
		{name: "scoped", cmd: "*", permissive: true, using: "a = 1"},
		{name: "read_all", cmd: "r", permissive: true, using: "true"},
		{name: "pin", cmd: "*", permissive: false, using: "a = 1", with: "a = 2"},
		{name: "ins", cmd: "a", permissive: true, with: "b"},
	}
	got := map[string]predicate{}
	for _, p := range buildPredicates(policies) {
		got[p.command] = p
	}
	want := map[string]string{
		"SELECT":              "((a = 1) OR (true)) AND (a = 1)",
		"INSERT (WITH CHECK)": "((a = 1) OR (b)) AND (a = 2)",
		"UPDATE (USING)":      "((a = 1)) AND (a = 1)",
		"UPDATE (WITH CHECK)": "((a = 1)) AND (a = 2)",
		"DELETE":              "((a = 1)) AND (a = 1)",
	}
	for cmd, sql := range want {
		if got[cmd].sql != sql {
			t.Errorf("%s: %q, want %q", cmd, got[cmd].sql, sql)
		}
	}
	// Only restrictive policies: no row at all, nothing to evaluate.
	if p := buildPredicates([]policyRow{{name: "pin", cmd: "*", using: "a = 1"}}); len(p) != 0 {
		t.Errorf("restrictive only: %+v", p)
	}
}

func TestSecurityInvoker(t *testing.T) {
	for opts, want := range map[string]bool{
		"security_invoker=true": true, "security_invoker=on": true, "security_invoker=1": true, "SECURITY_INVOKER=TRUE": true,
		"security_invoker=false": false, "security_invoker=off": false, "check_option=local": false, "": false,
	} {
		if got := securityInvoker(strings.Split(opts, ",")); got != want {
			t.Errorf("%q: %t, want %t", opts, got, want)
		}
	}
}

// FuzzProbes: whatever a policy's text, the probes always include both
// tenants and the common defaults, never the setting's name, no duplicate,
// and NULL exactly when the column is nullable.
func FuzzProbes(f *testing.F) {
	f.Add("account_id = COALESCE(current_setting('app.current_account_id', true), '0')::bigint", "app.current_account_id", false)
	f.Add("x = 'it''s' OR y = -12", "app.x", true)
	f.Add("'unterminated", "", false)
	f.Fuzz(func(t *testing.T, expr, setting string, notNull bool) {
		et := evalTable{tenantTable: tenantTable{column: "account_id"}, typ: "bigint", notNull: notNull, preds: []predicate{{sql: expr}}}
		probes := et.probes(setting)
		var vals []string
		nulls := 0
		for _, p := range probes {
			if p == nil {
				nulls++
				continue
			}
			vals = append(vals, *p)
		}
		for _, must := range []string{"7", "42", "0", "1", "-1", "", "70", "17"} {
			if !slices.Contains(vals, must) {
				t.Fatalf("probes %q lack %q", vals, must)
			}
		}
		if (nulls == 1) == notNull || nulls > 1 {
			t.Fatalf("%d NULL probes with notNull=%t", nulls, notNull)
		}
		sorted := slices.Clone(vals)
		slices.Sort(sorted)
		if len(slices.Compact(sorted)) != len(vals) {
			t.Fatalf("duplicate probes %q", vals)
		}
		if setting != "" && !slices.Contains([]string{"7", "42", "0", "1", "-1", "70", "17"}, setting) && !isNumber(setting) && slices.Contains(vals, setting) {
			t.Fatalf("the setting's name %q is a probe", setting)
		}
	})
}

// isNumber reports whether s is an integer (numbers in the text are probes with their neighbours).
func isNumber(s string) bool {
	_, err := strconv.ParseInt(s, 10, 64)
	return err == nil
}
