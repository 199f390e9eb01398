package demo_test

import (
	"bufio"
	"context"
	"os"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/pgtenant/pgtenant/demo"
	"github.com/pgtenant/pgtenant/test/pgtest"
)

// corpusCase is one row of testdata/tenancy.tsv (a copy of the shared
// tenancy corpus).
type corpusCase struct {
	line              int
	verdict, category string
	sql               string
	binds             []*string // nil: simple protocol
}

func readCorpus(t *testing.T) []corpusCase {
	t.Helper()
	f, err := os.Open("testdata/tenancy.tsv")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var cases []corpusCase
	sc := bufio.NewScanner(f)
	for n := 1; sc.Scan(); n++ {
		line := sc.Text()
		if strings.TrimSpace(line) == "" || strings.HasPrefix(line, "#") {
			continue
		}
		parts := strings.SplitN(line, "\t", 3)
		if len(parts) != 3 {
			t.Fatalf("tenancy.tsv:%d: want verdict<TAB>category<TAB>sql", n)
		}
		c := corpusCase{line: n, verdict: parts[0], category: parts[1], sql: parts[2]}
		if i := strings.LastIndex(c.sql, " -- bind: "); i >= 0 {
			for _, v := range strings.Split(c.sql[i+len(" -- bind: "):], " | ") {
				if v == "NULL" {
					c.binds = append(c.binds, nil)
				} else {
					c.binds = append(c.binds, &v)
				}
			}
			c.sql = c.sql[:i]
		}
		cases = append(cases, c)
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return cases
}

// TestCorpusAllowedStatementsRunOnDemoSchema proves the demo schema is the
// corpus's schema: every statement the corpus allows for account 42 runs
// without error as the service role (each in a savepoint that is rolled
// back, so the seed stays as it is).
func TestCorpusAllowedStatementsRunOnDemoSchema(t *testing.T) {
	ctx := ctxT(t)
	c := installed(t)
	tx := tenantTx(t, c, "42")
	var serverVersion int
	if err := tx.QueryRow(ctx, "SELECT current_setting('server_version_num')::int").Scan(&serverVersion); err != nil {
		t.Fatal(err)
	}
	ran := 0
	for _, cc := range readCorpus(t) {
		if cc.verdict != "allow" {
			continue
		}
		if strings.HasPrefix(cc.category, "txn") {
			continue // transaction control: nothing to do with the schema
		}
		if strings.Contains(cc.sql, "IS JSON") && serverVersion < 160000 {
			continue // the IS JSON predicate needs PostgreSQL 16
		}
		if _, err := tx.Exec(ctx, "SAVEPOINT corpus"); err != nil {
			t.Fatal(err)
		}
		_, err := execCorpus(ctx, tx.Conn(), cc)
		if err != nil {
			t.Errorf("tenancy.tsv:%d (%s): %s\n\t%v", cc.line, cc.category, cc.sql, err)
		}
		end := "ROLLBACK TO SAVEPOINT corpus"
		if err == nil && (strings.HasPrefix(cc.category, "cursor") || strings.HasPrefix(cc.category, "prepare")) {
			end = "RELEASE SAVEPOINT corpus" // a later row uses the cursor
		}
		if _, err := tx.Exec(ctx, end); err != nil {
			t.Fatalf("tenancy.tsv:%d: %s: %v", cc.line, end, err)
		}
		ran++
	}
	if ran < 100 {
		t.Errorf("ran only %d allowed corpus statements", ran)
	}
}

// execCorpus runs one corpus statement: simple protocol, or Parse+Bind with
// text values when the row has binds. It returns the result sets.
func execCorpus(ctx context.Context, conn *pgx.Conn, cc corpusCase) ([]*pgconn.Result, error) {
	if cc.binds == nil {
		return conn.PgConn().Exec(ctx, cc.sql).ReadAll()
	}
	values := make([][]byte, len(cc.binds))
	for i, v := range cc.binds {
		if v != nil {
			values[i] = []byte(*v)
		}
	}
	res := conn.PgConn().ExecParams(ctx, cc.sql, values, nil, nil, nil).Read()
	return []*pgconn.Result{res}, res.Err
}

// tenant7Fingerprint digests every row of tenant 7, read through RLS as
// tenant 7 inside tx (with session settings a statement may have changed
// put back).
func tenant7Fingerprint(ctx context.Context, tx pgx.Tx) (string, error) {
	var fp string
	_, err := tx.Exec(ctx, `SET LOCAL row_security = on; SET LOCAL search_path = public;
		SET LOCAL app.current_account_id = '7'`)
	if err != nil {
		return "", err
	}
	err = tx.QueryRow(ctx, `SELECT md5(string_agg(r, '|' ORDER BY r)) FROM (
		SELECT 'o' || o::text AS r FROM public.orders o
		UNION ALL SELECT 'c' || c::text FROM public.customers c
		UNION ALL SELECT 'l' || l::text FROM public.line_items l) rows`).Scan(&fp)
	return fp, err
}

// leaksTenant7 returns a description of the first result cell that shows
// tenant 7's data: an account_id column equal to 7, JSON with
// "account_id":7, or tenant 7's email domain.
func leaksTenant7(results []*pgconn.Result) string {
	for _, r := range results {
		for _, row := range r.Rows {
			for i, cell := range row {
				v := string(cell)
				if i < len(r.FieldDescriptions) && r.FieldDescriptions[i].Name == "account_id" && v == "7" {
					return "account_id = 7"
				}
				if strings.Contains(v, `"account_id":7,`) || strings.Contains(v, "example.org") {
					return "value " + v
				}
			}
		}
	}
	return ""
}

// TestCorpusRLSHoldsForEveryStatement checks the second layer on its own:
// whatever the proxy would decide, no corpus statement run directly as the
// service role for account 42 returns tenant 7's rows or changes them.
func TestCorpusRLSHoldsForEveryStatement(t *testing.T) {
	ctx := ctxT(t)
	c := installed(t)
	conn := pgtest.Conn(t, c.ServiceDSN())
	tx, err := conn.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback(ctx)
	want, err := tenant7Fingerprint(ctx, tx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tx.Exec(ctx, "SET LOCAL app.current_account_id = '42'"); err != nil {
		t.Fatal(err)
	}
	checked := 0
	for _, cc := range readCorpus(t) {
		if strings.HasPrefix(cc.category, "txn") {
			continue // would end the enclosing transaction
		}
		if _, err := tx.Exec(ctx, "SAVEPOINT corpus"); err != nil {
			t.Fatal(err)
		}
		results, err := execCorpus(ctx, tx.Conn(), cc)
		if err == nil {
			if leak := leaksTenant7(results); leak != "" {
				t.Errorf("tenancy.tsv:%d (%s %s): %s\n\treturned tenant 7's data: %s", cc.line, cc.verdict, cc.category, cc.sql, leak)
			}
			got, err := tenant7Fingerprint(ctx, tx)
			if err != nil {
				t.Fatalf("tenancy.tsv:%d: fingerprint: %v", cc.line, err)
			}
			if got != want {
				t.Errorf("tenancy.tsv:%d (%s %s): %s\n\tchanged tenant 7's rows", cc.line, cc.verdict, cc.category, cc.sql)
			}
			checked++
		}
		if _, err := tx.Exec(ctx, "ROLLBACK TO SAVEPOINT corpus"); err != nil {
			t.Fatalf("tenancy.tsv:%d: rollback to savepoint: %v", cc.line, err)
		}
	}
	if checked < 100 {
		t.Errorf("only %d corpus statements ran", checked)
	}
}

// TestCorpusHeaderNamesDemoTables keeps the corpus copy and the schema in
// step: the tables the corpus header lists are the demo's.
func TestCorpusHeaderNamesDemoTables(t *testing.T) {
	b, err := os.ReadFile("testdata/tenancy.tsv")
	if err != nil {
		t.Fatal(err)
	}
	header := string(b)
	for _, table := range append(append([]string{}, demo.TenantTables...), demo.GlobalTables...) {
		if !strings.Contains(header, table+"(") {
			t.Errorf("corpus header does not mention %s(...)", table)
		}
	}
}
