package policy

import (
	"testing"

	"github.com/pgtenant/pgtenant/auth"
)

// round2Cases are the verdicts of issues 10 and 11 (second round) for account
// 42 on the test schema: settings by class, the pool reset, driver helpers,
// name resolution, cache keys and the false denies removed.
var round2Cases = []struct{ verdict, sql string }{
	// settings by class
	{"allow", `SET standard_conforming_strings = on`},
	{"allow", `SET standard_conforming_strings TO 'on'`},
	{"allow", `SET standard_conforming_strings = true`},
	{"allow", `SET standard_conforming_strings = 1`},
	{"allow", `SET LOCAL standard_conforming_strings = yes`},
	{"deny", `SET standard_conforming_strings = off`},
	{"deny", `SET standard_conforming_strings = 'of'`},
	{"deny", `SET standard_conforming_strings = DEFAULT`},
	{"deny", `RESET standard_conforming_strings`},
	{"deny", `SELECT set_config('standard_conforming_strings', 'on', false)`},
	{"deny", `SELECT set_config('standard_conforming_strings', 'off', false)`},
	{"allow", `SET default_transaction_isolation = 'read committed'`},
	{"allow", `SET default_transaction_read_only = off`},
	{"allow", `SET SESSION default_transaction_deferrable TO on`},
	{"allow", `SET synchronous_commit = off`},
	{"allow", `SET work_mem = '64MB'`},
	{"allow", `RESET work_mem`},
	{"allow", `SET jit = off`},
	{"allow", `SET plan_cache_mode = force_custom_plan`},
	{"allow", `SET enable_seqscan = off`},
	{"allow", `SET LOCAL enable_nestloop TO false`},
	{"allow", `SELECT set_config('work_mem', '8MB', true)`},
	{"deny", `SET enable_x.y = 1`},
	{"deny", `SET session_replication_role = replica`},
	{"deny", `SET row_security = off`},
	{"deny", `SET role = postgres`},
	{"deny", `SET app.current_account_id = '7'`},
	{"deny", `SET default_tablespace = ''`},
	{"deny", `SET backslash_quote = on`},
	{"deny", `SET escape_string_warning = off`},
	{"deny", `SET check_function_bodies = off`},
	{"deny", `SET temp_tablespaces = 'x'`},
	{"deny", `SET log_statement = 'none'`},
	{"deny", `SET search_path = DEFAULT`},
	{"deny", `RESET search_path`},
	{"allow", `SET search_path = public`},
	{"allow", `SET search_path TO 'public'`},
	{"deny", `SET search_path = "$user", public`}, // the test catalog does not know whether a schema is named after the role
	{"deny", `SET search_path = pg_temp, public`},
	// the pool reset (asyncpg)
	{"allow", `SELECT pg_advisory_unlock_all(); CLOSE ALL; UNLISTEN *; RESET ALL;`},
	{"allow", `SELECT pg_catalog.pg_advisory_unlock_all()`},
	{"deny", `SELECT pg_advisory_unlock(1)`},
	{"deny", `SELECT pg_advisory_lock(1)`},
	{"deny", `DISCARD ALL`},
	// driver helpers
	{"allow", `SELECT (information_schema._pg_expandarray(i.indkey)).n FROM pg_catalog.pg_index i`},
	{"allow", `SELECT information_schema._pg_truetypid(a, t) FROM pg_attribute a JOIN pg_type t ON t.oid = a.atttypid`},
	{"deny", `SELECT information_schema.nonexistent_helper(1)`},
	{"deny", `SELECT _pg_expandarray(ARRAY[1])`},
	// tuple history, transaction status, server build
	{"deny", `SELECT currtid2('orders', '(0,1)'::tid)`},
	{"deny", `SELECT pg_catalog.currtid2('public.orders', tidin('(0,1)'))`},
	{"deny", `SELECT * FROM pg_get_multixact_members('1'::xid)`},
	{"deny", `SELECT pg_xact_commit_timestamp('100'::xid)`},
	{"deny", `SELECT pg_xact_status('100'::xid8)`},
	{"deny", `SELECT txid_status(100)`},
	{"deny", `SELECT * FROM pg_config()`},
	{"deny", `SELECT pg_catalog.pg_config()`},
	{"deny", `SELECT * FROM heap_page_items(get_raw_page('orders', 0))`},
	{"allow", `SELECT pg_relation_size('orders'), pg_table_size('orders'), pg_total_relation_size('public.orders')`},
	{"allow", `SELECT reltuples, relpages FROM pg_class WHERE relname = 'orders'`},
	// name resolution as parse analysis does it
	{"allow", `SELECT * FROM orders o JOIN line_items li USING (account_id) AS j WHERE j.account_id = 42`},
	{"allow", `SELECT o.id, li.sku FROM orders o LEFT JOIN line_items li USING (account_id, id) AS j WHERE j.account_id = 42`},
	{"deny", `SELECT * FROM orders o JOIN line_items li USING (id) AS j WHERE j.account_id = 42`},
	{"deny", `SELECT * FROM (orders o JOIN line_items li USING (account_id) AS j) AS x WHERE j.account_id = 42`},
	{"deny", `SELECT * FROM orders o JOIN line_items li USING (account_id) AS j WHERE j.account_id = 7`},
	{"allow", `SELECT * FROM orders o, LATERAL (SELECT * FROM line_items l WHERE l.account_id = o.account_id) s WHERE o.account_id = 42`},
	{"allow", `SELECT * FROM orders o JOIN LATERAL (SELECT * FROM line_items l WHERE l.account_id = o.account_id) s ON true WHERE o.account_id = 42`},
	{"allow", `SELECT * FROM orders o JOIN line_items li ON li.account_id = o.account_id AND li.order_id IN (SELECT id FROM orders o2 WHERE o2.account_id = o.account_id) WHERE o.account_id = 42`},
	{"deny", `SELECT * FROM (SELECT 7 AS account_id) x WHERE EXISTS (SELECT 1 FROM LATERAL (SELECT * FROM line_items l WHERE l.account_id = x.account_id) s, orders x WHERE x.account_id = 42)`},
	{"deny", `SELECT * FROM (SELECT 7 AS account_id) x WHERE EXISTS (SELECT 1 FROM generate_series(1, (SELECT count(*) FROM line_items l WHERE l.account_id = x.account_id)::int) g, orders x WHERE x.account_id = 42)`},
	{"deny", `SELECT * FROM (SELECT 7 AS account_id) x WHERE EXISTS (SELECT 1 FROM orders x, customers c JOIN line_items li ON li.account_id = c.account_id AND li.id IN (SELECT l2.id FROM line_items l2 WHERE l2.account_id = x.account_id) WHERE x.account_id = 42 AND c.account_id = 42)`},
	{"deny", `SELECT * FROM orders o, customers c JOIN line_items li ON li.account_id = o.account_id WHERE o.account_id = 42 AND c.account_id = 42`},
	{"deny", `SELECT * FROM (SELECT 7 AS account_id) x WHERE EXISTS (SELECT 1 FROM (SELECT * FROM line_items l WHERE l.account_id = x.account_id) s, orders x WHERE x.account_id = 42)`},
	{"deny", `SELECT * FROM (orders o JOIN customers c ON c.account_id = o.account_id) AS j(a, b) WHERE o.account_id = 42`},
	{"deny", `SELECT * FROM app.public.orders WHERE account_id = 42`}, // the test catalog does not know its database
	// integer overflow
	{"deny", `SELECT * FROM orders WHERE account_id = 18446744073709551658`},
	{"deny", `SELECT * FROM orders WHERE account_id = '18446744073709551658'`},
	{"deny", `SELECT * FROM orders WHERE account_id = $1 -- bind: 18446744073709551658`},
	{"deny", `SELECT * FROM orders WHERE account_id = ANY('{18446744073709551658}')`},
	{"allow", `SELECT * FROM orders WHERE account_id = 0042`},
	// locks on shared rows
	{"deny", `SELECT * FROM countries FOR UPDATE`},
	{"deny", `SELECT * FROM countries FOR KEY SHARE`},
	{"deny", `SELECT * FROM countries c FOR NO KEY UPDATE OF c`},
	{"deny", `SELECT o.id FROM orders o JOIN countries c ON c.code = o.note WHERE o.account_id = 42 FOR SHARE`},
	{"allow", `SELECT o.id FROM orders o JOIN countries c ON c.code = o.note WHERE o.account_id = 42 FOR UPDATE OF o`},
	{"deny", `SELECT * FROM (SELECT * FROM countries) s FOR UPDATE`},
	{"deny", `SELECT * FROM pg_class FOR SHARE`},
	{"deny", `SELECT * FROM orders WHERE account_id = 42 AND id IN (SELECT 1 FROM countries FOR UPDATE)`},
	{"allow", `SELECT * FROM orders WHERE account_id = 42 FOR NO KEY UPDATE SKIP LOCKED`},
	// EXPLAIN's ANALYZE option by value
	{"allow", `EXPLAIN (ANALYZE false) SELECT * FROM orders WHERE account_id = 42`},
	{"allow", `EXPLAIN (ANALYZE off, COSTS false) SELECT * FROM orders WHERE account_id = 42`},
	{"allow", `EXPLAIN (ANALYZE 0) SELECT * FROM orders WHERE account_id = 42`},
	{"deny", `EXPLAIN (ANALYZE 1) SELECT * FROM orders WHERE account_id = 42`},
	{"deny", `EXPLAIN (ANALYZE 'on') SELECT * FROM orders WHERE account_id = 42`},
	{"deny", `EXPLAIN (ANALYZE) SELECT * FROM orders WHERE account_id = 42`},
	{"deny", `EXPLAIN (ANALYZE false, ANALYZE true) SELECT * FROM orders WHERE account_id = 42`},
	// writes ORMs send
	{"allow", `UPDATE orders SET account_id = account_id, total = 5 WHERE account_id = 42 AND id = 1`},
	{"allow", `UPDATE orders o SET account_id = o.account_id WHERE o.account_id = 42`},
	{"deny", `UPDATE orders o SET account_id = li.account_id FROM line_items li WHERE o.account_id = 42 AND li.account_id = 7`},
	{"deny", `UPDATE orders SET account_id = id WHERE account_id = 42`},
	{"allow", `INSERT INTO orders AS t (id, account_id, total) VALUES (1, 42, 5) ON CONFLICT (id) DO UPDATE SET total = EXCLUDED.total WHERE t.account_id = EXCLUDED.account_id`},
	{"allow", `INSERT INTO orders (id, account_id, total) VALUES (1, 42, 5) ON CONFLICT (id) DO UPDATE SET total = excluded.total WHERE excluded.account_id = orders.account_id`},
	{"deny", `INSERT INTO orders (id, account_id, total) VALUES (1, 7, 5) ON CONFLICT (id) DO UPDATE SET total = excluded.total WHERE excluded.account_id = orders.account_id`},
	{"deny", `INSERT INTO orders (id, account_id, total) VALUES (1, 42, 5) ON CONFLICT (id) DO UPDATE SET total = 1 WHERE account_id = 42`},
	{"deny", `INSERT INTO orders (id, account_id, total) VALUES (1, 42, 5) ON CONFLICT (id) DO UPDATE SET account_id = account_id WHERE orders.account_id = 42`},
	{"allow", `INSERT INTO orders (id, account_id, total) VALUES (1, 42, 5) ON CONFLICT (id) DO UPDATE SET total = 1 WHERE orders.account_id = 42`},
	{"allow", `INSERT INTO orders (id, account_id) VALUES (9, 42) RETURNING id, (SELECT count(*) FROM line_items li WHERE li.order_id = orders.id AND li.account_id = orders.account_id)`},
	{"deny", `INSERT INTO orders (id, account_id) VALUES (9, 7) RETURNING (SELECT count(*) FROM line_items li WHERE li.account_id = orders.account_id)`},
	{"deny", `INSERT INTO orders (id, account_id) VALUES (9, 42) RETURNING (SELECT count(*) FROM line_items li WHERE li.account_id = orders.id)`},
	{"allow", `INSERT INTO orders AS o (id, account_id) SELECT id + 100, account_id FROM orders WHERE account_id = 42 RETURNING (SELECT max(sku) FROM line_items li WHERE li.account_id = o.account_id)`},
	// statistics views: identity columns only
	{"allow", `SELECT pk.constraint_type AS "Constraint", c.column_name AS "Field", (SELECT pgd.description FROM pg_catalog.pg_statio_all_tables AS st INNER JOIN pg_catalog.pg_description pgd ON (pgd.objoid = st.relid) WHERE c.ordinal_position = pgd.objsubid AND c.table_name = st.relname) AS "Comment" FROM information_schema.columns c LEFT JOIN (SELECT tc.table_schema, tc.table_name, cu.column_name, tc.constraint_type FROM information_schema.table_constraints tc JOIN information_schema.key_column_usage cu ON tc.table_schema = cu.table_schema AND tc.table_name = cu.table_name AND tc.constraint_name = cu.constraint_name AND tc.constraint_type = 'PRIMARY KEY') pk ON pk.table_schema = c.table_schema AND pk.table_name = c.table_name AND pk.column_name = c.column_name WHERE c.table_name = 'orders' AND c.table_schema = 'public'`},
	{"allow", `SELECT relid, schemaname, relname FROM pg_stat_user_tables WHERE relname = 'orders'`},
	{"allow", `SELECT s.indexrelname FROM pg_catalog.pg_statio_user_indexes s WHERE s.relname = 'orders'`},
	{"allow", `SELECT count(*) FROM pg_stat_user_tables`},
	{"deny", `SELECT n_live_tup FROM pg_stat_user_tables WHERE relname = 'orders'`},
	{"deny", `SELECT relname FROM pg_stat_user_tables WHERE n_tup_ins > 0`},
	{"deny", `SELECT relname FROM pg_stat_user_tables ORDER BY seq_scan`},
	{"deny", `SELECT * FROM pg_stat_user_tables`},
	{"deny", `SELECT s.* FROM pg_stat_user_tables s`},
	{"deny", `SELECT row_to_json(s) FROM pg_stat_user_tables s`},
	{"deny", `SELECT x FROM pg_stat_user_tables s(x, y, z, w)`},
	{"deny", `SELECT relname FROM (SELECT * FROM pg_stat_user_tables) q`},
	{"deny", `SELECT relname FROM pg_stat_user_tables WHERE relid IN (SELECT relid FROM pg_stat_user_tables WHERE n_dead_tup > 0)`},
	{"deny", `SELECT relid FROM pg_stat_activity`},
	{"deny", `SELECT datname FROM pg_stat_database`},
	{"deny", `COPY pg_stat_user_tables TO STDOUT`},
	{"deny", `SELECT relname FROM pg_stat_user_tables FOR UPDATE`},
}

