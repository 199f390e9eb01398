package e2e

import (
	"context"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"

	"github.com/pgtenant/pgtenant/auth"
	"github.com/pgtenant/pgtenant/cluster"
	"github.com/pgtenant/pgtenant/config"
	"github.com/pgtenant/pgtenant/proxy"
	"github.com/pgtenant/pgtenant/tenancy"
	"github.com/pgtenant/pgtenant/test/proxytest"
)

// markerChecker denies any statement mentioning "denied_marker" and any Bind
// whose first parameter is "7". It exercises the proxy's deny mechanics
// independently of the real policy engine.
type markerChecker struct{ stmts map[string]bool }

func (m *markerChecker) decide(sql string) tenancy.Decision {
	if strings.Contains(sql, "denied_marker") {
		return tenancy.Decision{SQLState: "42501", Reason: "test", Message: "pgtenant: denied_marker is not allowed", Hint: "remove it"}
	}
	return tenancy.Decision{Allow: true}
}
func (m *markerChecker) CheckQuery(sql string) tenancy.Decision { return m.decide(sql) }
func (m *markerChecker) CheckParse(name, sql string, _ []uint32) tenancy.Decision {
	d := m.decide(sql)
	if d.Allow {
		m.stmts[name] = true
	}
	return d
}
func (m *markerChecker) CheckBind(_ string, _ []int16, vals [][]byte) tenancy.Decision {
	if len(vals) > 0 && string(vals[0]) == "7" {
		return tenancy.Decision{SQLState: "42501", Reason: "test", Message: "pgtenant: parameter $1 is another tenant"}
	}
	return tenancy.Decision{Allow: true}
}
func (m *markerChecker) CloseStatement(name string) tenancy.Change {
	delete(m.stmts, name)
	return tenancy.Change{}
}
func (m *markerChecker) DescribeStatement(string) tenancy.Change   { return tenancy.Change{} }
func (m *markerChecker) Sent(byte)                                 {}
func (m *markerChecker) Resolve(uint64, tenancy.Outcome, []uint32) {}

func markerEnv(t *testing.T) *proxytest.Env {
	return proxytest.Start(t, proxytest.Options{Checkers: func(*config.Config, map[string]*cluster.Cluster) proxy.CheckerFactory {
		return func(auth.Principal) proxy.StatementChecker { return &markerChecker{stmts: map[string]bool{}} }
	}})
}

func TestDenialIsAnErrorThatKeepsTheConnection(t *testing.T) {
	conn := connect(t, markerEnv(t).DSN(t, "42", "eu-west"))
	ctx := ctxT(t)
	_, err := conn.Exec(ctx, "SELECT 'denied_marker'", pgx.QueryExecModeSimpleProtocol)
	if pgCode(err) != "42501" || !strings.Contains(err.Error(), "pgtenant: denied_marker") {
		t.Fatalf("simple query: got %v, want 42501 from pgtenant", err)
	}
	_, err = conn.Exec(ctx, "SELECT 'denied_marker' WHERE $1::int = 1", 1)
	if pgCode(err) != "42501" {
		t.Fatalf("extended query: got %v, want 42501", err)
	}
	var one int
	if err := conn.QueryRow(ctx, "SELECT 1").Scan(&one); err != nil || one != 1 {
		t.Fatalf("connection not usable after denials: %v", err)
	}
}

