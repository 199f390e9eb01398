package policy

import (
	"fmt"
	"strings"
	"sync"
	"testing"

	"github.com/pgtenant/pgtenant/config"
	"github.com/pgtenant/pgtenant/parser"
)

var (
	shapeOnce   sync.Once
	shapeEngine *Engine
)

// FuzzShapeSound checks the soundness condition of the analysis cache: two
// texts with the same shape (differing only in abstracted literals) get the
// same tenant-independent analysis, unless the analysis pinned the literal
// text it read (fixed literals) or refused to be cached.
func FuzzShapeSound(f *testing.F) {
	for _, r := range readCorpus(f, "testdata/tenancy.tsv") {
		f.Add(r.sql)
	}
	for _, c := range ruleCases {
		f.Add(c.sql)
	}
	for _, c := range moreCases {
		f.Add(c.sql)
	}
	f.Add("SELECT * FROM orders WHERE account_id = 3000000000")
	f.Add("SELECT * FROM orders WHERE account_id = 99999999999999999999999")
	f.Fuzz(func(t *testing.T, sql string) {
		shapeOnce.Do(func() { shapeEngine = newTestEngine(t, func(p *config.Policy) { p.CacheEntries = 0 }) })
		e := shapeEngine
		sc, err := e.parser.Guard(sql)
		if err != nil {
			return
		}
		variant := rewriteLiterals(sql, sc)
		sc2, err := e.parser.Guard(variant)
		if err != nil || sc2.Shape != sc.Shape {
			t.Fatalf("variant changed the shape: %q -> %q (%v)", sql, variant, err)
		}
		cat := e.catalog("eu-west")
		a1 := e.analyzeScanned(cat, sql, sc)
		a2 := e.analyzeScanned(cat, variant, sc2)
		if a1.noCache || len(a1.fixed) > 0 {
			return
		}
		if d1, d2 := describe(a1), describe(a2); d1 != d2 {
			t.Fatalf("same shape, different analyses:\n%q\n%s\n%q\n%s", sql, d1, variant, d2)
		}
	})
}

// rewriteLiterals replaces every abstracted literal by another value of its kind.
func rewriteLiterals(sql string, sc *parser.Scanned) string {
	var b strings.Builder
	last := 0
	for _, l := range sc.Lits {
		switch l.Kind {
		case parser.LitInt:
			b.WriteString(sql[last:l.Start])
			b.WriteString("7")
		case parser.LitString:
			b.WriteString(sql[last:l.Start])
			b.WriteString("'v'")
		default:
			continue
		}
		last = l.End
	}
	b.WriteString(sql[last:])
	return b.String()
}

func describe(an *analysis) string {
	var b strings.Builder
	if an.deny != nil {
		fmt.Fprintf(&b, "deny:%s;", an.deny.Reason)
	}
	for _, st := range an.stmts {
		describeStmt(&b, st)
	}
	return b.String()
}

func describeStmt(b *strings.Builder, st *StmtAnalysis) {
	if st == nil {
		return
	}
	fmt.Fprintf(b, "[kind=%d name=%s all=%v", st.Kind, st.Name, st.All)
	if st.Deny != nil {
		fmt.Fprintf(b, " deny=%s", st.Deny.Reason)
	}
	for _, r := range st.Reqs {
		fmt.Fprintf(b, " req(%s:%s)", r.Table, r.F.String())
	}
	fmt.Fprintf(b, " args=%v types=%v tables=%v", st.ExecArgs, st.ParamTypes, st.Tables)
	describeStmt(b, st.Prepared)
	describeStmt(b, st.Inner)
	b.WriteString("]")
}
