package policy

import (
	"github.com/pgtenant/pgtenant/config"
	"strings"
	"sync"
	"testing"
)

var (
	fuzzOnce             sync.Once
	fuzzCached, fuzzCold *Engine
)

// FuzzPolicy checks, for arbitrary SQL:
//   - no panic, and the guards keep pathological input away from pg_query;
//   - a cache hit decides exactly like a cold analysis;
//   - an allowed statement that touches a tenant table is pinned by its
//     literals: replacing every "42" by "7" must make it denied for account 42
//     (statements that pin through current_setting or $n parameters are exempt).
func FuzzPolicy(f *testing.F) {
	for _, sql := range fuzzSeeds(f) {
		f.Add(sql)
	}
	f.Add("SELECT 1" + strings.Repeat("+1", 30000))
	f.Add("SELECT " + strings.Repeat("-+", 20000))
	f.Fuzz(func(t *testing.T, sql string) {
		fuzzOnce.Do(func() {
			fuzzCached = newTestEngine(t)
			fuzzCold = newTestEngine(t, func(p *config.Policy) { p.CacheEntries = 0 })
		})
		s := session(t, fuzzCached, "42")
		d1 := s.CheckQuery(sql)
		d2 := session(t, fuzzCached, "42").CheckQuery(sql) // likely a cache hit
		d3 := session(t, fuzzCold, "42").CheckQuery(sql)
		if d1.Allow != d2.Allow || d1.Allow != d3.Allow {
			t.Fatalf("cache changed the verdict: %v %v %v for %q", d1.Allow, d2.Allow, d3.Allow, sql)
		}
		if !d1.Allow || strings.Contains(strings.ToLower(sql), "current_setting") || strings.Contains(sql, "$") {
			return
		}
		tenant := false
		for _, tb := range d1.Tables {
			if tb == "public.orders" || tb == "public.customers" || tb == "public.line_items" {
				tenant = true
			}
		}
		if !tenant {
			return
		}
		swapped := strings.ReplaceAll(sql, "42", "7")
		if d := session(t, fuzzCold, "42").CheckQuery(swapped); d.Allow {
			t.Fatalf("allowed for 42 although no pin uses 42: %q (swapped %q)", sql, swapped)
		}
	})
}
