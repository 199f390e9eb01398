package e2e

import (
	"bytes"
	"context"
	"fmt"
	"regexp"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/pgtenant/pgtenant/auth"
	"github.com/pgtenant/pgtenant/cluster"
	"github.com/pgtenant/pgtenant/config"
	"github.com/pgtenant/pgtenant/demo"
	"github.com/pgtenant/pgtenant/policy"
	"github.com/pgtenant/pgtenant/test/pgtest"
	"github.com/pgtenant/pgtenant/test/proxytest"
)

// The RLS-equivalence oracle of policy.unscoped: rewrite (issue 11): for
// every statement of the tenancy corpus and of the ORM-shaped list below that
// pgtenant allows in rewrite mode and that touches a tenant table, the rows
// it returns and the rows it changes through pgtenant, against a cluster
// whose tenant tables have RLS turned OFF, are exactly those PostgreSQL
// returns and changes for the same statement sent directly, with RLS ON and
// the tenant setting set, to a second cluster holding the same data.
//
// An INSERT that omits the tenant column is filled by the rewrite; on the RLS
// side a column default `current_setting('app.current_account_id')` does the
// same (the data layer the rewrite stands in for).
//
// Statements commit on both sides (one session each, a transaction left open
// is rolled back) and run in corpus order, so the clusters'
// tenant tables must stay identical after every statement: a rewrite that
// writes one row too many (or too few) shows at the statement that did it.

// ormStatements are statements shaped as ORMs and drivers send them (Django,
// ActiveRecord, SQLAlchemy, Sequelize, GORM, asyncpg/pgx introspection), with
// no tenant pin: rewrite mode must pin them. `-- bind:` rows go as
// Parse/Bind with those text values.
var ormStatements = []string{
	`SELECT * FROM orders LIMIT 1`,
	`SELECT * FROM "orders" LIMIT 0`,
	`SELECT "orders"."id", "orders"."total", "orders"."note" FROM "orders" WHERE "orders"."id" = $1 LIMIT 21 -- bind: 5`,
	`SELECT "orders"."id", "orders"."total" FROM "orders" WHERE "orders"."id" = $1 LIMIT 21 -- bind: 2001`,
	`SELECT COUNT(*) AS "__count" FROM "orders"`,
	`SELECT "line_items".* FROM "line_items" WHERE "line_items"."order_id" IN ($1, $2) -- bind: 1001 | 2001`,
	`SELECT "orders".* FROM "orders" INNER JOIN "line_items" ON "line_items"."order_id" = "orders"."id" WHERE "line_items"."sku" = $1 -- bind: SKU-1`,
	`SELECT o.id, li.sku FROM orders o LEFT OUTER JOIN line_items li ON li.order_id = o.id ORDER BY o.id`,
	`SELECT o.id, li.sku FROM line_items li RIGHT JOIN orders o ON li.order_id = o.id`,
	`SELECT o.id, c.id FROM orders o FULL OUTER JOIN customers c ON c.id = o.id`,
	`SELECT * FROM customers WHERE EXISTS (SELECT 1 FROM orders WHERE orders.note = customers.email)`,
	`SELECT id FROM orders UNION SELECT order_id FROM line_items`,
	`WITH big AS (SELECT * FROM orders WHERE total > 20) SELECT count(*), sum(total) FROM big`,
	`SELECT c.name, (SELECT count(*) FROM orders o WHERE o.note = c.email) FROM customers c`,
	`SELECT * FROM orders o, LATERAL (SELECT sku FROM line_items li WHERE li.order_id = o.id) x`,
	`UPDATE "orders" SET "note" = $1 WHERE "orders"."id" = $2 -- bind: touched | 9`,
	`UPDATE "orders" SET "note" = $1 WHERE "orders"."id" = $2 -- bind: stolen | 2001`,
	`UPDATE orders SET total = total + 1`,
	`UPDATE line_items li SET qty = qty + 1 FROM orders o WHERE o.id = li.order_id AND o.total > 5`,
	`INSERT INTO "orders" ("id", "total", "note") VALUES ($1, $2, $3) RETURNING "orders"."id", "orders"."account_id" -- bind: 7001 | 3.5 | orm`,
	`INSERT INTO customers (name, email) VALUES ('New One', 'n@example.com'), ('Other', NULL)`,
	`INSERT INTO customers (name) SELECT name || ' copy' FROM customers WHERE email IS NULL`,
	`INSERT INTO orders (id, total) VALUES (7002, 1) ON CONFLICT (id) DO UPDATE SET total = excluded.total`,
	`INSERT INTO orders (id, total) VALUES (2002, 1) ON CONFLICT (id) DO UPDATE SET total = excluded.total`,
	`INSERT INTO orders (id, total) VALUES (7003, 1) ON CONFLICT (id) DO NOTHING`,
	`MERGE INTO orders o USING (VALUES (9, 1.0), (2001, 2.0), (7010, 3.0)) AS v(id, t) ON o.id = v.id WHEN MATCHED THEN UPDATE SET total = v.t WHEN NOT MATCHED THEN INSERT (id, total) VALUES (v.id, v.t)`,
	`DELETE FROM "line_items" WHERE "line_items"."id" IN ($1, $2) -- bind: 3 | 5`,
	`DELETE FROM orders WHERE id = 7003`,
	`DELETE FROM orders WHERE id = 2002`,
	`SELECT * FROM orders ORDER BY id`,
	`SELECT * FROM customers ORDER BY id`,
	`SELECT * FROM line_items ORDER BY id`,
}

