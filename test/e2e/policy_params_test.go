package e2e

import (
	"context"
	binenc "encoding/binary"
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/pgtenant/pgtenant/cluster"
	"github.com/pgtenant/pgtenant/test/pgtest"
)

// Tests of the real policy's parameter checks through the live proxy with
// pgx: every query exec mode, every Bind re-checked, binary and text
// formats, SQL PREPARE/EXECUTE, and denials inside transactions and
// pipelines.

// execModes are pgx's ways of sending a query with arguments.
var execModes = []pgx.QueryExecMode{
	pgx.QueryExecModeSimpleProtocol, // arguments interpolated client-side: literals
	pgx.QueryExecModeExec,           // unnamed statement, text arguments, no Describe
	pgx.QueryExecModeCacheStatement, // named prepared statements, binary arguments
	pgx.QueryExecModeCacheDescribe,  // unnamed statement, cached Describe, binary arguments
	pgx.QueryExecModeDescribeExec,   // unnamed statement, Describe every time
}

// wantDenied fails t unless err is the proxy's policy denial.
func wantDenied(t *testing.T, what string, err error) {
	t.Helper()
	var pe *pgconn.PgError
	if !errors.As(err, &pe) || pe.Code != "42501" || !strings.HasPrefix(pe.Message, "pgtenant:") {
		t.Errorf("%s: got %v, want a pgtenant 42501 denial", what, err)
	}
}

// accountsOf runs sql with args and returns the account_id of every row.
func accountsOf(ctx context.Context, conn *pgx.Conn, sql string, args ...any) ([]int64, error) {
	rows, err := conn.Query(ctx, sql, args...)
	if err != nil {
		return nil, err
	}
	return pgx.CollectRows(rows, pgx.RowTo[int64])
}

// onlyTenant42 fails t unless ids is non-empty and all 42.
func onlyTenant42(t *testing.T, what string, ids []int64, err error) {
	t.Helper()
	if err != nil {
		t.Errorf("%s: %v", what, err)
		return
	}
	if len(ids) == 0 {
		t.Errorf("%s: no rows, want tenant 42's", what)
	}
	for _, id := range ids {
		if id != 42 {
			t.Errorf("%s: row of account %d", what, id)
		}
	}
}

func TestPolicyParamsEveryExecMode(t *testing.T) {
	env, _ := policyEnv(t)
	conn := connect(t, env.DSN(t, "42", "eu-west"))
	ctx := ctxT(t)
	const q = "SELECT account_id FROM orders WHERE account_id = $1 AND total >= $2"
	for _, mode := range execModes {
		t.Run(fmt.Sprint(mode), func(t *testing.T) {
			for _, own := range []any{int64(42), int32(42), "42"} {
				ids, err := accountsOf(ctx, conn, q, mode, own, 0)
				onlyTenant42(t, fmt.Sprintf("bound %T 42", own), ids, err)
			}
			for _, other := range []any{int64(7), int32(7), "7"} {
				_, err := accountsOf(ctx, conn, q, mode, other, 0)
				wantDenied(t, fmt.Sprintf("bound %T 7", other), err)
			}
			// The statement text is the same after the denials: nothing cached lets 7 through.
			ids, err := accountsOf(ctx, conn, q, mode, int64(42), 0)
			onlyTenant42(t, "bound 42 after the denials", ids, err)

			// Writes: the pin in WHERE and the tenant value in an INSERT.
			tx, err := conn.Begin(ctx)
			if err != nil {
				t.Fatal(err)
			}
			defer tx.Rollback(ctx)
			if _, err := tx.Exec(ctx, "UPDATE orders SET note = note WHERE account_id = $1 AND id = $2", mode, int64(42), int64(1)); err != nil {
				t.Errorf("scoped UPDATE: %v", err)
			}
			if _, err := tx.Exec(ctx, "INSERT INTO orders (account_id, total, note) VALUES ($1, $2, $3)", mode, int64(42), 1, "h8-params"); err != nil {
				t.Errorf("INSERT for 42: %v", err)
			}
			_, err = tx.Exec(ctx, "INSERT INTO orders (account_id, total, note) VALUES ($1, $2, $3)", mode, int64(7), 1, "h8-params")
			wantDenied(t, "INSERT for 7", err)
		})
	}
	if err := conn.Ping(ctx); err != nil {
		t.Fatalf("connection unusable: %v", err)
	}
}

