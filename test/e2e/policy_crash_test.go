package e2e

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/pgtenant/pgtenant/test/proxytest"
)

// The inputs POLICY.md section 1.6 measured crashing (SIGSEGV in cgo) or
// stalling pg_query, and statements over policy.max_statement_bytes, sent
// through the live proxy with the real policy: each gets an error (42501 or
// 54001), the in-process proxy survives (a crash would take the test binary
// with it), the connection keeps working, and other clients are served.

// crashInput is one hostile statement.
type crashInput struct {
	name string
	sql  string
}

func crashInputs() []crashInput {
	return []crashInput{
		{"+1 x 5,000 (protobuf recursion limit)", "SELECT 1" + strings.Repeat("+1", 5000)},
		{"+1 x 25,000 (SIGSEGV in the protobuf output)", "SELECT 1" + strings.Repeat("+1", 25000)},
		{"+1 x 25,000 in a scoped WHERE", "SELECT * FROM orders WHERE account_id = 42 AND id = 1" + strings.Repeat("+1", 25000)},
		{"-+ x 5,000 (lexer re-scan)", "SELECT " + strings.Repeat("-+", 5000) + "1"},
		{"-+ x 100,000 (CPU stall)", "SELECT " + strings.Repeat("-+", 100000) + "1"},
		{"( x 20,000", "SELECT " + strings.Repeat("(", 20000) + "1" + strings.Repeat(")", 20000)},
		{"NOT x 10,000", "SELECT " + strings.Repeat("NOT ", 10000) + "true"},
		{"(SELECT x 5,000", "SELECT " + strings.Repeat("(SELECT ", 5000) + "1" + strings.Repeat(")", 5000)},
		{"unbalanced ( x 50,000", "SELECT " + strings.Repeat("(", 50000)},
		{"over max_statement_bytes", "SELECT * FROM orders WHERE account_id = 42 AND note = '" + strings.Repeat("x", 1<<20) + "'"},
	}
}

// wantRefused fails t unless err is the proxy's refusal (42501 or 54001).
func wantRefused(t *testing.T, what string, err error) {
	t.Helper()
	var pe *pgconn.PgError
	if err == nil {
		t.Errorf("%s: accepted, want 42501 or 54001", what)
		return
	}
	if !asPgError(err, &pe) || (pe.Code != "42501" && pe.Code != "54001") || !strings.HasPrefix(pe.Message, "pgtenant:") {
		t.Errorf("%s: got %v, want a pgtenant 42501 or 54001 error", what, err)
	}
}

// asPgError is errors.As for a PostgreSQL error.
func asPgError(err error, pe **pgconn.PgError) bool { return errors.As(err, pe) }

// scopedWorks fails t unless a scoped query on conn returns tenant 42's rows.
func scopedWorks(ctx context.Context, t *testing.T, conn *pgx.Conn, after string) {
	t.Helper()
	var n int
	if err := conn.QueryRow(ctx, "SELECT count(*) FROM orders WHERE account_id = $1", 42).Scan(&n); err != nil || n == 0 {
		t.Errorf("scoped query after %s: n=%d, %v", after, n, err)
	}
}

// proxyStillServing fails t when the proxy's Serve has returned or a new
// client cannot run a scoped query.
func proxyStillServing(t *testing.T, env *proxytest.Env) {
	t.Helper()
	select {
	case err := <-env.Done:
		t.Fatalf("the proxy stopped serving: %v", err)
	default:
	}
	scopedWorks(ctxT(t), t, connect(t, env.DSN(t, "42", "eu-west")), "the hostile inputs, on a new connection")
}

func TestPolicyCrashInputsAreRefused(t *testing.T) {
	env, _ := policyEnv(t)
	conn := connect(t, env.DSN(t, "42", "eu-west"))
	ctx := ctxT(t)
	for _, in := range crashInputs() {
		t.Run(in.name, func(t *testing.T) {
			// Simple protocol: one Query message.
			_, err := conn.Exec(ctx, in.sql, pgx.QueryExecModeSimpleProtocol)
			wantRefused(t, "Query", err)
			scopedWorks(ctx, t, conn, "the refused Query")
			// Extended protocol: Parse of the same text.
			_, err = conn.PgConn().Prepare(ctx, "", in.sql, nil)
			wantRefused(t, "Parse", err)
			scopedWorks(ctx, t, conn, "the refused Parse")
			// SQL-level PREPARE wrapping it.
			_, err = conn.Exec(ctx, "PREPARE h8crash AS "+in.sql, pgx.QueryExecModeSimpleProtocol)
			wantRefused(t, "PREPARE", err)
			scopedWorks(ctx, t, conn, "the refused PREPARE")
		})
	}
	proxyStillServing(t, env)
}

func TestPolicyCrashInputsUnderConcurrency(t *testing.T) {
	env, _ := policyEnv(t)
	ctx := ctxT(t)
	inputs := crashInputs()
	rounds := 3
	if testing.Short() {
		rounds = 1
	}
	const attackers = 16
	var wg sync.WaitGroup
	errs := make(chan error, attackers*rounds*len(inputs)+100)
	for i := 0; i < attackers; i++ {
		conn := connect(t, env.DSN(t, "42", "eu-west"))
		wg.Add(1)
		go func(i int, conn *pgx.Conn) {
			defer wg.Done()
			for r := 0; r < rounds; r++ {
				for j := range inputs {
					in := inputs[(i+j+r)%len(inputs)] // each attacker in its own order
					_, err := conn.Exec(ctx, in.sql, pgx.QueryExecModeSimpleProtocol)
					var pe *pgconn.PgError
					if !asPgError(err, &pe) || (pe.Code != "42501" && pe.Code != "54001") {
						errs <- fmt.Errorf("attacker %d, %s: got %v, want 42501 or 54001", i, in.name, err)
					}
				}
			}
		}(i, conn)
	}
	// Meanwhile an ordinary client runs scoped queries, all of which succeed.
	client := connect(t, env.DSN(t, "42", "eu-west"))
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	ran := 0
	for busy := true; busy || ran < 20; ran++ {
		select {
		case <-done:
			busy = false
		default:
		}
		var ids []int64
		rows, err := client.Query(ctx, "SELECT account_id FROM orders WHERE account_id = $1 AND total >= $2", 42, ran%3)
		if err == nil {
			ids, err = pgx.CollectRows(rows, pgx.RowTo[int64])
		}
		if err != nil || len(ids) == 0 {
			t.Fatalf("scoped query #%d while under attack: %d rows, %v", ran, len(ids), err)
		}
	}
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	t.Logf("%d scoped queries ran during %d hostile statements", ran, attackers*rounds*len(inputs))
	proxyStillServing(t, env)
}
