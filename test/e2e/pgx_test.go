package e2e

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"runtime"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgconn/ctxwatch"

	"github.com/pgtenant/pgtenant/test/proxytest"
)

// Tests of pgx (extended protocol, pipelines, COPY, cancel, async messages)
// through the in-process proxy in front of real regional clusters.

func TestPgxExtendedProtocolParams(t *testing.T) {
	env := proxytest.Start(t, proxytest.Options{})
	conn := connect(t, env.DSN(t, "42", "eu-west"))
	ctx := ctxT(t)

	var note string
	var total float64
	err := conn.QueryRow(ctx, "SELECT note, total::float8 FROM orders WHERE account_id = $1 AND id = $2", int64(42), int64(1001)).Scan(&note, &total)
	if err != nil {
		t.Fatal(err)
	}
	if note != "first big order" || total != 120 {
		t.Errorf("order 1001 = (%q, %v), want (first big order, 120)", note, total)
	}

	// A parameter naming another tenant's row finds nothing: RLS still applies.
	err = conn.QueryRow(ctx, "SELECT note FROM orders WHERE account_id = $1 AND id = $2", int64(7), int64(2001)).Scan(&note)
	if !errors.Is(err, pgx.ErrNoRows) {
		t.Errorf("tenant 42 reading tenant 7's order: err = %v, want no rows", err)
	}

	// Text, NULL and binary-format parameters all arrive intact.
	var s string
	var isNull bool
	var b []byte
	err = conn.QueryRow(ctx, "SELECT $1::text, $2::text IS NULL, $3::bytea", "it's \\ 'quoted'", nil, []byte{0, 1, 2, 255}).Scan(&s, &isNull, &b)
	if err != nil {
		t.Fatal(err)
	}
	if s != "it's \\ 'quoted'" || !isNull || !bytes.Equal(b, []byte{0, 1, 2, 255}) {
		t.Errorf("round trip = (%q, %v, %v)", s, isNull, b)
	}
}

func TestPgxBatchPipeline(t *testing.T) {
	env := proxytest.Start(t, proxytest.Options{})
	conn := connect(t, env.DSN(t, "42", "eu-west"))
	ctx := ctxT(t)

	const n = 20
	batch := &pgx.Batch{}
	for i := range n {
		if i%5 == 4 {
			batch.Queue("SELECT count(*)::int FROM orders WHERE account_id = $1", int64(42))
		} else {
			batch.Queue("SELECT $1::int * 10", i)
		}
	}
	res := conn.SendBatch(ctx, batch)
	for i := range n {
		var got int
		if err := res.QueryRow().Scan(&got); err != nil {
			t.Fatalf("batch query %d: %v", i, err)
		}
		want := i * 10
		if i%5 == 4 {
			want = 4 // tenant 42 has orders 1, 5, 9 and 1001
		}
		if got != want {
			t.Errorf("batch query %d = %d, want %d", i, got, want)
		}
	}
	if err := res.Close(); err != nil {
		t.Fatal(err)
	}
	if err := conn.Ping(ctx); err != nil {
		t.Fatalf("connection unusable after the batch: %v", err)
	}
}