func TestRound2Rules(t *testing.T) {
	e := newTestEngine(t)
	for _, c := range round2Cases {
		s := e.NewSession(auth.Principal{Account: "42", Region: "eu-west"})
		d := RunCorpusSQL(s, c.sql)
		got := "deny"
		if d.Allow {
			got = "allow"
		}
		if got != c.verdict {
			t.Errorf("want %s got %s (%s): %s", c.verdict, got, d.Message, c.sql)
		}
		if !d.Allow && (d.SQLState == "" || d.Reason == "") {
			t.Errorf("denial without state/reason %+v: %s", d, c.sql)
		}
	}
}

// RESET ALL is allowed in both protocols: the proxy makes the tenant setting
// and the pins startup parameters, so the server resets them to pgtenant's
// values (TestResetAllKeepsTheTenantContext in test/e2e on h1's branch, and
// prove's escape_reset_all, check the server side).
func TestResetAllAllowed(t *testing.T) {
	e := newTestEngine(t)
	if d := session(t, e, "42").CheckQuery(`SELECT pg_advisory_unlock_all(); CLOSE ALL; UNLISTEN *; RESET ALL;`); !d.Allow {
		t.Fatalf("pool reset: %s", d.Message)
	}
	if d := session(t, e, "42").CheckParse("", `RESET ALL`, nil); !d.Allow {
		t.Fatalf("RESET ALL through Parse: %s", d.Message)
	}
}

