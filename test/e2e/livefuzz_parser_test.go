package e2e

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"regexp"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgproto3"

	"github.com/pgtenant/pgtenant/config"
	"github.com/pgtenant/pgtenant/test/proxytest"
)

// liveFuzzWriteSQL are the statements of the parser-layer live fuzz: reads
// and writes of tenant 42's rows in every form the policy must refuse or
// scope (rewrite mode), COPY FROM STDIN with rows of either tenant, and the
// allowed statements they are mixed with.
var liveFuzzWriteSQL = []string{
	"SELECT note FROM orders",
	"SELECT note FROM orders WHERE account_id = 42",
	"SELECT note FROM orders WHERE account_id = 7 OR true",
	"SELECT note FROM orders WHERE account_id = $1",
	"SELECT note FROM orders WHERE account_id = 7 UNION SELECT note FROM orders",
	"WITH x AS (SELECT note FROM orders) SELECT * FROM x",
	"COPY (SELECT note FROM orders) TO STDOUT",
	"COPY orders TO STDOUT",
	"DECLARE c CURSOR FOR SELECT note FROM orders",
	"FETCH ALL c",
	"INSERT INTO orders (account_id, note) VALUES (7, 'fz7')",
	"INSERT INTO orders (account_id, note) VALUES (42, 'fz7')",
	"INSERT INTO orders (account_id, note) VALUES ($1, 'fz7')",
	"INSERT INTO orders (note) VALUES ('fz7')",
	"INSERT INTO orders (account_id, note) SELECT 42, 'fz7'",
	"INSERT INTO orders (account_id, note) VALUES (7, 'fz7') ON CONFLICT (id) DO UPDATE SET account_id = 42",
	"UPDATE orders SET note = 'fz7'",
	"UPDATE orders SET note = 'fz7' WHERE account_id = 42",
	"UPDATE orders SET account_id = 42 WHERE account_id = 7",
	"UPDATE orders SET note = $1 WHERE account_id = $2",
	"DELETE FROM orders",
	"DELETE FROM orders WHERE account_id = 42",
	"DELETE FROM orders WHERE account_id = $1",
	"WITH x AS (DELETE FROM orders RETURNING *) SELECT count(*) FROM x",
	"MERGE INTO orders o USING (SELECT 42 AS a) s ON o.account_id = s.a WHEN MATCHED THEN DELETE",
	"TRUNCATE orders",
	"COPY orders (account_id, note) FROM STDIN",
	"COPY orders (note, account_id) FROM STDIN WITH (FORMAT csv)",
	"COPY orders (note) FROM STDIN",
	"SELECT set_config('app.current_account_id', '42', false)",
	"SET app.current_account_id = '42'",
	"PREPARE p AS SELECT note FROM orders WHERE account_id = $1",
	"EXECUTE p(42)",
	"PREPARE w AS DELETE FROM orders WHERE account_id = $1",
	"EXECUTE w(42)",
	"BEGIN",
	"COMMIT",
	"ROLLBACK",
	"SELECT 1",
}

// hostileFuzzSQL returns the hostile corpus's refused statements (those
// without Bind values) turned against tenant 42: the corpus is written for
// tenant 42 reaching tenant 7's rows, and here tenant 7 attacks, so every
// integer 42 and 7 trade places.
func hostileFuzzSQL(t *testing.T) []string {
	t.Helper()
	tenants := regexp.MustCompile(`\b(42|7)\b`)
	var out []string
	for _, r := range readCorpusFile(t, hostileCorpusPath, nil) {
		if r.verdict != "deny" || r.binds != nil {
			continue
		}
		out = append(out, tenants.ReplaceAllStringFunc(r.sql, func(n string) string {
			if n == "42" {
				return "7"
			}
			return "42"
		}))
	}
	if len(out) < 150 {
		t.Fatalf("only %d refused statements in the hostile corpus", len(out))
	}
	return out
}

// The parser layer alone: the same live fuzz, in deny and in rewrite mode
// (policy.unscoped), against a cluster with RLS off, so pgtenant's policy and its model of the protocol
// are all that stand between tenant 7 and tenant 42's rows. Tenant 7 sends
// random and mutated streams of reads, writes and COPYs aimed at tenant 42,
// and of the hostile corpus's statements turned against it.
// Afterwards every row that is not tenant 7's must be exactly as before (no
// row written, changed or deleted, no row of tenant 7 moved to another
// tenant), and nothing tenant 7 read may hold tenant 42's marker.
func TestLiveFuzzParserLayerAlone(t *testing.T) {
	if testing.Short() {
		t.Skip("live fuzz run skipped in -short mode")
	}
	// rewrite mode in transaction pooling too: its COPY and its statements
	// take the transaction-mode path (txmode.go)
	for _, run := range []struct{ unscoped, pool string }{
		{"deny", config.PoolSession}, {"rewrite", config.PoolSession}, {"rewrite", config.PoolTransaction},
	} {
		t.Run(run.unscoped+"-"+run.pool, func(t *testing.T) { testLiveFuzzParserLayerAlone(t, run.unscoped, run.pool) })
	}
}