func TestPgxNamedPreparedStatements(t *testing.T) {
	env := proxytest.Start(t, proxytest.Options{})
	conn := connect(t, env.DSN(t, "42", "eu-west"))
	ctx := ctxT(t)

	if _, err := conn.Prepare(ctx, "order_note", "SELECT coalesce(note, '<null>') FROM orders WHERE account_id = 42 AND id = $1"); err != nil {
		t.Fatal(err)
	}
	var names []string
	rows, err := conn.Query(ctx, "SELECT name FROM pg_prepared_statements ORDER BY name")
	if err != nil {
		t.Fatal(err)
	}
	if names, err = pgx.CollectRows(rows, pgx.RowTo[string]); err != nil {
		t.Fatal(err)
	}
	if !slices.Contains(names, "order_note") {
		t.Errorf("server-side prepared statements %v lack order_note", names)
	}
	for id, want := range map[int64]string{1: "DE", 5: "a@example.com", 9: "<null>", 1001: "first big order"} {
		var got string
		if err := conn.QueryRow(ctx, "order_note", id).Scan(&got); err != nil {
			t.Fatalf("execute order_note(%d): %v", id, err)
		}
		if got != want {
			t.Errorf("order_note(%d) = %q, want %q", id, got, want)
		}
	}
	if err := conn.Deallocate(ctx, "order_note"); err != nil {
		t.Fatal(err)
	}
	// The name is free again: preparing it anew with another text works.
	if _, err := conn.Prepare(ctx, "order_note", "SELECT note FROM orders WHERE account_id = 42 AND id = $1 AND note IS NOT NULL"); err != nil {
		t.Fatalf("re-prepare after deallocate: %v", err)
	}
	var got string
	if err := conn.QueryRow(ctx, "order_note", int64(1)).Scan(&got); err != nil || got != "DE" {
		t.Errorf("re-prepared order_note(1) = %q, %v; want DE", got, err)
	}
}

func TestPgxCopyTo(t *testing.T) {
	env := proxytest.Start(t, proxytest.Options{})
	conn := connect(t, env.DSN(t, "42", "eu-west"))
	ctx := ctxT(t)

	var buf bytes.Buffer
	tag, err := conn.PgConn().CopyTo(ctx, &buf, "COPY (SELECT id, account_id FROM orders ORDER BY id) TO STDOUT")
	if err != nil {
		t.Fatal(err)
	}
	want := "1\t42\n5\t42\n9\t42\n1001\t42\n"
	if buf.String() != want || tag.RowsAffected() != 4 {
		t.Errorf("COPY (query) TO STDOUT = %q (%d rows), want %q (4 rows)", buf.String(), tag.RowsAffected(), want)
	}

	// COPY of a whole table applies the RLS policy too.
	buf.Reset()
	if _, err := conn.PgConn().CopyTo(ctx, &buf, "COPY orders (account_id) TO STDOUT"); err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(buf.String()), "\n")
	if len(lines) != 4 {
		t.Errorf("COPY orders TO STDOUT gave %d rows, want 4: %q", len(lines), buf.String())
	}
	for _, l := range lines {
		if l != "42" {
			t.Errorf("COPY orders TO STDOUT leaked account %q", l)
		}
	}
	if err := conn.Ping(ctx); err != nil {
		t.Fatalf("connection unusable after COPY: %v", err)
	}
}

func TestPgxCancelThroughProxy(t *testing.T) {
	env := proxytest.Start(t, proxytest.Options{})
	cfg, err := pgx.ParseConfig(env.DSN(t, "42", "eu-west"))
	if err != nil {
		t.Fatal(err)
	}
	// Send a CancelRequest on context expiry (pgx's default only sets a
	// deadline on the socket, which would end the connection instead).
	cfg.BuildContextWatcherHandler = func(pc *pgconn.PgConn) ctxwatch.Handler {
		return &pgconn.CancelRequestContextWatcherHandler{Conn: pc, DeadlineDelay: 20 * time.Second}
	}
	conn, err := pgx.ConnectConfig(ctxT(t), cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close(context.Background()) })

	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	start := time.Now()
	_, err = conn.Exec(ctx, "SELECT pg_sleep(30)")
	elapsed := time.Since(start)
	if code := pgCode(err); code != "57014" {
		t.Fatalf("pg_sleep(30) under a 1s context: err = %v (SQLSTATE %q), want 57014 query_canceled", err, code)
	}
	// Not a timing assertion: without a delivered cancel the statement runs
	// its full 30s (or the 20s deadline fallback closes the connection).
	if elapsed >= 20*time.Second {
		t.Errorf("cancel took %v", elapsed)
	}
	if conn.IsClosed() {
		t.Fatal("the connection was closed instead of the query being canceled")
	}
	var one int
	if err := conn.QueryRow(ctxT(t), "SELECT 1").Scan(&one); err != nil || one != 1 {
		t.Fatalf("connection unusable after cancel: %d, %v", one, err)
	}
	// The proxy keeps serving new connections.
	other := connect(t, env.DSN(t, "7", "eu-west"))
	if err := other.Ping(ctxT(t)); err != nil {
		t.Fatal(err)
	}
}