// be returns v as an n-byte big-endian integer.
func be(n int, v int64) []byte {
	b := make([]byte, 8)
	binenc.BigEndian.PutUint64(b, uint64(v))
	return b[8-n:]
}

func TestPolicyParamsBindFormats(t *testing.T) {
	env, _ := policyEnv(t)
	conn := connect(t, env.DSN(t, "42", "eu-west"))
	ctx := ctxT(t)
	pc := conn.PgConn()
	const q = "SELECT account_id FROM orders WHERE account_id = $1"
	cases := []struct {
		name    string
		oid     uint32 // declared in Parse; 0: the server infers bigint
		format  int16
		value   []byte
		allowed bool
	}{
		{"binary int8 42", 20, 1, be(8, 42), true},
		{"binary int8 7", 20, 1, be(8, 7), false},
		{"binary int4 42", 23, 1, be(4, 42), true},
		{"binary int4 7", 23, 1, be(4, 7), false},
		{"binary int2 42", 21, 1, be(2, 42), true},
		{"binary int2 7", 21, 1, be(2, 7), false},
		// no declared type and no Describe answered before the Bind: the
		// proxy does not know the type the server reads the bytes as
		{"binary inferred int8 42", 0, 1, be(8, 42), false},
		{"binary inferred int8 7", 0, 1, be(8, 7), false},
		{"binary int8 of 2^32+42", 20, 1, be(8, 1<<32+42), false},
		{"text 42", 0, 0, []byte("42"), true},
		{"text 042", 0, 0, []byte("042"), true},
		{"text +42", 0, 0, []byte("+42"), true},
		{"text ' 42 '", 0, 0, []byte(" 42 "), true},
		{"text 7", 0, 0, []byte("7"), false},
		{"text 42abc", 0, 0, []byte("42abc"), false},
		{"text 4.2e1", 0, 0, []byte("4.2e1"), false},
		{"text empty", 0, 0, []byte(""), false},
		{"NULL", 0, 0, nil, false},
		{"binary NULL", 20, 1, nil, false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var oids []uint32
			if tc.oid != 0 {
				oids = []uint32{tc.oid}
			}
			res := pc.ExecParams(ctx, q, [][]byte{tc.value}, oids, []int16{tc.format}, []int16{0}).Read()
			if !tc.allowed {
				wantDenied(t, tc.name, res.Err)
				return
			}
			if res.Err != nil {
				t.Fatalf("%s: %v", tc.name, res.Err)
			}
			if len(res.Rows) == 0 {
				t.Fatalf("%s: no rows", tc.name)
			}
			for _, r := range res.Rows {
				if string(r[0]) != "42" {
					t.Errorf("%s: row of account %s", tc.name, r[0])
				}
			}
		})
	}
	if err := conn.Ping(ctx); err != nil {
		t.Fatalf("connection unusable: %v", err)
	}
}

func TestPolicyParamsNamedStatementRebound(t *testing.T) {
	env, _ := policyEnv(t)
	conn := connect(t, env.DSN(t, "42", "eu-west"))
	ctx := ctxT(t)
	if _, err := conn.Prepare(ctx, "h8_by_account", "SELECT account_id FROM orders WHERE account_id = $1"); err != nil {
		t.Fatalf("Parse of a pinned statement: %v", err)
	}
	// pgx binds the named statement with binary int8.
	ids, err := accountsOf(ctx, conn, "h8_by_account", int64(42))
	onlyTenant42(t, "bound to 42", ids, err)
	_, err = accountsOf(ctx, conn, "h8_by_account", int64(7))
	wantDenied(t, "re-bound to 7", err)
	ids, err = accountsOf(ctx, conn, "h8_by_account", int64(42))
	onlyTenant42(t, "bound to 42 again", ids, err)

	// The same with text values on the raw protocol: one Parse, three Binds.
	pc := conn.PgConn()
	if _, err := pc.Prepare(ctx, "h8_raw", "SELECT account_id FROM orders WHERE account_id = $1", nil); err != nil {
		t.Fatal(err)
	}
	for i, v := range []string{"42", "7", "42", "7"} {
		res := pc.ExecPrepared(ctx, "h8_raw", [][]byte{[]byte(v)}, nil, nil).Read()
		if v == "7" {
			wantDenied(t, fmt.Sprintf("bind #%d to 7", i+1), res.Err)
		} else if res.Err != nil || len(res.Rows) == 0 {
			t.Errorf("bind #%d to 42: %d rows, %v", i+1, len(res.Rows), res.Err)
		}
	}
	// A denied Parse under an existing name leaves the old statement alone
	// (PostgreSQL never sees the new text), and binds are still checked.
	_, err = pc.Prepare(ctx, "h8_raw", "SELECT account_id FROM orders", nil)
	wantDenied(t, "unscoped Parse", err)
	res := pc.ExecPrepared(ctx, "h8_raw", [][]byte{[]byte("7")}, nil, nil).Read()
	wantDenied(t, "bind to 7 after the denied re-Parse", res.Err)
	res = pc.ExecPrepared(ctx, "h8_raw", [][]byte{[]byte("42")}, nil, nil).Read()
	if res.Err != nil || len(res.Rows) == 0 {
		t.Errorf("bind to 42 after the denied re-Parse: %d rows, %v", len(res.Rows), res.Err)
	}
}