// knownDiffs are the statements whose result (never whose effect: the
// table contents are still compared) differs from RLS by design.
var knownDiffs = map[string]string{
	// the rewrite pins DO UPDATE with WHERE (as deny mode asks clients to):
	// a conflict with another tenant's row updates nothing, where RLS raises
	// 42501; neither changes a row
	`INSERT INTO orders (id, total) VALUES (2002, 1) ON CONFLICT (id) DO UPDATE SET total = excluded.total`: "upsert on another tenant's key",
}

// nondeterministicRE matches statements whose rows are random samples.
var nondeterministicRE = regexp.MustCompile(`(?i)\btablesample\b|\brandom\(`)

var explainRE = regexp.MustCompile(`(?i)^\s*explain\b`)

// bindRE splits a `-- bind: a | b` suffix.
var bindRE = regexp.MustCompile(`--\s*bind:(.*)$`)

var copyFromRE = regexp.MustCompile(`(?is)^\s*copy\b.*\bfrom\s+stdin`)

var copyToRE = regexp.MustCompile(`(?is)^\s*copy\b.*\bto\s+stdout`)

func TestRewriteOracleRLSEquivalence(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Minute)
	defer cancel()
	rls := oracleCluster(t, ctx, "rewrite-rls", true)
	norls := oracleCluster(t, ctx, "rewrite-norls", false)
	env := proxytest.Start(t, rewriteOptions(norls, nil))
	norlsSuper, rlsSuper := pgtest.Conn(t, norls.SuperuserDSN(norls.Database)), pgtest.Conn(t, rls.SuperuserDSN(rls.Database))
	if got, want := tableState(t, ctx, norlsSuper), tableState(t, ctx, rlsSuper); got != want {
		t.Fatalf("the clusters start with different data")
	}

	proxyConn := &oracleConn{dsn: env.DSN(t, "42", "eu-west")}
	directConn := &oracleConn{dsn: rls.ServiceDSN(), setup: "SET app.current_account_id = '42'"}
	defer proxyConn.close()
	defer directConn.close()
	var stmts []string
	for _, r := range readTenancyCorpus(t) {
		stmts = append(stmts, r.sql)
	}
	stmts = append(stmts, ormStatements...)
	p := auth.Principal{Account: "42", Region: "eu-west"}
	compared, rewritten, denied := 0, 0, 0
	for _, sql := range stmts {
		d := policy.RunCorpusSQL(env.Engine.NewSession(p), sql)
		if !d.Allow {
			denied++
			continue
		}
		if !touchesTenant(d.Tables) {
			continue
		}
		if rw := rewriteOf(env.Engine, p, sql); rw != "" {
			rewritten++
		}
		if nondeterministicRE.MatchString(sql) {
			continue
		}
		proxied := proxyConn.run(t, ctx, sql)
		if proxied.denied {
			t.Errorf("the engine allows but the proxy denied: %s\n%s", sql, proxied.out)
			continue
		}
		direct := directConn.run(t, ctx, sql)
		compared++
		switch {
		case knownDiffs[sql] != "":
			t.Logf("known difference (%s): %s\n through pgtenant: %s directly: %s", knownDiffs[sql], sql, proxied.out, direct.out)
		case copyFromRE.MatchString(sql):
			// PostgreSQL refuses COPY FROM into a table with RLS (0A000);
			// through pgtenant each row's tenant value is checked instead
			// (rewrite_copy_test.go). With no rows sent, neither side
			// changes a row (the table states are compared below).
			if !strings.HasPrefix(proxied.out, "COPY 0") || !strings.HasPrefix(direct.out, "ERROR 0A000") {
				t.Errorf("COPY FROM differs otherwise than RLS's refusal: %s\n through pgtenant (RLS off):\n%s\n directly (RLS on):\n%s",
					sql, proxied.out, direct.out)
			}
		case explainRE.MatchString(sql):
			// a plan is not data: the pin shows in it, RLS's policy too
			if strings.HasPrefix(proxied.out, "ERROR") != strings.HasPrefix(direct.out, "ERROR") {
				t.Errorf("EXPLAIN fails on one side only: %s\n%s\n%s", sql, proxied.out, direct.out)
			}
		case proxied.out != direct.out:
			t.Errorf("result differs from RLS: %s\n rewrite: %s\n through pgtenant (RLS off):\n%s\n directly (RLS on):\n%s",
				sql, rewriteOf(env.Engine, p, sql), proxied.out, direct.out)
		}
		if a, b := tableState(t, ctx, norlsSuper), tableState(t, ctx, rlsSuper); a != b {
			t.Fatalf("table contents differ from RLS after: %s\n rewrite: %s\n through pgtenant (RLS off):\n%s\n directly (RLS on):\n%s",
				sql, rewriteOf(env.Engine, p, sql), a, b)
		}
	}
	t.Logf("compared %d statements (%d rewritten), %d denied", compared, rewritten, denied)
	if compared < 100 || rewritten < 40 {
		t.Errorf("too few statements compared (%d) or rewritten (%d)", compared, rewritten)
	}
}

