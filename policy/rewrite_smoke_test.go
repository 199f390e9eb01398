package policy

import (
	"testing"

	"github.com/pgtenant/pgtenant/config"
)

func TestRewriteSmoke(t *testing.T) {
	e := newTestEngine(t, func(p *config.Policy) { p.Unscoped = "rewrite" })
	s := session(t, e, "42")
	for _, q := range []string{
		`SELECT * FROM orders`,
		`SELECT * FROM orders LIMIT 1`,
		`SELECT o.id, c.name FROM orders o JOIN customers c ON c.id = o.id WHERE o.total > 10`,
		`SELECT o.id, c.name FROM orders o LEFT JOIN customers c ON c.id = o.id`,
		`SELECT o.id, c.name FROM orders o FULL JOIN customers c ON c.id = o.id`,
		`SELECT o.id FROM orders o LEFT JOIN customers c USING (id)`,
		`SELECT * FROM orders WHERE id IN (SELECT order_id FROM line_items WHERE qty > 1)`,
		`WITH x AS (SELECT * FROM orders) SELECT * FROM x UNION ALL SELECT * FROM orders`,
		`UPDATE orders SET total = 1 WHERE id = 5`,
		`DELETE FROM orders o USING customers c WHERE o.id = c.id`,
		`INSERT INTO orders (id, total) VALUES (1, 2), (3, 4) RETURNING id`,
		`INSERT INTO orders (id, total) SELECT id, 1 FROM customers`,
		`INSERT INTO orders DEFAULT VALUES`,
		`INSERT INTO orders (id, total) VALUES (1, 2) ON CONFLICT (id) DO UPDATE SET total = excluded.total`,
		`MERGE INTO orders o USING customers c ON o.id = c.id WHEN MATCHED THEN UPDATE SET total = 1 WHEN NOT MATCHED THEN INSERT (id, total) VALUES (c.id, 0)`,
		`SELECT * FROM orders WHERE account_id = 7`,
		`SELECT * FROM orders o, customers c WHERE o.account_id = 7`,
		`UPDATE orders SET account_id = 7 WHERE id = 1`,
		`SELECT pg_sleep(1) FROM orders`,
		`SELECT * FROM orders WHERE created > now() - interval '1 day'`,
		`SELECT * FROM orders WHERE id = $1`,
	} {
		d := s.CheckQuery(q)
		t.Logf("%v %s\n   %s\n   -> %s", d.Allow, q, d.Message, d.Rewritten)
	}
}
