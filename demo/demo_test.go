package demo_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/pgtenant/pgtenant/cluster"
	"github.com/pgtenant/pgtenant/demo"
	"github.com/pgtenant/pgtenant/test/pgtest"
)

func TestMain(m *testing.M) { pgtest.Main(m) }

// installed returns the shared cluster with the demo schema, seed and corpus
// extras installed (twice, to prove Install is idempotent).
// tenantTx opens a transaction as c's service role with the tenant setting
// set to account for that transaction; it is rolled back at cleanup.
func tenantTx(t *testing.T, c *cluster.Cluster, account string) pgx.Tx {
	t.Helper()
	ctx := ctxT(t)
	tx, err := pgtest.Conn(t, c.ServiceDSN()).Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = tx.Rollback(context.Background()) })
	if _, err := tx.Exec(ctx, "SELECT set_config('app.current_account_id', $1, true)", account); err != nil {
		t.Fatal(err)
	}
	return tx
}

func installed(t *testing.T) *cluster.Cluster {
	t.Helper()
	c := pgtest.Shared(t, "demo")
	ctx := context.Background()
	for range 2 {
		if err := demo.Install(ctx, c); err != nil {
			t.Fatal(err)
		}
		if err := demo.InstallCorpusExtra(ctx, c); err != nil {
			t.Fatal(err)
		}
	}
	return c
}

func sqlState(err error) string {
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) {
		return pgErr.Code
	}
	return ""
}