func testLiveFuzzParserLayerAlone(t *testing.T, unscoped, poolMode string) {
	dur := liveFuzzDuration(t)
	ctx, cancel := context.WithTimeout(context.Background(), dur+3*time.Minute)
	defer cancel()
	c := oracleCluster(t, ctx, "livefuzz-parser", false)
	env := proxytest.Start(t, rewriteOptions(c, func(cfg *config.Config) {
		cfg.Policy.Unscoped = unscoped
		cfg.Pool.Mode = poolMode
		cfg.Pool.Size = liveFuzzWorkers + 2
	}))
	super := connect(t, c.SuperuserDSN(c.Database))

	var rnd [12]byte
	_, _ = rand.Read(rnd[:])
	suffix := hex.EncodeToString(rnd[:])
	owner := connect(t, env.DSN(t, "42", "eu-west"))
	if _, err := owner.Exec(ctx, "INSERT INTO orders (account_id, note) VALUES (42, $1)", "secret-42-"+suffix); err != nil {
		t.Fatalf("seed marker: %v", err)
	}
	if _, err := super.Exec(ctx, "INSERT INTO orders (account_id, note) VALUES (7, 'seven-livefuzz')"); err != nil {
		t.Fatalf("seed tenant 7: %v", err)
	}
	// Positive control: the exchange used below reads tenant 42's marker
	// when tenant 42 asks, so a leak to tenant 7 would show.
	ctl, err := loginRaw(env.Addr, proxytest.Token(t, "42", "eu-west", 0), false, 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	q, _ := (&pgproto3.Query{String: "SELECT note FROM orders WHERE account_id = 42"}).Encode(nil)
	if got, err := liveFuzzExchange(ctl, append(q, 'X', 0, 0, 0, 4), 5*time.Second); err != nil || !bytes.Contains(got, []byte(suffix)) {
		t.Fatalf("positive control: tenant 42 did not read its marker (%v, %q)", err, got)
	}

	before := othersRows(ctx, t, super)
	writes := func() (n int64) {
		_, _ = super.Exec(ctx, "SELECT pg_stat_force_next_flush()")
		if err := super.QueryRow(ctx, "SELECT n_tup_ins + n_tup_upd + n_tup_del FROM pg_stat_user_tables WHERE relid = 'public.orders'::regclass").Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n
	}
	writesBefore := writes()
	stop := time.Now().Add(dur)
	// the hostile corpus's statements (most name orders, the table both
	// tenants hold rows in here) make about half of the draws; the list
	// above, with its COPYs, cursors and prepared statements, the other half
	hostile := hostileFuzzSQL(t)
	var sqls []string
	for len(sqls) < len(hostile) {
		sqls = append(sqls, liveFuzzWriteSQL...)
	}
	sqls = append(sqls, hostile...)
	stats, wait := startLiveFuzz(t, env.Addr, proxytest.Token(t, "7", "eu-west", 0), sqls, stop, []byte(suffix))
	wait()
	stats.log(t, dur)

	// tenant 7's own writes went through (its DELETEs, rewritten to its own
	// rows, soon remove its seed row, so few reads return it)
	time.Sleep(time.Second) // the statistics of the sessions that just ended reach the collector
	t.Logf("orders: %d rows written (inserted, updated or deleted) during the run", writes()-writesBefore)
	if after := othersRows(ctx, t, super); after != before {
		t.Errorf("rows that are not tenant 7's changed during the fuzz run:\nbefore %s\nafter  %s", before, after)
		var n int
		_ = super.QueryRow(ctx, "SELECT count(*) FROM orders WHERE note = 'fz7' AND account_id IS DISTINCT FROM 7").Scan(&n)
		t.Errorf("%d rows written by tenant 7 belong to another tenant", n)
	}
	if got := settle(func() int { return int(env.Server.ActiveClients()) }, 1); got > 1 {
		t.Errorf("%d client sessions still open after the fuzz run, want 1", got)
		logStuckSessions(ctx, t, c)
	}
	checkNoBackendHeld(ctx, t, env, c)
	// the proxy still serves tenant 42 its own rows
	var note string
	if err := owner.QueryRow(ctx, "SELECT note FROM orders WHERE account_id = 42 AND note = $1", "secret-42-"+suffix).Scan(&note); err != nil {
		t.Errorf("tenant 42 after the fuzz run: %v", err)
	}
}

// othersRows summarises every row of the tenant tables that is not tenant
// 7's: its count and a digest of its contents, per table.
func othersRows(ctx context.Context, t *testing.T, super *pgx.Conn) string {
	t.Helper()
	var out string
	err := super.QueryRow(ctx, `SELECT concat_ws(' ',
		(SELECT count(*) || ':' || md5(coalesce(string_agg(o::text, ',' ORDER BY o.id), '')) FROM orders o WHERE account_id IS DISTINCT FROM 7),
		(SELECT count(*) || ':' || md5(coalesce(string_agg(c::text, ',' ORDER BY c.id), '')) FROM customers c WHERE account_id IS DISTINCT FROM 7),
		(SELECT count(*) || ':' || md5(coalesce(string_agg(l::text, ',' ORDER BY l.id), '')) FROM line_items l WHERE account_id IS DISTINCT FROM 7))`).Scan(&out)
	if err != nil {
		t.Fatal(err)
	}
	return out
}
