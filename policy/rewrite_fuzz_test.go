package policy

import (
	"fmt"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"

	"github.com/pgtenant/pgtenant/config"
	"github.com/pgtenant/pgtenant/parser"
)

var (
	rwFuzzOnce                       sync.Once
	rwFuzzDeny, rwFuzzRW, rwFuzzCold *Engine
)

func rwFuzzEngines(t testing.TB) {
	rwFuzzOnce.Do(func() {
		rwFuzzDeny = newTestEngine(t)
		rwFuzzRW = newTestEngine(t, func(p *config.Policy) { p.Unscoped = "rewrite" })
		rwFuzzCold = newTestEngine(t, func(p *config.Policy) { p.Unscoped = "rewrite"; p.CacheEntries = 0 })
	})
}

// FuzzRewrite checks the rewrite mode on arbitrary SQL (seeded with the
// corpus and the rule cases); see checkRewrite.
func FuzzRewrite(f *testing.F) {
	for _, r := range readCorpus(f, "testdata/tenancy.tsv") {
		sql := r.sql
		if i := strings.LastIndex(sql, "-- bind:"); i >= 0 {
			sql = sql[:i]
		}
		f.Add(sql)
	}
	for _, c := range ruleCases {
		f.Add(c.sql)
	}
	for _, c := range rewriteCases {
		f.Add(c.sql)
	}
	f.Fuzz(func(t *testing.T, sql string) { checkRewrite(t, sql) })
}

// FuzzRewriteGrammar checks the rewrite mode on statements generated from
// the corpus grammar (joins of every kind, subqueries, CTEs, set operations,
// LATERAL, DML with and without pins, parameters) driven by the fuzz input.
func FuzzRewriteGrammar(f *testing.F) {
	for i := 0; i < 64; i++ {
		f.Add([]byte(fmt.Sprintf("%08x%08x", i*2654435761, i*40503)))
	}
	f.Fuzz(func(t *testing.T, seed []byte) {
		g := &gen{b: seed}
		checkRewrite(t, g.statement())
	})
}

// checkRewrite asserts, for account 42:
//   - a text deny mode allows is allowed unchanged in rewrite mode;
//   - a text deny mode refuses for a reason a rewrite cannot cure stays refused
//     (but a COPY FROM STDIN, allowed with its row check);
//   - a rewritten text is allowed by deny mode itself (every tenant-table use
//     pinned), and for 7 it fails only on the text's own literals of 42 (the
//     added pin names no tenant);
//   - the rewrite keeps every literal and every parameter reference (never
//     drops a pin, never renumbers), and its text parses;
//   - the cached rewrite equals a cold one.
func checkRewrite(t *testing.T, sql string) {
	rwFuzzEngines(t)
	dd := session(t, rwFuzzDeny, "42").CheckQuery(sql)
	dr := session(t, rwFuzzRW, "42").CheckQuery(sql)
	dc := session(t, rwFuzzCold, "42").CheckQuery(sql)
	if dr.Allow != dc.Allow || dr.Rewritten != dc.Rewritten {
		t.Fatalf("cached and cold rewrite differ for %q:\n%q\n%q", sql, dr.Rewritten, dc.Rewritten)
	}
	if dd.Allow {
		if !dr.Allow || dr.Rewritten != "" {
			t.Fatalf("allowed in deny mode but %v / rewritten %q in rewrite mode: %q", dr.Allow, dr.Rewritten, sql)
		}
		return
	}
	if dd.Reason == "copy_from" && dr.Allow && (dr.Copy == nil || dr.Rewritten != "") {
		t.Fatalf("COPY FROM allowed without a row check: %q", sql)
	}
	if !rewriteReasons[dd.Reason] && dr.Allow && dr.Copy == nil {
		t.Fatalf("denied in deny mode for %s, allowed in rewrite mode: %q -> %q", dd.Reason, sql, dr.Rewritten)
	}
	if !dr.Allow || dr.Rewritten == "" {
		return
	}
	rw := dr.Rewritten
	if d := session(t, rwFuzzDeny, "42").CheckQuery(rw); !d.Allow {
		t.Fatalf("rewrite not pinned (%s): %q -> %q", d.Message, sql, rw)
	}
	// for another tenant only the text's own literal pins (of 42) may fail
	if d := session(t, rwFuzzDeny, "7").CheckQuery(rw); !d.Allow && d.Reason != "wrong_account" {
		t.Fatalf("rewrite not pinned for 7 (%s): %q -> %q", d.Message, sql, rw)
	}
	p := rwFuzzDeny.parser
	before, err1 := p.ParamRefs(sql)
	after, err2 := p.ParamRefs(rw)
	if err1 != nil || err2 != nil {
		t.Fatalf("parse: %v / %v: %q -> %q", err1, err2, sql, rw)
	}
	sort.Ints(before)
	sort.Ints(after)
	if !slices.Equal(before, after) {
		t.Fatalf("parameters changed %v -> %v: %q -> %q", before, after, sql, rw)
	}
	lb, lr := literals(t, sql), literals(t, rw)
	for lit, n := range lb {
		if lr[lit] < n {
			t.Fatalf("literal %s dropped: %q -> %q", lit, sql, rw)
		}
	}
}

