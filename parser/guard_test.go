package parser

import (
	"errors"
	"strings"
	"syscall"
	"testing"
)

func newTestParser(t testing.TB) *Parser {
	t.Helper()
	p, err := New(1<<20, 2)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// The measured crashers and CPU stalls of POLICY.md 1.6 must be refused by
// the Go-side guards, never handed to the C parser.
func TestGuardsRefuseCrashers(t *testing.T) {
	p := newTestParser(t)
	cases := map[string]string{
		"plus-chain 5k":   "SELECT 1" + strings.Repeat("+1", 5000),
		"plus-chain 25k":  "SELECT 1" + strings.Repeat("+1", 25000),
		"plus-chain 100k": "SELECT 1" + strings.Repeat("+1", 100000),
		"op run 10KB":     "SELECT " + strings.Repeat("-+", 5000),
		"op run 200KB":    "SELECT " + strings.Repeat("-+", 100000),
		"parens 20k":      "SELECT " + strings.Repeat("(", 20000) + "1" + strings.Repeat(")", 20000),
		"not 10k":         "SELECT " + strings.Repeat("NOT ", 10000) + "true",
		"sublinks 5k":     strings.Repeat("SELECT (", 5000) + "1" + strings.Repeat(")", 5000),
		"nested chains":   "SELECT " + strings.Repeat("1+1+1+1+1+1+1+1+1+1+(", 250) + "1" + strings.Repeat(")", 250),
		"is null chain":   "SELECT 1" + strings.Repeat(" IS NULL", 20000),
		"cast chain":      "SELECT 1" + strings.Repeat("::int", 20000),
		"unions":          "SELECT 1" + strings.Repeat(" UNION SELECT 1", 3000),
		"joins":           "SELECT 1 FROM t" + strings.Repeat(" JOIN t ON true", 3000),
	}
	for name, sql := range cases {
		if _, _, err := p.Parse(sql); !errors.Is(err, ErrTooComplex) {
			t.Errorf("%s: got %v, want ErrTooComplex", name, err)
		}
	}
	if _, _, err := p.Parse(strings.Repeat("x", 2<<20)); !errors.Is(err, ErrTooLong) {
		t.Errorf("2 MiB: got %v, want ErrTooLong", err)
	}
}

// Legitimate large statements pass the screen.
func TestGuardsAllowBulk(t *testing.T) {
	p := newTestParser(t)
	var b strings.Builder
	b.WriteString("INSERT INTO orders (account_id, total) VALUES ")
	for i := 0; i < 5000; i++ {
		if i > 0 {
			b.WriteString(", ")
		}
		b.WriteString("(42, -1.5)")
	}
	ok := []string{
		b.String(),
		"SELECT * FROM orders WHERE id IN (" + strings.TrimSuffix(strings.Repeat("1,", 20000), ",") + ")",
		"SELECT * FROM t WHERE " + strings.TrimSuffix(strings.Repeat("a = 1 AND ", 3000), " AND "),
		"SELECT 'a' || 'b' || 'c' || 'd' || 'e'",
	}
	for _, sql := range ok {
		if _, _, err := p.Parse(sql); err != nil {
			t.Errorf("%.60s...: %v", sql, err)
		}
	}
}

func TestScanShapeAndLiterals(t *testing.T) {
	a, err := Scan("SELECT * FROM orders WHERE account_id IN (42) AND note = 'x''y' -- 7\n")
	if err != nil {
		t.Fatal(err)
	}
	b, _ := Scan("SELECT * FROM orders WHERE account_id IN (7) AND note = 'other' -- 7\n")
	c, _ := Scan("SELECT * FROM orders WHERE account_id IN (42, 7) AND note = 'x' -- 7\n")
	if a.Shape != b.Shape {
		t.Errorf("literal values changed the shape:\n%q\n%q", a.Shape, b.Shape)
	}
	if a.Shape == c.Shape {
		t.Errorf("IN (42) and IN (42, 7) share a shape")
	}
	if len(a.Lits) != 2 || a.Lits[0].Kind != LitInt || a.Lits[1].Kind != LitString {
		t.Fatalf("lits %+v", a.Lits)
	}
	sql := "SELECT * FROM orders WHERE account_id IN (42) AND note = 'x''y' -- 7\n"
	if v, ok := LitValue(sql, a.Lits[1]); !ok || v != "x'y" {
		t.Errorf("string value %q %v", v, ok)
	}
	var s *Scanned
	for _, raw := range []string{"E'42'", "$$42$$", "$q$42$q$", "0x2A", "1_000", "42.0", "4e1", "B'101'", "X'2A'", "U&'42'", "N'42'"} {
		var err error
		s, err = Scan("SELECT " + raw)
		if err != nil || len(s.Lits) != 1 || s.Lits[0].Kind != LitRaw {
			t.Errorf("%s: %+v %v", raw, s, err)
		}
	}
	// UESCAPE's character changes how the U& string decodes: never abstracted
	s, _ = Scan(`SELECT U&'d!0061t!+000061' UESCAPE '!'`)
	if len(s.Lits) != 2 || s.Lits[1].Kind != LitRaw {
		t.Errorf("uescape: %+v", s.Lits)
	}
	// string continuation is never abstracted
	s, _ = Scan("SELECT '4'\n'2'")
	if len(s.Lits) != 2 || s.Lits[0].Kind != LitRaw || s.Lits[1].Kind != LitRaw {
		t.Errorf("continuation: %+v", s.Lits)
	}
	// quotes and comments hide literals and semicolons
	s, _ = Scan(`SELECT "a 1", /* 2 /* 3 */ 4 */ 5 -- 6`)
	if len(s.Lits) != 1 || s.MaxParam != 0 {
		t.Errorf("comments: %+v", s.Lits)
	}
	s, _ = Scan("SELECT $1, $12, o1_0.x FROM t")
	if s.MaxParam != 12 || len(s.Lits) != 0 {
		t.Errorf("params: %+v", s)
	}
	if n := s.Normalize("SELECT $1, $12, o1_0.x FROM t"); n != "SELECT $1, $12, o1_0.x FROM t" {
		t.Errorf("normalize %q", n)
	}
	n, _ := Scan("SELECT 'a', 1, E'x' FROM t WHERE id = $1")
	if got := n.Normalize("SELECT 'a', 1, E'x' FROM t WHERE id = $1"); got != "SELECT $2, $3, $4 FROM t WHERE id = $1" {
		t.Errorf("normalize %q", got)
	}
}

func TestSplitScript(t *testing.T) {
	got := SplitScript("SELECT 1; SELECT ';' -- ;\n;\n\\d orders\nCREATE FUNCTION f() RETURNS int AS $$ SELECT 1; $$ LANGUAGE sql;\nSELECT (1;2);\n-- trailing")
	want := []string{"SELECT 1;", "SELECT ';' -- ;\n;", "CREATE FUNCTION f() RETURNS int AS $$ SELECT 1; $$ LANGUAGE sql;", "SELECT (1;2);"}
	if len(got) != len(want) {
		t.Fatalf("got %q", got)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("%d: got %q want %q", i, got[i], want[i])
		}
	}
}