// oracleCluster starts a cluster with the demo schema, seed and corpus
// extras; with rlsOn false, RLS is turned off on the tenant tables.
// rewriteOptions run the proxy in rewrite mode (policy.unscoped) in front
// of c alone, as region eu-west, with the demo schema's global table and
// forbidden schemas; more, when set, adjusts the configuration further
// (another policy.unscoped, say).
func rewriteOptions(c *cluster.Cluster, more func(*config.Config)) proxytest.Options {
	return proxytest.Options{Regions: []string{"eu-west"}, Policy: true, Configure: func(cfg *config.Config) {
		r := cfg.Regions["eu-west"]
		r.Port, r.User, r.Password, r.Database = c.Port, c.ServiceUser, c.ServicePassword, c.Database
		cfg.Regions["eu-west"] = r
		cfg.Policy.GlobalTables = []string{"public.countries"}
		cfg.Policy.ForbiddenSchemas = []string{"audit", "pgtenant_audit"}
		cfg.Policy.Unscoped = "rewrite"
		if more != nil {
			more(cfg)
		}
	}}
}

func oracleCluster(t *testing.T, ctx context.Context, name string, rlsOn bool) *cluster.Cluster {
	t.Helper()
	c := pgtest.Shared(t, name)
	proxytest.InstallDemo(t, c)
	if err := demo.InstallCorpusExtra(ctx, c); err != nil {
		t.Fatal(err)
	}
	if rlsOn {
		// rewrite mode fills the tenant column of an INSERT that omits it:
		// the RLS side does the same with a column default, so both run the
		// client's statement unchanged
		var b strings.Builder
		for _, tb := range []string{"orders", "customers", "line_items"} {
			fmt.Fprintf(&b, "ALTER TABLE public.%s ALTER COLUMN account_id SET DEFAULT NULLIF(current_setting('app.current_account_id', true), '')::bigint;\n", tb)
		}
		if err := c.Exec(ctx, c.Database, b.String()); err != nil {
			t.Fatal(err)
		}
	} else {
		var b strings.Builder
		for _, tb := range []string{"orders", "customers", "line_items"} {
			fmt.Fprintf(&b, "ALTER TABLE public.%s NO FORCE ROW LEVEL SECURITY; ALTER TABLE public.%s DISABLE ROW LEVEL SECURITY;\n", tb, tb)
		}
		if err := c.Exec(ctx, c.Database, b.String()); err != nil {
			t.Fatal(err)
		}
	}
	return c
}

func touchesTenant(tables []string) bool {
	for _, tb := range tables {
		switch tb {
		case "public.orders", "public.customers", "public.line_items":
			return true
		}
	}
	return false
}

// rewriteOf is the text rewrite mode forwards for sql ("" when unchanged).
func rewriteOf(e *policy.Engine, p auth.Principal, sql string) string {
	s := e.NewSession(p)
	if m := bindRE.FindStringIndex(sql); m != nil {
		return s.CheckParse("", strings.TrimSpace(sql[:m[0]]), nil).Rewritten
	}
	return s.CheckQuery(sql).Rewritten
}

