package policy

import (
	"testing"

	"github.com/pgtenant/pgtenant/parser"
)

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

// The cache stays within its bound, and eviction spares an entry looked up
// since it was cached (CLOCK's second chance) over one that was not.
func TestCacheEvictsWhatIsNotLookedUp(t *testing.T) {
	c := newCache(2)
	scan := func(sql string) *parser.Scanned {
		sc, err := parser.Scan(sql)
		if err != nil {
			t.Fatal(err)
		}
		return sc
	}
	cat := &Catalog{}
	texts := []string{`SELECT 1 FROM a WHERE note = 'x'`, `SELECT 1 FROM a WHERE note = 'y'`, `SELECT 1 FROM a WHERE note = 'z'`} // one shape
	ans := make([]*analysis, len(texts))
	for i, sql := range texts[:2] {
		ans[i] = &analysis{}
		c.put(cat, sql, scan(sql), ans[i])
	}
	if got := c.get(cat, texts[0], scan(texts[0])); got != ans[0] {
		t.Fatalf("%s: got %p, want the analysis cached (%p)", texts[0], got, ans[0])
	}
	ans[2] = &analysis{}
	c.put(cat, texts[2], scan(texts[2]), ans[2])
	if n := c.entries.len(); n != 2 || len(c.entries.m) != 2 {
		t.Fatalf("%d entries listed, %d mapped; want the bound, 2", n, len(c.entries.m))
	}
	for i, want := range []*analysis{ans[0], nil, ans[2]} {
		if got := c.get(cat, texts[i], scan(texts[i])); got != want {
			t.Errorf("%s: got %p, want %p (the entry not looked up is the one evicted)", texts[i], got, want)
		}
	}
}
