package policy

import (
	"fmt"
	"math/rand/v2"
	"strings"
	"sync"
	"testing"

	"github.com/pgtenant/pgtenant/config"
	"github.com/pgtenant/pgtenant/parser"
)

var (
	shapeOnce   sync.Once
	shapeEngine *Engine
)

// FuzzShapeSound checks the soundness condition of the analysis cache: two
// texts that differ only in literals the first one's analysis read as tenant
// value slots (the only literals left out of the cache key) get the same
// tenant-independent analysis.
func FuzzShapeSound(f *testing.F) {
	for _, sql := range fuzzSeeds(f) {
		f.Add(sql, uint64(1))
	}
	f.Add("SELECT * FROM orders WHERE account_id = 3000000000", uint64(2))
	f.Add("SELECT * FROM orders WHERE account_id = 99999999999999999999999", uint64(3))
	f.Fuzz(func(t *testing.T, sql string, seed uint64) {
		shapeOnce.Do(func() { shapeEngine = newTestEngine(t, func(p *config.Policy) { p.CacheEntries = 0 }) })
		e := shapeEngine
		sc, err := e.parser.Guard(sql)
		if err != nil {
			return
		}
		cat := e.catalog("eu-west")
		a1 := e.analyzeScanned(cat, sql, sc)
		if a1.noCache {
			return
		}
		slot := map[int]bool{}
		for _, i := range a1.slots {
			slot[i] = true
		}
		rng := rand.New(rand.NewPCG(seed, 7))
		variant := substitute(sql, sc, rng, func(i int) bool { return slot[i] })
		sc2, err := e.parser.Guard(variant)
		if err != nil || sc2.Shape != sc.Shape {
			t.Fatalf("variant changed the shape: %q -> %q (%v)", sql, variant, err)
		}
		if k1, k2 := cacheKeyOf(sc.Shape, a1.slots, sql, sc), cacheKeyOf(sc2.Shape, a1.slots, variant, sc2); k1 != k2 {
			t.Fatalf("substituting slots changed the key: %q -> %q", sql, variant)
		}
		a2 := e.analyzeScanned(cat, variant, sc2)
		if d1, d2 := describe(a1), describe(a2); d1 != d2 {
			t.Fatalf("same key, different analyses:\n%q\n%s\n%q\n%s", sql, d1, variant, d2)
		}
	})
}

// FuzzCacheKey checks the cache end to end: after a text is decided (and
// cached), a variant with random literals of every kind in any position is
// decided exactly as a cold engine decides it, for the caller's account and
// another one, and a variant whose key equals the text's gets the same
// analysis.
func FuzzCacheKey(f *testing.F) {
	for _, sql := range fuzzSeeds(f) {
		f.Add(sql, uint64(1))
	}
	f.Add("COPY (SELECT 1) TO ''", uint64(4))
	f.Add("COPY (SELECT * FROM orders WHERE account_id = 42) TO ''", uint64(5))
	f.Add("SELECT pg_catalog.set_config('work_mem', '8MB', false)", uint64(6))
	f.Add("SELECT * FROM orders WHERE account_id = 42 AND note = 'x'::regclass::text", uint64(7))
	f.Add("SELECT current_setting('app.current_account_id')", uint64(8))
	f.Fuzz(func(t *testing.T, sql string, seed uint64) {
		keyOnce.Do(func() {
			keyCached = newTestEngine(t)
			keyCold = newTestEngine(t, func(p *config.Policy) { p.CacheEntries = 0 })
		})
		sc, err := keyCached.parser.Guard(sql)
		if err != nil {
			return
		}
		session(t, keyCached, "42").CheckQuery(sql) // fills the cache
		rng := rand.New(rand.NewPCG(seed, 11))
		for round := 0; round < 4; round++ {
			variant := substitute(sql, sc, rng, func(int) bool { return rng.IntN(2) == 0 })
			for _, acc := range []string{"42", "7"} {
				hot := session(t, keyCached, acc).CheckQuery(variant)
				cold := session(t, keyCold, acc).CheckQuery(variant)
				if hot.Allow != cold.Allow || hot.Reason != cold.Reason {
					t.Fatalf("account %s: cached engine decided %v/%s, cold %v/%s\nfirst:   %q\nvariant: %q",
						acc, hot.Allow, hot.Reason, cold.Allow, cold.Reason, sql, variant)
				}
			}
		}
	})
}

var (
	keyOnce            sync.Once
	keyCached, keyCold *Engine
)

// fuzzSeeds are the statements of every committed case list.
func fuzzSeeds(t testing.TB) []string {
	var out []string
	for _, r := range readCorpus(t, "testdata/tenancy.tsv") {
		sql := r.sql
		if i := strings.LastIndex(sql, "-- bind:"); i >= 0 {
			sql = sql[:i]
		}
		out = append(out, sql)
	}
	for _, c := range ruleCases {
		out = append(out, c.sql)
	}
	for _, c := range moreCases {
		out = append(out, c.sql)
	}
	for _, c := range round2Cases {
		out = append(out, c.sql)
	}
	return out
}

// litValues are replacement literals of every kind a verdict could depend
// on: tenant values (the caller's, another's, out of range), file names,
// setting and function names, relation names for regclass casts, array
// texts and booleans.
var (
	intValues = []string{"42", "7", "0", "042", "18446744073709551658", "9223372036854775807", "1", "4242"}
	strValues = []string{"''", "'42'", "'7'", "'/tmp/pgtenant-x'", "'app.current_account_id'", "'app.other'",
		"'search_path'", "'work_mem'", "'standard_conforming_strings'", "'role'", "'on'", "'off'", "'public'",
		"'audit'", "'pg_read_file'", "'orders'", "'public.orders'", "'audit.log'", "'{42}'", "'{7}'", "'{42,7}'",
		"'(0,1)'", "'x'", "'42.0'", "' 42'"}
)

// substitute replaces each abstracted literal i for which pick(i) holds by
// a random value of the same literal kind.
func substitute(sql string, sc *parser.Scanned, rng *rand.Rand, pick func(int) bool) string {
	var b strings.Builder
	last := 0
	for i, l := range sc.Lits {
		if (l.Kind != parser.LitInt && l.Kind != parser.LitString) || !pick(i) {
			continue
		}
		b.WriteString(sql[last:l.Start])
		if l.Kind == parser.LitInt {
			b.WriteString(intValues[rng.IntN(len(intValues))])
		} else {
			b.WriteString(strValues[rng.IntN(len(strValues))])
		}
		last = l.End
	}
	b.WriteString(sql[last:])
	return b.String()
}

func describe(an *analysis) string {
	var b strings.Builder
	if an.deny != nil {
		fmt.Fprintf(&b, "deny:%s;", an.deny.Reason)
	}
	for _, st := range an.stmts {
		describeStmt(&b, st)
	}
	return b.String()
}

func describeStmt(b *strings.Builder, st *StmtAnalysis) {
	if st == nil {
		return
	}
	fmt.Fprintf(b, "[kind=%d name=%s all=%v", st.Kind, st.Name, st.All)
	if st.Deny != nil {
		fmt.Fprintf(b, " deny=%s", st.Deny.Reason)
	}
	for _, r := range st.Reqs {
		fmt.Fprintf(b, " req(%s:%s)", r.Table, r.F.String())
	}
	fmt.Fprintf(b, " args=%v types=%v tables=%v", st.ExecArgs, st.ParamTypes, st.Tables)
	describeStmt(b, st.Prepared)
	describeStmt(b, st.Inner)
	b.WriteString("]")
}
