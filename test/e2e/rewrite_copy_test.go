package e2e

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/pgtenant/pgtenant/audit"
	"github.com/pgtenant/pgtenant/config"
	"github.com/pgtenant/pgtenant/test/proxytest"
)

// COPY ... FROM STDIN through pgtenant in rewrite mode, against a cluster
// with RLS off (so only pgtenant's row check stands between a tenant and
// another tenant's rows; with RLS on PostgreSQL refuses COPY FROM itself): pgx's CopyFrom (its column probe is pinned, its
// data binary), and text and CSV data. A row of another tenant aborts the
// COPY with 42501 and nothing of it is written.
func TestRewriteCopyFromStdin(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	c := oracleCluster(t, ctx, "rewrite-copy", false)
	// the real audit recorder, strict (durable before forwarding), in c
	regions := map[string]config.Region{"eu-west": regionFor(c)}
	if err := audit.Init(ctx, regions, nil); err != nil {
		t.Fatal(err)
	}
	acfg := config.Default().Audit
	acfg.Mode, acfg.SpoolDir = "strict", t.TempDir()
	rec, err := audit.NewRecorder(ctx, acfg, regions, "rewrite-test", nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = rec.Close(context.Background()) })
	opts := rewriteOptions(c, nil)
	opts.Auditor = rec
	env := proxytest.Start(t, opts)
	conn := connect(t, env.DSN(t, "42", "eu-west"))
	super := connect(t, c.SuperuserDSN(c.Database))
	count := func(where string) int {
		var n int
		if err := super.QueryRow(ctx, "SELECT count(*) FROM public.customers WHERE "+where).Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n
	}
	wantDenied := func(err error, what string) {
		t.Helper()
		var pe *pgconn.PgError
		if !errors.As(err, &pe) || pe.Code != "42501" || !strings.HasPrefix(pe.Message, "pgtenant: ") {
			t.Fatalf("%s: want a pgtenant 42501, got %v", what, err)
		}
	}
	before42, before7 := count("account_id = 42"), count("account_id = 7")
	var n int64

	// pgx CopyFrom: the probe `select ... from customers` is pinned, the rows binary
	n, err = conn.CopyFrom(ctx, pgx.Identifier{"customers"}, []string{"account_id", "name"},
		pgx.CopyFromRows([][]any{{int64(42), "copy-a"}, {int64(42), "copy-b"}}))
	if err != nil || n != 2 {
		t.Fatalf("CopyFrom of own rows: %d %v", n, err)
	}
	_, err = conn.CopyFrom(ctx, pgx.Identifier{"customers"}, []string{"account_id", "name"},
		pgx.CopyFromRows([][]any{{int64(42), "copy-c"}, {int64(7), "copy-d"}}))
	wantDenied(err, "binary CopyFrom with a row of tenant 7")
	if err := conn.Ping(ctx); err != nil {
		t.Fatalf("connection unusable after the refused COPY: %v", err)
	}

	pc := conn.PgConn()
	if _, err := pc.CopyFrom(ctx, strings.NewReader("42\ttext-a\n42\ttext-b\n"), "COPY customers (account_id, name) FROM STDIN"); err != nil {
		t.Fatalf("text COPY of own rows: %v", err)
	}
	_, err = pc.CopyFrom(ctx, strings.NewReader("42\ttext-c\n7\ttext-d\n"), "COPY customers (account_id, name) FROM STDIN")
	wantDenied(err, "text COPY with a row of tenant 7")
	if _, err := pc.CopyFrom(ctx, strings.NewReader("name,account_id\n\"csv, a\",42\n"), "COPY customers (name, account_id) FROM STDIN WITH (FORMAT csv, HEADER)"); err != nil {
		t.Fatalf("CSV COPY of own rows: %v", err)
	}
	_, err = pc.CopyFrom(ctx, strings.NewReader("name,account_id\n\"csv\n,42\",7\n"), "COPY customers (name, account_id) FROM STDIN WITH (FORMAT csv, HEADER)")
	wantDenied(err, "CSV COPY with a row of tenant 7 behind a quoted newline")
	_, err = pc.CopyFrom(ctx, strings.NewReader("text-e\n"), "COPY customers (name) FROM STDIN")
	wantDenied(err, "COPY without the tenant column")

	// inside a transaction the refusal fails the transaction like any error
	if _, err := conn.Exec(ctx, "BEGIN"); err != nil {
		t.Fatal(err)
	}
	_, err = pc.CopyFrom(ctx, strings.NewReader("7\ttx\n"), "COPY customers (account_id, name) FROM STDIN")
	wantDenied(err, "COPY in a transaction")
	var pe *pgconn.PgError
	if _, err := conn.Exec(ctx, "SELECT 1"); !errors.As(err, &pe) || pe.Code != "25P02" {
		t.Errorf("after a refused COPY in a transaction: want 25P02, got %v", err)
	}
	if _, err := conn.Exec(ctx, "ROLLBACK"); err != nil {
		t.Fatal(err)
	}

	if got := count("account_id = 7"); got != before7 {
		t.Errorf("tenant 7 has %d customers, had %d: a refused COPY wrote", got, before7)
	}
	if got := count("account_id = 42"); got != before42+5 {
		t.Errorf("tenant 42 has %d customers, want %d (2 pgx + 2 text + 1 CSV; refused COPYs write nothing)", got, before42+5)
	}
	if got := count("name IN ('copy-c', 'text-c')"); got != 0 {
		t.Errorf("the own rows of a refused COPY were written (%d)", got)
	}

	var total int
	if err := conn.QueryRow(ctx, "SELECT count(*) FROM customers").Scan(&total); err != nil || total != before42+5 {
		t.Errorf("rewritten count through pgtenant: %d %v, want %d", total, err, before42+5)
	}

	// the audit holds the rewritten statement (flagged) and the refused rows
	// (strict mode: appended before forwarding, chained by the integrator
	// shortly after, so wait for the rows to reach events)
	var rewritten, refused int
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		if err := super.QueryRow(ctx, `SELECT
			count(*) FILTER (WHERE verdict = 'allow' AND reason = 'rewritten' AND statement LIKE '%current_setting(%'),
			count(*) FILTER (WHERE verdict = 'deny' AND reason = 'wrong_account' AND statement ILIKE 'copy%')
			FROM pgtenant_audit.events WHERE kind = 'statement' AND account_id = '42'`).Scan(&rewritten, &refused); err != nil {
			t.Fatal(err)
		}
		if (rewritten >= 1 && refused >= 4) || time.Now().After(deadline) {
			break
		}
	}
	if rewritten < 1 || refused < 4 {
		t.Errorf("audit: %d rewritten statements (want >= 1), %d refused COPY rows (want >= 4)", rewritten, refused)
	}
	// the flag is stored and hashed (hash version 3) on exactly the
	// rewritten statements
	var flagged, mismatched int
	if err := super.QueryRow(ctx, `SELECT
		count(*) FILTER (WHERE rewritten AND hash_version = 3 AND reason = 'rewritten'),
		count(*) FILTER (WHERE coalesce(rewritten, false) <> coalesce(reason = 'rewritten', false))
		FROM pgtenant_audit.events WHERE kind = 'statement' AND account_id = '42'`).Scan(&flagged, &mismatched); err != nil {
		t.Fatal(err)
	}
	if flagged != rewritten || mismatched != 0 {
		t.Errorf("audit: %d rows flagged rewritten (want %d), %d rows whose flag disagrees with their reason", flagged, rewritten, mismatched)
	}
}
