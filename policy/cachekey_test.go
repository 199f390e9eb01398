package policy

import "testing"

// A cached analysis is never reused for a text that differs in a literal the
// analysis did not read as a tenant value (issue 10 item 4): COPY TO ” and
// COPY TO a file are both refused, in either order, on one cached engine.
func TestCacheKeyKeepsNonTenantLiterals(t *testing.T) {
	e := newTestEngine(t)
	seq := []struct {
		sql   string
		allow bool
	}{
		{`COPY (SELECT 1) TO ''`, false},
		{`COPY (SELECT 1) TO '/tmp/pgtenant-owned'`, false},
		{`COPY (SELECT * FROM orders WHERE account_id = 42) TO ''`, false},
		{`COPY (SELECT * FROM orders WHERE account_id = 42) TO STDOUT`, true},
		{`COPY (SELECT * FROM orders WHERE account_id = 42) TO '/tmp/x'`, false},
		{`COPY orders TO ''`, false},
		{`COPY (SELECT 1) TO PROGRAM 'true'`, false},
		{`SELECT set_config('work_mem', '8MB', false)`, true},
		{`SELECT set_config('role', 'postgres', false)`, false},
		{`SELECT * FROM orders WHERE account_id = 42 AND note = 'a'`, true},
		{`SELECT * FROM orders WHERE account_id = 7 AND note = 'a'`, false},
		{`SELECT * FROM orders WHERE account_id = 42 AND note = 'b'`, true},
	}
	for round := 0; round < 2; round++ {
		for _, c := range seq {
			if d := session(t, e, "42").CheckQuery(c.sql); d.Allow != c.allow {
				t.Errorf("round %d: %s: allow=%v (%s), want %v", round, c.sql, d.Allow, d.Message, c.allow)
			}
		}
	}
	if hits, _ := e.CacheStats(); hits == 0 {
		t.Error("the second round never hit the cache")
	}
}