func TestDenialFailsTheTransactionLikeAnError(t *testing.T) {
	env := markerEnv(t)
	conn := connect(t, env.DSN(t, "42", "eu-west"))
	ctx := ctxT(t)
	for _, mode := range []pgx.QueryExecMode{pgx.QueryExecModeSimpleProtocol, pgx.QueryExecModeExec} {
		tx, err := conn.Begin(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := tx.Exec(ctx, "INSERT INTO orders (account_id, total, note) VALUES (42, 1, 'tx-probe')", mode); err != nil {
			t.Fatal(err)
		}
		if _, err := tx.Exec(ctx, "SELECT 'denied_marker'", mode); pgCode(err) != "42501" {
			t.Fatalf("mode %v: got %v, want 42501", mode, err)
		}
		if _, err := tx.Exec(ctx, "SELECT 1", mode); pgCode(err) != "25P02" {
			t.Fatalf("mode %v: statement after a denial got %v, want 25P02", mode, err)
		}
		_ = tx.Commit(ctx) // COMMIT of a failed transaction rolls back
		var n int
		if err := conn.QueryRow(ctx, "SELECT count(*) FROM orders WHERE note = 'tx-probe'").Scan(&n); err != nil || n != 0 {
			t.Fatalf("mode %v: the insert survived a failed transaction (n=%d, err=%v)", mode, n, err)
		}
	}
}

func TestMultiStatementQueryWithADenialRunsNothing(t *testing.T) {
	conn := connect(t, markerEnv(t).DSN(t, "42", "eu-west"))
	ctx := ctxT(t)
	_, err := conn.Exec(ctx, "INSERT INTO orders (account_id, total, note) VALUES (42, 1, 'multi-probe'); SELECT 'denied_marker'", pgx.QueryExecModeSimpleProtocol)
	if pgCode(err) != "42501" {
		t.Fatalf("got %v, want 42501", err)
	}
	var n int
	if err := conn.QueryRow(ctx, "SELECT count(*) FROM orders WHERE note = 'multi-probe'").Scan(&n); err != nil || n != 0 {
		t.Fatalf("the allowed half of a denied message ran (n=%d, err=%v)", n, err)
	}
}

func TestPipelineSkipsToSyncAfterADenial(t *testing.T) {
	// exec mode sends every queued statement as Parse/Bind/Execute in one
	// pipeline ending in a single Sync.
	conn := connect(t, markerEnv(t).DSN(t, "42", "eu-west")+"&default_query_exec_mode=exec")
	ctx := ctxT(t)
	batch := &pgx.Batch{}
	batch.Queue("SELECT 1")
	batch.Queue("SELECT 'denied_marker'")
	batch.Queue("INSERT INTO orders (account_id, total, note) VALUES (42, 1, 'pipeline-probe')")
	br := conn.SendBatch(ctx, batch)
	var one int
	if err := br.QueryRow().Scan(&one); err != nil || one != 1 {
		t.Fatalf("first statement: %v", err)
	}
	if _, err := br.Exec(); pgCode(err) != "42501" {
		t.Fatalf("second statement: got %v, want 42501", err)
	}
	_, err := br.Exec()
	if err == nil {
		t.Fatal("third statement ran after a denial in the same pipeline")
	}
	_ = br.Close()
	var n int
	if err := conn.QueryRow(ctx, "SELECT count(*) FROM orders WHERE note = 'pipeline-probe'").Scan(&n); err != nil || n != 0 {
		t.Fatalf("a statement after the denial ran (n=%d, err=%v)", n, err)
	}
}

func TestEveryBindIsChecked(t *testing.T) {
	conn := connect(t, markerEnv(t).DSN(t, "42", "eu-west"))
	ctx := ctxT(t)
	if _, err := conn.Prepare(ctx, "by_account", "SELECT count(*) FROM orders WHERE account_id = $1"); err != nil {
		t.Fatal(err)
	}
	var n int
	if err := conn.QueryRow(ctx, "by_account", "42").Scan(&n); err != nil {
		t.Fatalf("bind to own tenant: %v", err)
	}
	if err := conn.QueryRow(ctx, "by_account", "7").Scan(&n); pgCode(err) != "42501" {
		t.Fatalf("re-bind to another tenant: got %v, want 42501", err)
	}
	if err := conn.QueryRow(ctx, "by_account", "42").Scan(&n); err != nil {
		t.Fatalf("statement unusable after a denied bind: %v", err)
	}
	if err := conn.Ping(context.Background()); err != nil {
		t.Fatal(err)
	}
}