func TestPolicyParamsSQLPrepareExecute(t *testing.T) {
	env, _ := policyEnv(t)
	conn := connect(t, env.DSN(t, "42", "eu-west"))
	ctx := ctxT(t)
	simple := pgx.QueryExecModeSimpleProtocol
	if _, err := conn.Exec(ctx, "PREPARE h8p (bigint) AS SELECT account_id FROM orders WHERE account_id = $1", simple); err != nil {
		t.Fatalf("PREPARE: %v", err)
	}
	ids, err := accountsOf(ctx, conn, "EXECUTE h8p(42)", simple)
	onlyTenant42(t, "EXECUTE h8p(42)", ids, err)
	_, err = accountsOf(ctx, conn, "EXECUTE h8p(7)", simple)
	wantDenied(t, "EXECUTE h8p(7)", err)
	_, err = accountsOf(ctx, conn, "EXECUTE h8p('7')", simple)
	wantDenied(t, "EXECUTE h8p('7')", err)
	ids, err = accountsOf(ctx, conn, "EXECUTE h8p('42')", simple)
	onlyTenant42(t, "EXECUTE h8p('42')", ids, err)
	// EXECUTE sent with the extended protocol (what pgx does by default
	// with conn.Query(ctx, "EXECUTE ...")) is denied for another tenant...
	_, err = accountsOf(ctx, conn, "EXECUTE h8p(7)", pgx.QueryExecModeExec)
	wantDenied(t, "EXECUTE h8p(7) via Parse/Bind", err)
	// ... and should run for the caller's own.
	t.Run("EXECUTE via Parse/Bind for 42", func(t *testing.T) {
		ids, err := accountsOf(ctx, conn, "EXECUTE h8p(42)", pgx.QueryExecModeExec)
		onlyTenant42(t, "EXECUTE h8p(42) via Parse/Bind", ids, err)
	})

	// An unscoped PREPARE is denied and never reaches the server.
	_, err = conn.Exec(ctx, "PREPARE h8q AS SELECT account_id FROM orders", simple)
	wantDenied(t, "unscoped PREPARE", err)
	_, err = accountsOf(ctx, conn, "EXECUTE h8q", simple)
	if err == nil {
		t.Error("EXECUTE of a denied PREPARE returned rows")
	}
	// After DEALLOCATE the name can be reused for another pinned statement.
	if _, err := conn.Exec(ctx, "DEALLOCATE h8p", simple); err != nil {
		t.Fatalf("DEALLOCATE: %v", err)
	}
	if _, err := conn.Exec(ctx, "PREPARE h8p (bigint, bigint) AS SELECT account_id FROM orders WHERE id = $1 AND account_id = $2", simple); err != nil {
		t.Fatalf("PREPARE again: %v", err)
	}
	_, err = accountsOf(ctx, conn, "EXECUTE h8p(1, 7)", simple)
	wantDenied(t, "EXECUTE h8p(1, 7)", err)
	ids, err = accountsOf(ctx, conn, "EXECUTE h8p(1, 42)", simple)
	onlyTenant42(t, "EXECUTE h8p(1, 42)", ids, err)
}

