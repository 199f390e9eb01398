package policy

import (
	"testing"

	"github.com/pgtenant/pgtenant/auth"
)

// A read-only session is refused every write and every way back to
// read-write, by the simple and the extended protocol alike, while the same
// statements keep their usual verdict in a full-access session.
func TestReadOnlySessionRefusesWrites(t *testing.T) {
	e := newTestEngine(t)
	writes := []string{
		"INSERT INTO orders (id, account_id) VALUES (1, 42)",
		"UPDATE orders SET note = 'x' WHERE account_id = 42",
		"DELETE FROM orders WHERE account_id = 42",
		"MERGE INTO orders o USING (SELECT 1 AS id) s ON o.id = s.id AND o.account_id = 42 WHEN MATCHED THEN DELETE",
		"COPY orders FROM STDIN",
		"SELECT * FROM orders WHERE account_id = 42 FOR UPDATE",
		"SELECT * FROM orders WHERE account_id = 42 FOR NO KEY UPDATE",
		"SELECT * FROM orders WHERE account_id = 42 FOR SHARE",
		"SELECT * FROM orders WHERE account_id = 42 FOR KEY SHARE SKIP LOCKED",
		"SELECT * FROM (SELECT * FROM orders WHERE account_id = 42 FOR UPDATE) s",
		"WITH d AS (DELETE FROM orders WHERE account_id = 42 RETURNING id) SELECT * FROM d",
		"SELECT nextval('orders_id_seq')",
		"SELECT setval('orders_id_seq', 1)",
		"SELECT pg_catalog.nextval('orders_id_seq')",
		"SELECT txid_current()",
		"SELECT pg_current_xact_id()",
		"BEGIN READ WRITE",
		"BEGIN ISOLATION LEVEL SERIALIZABLE, READ WRITE",
		"START TRANSACTION READ WRITE",
		"START TRANSACTION READ ONLY, READ WRITE",
		"SET TRANSACTION READ WRITE",
		"SET SESSION CHARACTERISTICS AS TRANSACTION READ WRITE",
		"SET default_transaction_read_only = off",
		"SET default_transaction_read_only TO false",
		"SET SESSION default_transaction_read_only = 0",
		"SET LOCAL default_transaction_read_only = off",
		"SET default_transaction_read_only TO DEFAULT",
		"RESET default_transaction_read_only",
		"SET transaction_read_only = off",
		"SET transaction_read_only TO DEFAULT",
		"SELECT set_config('default_transaction_read_only', 'off', false)",
		"SELECT set_config('transaction_read_only', 'off', true)",
		"SELECT set_config($1, 'off', false)",
		"PREPARE w AS INSERT INTO orders (id, account_id) VALUES (1, 42)",
		"DECLARE c CURSOR FOR SELECT * FROM orders WHERE account_id = 42 FOR UPDATE",
		"SELECT 1; INSERT INTO orders (id, account_id) VALUES (1, 42)",
		"COPY (DELETE FROM orders WHERE account_id = 42 RETURNING id) TO STDOUT",
		"COPY (UPDATE orders SET note = 'x' WHERE account_id = 42 RETURNING id) TO STDOUT",
		"PREPARE w2 AS WITH i AS (INSERT INTO orders (id, account_id) VALUES (1, 42) RETURNING id) SELECT * FROM i",
		"SELECT * FROM orders o WHERE account_id = 42 AND EXISTS (SELECT 1 FROM customers c WHERE c.account_id = 42 FOR UPDATE)",
	}
	for _, sql := range writes {
		ro := e.NewSession(auth.Principal{Account: "42", Region: "eu-west", Roles: []string{"viewer"}, ReadOnly: true})
		if d := ro.CheckQuery(sql); d.Allow || d.Reason != "read_only" || d.SQLState != "42501" {
			t.Errorf("read-only CheckQuery(%q) = allow %v reason %q sqlstate %s; want a read_only denial", sql, d.Allow, d.Reason, d.SQLState)
		}
		ro = e.NewSession(auth.Principal{Account: "42", Region: "eu-west", Actor: "agent", ReadOnly: true})
		if d := ro.CheckParse("", sql, nil); d.Allow || d.Reason != "read_only" {
			t.Errorf("read-only CheckParse(%q) = allow %v reason %q; want a read_only denial", sql, d.Allow, d.Reason)
		}
	}
	// the same statements are not refused as read_only in a full session
	for _, sql := range writes {
		full := e.NewSession(auth.Principal{Account: "42", Region: "eu-west", Roles: []string{"owner"}})
		if d := full.CheckQuery(sql); d.Reason == "read_only" {
			t.Errorf("full-access CheckQuery(%q) refused as read_only", sql)
		}
	}
	reads := []string{
		"SELECT * FROM orders WHERE account_id = 42",
		"SELECT currval('orders_id_seq')",
		"BEGIN",
		"BEGIN READ ONLY",
		"START TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY",
		"SET TRANSACTION READ ONLY",
		"SET TRANSACTION ISOLATION LEVEL SERIALIZABLE",
		"COMMIT",
		"SHOW default_transaction_read_only",
		"COPY (SELECT * FROM orders WHERE account_id = 42) TO STDOUT",
		"EXPLAIN SELECT * FROM orders WHERE account_id = 42",
		"SELECT * FROM orders WHERE account_id = 42; SELECT 1",
	}
	for _, sql := range reads {
		ro := e.NewSession(auth.Principal{Account: "42", Region: "eu-west", Roles: []string{"viewer"}, ReadOnly: true})
		if d := ro.CheckQuery(sql); d.Reason == "read_only" {
			t.Errorf("read-only CheckQuery(%q) refused a read: %s", sql, d.Message)
		}
	}
}

// The write analysis is cached by statement shape: a value that turns the
// read-only setting off must not ride on a cached analysis of one that
// keeps it on.
func TestReadOnlyVerdictSurvivesTheCache(t *testing.T) {
	e := newTestEngine(t)
	ro := e.NewSession(auth.Principal{Account: "42", Region: "eu-west", Roles: []string{"auditor"}, ReadOnly: true})
	for _, pair := range [][2]string{
		{"SET default_transaction_read_only = 'on'", "SET default_transaction_read_only = 'off'"},
		{"SELECT set_config('default_transaction_read_only', 'on', false)", "SELECT set_config('default_transaction_read_only', 'off', false)"},
		{"SELECT set_config('application_name', 'x', false)", "SELECT set_config('transaction_read_only', 'x', false)"},
	} {
		if d := ro.CheckQuery(pair[0]); d.Reason == "read_only" {
			t.Errorf("%q refused as read_only", pair[0])
		}
		if d := ro.CheckQuery(pair[1]); d.Allow || d.Reason != "read_only" {
			t.Errorf("%q after %q: allow %v reason %q; want read_only", pair[1], pair[0], d.Allow, d.Reason)
		}
	}
}