type oracleResult struct {
	out    string
	denied bool
}

// oracleConn is one side's session, reused across statements: a statement
// that leaves a transaction open is rolled back, a lost connection replaced.
type oracleConn struct {
	dsn, setup string
	conn       *pgconn.PgConn
}

func (o *oracleConn) close() {
	if o.conn != nil {
		_ = o.conn.Close(context.Background())
	}
}

// run runs sql and renders its results: per result its command tag and rows
// sorted, or its error's SQLSTATE.
func (o *oracleConn) run(t *testing.T, ctx context.Context, sql string) oracleResult {
	t.Helper()
	if o.conn == nil || o.conn.IsClosed() {
		conn, err := pgconn.Connect(ctx, o.dsn)
		if err != nil {
			t.Fatalf("connect: %v", err)
		}
		if o.setup != "" {
			if _, err := conn.Exec(ctx, o.setup).ReadAll(); err != nil {
				t.Fatalf("%s: %v", o.setup, err)
			}
		}
		o.conn = conn
	}
	conn := o.conn
	defer func() {
		if !conn.IsClosed() && conn.TxStatus() != 'I' {
			_, _ = conn.Exec(ctx, "ROLLBACK").ReadAll()
		}
	}()
	var err error
	var out strings.Builder
	var res []*pgconn.Result
	switch m := bindRE.FindStringSubmatchIndex(sql); {
	case m != nil:
		var values [][]byte
		for _, v := range strings.Split(sql[m[2]:m[3]], "|") {
			if v = strings.TrimSpace(v); v == "NULL" {
				values = append(values, nil)
			} else {
				values = append(values, []byte(v))
			}
		}
		res = []*pgconn.Result{conn.ExecParams(ctx, strings.TrimSpace(sql[:m[0]]), values, nil, nil, nil).Read()}
	case copyFromRE.MatchString(sql):
		// the corpus sends no rows: both sides get an empty COPY
		tag, err := conn.CopyFrom(ctx, strings.NewReader(""), sql)
		res = []*pgconn.Result{{CommandTag: tag, Err: err}}
	case copyToRE.MatchString(sql):
		var buf bytes.Buffer
		tag, err := conn.CopyTo(ctx, &buf, sql)
		res = []*pgconn.Result{{CommandTag: tag, Err: err}}
		lines := strings.Split(buf.String(), "\n")
		sort.Strings(lines)
		out.WriteString(strings.Join(lines, "\n"))
	default:
		res, err = conn.Exec(ctx, sql).ReadAll()
		if err != nil && len(res) == 0 {
			res = []*pgconn.Result{{Err: err}}
		}
	}
	var denied bool
	for _, r := range res {
		if r.Err != nil {
			code := "?"
			if pe, ok := r.Err.(*pgconn.PgError); ok {
				code = pe.Code
				denied = denied || strings.HasPrefix(pe.Message, "pgtenant:")
			}
			fmt.Fprintf(&out, "ERROR %s\n", code)
			break
		}
		fmt.Fprintf(&out, "%s\n", r.CommandTag.String())
		var rows []string
		for _, row := range r.Rows {
			var cells []string
			for _, v := range row {
				if v == nil {
					cells = append(cells, "NULL")
				} else {
					cells = append(cells, string(v))
				}
			}
			rows = append(rows, strings.Join(cells, "\x1f"))
		}
		sort.Strings(rows)
		for _, row := range rows {
			out.WriteString("  " + strings.ReplaceAll(row, "\x1f", " | ") + "\n")
		}
	}
	return oracleResult{out: out.String(), denied: denied}
}

// tableState is every row of the tenant and global tables, read as the superuser.
func tableState(t *testing.T, ctx context.Context, conn *pgx.Conn) string {
	t.Helper()
	var s string
	err := conn.QueryRow(ctx, `SELECT coalesce(string_agg(x, E'\n' ORDER BY x), '') FROM (
		SELECT 'orders ' || o::text AS x FROM public.orders o
		UNION ALL SELECT 'customers ' || c::text FROM public.customers c
		UNION ALL SELECT 'line_items ' || l::text FROM public.line_items l
		UNION ALL SELECT 'countries ' || k::text FROM public.countries k) t`).Scan(&s)
	if err != nil {
		t.Fatalf("table state: %v", err)
	}
	return s
}
