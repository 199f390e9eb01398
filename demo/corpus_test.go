package demo_test

import (
	"bufio"
	"context"
	"os"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"

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
	conn := pgtest.Conn(t, c.ServiceDSN())
	tx, err := conn.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback(ctx)
	if _, err := tx.Exec(ctx, "SET LOCAL app.current_account_id = '42'"); err != nil {
		t.Fatal(err)
	}
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
		err := execCorpus(ctx, conn, cc)
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
// text values when the row has binds.
func execCorpus(ctx context.Context, conn *pgx.Conn, cc corpusCase) error {
	if cc.binds == nil {
		_, err := conn.PgConn().Exec(ctx, cc.sql).ReadAll()
		return err
	}
	values := make([][]byte, len(cc.binds))
	for i, v := range cc.binds {
		if v != nil {
			values[i] = []byte(*v)
		}
	}
	_, err := conn.PgConn().ExecParams(ctx, cc.sql, values, nil, nil, nil).Close()
	return err
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
