package policy

import (
	"strings"
	"testing"

	"github.com/pgtenant/pgtenant/config"
)

const pinText = "pg_catalog.current_setting('app.current_account_id')::bigint"

// rewriteCases are (verdict in rewrite mode, sql, fragments the rewrite must
// contain; empty for denials and for texts allowed unchanged) for account 42.
var rewriteCases = []struct {
	verdict, sql string
	want         []string
}{
	{"allow", `SELECT * FROM orders`, []string{"WHERE orders.account_id = " + pinText}},
	{"allow", `SELECT * FROM orders LIMIT 1`, []string{"WHERE orders.account_id = " + pinText + " LIMIT 1"}},
	{"allow", `SELECT * FROM orders WHERE account_id = 42`, nil},
	{"allow", `SELECT o.id FROM orders o JOIN customers c ON c.id = o.id WHERE o.total > 10`,
		[]string{"o.account_id = " + pinText, "c.account_id = " + pinText}},
	{"allow", `SELECT o.id FROM orders o LEFT JOIN customers c ON c.id = o.id`,
		[]string{"ON c.id = o.id AND c.account_id = " + pinText + " WHERE o.account_id = " + pinText}},
	{"allow", `SELECT o.id FROM customers c RIGHT JOIN orders o ON c.id = o.id`,
		[]string{"ON c.id = o.id AND c.account_id = " + pinText + " WHERE o.account_id = " + pinText}},
	{"allow", `SELECT o.id FROM orders o FULL JOIN customers c ON c.id = o.id`,
		[]string{"(SELECT * FROM orders WHERE orders.account_id = " + pinText + ") o FULL JOIN (SELECT * FROM customers WHERE customers.account_id = " + pinText + ") c"}},
	{"allow", `SELECT o.id FROM orders o LEFT JOIN customers c USING (id)`,
		[]string{"LEFT JOIN (SELECT * FROM customers WHERE customers.account_id = " + pinText + ") c USING (id)"}},
	{"allow", `SELECT * FROM orders WHERE id IN (SELECT order_id FROM line_items WHERE qty > 1)`,
		[]string{"qty > 1 AND line_items.account_id = " + pinText}},
	{"allow", `WITH orders AS (SELECT * FROM orders) SELECT * FROM orders`,
		[]string{"WITH orders AS (SELECT * FROM orders WHERE orders.account_id = " + pinText + ") SELECT * FROM orders"}},
	// a join alias hides its tables: the rewrite pins them inside the join,
	// where the analysis (which resolves join aliases as PostgreSQL does)
	// finds both pins
	{"allow", `SELECT j.id FROM (orders o JOIN line_items li ON li.order_id = o.id) AS j`,
		[]string{"ON li.order_id = o.id AND o.account_id = " + pinText + " AND li.account_id = " + pinText}},
	{"allow", `SELECT id FROM orders UNION ALL SELECT id FROM customers`,
		[]string{"FROM orders WHERE orders.account_id", "FROM customers WHERE customers.account_id"}},
	{"allow", `SELECT * FROM orders o, LATERAL (SELECT sku FROM line_items li WHERE li.order_id = o.id) x`,
		[]string{"li.order_id = o.id AND li.account_id = " + pinText}},
	{"allow", `UPDATE orders SET total = 1 WHERE id = $1`, []string{"WHERE id = $1 AND orders.account_id = " + pinText}},
	{"allow", `DELETE FROM orders o USING customers c WHERE o.id = c.id`,
		[]string{"o.account_id = " + pinText, "c.account_id = " + pinText}},
	{"allow", `INSERT INTO orders (id, total) VALUES (1, 2), ($1, 4) RETURNING id`,
		[]string{"(id, total, account_id) VALUES (1, 2, " + pinText + "), ($1, 4, " + pinText + ")"}},
	{"allow", `INSERT INTO orders (id, total) SELECT id, 1 FROM customers`,
		[]string{"SELECT id, 1, " + pinText + " FROM customers WHERE customers.account_id = " + pinText}},
	{"allow", `INSERT INTO orders (id) SELECT 1 UNION SELECT 2`, []string{"SELECT pgtenant_src.c1, " + pinText + " FROM (SELECT 1 UNION SELECT 2) pgtenant_src(c1)"}},
	{"allow", `INSERT INTO orders DEFAULT VALUES`, []string{"INSERT INTO orders (account_id) VALUES (" + pinText + ")"}},
	{"allow", `INSERT INTO orders VALUES (1)`, []string{"INSERT INTO orders (id, account_id) VALUES (1, " + pinText + ")"}},
	{"allow", `INSERT INTO orders (id) VALUES (1) ON CONFLICT (id) DO UPDATE SET total = excluded.total`,
		[]string{"DO UPDATE SET total = excluded.total WHERE orders.account_id = " + pinText}},
	{"allow", `MERGE INTO orders o USING customers c ON o.id = c.id WHEN MATCHED THEN UPDATE SET total = 1 WHEN NOT MATCHED THEN INSERT (id) VALUES (c.id)`,
		[]string{"USING (SELECT * FROM customers WHERE customers.account_id = " + pinText + ") c ON o.id = c.id AND o.account_id = " + pinText,
			"INSERT (id, account_id) VALUES (c.id, " + pinText + ")"}},
	{"allow", `COPY orders (id, total) TO STDOUT WITH (FORMAT csv)`,
		[]string{"COPY (SELECT id, total FROM orders WHERE orders.account_id = " + pinText + ") TO STDOUT"}},
	{"allow", `EXPLAIN SELECT * FROM orders`, []string{"EXPLAIN SELECT * FROM orders WHERE orders.account_id"}},
	{"allow", `PREPARE q AS SELECT * FROM orders WHERE id = $1; EXECUTE q(5)`, []string{"PREPARE q AS SELECT * FROM orders WHERE id = $1 AND orders.account_id"}},
	{"allow", `SELECT * FROM orders WHERE account_id = (SELECT 42)`, []string{"(SELECT 42) AND orders.account_id = " + pinText}},
	// a pin of another tenant, a tenant-column write or an escape stays refused
	{"deny", `SELECT * FROM orders WHERE account_id = 7`, nil},
	{"deny", `SELECT * FROM orders o, customers c WHERE o.account_id = 7`, nil},
	{"deny", `SELECT * FROM orders WHERE account_id = 42 OR account_id = 7`, nil},
	{"deny", `SELECT * FROM orders o LEFT JOIN customers c ON c.id = o.id WHERE c.account_id = 7`, nil},
	{"deny", `UPDATE orders SET account_id = 7 WHERE id = 1`, nil},
	{"deny", `UPDATE orders SET account_id = 7`, nil},
	{"deny", `INSERT INTO orders (account_id, total) VALUES (7, 1)`, nil},
	{"deny", `INSERT INTO orders (id, total) VALUES (1, 1) ON CONFLICT (id) DO UPDATE SET account_id = 7`, nil},
	{"deny", `SELECT * FROM orders, audit.log`, nil},
	{"deny", `SELECT * FROM orders WHERE set_config('app.current_account_id', '7', true) IS NOT NULL`, nil},
	{"deny", `SELECT pg_read_file('/etc/passwd') FROM orders`, nil},
	{"deny", `UPDATE countries SET name = 'x'`, nil},
	{"allow", `COPY orders FROM STDIN`, nil}, // with a row check (copycheck.go)
	{"deny", `COPY orders (id) FROM STDIN`, nil},
	{"deny", `SELECT * FROM orders WHERE account_id::text = '42'`, nil},
	{"deny", `MERGE INTO orders o USING customers c ON o.id = c.id WHEN NOT MATCHED BY SOURCE THEN DELETE`, nil},
	{"deny", `DELETE FROM orders WHERE CURRENT OF c`, nil},
	{"deny", `MERGE INTO orders o USING customers c ON o.id = c.id AND c.account_id = 7 WHEN MATCHED THEN DELETE`, nil},
	{"deny", `SELECT * FROM orders o FULL JOIN customers c ON c.id = o.id AND c.account_id = 7`, nil},
}