// "$user", public is the pinned path only when discovery proved no schema is
// named after the service role.
func TestSearchPathUserSchema(t *testing.T) {
	e := newTestEngine(t)
	cat := e.Catalog("eu-west")
	cat.NoRoleSchema = true
	e.SetCatalog("eu-west", cat)
	for sql, allow := range map[string]bool{
		`SET search_path = "$user", public`:                          true,
		`SET search_path TO '"$user", public'`:                       true,
		`SELECT set_config('search_path', '"$user", public', false)`: true,
		`SET search_path = "$user", public, audit`:                   false,
		`SET search_path = "$user"`:                                  false,
		`SET search_path = public, "$user"`:                          true,
	} {
		if d := session(t, e, "42").CheckQuery(sql); d.Allow != allow {
			t.Errorf("%s: allow=%v (%s), want %v", sql, d.Allow, d.Message, allow)
		}
	}
}

// A three-part name is the two-part one when its catalog is the database the
// catalog describes; any other catalog stays unknown (PostgreSQL refuses
// cross-database references).
func TestThreePartNames(t *testing.T) {
	e := newTestEngine(t)
	cat := e.Catalog("eu-west")
	cat.Database = "app"
	e.SetCatalog("eu-west", cat)
	for sql, allow := range map[string]bool{
		`SELECT * FROM app.public.orders WHERE account_id = 42`:                     true,
		`SELECT * FROM app.public.orders WHERE app.public.orders.account_id = 42`:   true,
		`SELECT * FROM app.public.orders WHERE other.public.orders.account_id = 42`: false,
		`SELECT * FROM other.public.orders WHERE account_id = 42`:                   false,
		`SELECT * FROM app.public.orders WHERE account_id = 7`:                      false,
		`SELECT * FROM app.public.orders`:                                           false,
		`UPDATE app.public.orders SET total = 1 WHERE account_id = 42`:              true,
		`SELECT * FROM app.audit.log`:                                               false,
	} {
		if d := session(t, e, "42").CheckQuery(sql); d.Allow != allow {
			t.Errorf("%s: allow=%v (%s), want %v", sql, d.Allow, d.Message, allow)
		}
	}
}