// literals counts the values of a text's integer and string literals.
func literals(t *testing.T, sql string) map[string]int {
	sc, err := parser.Scan(sql)
	if err != nil {
		t.Fatalf("scan %q: %v", sql, err)
	}
	out := map[string]int{}
	for _, l := range sc.Lits {
		if v, ok := parser.LitValue(sql, l); ok {
			out[v]++
		}
	}
	return out
}

// gen builds statements of the corpus grammar from fuzz bytes.
type gen struct {
	b     []byte
	i     int
	depth int
	alias int
}

func (g *gen) n(k int) int {
	if len(g.b) == 0 || k <= 1 {
		return 0
	}
	v := int(g.b[g.i%len(g.b)]) + g.i/len(g.b)
	g.i++
	return v % k
}

func (g *gen) pick(xs ...string) string { return xs[g.n(len(xs))] }

var genTables = []string{"orders", "customers", "line_items", "countries", "public.orders"}

func (g *gen) statement() string {
	switch g.n(8) {
	case 0, 1, 2:
		return g.query()
	case 3:
		return "UPDATE orders SET note = " + g.value() + " WHERE " + g.cond("orders")
	case 4:
		return "DELETE FROM line_items li WHERE " + g.cond("li") + g.pick("", " AND li.order_id IN ("+g.query1col()+")")
	case 5:
		return g.pick("INSERT INTO orders (id, total) VALUES (1, 2), ($1, 3)",
			"INSERT INTO orders (total) SELECT total FROM orders WHERE "+g.cond("orders"),
			"INSERT INTO customers DEFAULT VALUES",
			"INSERT INTO orders (account_id, total) VALUES ("+g.pick("42", "7", "$1")+", 1)",
			"INSERT INTO orders (id, total) VALUES (5, 1) ON CONFLICT (id) DO UPDATE SET total = 2",
			"INSERT INTO orders (id) "+g.query1col()+" RETURNING id")
	case 6:
		return "WITH w AS (" + g.query() + ") " + g.pick("SELECT * FROM w", "SELECT count(*) FROM w, orders o WHERE "+g.cond("o"))
	default:
		return "MERGE INTO orders o USING " + g.pick("customers c", "(SELECT * FROM customers) c", "(VALUES (1)) c(id)") +
			" ON o.id = c.id" + g.pick("", " AND o.account_id = 42", " AND o.account_id = 7") +
			" WHEN MATCHED THEN UPDATE SET total = 1 WHEN NOT MATCHED THEN INSERT (id) VALUES (c.id)"
	}
}

func (g *gen) query() string {
	g.depth++
	defer func() { g.depth-- }()
	q := g.select1()
	if g.depth < 3 {
		switch g.n(5) {
		case 0:
			q += " UNION " + g.select1()
		case 1:
			q += " EXCEPT ALL " + g.select1()
		}
	}
	return q
}

func (g *gen) query1col() string {
	a := g.newAlias()
	return "SELECT " + a + ".id FROM " + g.table() + " " + a + " WHERE " + g.cond(a)
}

func (g *gen) newAlias() string { g.alias++; return fmt.Sprintf("t%d", g.alias) }

func (g *gen) table() string { return genTables[g.n(len(genTables))] }

func (g *gen) select1() string {
	a, b := g.newAlias(), g.newAlias()
	from := g.table() + " " + a
	var where []string
	switch g.n(6) {
	case 0:
		from += " JOIN " + g.table() + " " + b + " ON " + a + ".id = " + b + ".id"
	case 1:
		from += " LEFT JOIN " + g.table() + " " + b + " ON " + a + ".id = " + b + ".id" + g.pick("", " AND "+g.cond(b))
	case 2:
		from += " FULL JOIN " + g.table() + " " + b + " ON " + a + ".id = " + b + ".id"
	case 3:
		from += ", LATERAL (SELECT x.id FROM " + g.table() + " x WHERE x.id = " + a + ".id) " + b
	case 4:
		from += " RIGHT JOIN " + g.table() + " " + b + " USING (id)"
	default:
		b = ""
	}
	if g.n(2) == 0 {
		where = append(where, g.cond(a))
	}
	if b != "" && g.n(3) == 0 {
		where = append(where, g.cond(b))
	}
	if g.depth < 3 && g.n(4) == 0 {
		where = append(where, a+".id IN ("+g.query1col()+")")
	}
	q := "SELECT " + a + ".id FROM " + from
	if len(where) > 0 {
		q += " WHERE " + strings.Join(where, g.pick(" AND ", " OR "))
	}
	return q
}

func (g *gen) cond(a string) string {
	switch g.n(9) {
	case 0:
		return a + ".account_id = 42"
	case 1:
		return a + ".account_id = 7"
	case 2:
		return a + ".account_id = $1"
	case 3:
		return a + ".account_id IN (42, " + g.pick("42", "7") + ")"
	case 4:
		return "(" + a + ".account_id = 42 OR " + a + ".id = 1)"
	case 5:
		return a + ".account_id = current_setting('app.current_account_id')::bigint"
	case 6:
		return a + ".id > " + g.value()
	default:
		return "true"
	}
}

func (g *gen) value() string { return g.pick("1", "'x'", "$2", "42", "7") }