// Inputs just under the screen's limits still go to pg_query: they must
// return (a summary or an error), never crash the process.
func TestJustUnderLimitsDoNotCrash(t *testing.T) {
	p := newTestParser(t)
	for _, sql := range []string{
		"SELECT " + strings.Repeat("- ", MaxExprDepth-20) + "1",
		"SELECT " + strings.Repeat("NOT ", MaxExprDepth-20) + "true",
		"SELECT 1" + strings.Repeat("+1", MaxExprDepth/2-20),
		"SELECT " + strings.Repeat("(", MaxDepth-5) + "1" + strings.Repeat(")", MaxDepth-5),
		"SELECT " + strings.Repeat("ARRAY[", MaxDepth-5) + "1" + strings.Repeat("]", MaxDepth-5),
		"SELECT 1" + strings.Repeat(" UNION SELECT 1", MaxChains-5),
	} {
		if _, _, err := p.Parse(sql); err != nil && errors.Is(err, ErrTooComplex) {
			t.Errorf("screen refused an input under its limits: %.40s... %v", sql, err)
		}
	}
}

// New refuses to run when RLIMIT_STACK is below MinStack.
func TestNewChecksStackLimit(t *testing.T) {
	var old syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_STACK, &old); err != nil {
		t.Fatal(err)
	}
	small := old
	small.Cur = 2 << 20
	if err := syscall.Setrlimit(syscall.RLIMIT_STACK, &small); err != nil {
		t.Skipf("cannot lower RLIMIT_STACK: %v", err)
	}
	_, err := New(1<<20, 1)
	if rerr := syscall.Setrlimit(syscall.RLIMIT_STACK, &old); rerr != nil {
		t.Fatal(rerr)
	}
	if err == nil || !strings.Contains(err.Error(), "stack limit") {
		t.Fatalf("New with a 2 MiB stack limit: %v", err)
	}
}