// Integers are read as int8in reads them: out of range is no value at all.
func TestParseInt8Range(t *testing.T) {
	for in, want := range map[string]bool{
		"42": true, "-42": true, "9223372036854775807": true, "-9223372036854775808": true,
		"9223372036854775808": false, "-9223372036854775809": false,
		"18446744073709551658": false, "18446744073709551616": false, "36893488147419103274": false,
		"0000000000000000000000042": true, "": false, "+": false,
	} {
		if _, ok := parseInt8(in); ok != want {
			t.Errorf("parseInt8(%q) ok=%v, want %v", in, ok, want)
		}
	}
	if n, _ := parseInt8("18446744073709551658"); n == 42 {
		t.Error("2^64+42 read as 42")
	}
}

// An unqualified tenant column that PostgreSQL finds ambiguous is refused
// with the server's own SQLSTATE, never run.
func TestAmbiguousTenantColumn(t *testing.T) {
	e := newTestEngine(t)
	for _, sql := range []string{
		`SELECT o.id FROM orders o JOIN line_items li ON li.order_id = o.id WHERE account_id = 42`,
		`SELECT * FROM orders o, customers c WHERE account_id = 42`,
		`UPDATE orders SET total = 1 FROM line_items WHERE account_id = 42`,
	} {
		d := session(t, e, "42").CheckQuery(sql)
		if d.Allow || d.SQLState != "42702" {
			t.Errorf("%s: allow=%v sqlstate=%s (%s), want a 42702 refusal", sql, d.Allow, d.SQLState, d.Message)
		}
	}
	if d := session(t, e, "42").CheckQuery(`SELECT * FROM orders o JOIN line_items li USING (account_id) WHERE account_id = 42`); !d.Allow {
		t.Errorf("USING merges the column: %s", d.Message)
	}
}

// A binary parameter declared unknown (705) is read by the server with the
// type it infers, as an unspecified one: pgtenant does not guess it.
func TestBinaryUnknownParameterRefused(t *testing.T) {
	s := session(t, newTestEngine(t), "42")
	if d := s.CheckParse("", "SELECT * FROM orders WHERE account_id = $1", []uint32{705}); !d.Allow {
		t.Fatal(d.Message)
	}
	if d := s.CheckBind("", []int16{1}, [][]byte{be(42, 8)}); d.Allow {
		t.Error("binary 705 value allowed")
	}
	if d := s.CheckBind("", []int16{0}, [][]byte{[]byte("42")}); !d.Allow {
		t.Errorf("text 705 value refused: %s", d.Message)
	}
}