func TestRewriteCases(t *testing.T) {
	e := newTestEngine(t, func(p *config.Policy) { p.Unscoped = "rewrite" })
	for _, c := range rewriteCases {
		d := session(t, e, "42").CheckQuery(c.sql)
		got := map[bool]string{true: "allow", false: "deny"}[d.Allow]
		if got != c.verdict {
			t.Errorf("want %s got %s (%s): %s -> %s", c.verdict, got, d.Message, c.sql, d.Rewritten)
			continue
		}
		for _, w := range c.want {
			if !strings.Contains(d.Rewritten, w) {
				t.Errorf("%s\n rewritten %s\n lacks %s", c.sql, d.Rewritten, w)
			}
		}
		if d.Allow && len(c.want) == 0 && d.Rewritten != "" {
			t.Errorf("%s: rewritten although allowed as is: %s", c.sql, d.Rewritten)
		}
		if d.Rewritten != "" && !strings.Contains(d.Statement, "current_setting") {
			t.Errorf("%s: the audited statement is not the rewrite: %s", c.sql, d.Statement)
		}
		if !d.Allow && (d.SQLState == "" || !strings.HasPrefix(d.Message, "pgtenant: ")) {
			t.Errorf("%s: denial without state or message: %+v", c.sql, d)
		}
	}
}

// Deny stays the default: the same texts are refused without the setting.
func TestRewriteOffByDefault(t *testing.T) {
	e := newTestEngine(t)
	if e.Rewriting() {
		t.Fatal("rewrite mode on by default")
	}
	for _, sql := range []string{`SELECT * FROM orders`, `INSERT INTO orders (id) VALUES (1)`, `SELECT * FROM orders LIMIT 1`} {
		if d := session(t, e, "42").CheckQuery(sql); d.Allow || d.Rewritten != "" {
			t.Errorf("deny mode allowed or rewrote %s", sql)
		}
	}
}