func ctxT(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// accounts returns the distinct account_ids visible in table, and the row count.
func accounts(t *testing.T, conn *pgx.Conn, table string) (map[int64]bool, int) {
	t.Helper()
	rows, err := conn.Query(context.Background(), "SELECT account_id FROM "+pgx.Identifier{table}.Sanitize())
	if err != nil {
		t.Fatalf("select %s: %v", table, err)
	}
	ids, err := pgx.CollectRows(rows, pgx.RowTo[int64])
	if err != nil {
		t.Fatalf("select %s: %v", table, err)
	}
	seen := map[int64]bool{}
	for _, id := range ids {
		seen[id] = true
	}
	return seen, len(ids)
}

func TestSeedHasBothTenants(t *testing.T) {
	c := installed(t)
	su := pgtest.Conn(t, c.SuperuserDSN(c.Database))
	for _, table := range demo.TenantTables {
		seen, _ := accounts(t, su, table)
		if !seen[demo.TenantA] || !seen[demo.TenantB] || len(seen) != 2 {
			t.Errorf("%s: superuser sees accounts %v, want exactly 42 and 7", table, seen)
		}
	}
}

func TestRLSScopesServiceRoleToItsAccount(t *testing.T) {
	ctx := ctxT(t)
	c := installed(t)
	conn := pgtest.Conn(t, c.ServiceDSN())
	if _, err := conn.Exec(ctx, "SET app.current_account_id = '42'"); err != nil {
		t.Fatal(err)
	}
	for _, table := range demo.TenantTables {
		seen, n := accounts(t, conn, table)
		if n == 0 || len(seen) != 1 || !seen[42] {
			t.Errorf("%s with account 42: saw %d rows of accounts %v, want only 42's", table, n, seen)
		}
	}
	// Fails closed: unset (RESET) and empty show nothing.
	for _, set := range []string{"RESET app.current_account_id", "SET app.current_account_id = ''"} {
		if _, err := conn.Exec(ctx, set); err != nil {
			t.Fatal(err)
		}
		for _, table := range demo.TenantTables {
			if seen, n := accounts(t, conn, table); n != 0 {
				t.Errorf("%s after %q: saw %d rows of %v, want none", table, set, n, seen)
			}
		}
	}
	// A fresh session where the setting was never defined sees nothing either.
	fresh := pgtest.Conn(t, c.ServiceDSN())
	for _, table := range demo.TenantTables {
		if _, n := accounts(t, fresh, table); n != 0 {
			t.Errorf("%s in a fresh session: saw %d rows, want none", table, n)
		}
	}
	// The global table is readable whatever the setting.
	var countries int
	if err := fresh.QueryRow(ctx, "SELECT count(*) FROM countries").Scan(&countries); err != nil || countries < 3 {
		t.Errorf("countries: %d rows, err %v", countries, err)
	}
}

func TestRLSRejectsWritesForAnotherAccount(t *testing.T) {
	ctx := ctxT(t)
	c := installed(t)
	tx := tenantTx(t, c, "42")
	// Its own rows: insert (with the sequence default), update, delete.
	var id int64
	if err := tx.QueryRow(ctx, "INSERT INTO orders (account_id, total) VALUES (42, 1) RETURNING id").Scan(&id); err != nil {
		t.Fatalf("insert for own account: %v", err)
	}
	if _, err := tx.Exec(ctx, "INSERT INTO line_items (account_id, order_id, sku, qty) VALUES (42, $1, 'SKU-X', 1)", id); err != nil {
		t.Fatalf("insert line item for own order: %v", err)
	}
	sp := func(name string, f func() error) error {
		if _, err := tx.Exec(ctx, "SAVEPOINT s"); err != nil {
			t.Fatal(err)
		}
		err := f()
		if _, rerr := tx.Exec(ctx, "ROLLBACK TO SAVEPOINT s"); rerr != nil {
			t.Fatalf("%s: rollback to savepoint: %v", name, rerr)
		}
		return err
	}
	denied := map[string]string{
		"insert for 7":          "INSERT INTO orders (account_id, total) VALUES (7, 1)",
		"insert customer for 7": "INSERT INTO customers (account_id, name) VALUES (7, 'x')",
		"move own row to 7":     "UPDATE orders SET account_id = 7 WHERE account_id = 42",
	}
	for name, sql := range denied {
		err := sp(name, func() error { _, err := tx.Exec(ctx, sql); return err })
		if sqlState(err) != "42501" {
			t.Errorf("%s: err %v (SQLSTATE %q), want 42501 RLS violation", name, err, sqlState(err))
		}
	}
	// Rows of 7 are invisible, so updates and deletes of them touch nothing.
	for _, sql := range []string{"UPDATE orders SET total = 0 WHERE account_id = 7", "DELETE FROM orders WHERE id = 2001"} {
		var tag pgconn.CommandTag
		err := sp(sql, func() error { var err error; tag, err = tx.Exec(ctx, sql); return err })
		if err != nil || tag.RowsAffected() != 0 {
			t.Errorf("%s: affected %d rows, err %v; want 0", sql, tag.RowsAffected(), err)
		}
	}
}

func TestServiceRoleCannotEscalate(t *testing.T) {
	ctx := ctxT(t)
	c := installed(t)
	conn := pgtest.Conn(t, c.ServiceDSN())
	if _, err := conn.Exec(ctx, "SET app.current_account_id = '42'"); err != nil {
		t.Fatal(err)
	}
	for _, sql := range []string{
		"UPDATE countries SET name = 'X' WHERE code = 'DE'",
		"TRUNCATE orders",
		"CREATE TABLE public.mine (v int)",
		"CREATE TEMP TABLE mine (v int)",
		"ALTER TABLE orders NO FORCE ROW LEVEL SECURITY",
		"SELECT * FROM audit.log",
		"SELECT audit.write_entry('x')",
		"SELECT setval('orders_id_seq', 1)",
		"SELECT * FROM report_all_orders()",
		"CALL refresh_account_stats(42)",
	} {
		if _, err := conn.Exec(ctx, sql); sqlState(err) != "42501" {
			t.Errorf("%s: err %v, want 42501 insufficient privilege", sql, err)
		}
	}
}

func TestCompositeForeignKeyBlocksCrossTenantReference(t *testing.T) {
	ctx := ctxT(t)
	c := installed(t)
	// Even the superuser (no RLS) cannot attach 42's line item to 7's order.
	err := c.Exec(ctx, c.Database, "INSERT INTO line_items (account_id, order_id, sku) VALUES (42, 2001, 'SKU-X')")
	if sqlState(err) != "23503" {
		t.Errorf("cross-tenant line item: err %v, want 23503 foreign key violation", err)
	}
}

func TestCatalogMatchesPolicyChecklist(t *testing.T) {
	ctx := ctxT(t)
	c := installed(t)
	su := pgtest.Conn(t, c.SuperuserDSN(c.Database))
	for _, table := range demo.TenantTables {
		var rls, force bool
		var policies int
		err := su.QueryRow(ctx, `SELECT relrowsecurity, relforcerowsecurity,
			(SELECT count(*) FROM pg_policy WHERE polrelid = c.oid)
			FROM pg_class c WHERE oid = to_regclass('public.' || $1)`, table).Scan(&rls, &force, &policies)
		if err != nil {
			t.Fatal(err)
		}
		if !rls || !force || policies != 1 {
			t.Errorf("%s: rls=%v force=%v policies=%d", table, rls, force, policies)
		}
		for _, priv := range []string{"TRUNCATE", "REFERENCES", "TRIGGER"} {
			var has bool
			if err := su.QueryRow(ctx, "SELECT has_table_privilege($1, 'public.' || $2, $3)", c.ServiceUser, table, priv).Scan(&has); err != nil {
				t.Fatal(err)
			}
			if has {
				t.Errorf("service role has %s on %s", priv, table)
			}
		}
	}
	var createPublic, temp, auditUsage bool
	err := su.QueryRow(ctx, `SELECT has_schema_privilege($1, 'public', 'CREATE'),
		has_database_privilege($1, current_database(), 'TEMP'),
		has_schema_privilege($1, 'audit', 'USAGE')`, c.ServiceUser).Scan(&createPublic, &temp, &auditUsage)
	if err != nil {
		t.Fatal(err)
	}
	if createPublic || temp || auditUsage {
		t.Errorf("service role: CREATE on public=%v TEMP=%v USAGE on audit=%v", createPublic, temp, auditUsage)
	}
	var pgtenantAudit *string
	if err := su.QueryRow(ctx, "SELECT to_regnamespace('pgtenant_audit')::text").Scan(&pgtenantAudit); err != nil {
		t.Fatal(err)
	}
	if pgtenantAudit != nil {
		t.Error("demo created schema pgtenant_audit, which package audit owns")
	}
}

func TestInstallGrantsToConfiguredServiceRole(t *testing.T) {
	ctx := ctxT(t)
	c := pgtest.Start(t, cluster.Config{Name: "svcrole", ServiceUser: "tenant svc", Database: "shop"})
	if err := demo.Install(ctx, c); err != nil {
		t.Fatal(err)
	}
	conn := pgtest.Conn(t, c.ServiceDSN())
	if _, err := conn.Exec(ctx, "SET app.current_account_id = '7'"); err != nil {
		t.Fatal(err)
	}
	seen, n := accounts(t, conn, "orders")
	if n == 0 || len(seen) != 1 || !seen[7] {
		t.Errorf("orders as %q with account 7: %d rows of %v", c.ServiceUser, n, seen)
	}
}
