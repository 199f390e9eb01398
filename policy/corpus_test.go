package policy

import (
	"bufio"
	"os"
	"strings"
	"testing"

	"github.com/pgtenant/pgtenant/auth"
	"github.com/pgtenant/pgtenant/config"
	"github.com/pgtenant/pgtenant/tenancy"
)

// CorpusRow is one line of a tenancy corpus.
type corpusRow struct {
	line     int
	verdict  string
	category string
	sql      string
}

func readCorpus(t testing.TB, path string) []corpusRow {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var rows []corpusRow
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	n := 0
	for sc.Scan() {
		n++
		line := sc.Text()
		if strings.HasPrefix(line, "#") || strings.TrimSpace(line) == "" {
			continue
		}
		parts := strings.SplitN(line, "\t", 3)
		if len(parts) != 3 {
			t.Fatalf("%s:%d: malformed row", path, n)
		}
		rows = append(rows, corpusRow{line: n, verdict: parts[0], category: parts[1], sql: parts[2]})
	}
	return rows
}

func testPolicyConfig() config.Policy {
	p := config.Default().Policy
	p.Discover = false
	p.GlobalTables = []string{"public.countries"}
	p.ForbiddenSchemas = []string{"audit", "pgtenant_audit"}
	return p
}

func newTestEngine(t testing.TB, mutate ...func(*config.Policy)) *Engine {
	t.Helper()
	cfg := testPolicyConfig()
	for _, m := range mutate {
		m(&cfg)
	}
	e, err := NewEngine(cfg)
	if err != nil {
		t.Fatal(err)
	}
	schema, err := os.ReadFile("testdata/schema.sql")
	if err != nil {
		t.Fatal(err)
	}
	cat := e.BaseCatalog()
	if err := cat.AddSchemaSQL(string(schema), e.TenantColumn()); err != nil {
		t.Fatal(err)
	}
	e.SetCatalog("eu-west", cat)
	return e
}

// Every corpus row agrees, both with a fresh session per row and with one
// session shared by the whole corpus (as `pgtenant check --corpus` runs it).
func TestCorpus(t *testing.T) {
	shared := checkCorpus(t, "testdata/tenancy.tsv", 200)
	// in a shared session a prepared statement carries over to EXECUTE rows
	if d := RunCorpusRow(shared, "EXECUTE p3(42)"); !d.Allow {
		t.Errorf("EXECUTE p3(42) after the corpus: %s", d.Message)
	}
}

// The hostile corpus (statements of every class that try to reach another
// tenant's rows past the parser layer) agrees the same way.
func TestHostileCorpus(t *testing.T) {
	checkCorpus(t, "testdata/hostile.tsv", 200)
}

// checkCorpus checks every row of the corpus at path (at least min rows)
// with a fresh session per row and with one shared session, which it
// returns.
func checkCorpus(t *testing.T, path string, min int) *Session {
	t.Helper()
	e := newTestEngine(t)
	rows := readCorpus(t, path)
	if len(rows) < min {
		t.Fatalf("only %d rows in %s", len(rows), path)
	}
	shared := e.NewSession(auth.Principal{Account: "42", Region: "eu-west"})
	for _, r := range rows {
		fresh := e.NewSession(auth.Principal{Account: "42", Region: "eu-west"})
		for mode, d := range map[string]tenancy.Decision{"fresh": RunCorpusSQL(fresh, r.sql), "shared": RunCorpusRow(shared, r.sql)} {
			got := "deny"
			if d.Allow {
				got = "allow"
			}
			if got != r.verdict {
				t.Errorf("%s session: %s:%d [%s] want %s got %s (%s): %s", mode, path, r.line, r.category, r.verdict, got, d.Message, r.sql)
			}
		}
	}
	return shared
}