// One rewrite per shape serves every text and every tenant of the shape: the
// template keeps each text's own literals and names no account.
func TestRewriteCachedPerShape(t *testing.T) {
	e := newTestEngine(t, func(p *config.Policy) { p.Unscoped = "rewrite" })
	a := session(t, e, "42").CheckQuery(`SELECT * FROM orders WHERE id = 5 AND note = 'a''b'`)
	b := session(t, e, "7").CheckQuery(`SELECT * FROM orders WHERE id = 77 AND note = 'zz'`)
	if !a.Allow || !b.Allow {
		t.Fatalf("denied: %s / %s", a.Message, b.Message)
	}
	if !strings.Contains(a.Rewritten, "id = 5 AND note = 'a''b' AND orders.account_id = "+pinText) {
		t.Errorf("first text: %s", a.Rewritten)
	}
	if !strings.Contains(b.Rewritten, "id = 77 AND note = 'zz' AND orders.account_id = "+pinText) {
		t.Errorf("second text (cache hit, other tenant): %s", b.Rewritten)
	}
	for _, r := range []string{a.Rewritten, b.Rewritten} {
		if strings.Contains(r, "42") || strings.Contains(r, "'7'") {
			t.Errorf("an account leaked into the rewrite: %s", r)
		}
	}
	if n := e.rw.len(); n != 1 {
		t.Errorf("%d rewrite cache entries for one shape", n)
	}
	// a literal that cannot stand as a parameter falls back to the text itself
	c := session(t, e, "42").CheckQuery(`SELECT * FROM orders WHERE total > 1 AND note < interval '1 day'::text`)
	if !c.Allow || !strings.Contains(c.Rewritten, "'1 day'") {
		t.Errorf("interval literal: %v %s %s", c.Allow, c.Message, c.Rewritten)
	}
}

// Parse is rewritten; Binds are checked against the rewritten statement.
func TestRewriteParseBind(t *testing.T) {
	e := newTestEngine(t, func(p *config.Policy) { p.Unscoped = "rewrite" })
	s := session(t, e, "42")
	d := s.CheckParse("s1", `SELECT * FROM orders WHERE id = $1`, nil)
	if !d.Allow || !strings.Contains(d.Rewritten, "id = $1 AND orders.account_id = "+pinText) {
		t.Fatalf("parse: %v %s %s", d.Allow, d.Message, d.Rewritten)
	}
	if b := s.CheckBind("s1", nil, [][]byte{[]byte("2001")}); !b.Allow {
		t.Errorf("bind of a non-tenant parameter denied: %s", b.Message)
	}
	d = s.CheckParse("s2", `SELECT * FROM orders o JOIN customers c ON c.id = o.id WHERE o.account_id = $1`, nil)
	if !d.Allow || !strings.Contains(d.Rewritten, "c.account_id = "+pinText) || strings.Contains(d.Rewritten, "o.account_id = "+pinText) {
		t.Fatalf("parse 2: %v %s %s", d.Allow, d.Message, d.Rewritten)
	}
	if b := s.CheckBind("s2", nil, [][]byte{[]byte("7")}); b.Allow {
		t.Errorf("bind of another tenant's account allowed on a rewritten statement")
	}
	if b := s.CheckBind("s2", nil, [][]byte{[]byte("42")}); !b.Allow {
		t.Errorf("bind of the own account denied: %s", b.Message)
	}
}

// BenchmarkRewriteHit is an ORM point query without a pin, rewritten from
// the template cache: the deny-mode analysis (cached), the template fill and
// the analysis of the rewrite (cached).
func BenchmarkRewriteHit(b *testing.B) {
	e := newTestEngine(b, func(p *config.Policy) { p.Unscoped = "rewrite" })
	s := session(b, e, "42")
	sql := `SELECT "orders"."id", "orders"."total" FROM "orders" WHERE "orders"."id" = 5 LIMIT 21`
	if d := s.CheckQuery(sql); !d.Allow || d.Rewritten == "" {
		b.Fatalf("%v %s", d.Allow, d.Message)
	}
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if d := s.CheckQuery(sql); !d.Allow {
			b.Fatal(d.Message)
		}
	}
}

// BenchmarkRewriteMiss rewrites a new shape each time (parse, rewrite, deparse).
func BenchmarkRewriteMiss(b *testing.B) {
	e := newTestEngine(b, func(p *config.Policy) { p.Unscoped = "rewrite"; p.CacheEntries = 0 })
	s := session(b, e, "42")
	sql := `SELECT o.id, li.sku FROM orders o LEFT JOIN line_items li ON li.order_id = o.id WHERE o.total > 5`
	b.ReportAllocs()
	for i := 0; i < b.N; i++ {
		if d := s.CheckQuery(sql); !d.Allow {
			b.Fatal(d.Message)
		}
	}
}
