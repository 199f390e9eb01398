package audit

import (
	"context"
	"testing"

	"github.com/pgtenant/pgtenant/config"
)

// Awkward table names (array punctuation, quotes, backslashes, the word NULL)
// and nil vs empty tables survive the typed-array append exactly: the chain
// verifies, so every stored row re-hashes to what was hashed in Go.
func TestAppendRowsKeepsEveryFieldExactly(t *testing.T) {
	r, c := initRegion(t, "eu-west")
	regions := map[string]config.Region{"eu-west": r}
	ctx := testCtx(t)
	rec, err := NewRecorder(ctx, testAuditConfig(t, ModeStrict), regions, "test", nil)
	if err != nil {
		t.Fatal(err)
	}
	for i, tables := range [][]string{
		{"public.orders", `a,b`, `q"uote`, `back\slash`, "NULL", "{}", " spaced ", "ünïcode"},
		nil,
		{},
		{""},
	} {
		ev := stmt("42", "s", i)
		ev.Tables = tables
		ev.ClientAddr = "::1"
		if err := rec.Record(ctx, ev); err != nil {
			t.Fatal(err)
		}
	}
	if err := rec.Close(ctx); err != nil {
		t.Fatal(err)
	}
	if rep := mustVerify(t, regions, VerifyOptions{}); !rep.OK {
		t.Fatalf("chain written with append_rows does not verify: %+v", rep.Failures)
	}
	admin := adminConn(t, c, r)
	// An event with no tables (nil or empty) is recorded as NULL, as NewRow hashes it.
	if n := countRows(t, admin, `tables IS NULL AND chain_id = '42'`); n != 2 {
		t.Errorf("events without tables stored as NULL %d times, want 2", n)
	}
	if n := countRows(t, admin, `'' = ANY(tables)`); n != 1 {
		t.Errorf("an empty-string table name did not round-trip")
	}
	if n := countRows(t, admin, `$1 = ANY(tables)`, `q"uote`); n != 1 {
		t.Errorf("a quoted table name did not round-trip")
	}
}

// append_rows refuses rows that do not extend the chain head exactly, and
// ragged column arrays, so a buggy or hostile writer cannot fork a chain.
func TestAppendRowsRefusesForksAndRaggedColumns(t *testing.T) {
	r, c := initRegion(t, "eu-west")
	ctx := testCtx(t)
	svc := serviceConn(t, c, r)
	if _, err := svc.Exec(ctx, `SELECT * FROM pgtenant_audit.reserve('42', 'eu-west', $1, '{}')`, GenesisHash("eu-west", "42")); err != nil {
		t.Fatal(err)
	}
	row := func(seq int64, prev []byte) *Row {
		rw, err := NewRow(stmt("42", "s", int(seq)), "eu-west", "test", StatementNormalized)
		if err != nil {
			t.Fatal(err)
		}
		rw.Seal(seq, prev)
		return rw
	}
	genesis := GenesisHash("eu-west", "42")
	first := row(1, genesis)
	cases := map[string]struct {
		rows []*Row
		code string
	}{
		"seq gap":         {[]*Row{row(2, genesis)}, "40001"},
		"wrong prev hash": {[]*Row{row(1, make([]byte, 32))}, "40001"},
		"broken link":     {[]*Row{first, row(2, genesis)}, "40001"},
		"duplicate seq":   {[]*Row{first, row(1, first.EntryHash)}, "40001"},
	}
	for name, tc := range cases {
		var cols columns
		for _, rw := range tc.rows {
			cols.add(rw)
		}
		_, err := svc.Exec(ctx, appendRowsSQL, cols.args("42")...)
		if sqlState(err) != tc.code {
			t.Errorf("%s: %v, want SQLSTATE %s", name, err, tc.code)
		}
	}
	var cols columns
	cols.add(first)
	args := cols.args("42")
	args[4] = []string{"statement", "statement"} // kind has two entries, the rest one
	if _, err := svc.Exec(ctx, appendRowsSQL, args...); sqlState(err) != "22023" {
		t.Errorf("ragged columns: %v, want SQLSTATE 22023", err)
	}
	// The valid row still appends after all those refusals.
	var ok columns
	ok.add(first)
	var last int64
	if err := svc.QueryRow(context.Background(), appendRowsSQL, ok.args("42")...).Scan(&last); err != nil || last != 1 {
		t.Fatalf("valid append: seq %d, %v", last, err)
	}
}

func TestTextArrayLiteral(t *testing.T) {
	if textArrayLiteral(nil) != nil {
		t.Error("nil must be NULL")
	}
	for in, want := range map[string]string{
		"":     `{""}`,
		`a,b`:  `{"a,b"}`,
		`q"x`:  `{"q\"x"}`,
		`b\s`:  `{"b\\s"}`,
		"NULL": `{"NULL"}`,
	} {
		if got := *textArrayLiteral([]string{in}); got != want {
			t.Errorf("%q: %s, want %s", in, got, want)
		}
	}
	if got := *textArrayLiteral([]string{}); got != "{}" {
		t.Errorf("empty: %s", got)
	}
}