func TestPgxLargeResultIsStreamed(t *testing.T) {
	env := proxytest.Start(t, proxytest.Options{})
	conn := connect(t, env.DSN(t, "42", "eu-west"))
	ctx := ctxT(t)

	const rowsWant, rowLen = 100, 1_000_000
	var ms runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&ms)
	base, peak := ms.HeapInuse, ms.HeapInuse

	rows, err := conn.Query(ctx, fmt.Sprintf("SELECT repeat('x', %d) FROM generate_series(1, %d)", rowLen, rowsWant), pgx.QueryResultFormats{pgx.TextFormatCode})
	if err != nil {
		t.Fatal(err)
	}
	var n, total int
	for rows.Next() {
		v := rows.RawValues()[0]
		if len(v) != rowLen || v[0] != 'x' || v[len(v)-1] != 'x' {
			t.Fatalf("row %d has %d bytes", n, len(v))
		}
		total += len(v)
		n++
		runtime.ReadMemStats(&ms)
		peak = max(peak, ms.HeapInuse)
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	if n != rowsWant || total != rowsWant*rowLen {
		t.Fatalf("read %d rows / %d bytes, want %d / %d", n, total, rowsWant, rowsWant*rowLen)
	}
	// Proxy and client share this process: the growth bounds both.
	growth := int64(peak) - int64(base)
	t.Logf("heap in use: base %d MiB, peak %d MiB while streaming %d MB", base>>20, peak>>20, total/1_000_000)
	if growth > 32<<20 {
		t.Errorf("heap grew by %d MiB while streaming a %d MB result; the proxy buffers results", growth>>20, total/1_000_000)
	}
}

func TestPgxNoticesAndNotifications(t *testing.T) {
	env := proxytest.Start(t, proxytest.Options{})
	cfg, err := pgx.ParseConfig(env.DSN(t, "42", "eu-west"))
	if err != nil {
		t.Fatal(err)
	}
	notices := make(chan *pgconn.Notice, 4)
	cfg.OnNotice = func(_ *pgconn.PgConn, n *pgconn.Notice) { notices <- n }
	conn, err := pgx.ConnectConfig(ctxT(t), cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close(context.Background()) })
	ctx := ctxT(t)

	if _, err := conn.Exec(ctx, "DO $$ BEGIN RAISE NOTICE 'hello from tenant %', current_setting('app.current_account_id'); END $$"); err != nil {
		t.Fatal(err)
	}
	select {
	case n := <-notices:
		if n.Severity != "NOTICE" || n.Message != "hello from tenant 42" {
			t.Errorf("notice = %s %q", n.Severity, n.Message)
		}
	default:
		t.Error("no NoticeResponse reached the client")
	}

	listener := connect(t, env.DSN(t, "42", "eu-west"))
	if _, err := listener.Exec(ctx, "LISTEN pgtenant_e2e"); err != nil {
		t.Fatal(err)
	}
	if _, err := conn.Exec(ctx, "SELECT pg_notify('pgtenant_e2e', 'payload-42')"); err != nil {
		t.Fatal(err)
	}
	wctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	nt, err := listener.WaitForNotification(wctx)
	if err != nil {
		t.Fatalf("no notification delivered: %v", err)
	}
	if nt.Channel != "pgtenant_e2e" || nt.Payload != "payload-42" {
		t.Errorf("notification = %q %q", nt.Channel, nt.Payload)
	}
	if err := listener.Ping(ctx); err != nil {
		t.Fatal(err)
	}
}

