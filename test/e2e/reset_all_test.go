package e2e

import (
	"testing"

	"github.com/pgtenant/pgtenant/test/proxytest"
)

// RESET ALL is honoured: allowlisted settings go back to their defaults,
// while the tenant setting and the pins come back to pgtenant's values in
// the same statement (they are the backend session's startup values), so
// no statement ever sees them unset.
func TestResetAllKeepsTheTenantContext(t *testing.T) {
	env := proxytest.Start(t, proxytest.Options{Regions: []string{"eu-west"}, Policy: true})
	w := newWire(t, env, "42")
	wantCodes(t, "set", w.query("SET statement_timeout = '7s'"))
	r := w.query("RESET ALL; SELECT current_setting('app.current_account_id'), current_setting('app.current_subject'), current_setting('search_path'), current_setting('standard_conforming_strings'), current_setting('statement_timeout')")
	wantCodes(t, "reset all", r)
	if len(r.rows) != 1 {
		t.Fatalf("reset all: %v", r)
	}
	want := []string{"42", "user-42", "public", "on", "0"}
	for i, v := range want {
		if r.rows[0][i] != v {
			t.Errorf("after RESET ALL setting %d is %q, want %q", i, r.rows[0][i], v)
		}
	}
	// RLS keeps scoping rows to the token's tenant
	r = w.query("RESET ALL")
	wantCodes(t, "reset all alone", r)
	r = w.query("SELECT account_id FROM orders WHERE account_id = 42")
	wantCodes(t, "select", r)
	if len(r.rows) == 0 {
		t.Errorf("no rows of tenant 42 after RESET ALL")
	}
	noForeignRows(t, "select after RESET ALL", r)
	for _, q := range []string{"SELECT pg_advisory_unlock_all()", "CLOSE ALL", "UNLISTEN *"} {
		wantCodes(t, q, w.query(q))
	}
	wantCodes(t, "DISCARD ALL", w.query("DISCARD ALL"), "42501")
}