// probeCount counts orders with note, as the superuser (no RLS).
func probeCount(t *testing.T, c *cluster.Cluster, note string) int {
	t.Helper()
	conn := pgtest.Conn(t, c.SuperuserDSN(c.Database))
	var n int
	if err := conn.QueryRow(ctxT(t), "SELECT count(*) FROM orders WHERE note = $1", note).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

func TestPolicyDenialFailsTheTransaction(t *testing.T) {
	env, c := policyEnv(t)
	conn := connect(t, env.DSN(t, "42", "eu-west"))
	ctx := ctxT(t)
	denials := []struct {
		name string
		sql  string
		args []any
	}{
		{"unscoped statement", "SELECT count(*) FROM orders", nil},
		{"parameter bound to another tenant", "SELECT count(*) FROM orders WHERE account_id = $1", []any{int64(7)}},
	}
	for _, mode := range execModes {
		for _, d := range denials {
			t.Run(fmt.Sprintf("%v/%s", mode, d.name), func(t *testing.T) {
				note := fmt.Sprintf("h8-tx-%v-%s", mode, d.name)
				tx, err := conn.Begin(ctx)
				if err != nil {
					t.Fatal(err)
				}
				defer tx.Rollback(ctx)
				if _, err := tx.Exec(ctx, "INSERT INTO orders (account_id, total, note) VALUES ($1, 1, $2)", mode, int64(42), note); err != nil {
					t.Fatalf("insert: %v", err)
				}
				_, err = tx.Exec(ctx, d.sql, append([]any{mode}, d.args...)...)
				wantDenied(t, d.name, err)
				if _, err := tx.Exec(ctx, "SELECT 1", mode); pgCode(err) != "25P02" {
					t.Errorf("statement after the denial: got %v, want 25P02", err)
				}
				if err := tx.Commit(ctx); !errors.Is(err, pgx.ErrTxCommitRollback) {
					t.Errorf("COMMIT of the failed transaction: got %v, want a rollback", err)
				}
				if n := probeCount(t, c, note); n != 0 {
					t.Errorf("the insert before the denial survived COMMIT (%d rows)", n)
				}
				var one int
				if err := conn.QueryRow(ctx, "SELECT 1", mode).Scan(&one); err != nil {
					t.Errorf("connection unusable after the rollback: %v", err)
				}
			})
		}
	}
}

func TestPolicyPipelineStopsAtTheDenial(t *testing.T) {
	env, c := policyEnv(t)
	// exec mode sends the whole batch as Parse/Bind/Execute messages and one Sync.
	conn := connect(t, env.DSN(t, "42", "eu-west")+"&default_query_exec_mode=exec")
	ctx := ctxT(t)
	const insert = "INSERT INTO orders (account_id, total, note) VALUES ($1, 1, $2)"
	denials := []struct {
		name string
		sql  string
		args []any
	}{
		{"denied at Parse", "SELECT count(*) FROM orders", nil},
		{"denied at Bind", "SELECT count(*) FROM orders WHERE account_id = $1", []any{int64(7)}},
	}
	for _, d := range denials {
		t.Run(d.name, func(t *testing.T) {
			before, after := "h8-pipe-before-"+d.name, "h8-pipe-after-"+d.name
			batch := &pgx.Batch{}
			batch.Queue(insert, int64(42), before)
			batch.Queue(d.sql, d.args...)
			batch.Queue(insert, int64(42), after)
			batch.Queue("SELECT 1")
			br := conn.SendBatch(ctx, batch)
			if _, err := br.Exec(); err != nil {
				t.Fatalf("first statement: %v", err)
			}
			_, err := br.Exec()
			wantDenied(t, "second statement", err)
			if _, err := br.Exec(); err == nil {
				t.Error("third statement ran after the denial")
			}
			if _, err := br.Exec(); err == nil {
				t.Error("fourth statement ran after the denial")
			}
			_ = br.Close()
			if n := probeCount(t, c, after); n != 0 {
				t.Errorf("a statement after the denial ran (%d rows)", n)
			}
			// One Sync: the pipeline is one implicit transaction, which the
			// error rolls back, as PostgreSQL does.
			if n := probeCount(t, c, before); n != 0 {
				t.Errorf("the statement before the denial was committed (%d rows)", n)
			}
			var one int
			if err := conn.QueryRow(ctx, "SELECT 1").Scan(&one); err != nil || one != 1 {
				t.Errorf("connection unusable after the pipeline: %v", err)
			}
		})
	}
}