func TestPgxParameterStatusOnSet(t *testing.T) {
	env := proxytest.Start(t, proxytest.Options{})
	conn := connect(t, env.DSN(t, "42", "eu-west"))
	ctx := ctxT(t)

	// The startup reply carries the backend's ParameterStatus values.
	if v := conn.PgConn().ParameterStatus("server_version"); !strings.HasPrefix(v, "15") {
		t.Errorf("server_version at startup = %q", v)
	}
	if _, err := conn.Exec(ctx, "SET application_name = 'e2e-status'"); err != nil {
		t.Fatal(err)
	}
	if v := conn.PgConn().ParameterStatus("application_name"); v != "e2e-status" {
		t.Errorf("application_name ParameterStatus after SET = %q, want e2e-status", v)
	}
}

func TestPgxErrorsPassThrough(t *testing.T) {
	env := proxytest.Start(t, proxytest.Options{})
	conn := connect(t, env.DSN(t, "42", "eu-west"))
	ctx := ctxT(t)

	_, err := conn.Exec(ctx, "SELECT * FROM no_such_table")
	var pe *pgconn.PgError
	if !errors.As(err, &pe) || pe.Code != "42P01" || pe.Severity != "ERROR" || !strings.Contains(pe.Message, "no_such_table") {
		t.Fatalf("undefined table: err = %v, want ERROR 42P01 naming no_such_table", err)
	}
	// Simple protocol too.
	_, err = conn.Exec(ctx, "SELECT 1/0", pgx.QueryExecModeSimpleProtocol)
	if code := pgCode(err); code != "22012" {
		t.Fatalf("division by zero: err = %v, want 22012", err)
	}
	// In a transaction: aborted until rollback, then usable.
	tx, err := conn.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tx.Exec(ctx, "SELECT * FROM no_such_table"); pgCode(err) != "42P01" {
		t.Fatalf("in tx: err = %v", err)
	}
	if _, err := tx.Exec(ctx, "SELECT 1"); pgCode(err) != "25P02" {
		t.Fatalf("after the error in tx: err = %v, want 25P02", err)
	}
	if err := tx.Rollback(ctx); err != nil {
		t.Fatal(err)
	}
	var n int
	if err := conn.QueryRow(ctx, "SELECT count(*)::int FROM orders").Scan(&n); err != nil || n != 4 {
		t.Fatalf("after errors: count = %d, %v; want 4", n, err)
	}
}

func TestPgxTokenExpiresMidSession(t *testing.T) {
	env := proxytest.Start(t, proxytest.Options{})
	exp := time.Now().Add(2 * time.Second).Truncate(time.Second).Add(time.Second)
	tok := proxytest.SignedToken(t, map[string]any{"account_id": "42", "data_region": "eu-west", "sub": "expiring", "exp": exp.Unix()})
	conn := connect(t, env.DSNWithToken(tok))
	ctx := ctxT(t)

	var account string
	if err := conn.QueryRow(ctx, "SELECT current_setting('app.current_account_id')").Scan(&account); err != nil || account != "42" {
		t.Fatalf("before expiry: %q, %v", account, err)
	}
	time.Sleep(time.Until(exp) + 200*time.Millisecond)

	_, err := conn.Exec(ctx, "SELECT 1")
	var pe *pgconn.PgError
	if !errors.As(err, &pe) || pe.Code != "28000" || pe.Severity != "FATAL" || !strings.Contains(pe.Message, "expired") {
		t.Fatalf("first query after expiry: err = %v, want FATAL 28000 about expiry", err)
	}
	if !conn.IsClosed() {
		t.Error("pgx still considers the connection open after the FATAL")
	}
	if _, err := conn.Exec(ctx, "SELECT 1"); err == nil {
		t.Error("a query succeeded on the expired session")
	}
	// New sessions with a fresh token are unaffected.
	fresh := connect(t, env.DSN(t, "42", "eu-west"))
	if err := fresh.Ping(ctx); err != nil {
		t.Fatal(err)
	}
}
