package policy

import (
	"testing"

	"github.com/pgtenant/pgtenant/tenancy"
)

// resolveAll answers every change of d with o, as the proxy does with the
// server's replies.
func resolveAll(s *Session, d tenancy.Decision, o tenancy.Outcome) {
	for _, c := range d.Changes {
		s.Resolve(c.ID, o, nil)
	}
}

func mustAllow(t *testing.T, what string, d tenancy.Decision) tenancy.Decision {
	t.Helper()
	if !d.Allow || d.Wait {
		t.Fatalf("%s: want allowed, got %+v", what, d)
	}
	return d
}

func mustDeny(t *testing.T, what string, d tenancy.Decision) {
	t.Helper()
	if d.Allow || d.Wait {
		t.Fatalf("%s: want denied, got %+v", what, d)
	}
}

// A Query stops at its first error: the DEALLOCATE and PREPARE after it
// never ran, so the mirror keeps the statement the server holds.
func TestMirrorQueryStoppedByAnError(t *testing.T) {
	e := newTestEngine(t)
	s := session(t, e, "42")
	d := mustAllow(t, "prepare", s.CheckQuery("PREPARE p AS SELECT note FROM orders WHERE account_id = $1"))
	resolveAll(s, d, tenancy.Confirmed)
	s.Sent('S')
	d = mustAllow(t, "query", s.CheckQuery("SELECT 1/0; DEALLOCATE p; PREPARE p AS SELECT note FROM orders WHERE account_id = 42 AND id = $1"))
	if len(d.Changes) != 2 || d.Changes[0].Stmt != 1 || d.Changes[0].Tag != "DEALLOCATE" || d.Changes[1].Stmt != 2 || d.Changes[1].Tag != "PREPARE" {
		t.Fatalf("changes %+v", d.Changes)
	}
	s.Sent('S')
	// the later EXECUTE depends on them: wait for the server
	if w := s.CheckQuery("EXECUTE p(7)"); !w.Wait {
		t.Fatalf("EXECUTE before the outcome: %+v", w)
	}
	resolveAll(s, d, tenancy.Skipped) // SELECT 1/0 failed
	mustDeny(t, "EXECUTE p(7) against the server's p", s.CheckQuery("EXECUTE p(7)"))
	mustAllow(t, "EXECUTE p(42)", s.CheckQuery("EXECUTE p(42)"))
	// DEALLOCATE ALL skipped the same way
	d = mustAllow(t, "dealloc all", s.CheckQuery("SELECT 1/0; DEALLOCATE ALL; PREPARE p AS SELECT 1 WHERE $1::int8 > 0"))
	s.Sent('S')
	resolveAll(s, d, tenancy.Skipped)
	mustDeny(t, "EXECUTE p(7) after skipped DEALLOCATE ALL", s.CheckQuery("EXECUTE p(7)"))
	mustDeny(t, "EXPLAIN EXECUTE p(7)", s.CheckQuery("EXPLAIN EXECUTE p(7)"))
}

// Within one Query each statement sees the earlier ones' changes.
func TestMirrorQueryStatementsInOrder(t *testing.T) {
	e := newTestEngine(t)
	s := session(t, e, "42")
	mustAllow(t, "prepare+execute", s.CheckQuery("PREPARE a AS SELECT note FROM orders WHERE account_id = $1; EXECUTE a(42)"))
	mustDeny(t, "prepare+execute 7", s.CheckQuery("PREPARE b AS SELECT note FROM orders WHERE account_id = $1; EXECUTE b(7)"))
	mustDeny(t, "deallocate then execute", s.CheckQuery("DEALLOCATE a; EXECUTE a(42)"))
}

// A PREPARE the server refuses (42P05: the name exists) changes nothing.
func TestMirrorRefusedPrepare(t *testing.T) {
	e := newTestEngine(t)
	s := session(t, e, "42")
	d := mustAllow(t, "prepare", s.CheckQuery("PREPARE p AS SELECT note FROM orders WHERE account_id = $1"))
	resolveAll(s, d, tenancy.Confirmed)
	s.Sent('S')
	d = mustAllow(t, "prepare again", s.CheckQuery("PREPARE p AS SELECT note FROM orders WHERE id = $1 AND account_id = 42"))
	s.Sent('S')
	resolveAll(s, d, tenancy.Skipped) // 42P05
	mustDeny(t, "EXECUTE p(7)", s.CheckQuery("EXECUTE p(7)"))
}

// A DEALLOCATE Parsed and Bound but never executed changes nothing; while
// its portal may still run, the name is unknown.
func TestMirrorBoundDeallocateNotExecuted(t *testing.T) {
	e := newTestEngine(t)
	s := session(t, e, "42")
	resolveAll(s, mustAllow(t, "prepare", s.CheckQuery("PREPARE p AS SELECT note FROM orders WHERE account_id = $1")), tenancy.Confirmed)
	s.Sent('S')
	pd := mustAllow(t, "parse", s.CheckParse("d", "DEALLOCATE p", nil))
	resolveAll(s, pd, tenancy.Confirmed)
	bd := mustAllow(t, "bind", s.CheckBind("d", nil, nil))
	if len(bd.Changes) != 1 || !bd.Changes[0].Portal || bd.Changes[0].Tag != "DEALLOCATE" {
		t.Fatalf("bind changes %+v", bd.Changes)
	}
	s.Sent('S')
	if d := s.CheckQuery("EXECUTE p(42)"); d.Allow || d.Reason != "prepare_unknown" {
		t.Fatalf("EXECUTE while the portal may run: %+v", d)
	}
	resolveAll(s, bd, tenancy.Skipped) // the portal was dropped unexecuted
	mustDeny(t, "EXECUTE p(7)", s.CheckQuery("EXECUTE p(7)"))
	mustAllow(t, "EXECUTE p(42)", s.CheckQuery("EXECUTE p(42)"))
}

// Parses the server skipped leave its statement, however many there are.
func TestMirrorManySkippedParses(t *testing.T) {
	e := newTestEngine(t)
	s := session(t, e, "42")
	resolveAll(s, mustAllow(t, "parse", s.CheckParse("s", "SELECT note FROM orders WHERE account_id = $1", nil)), tenancy.Confirmed)
	s.Sent('S')
	var ds []tenancy.Decision
	for i := 0; i < 100; i++ {
		ds = append(ds, mustAllow(t, "parse", s.CheckParse("s", "SELECT note FROM orders WHERE id = $1 AND account_id = 42", nil)))
	}
	s.Sent('S')
	if d := s.CheckBind("s", nil, [][]byte{[]byte("7")}); !d.Wait {
		t.Fatalf("bind before the outcome: %+v", d)
	}
	for _, d := range ds {
		resolveAll(s, d, tenancy.Skipped)
	}
	mustDeny(t, "bind 7", s.CheckBind("s", nil, [][]byte{[]byte("7")}))
	b := mustAllow(t, "bind 42", s.CheckBind("s", nil, [][]byte{[]byte("42")}))
	if b.Text != "SELECT note FROM orders WHERE account_id = $1" || b.Statement == "" {
		t.Fatalf("bind records %q / %q, want the server's statement", b.Text, b.Statement)
	}
	if len(s.inflight) != 0 {
		t.Fatalf("%d changes left in flight", len(s.inflight))
	}
}

// A reply that does not say whether a change happened makes the name unknown
// until the server confirms a new statement under it.
func TestMirrorUnknownOutcome(t *testing.T) {
	e := newTestEngine(t)
	s := session(t, e, "42")
	d := mustAllow(t, "prepare", s.CheckQuery("PREPARE p AS SELECT note FROM orders WHERE account_id = $1"))
	resolveAll(s, d, tenancy.Unknown)
	mustDeny(t, "EXECUTE p(42)", s.CheckQuery("EXECUTE p(42)"))
	d = mustAllow(t, "deallocate", s.CheckQuery("DEALLOCATE p"))
	resolveAll(s, d, tenancy.Confirmed)
	mustDeny(t, "EXECUTE p(42) after DEALLOCATE", s.CheckQuery("EXECUTE p(42)"))
	d = mustAllow(t, "prepare", s.CheckQuery("PREPARE p AS SELECT note FROM orders WHERE account_id = $1"))
	resolveAll(s, d, tenancy.Confirmed)
	mustAllow(t, "EXECUTE p(42)", s.CheckQuery("EXECUTE p(42)"))
	// an unexpected PREPARE/DEALLOCATE tag: every named statement is unknown
	s.Resolve(0, tenancy.Unknown, nil)
	mustDeny(t, "EXECUTE p(42) when lost", s.CheckQuery("EXECUTE p(42)"))
	resolveAll(s, mustAllow(t, "parse", s.CheckParse("n", "SELECT note FROM orders WHERE account_id = $1", nil)), tenancy.Confirmed)
	mustAllow(t, "bind relearned", s.CheckBind("n", nil, [][]byte{[]byte("42")}))
}

// Statement and cursor names starting with pgtenant are pgtenant's.
func TestMirrorReservedNames(t *testing.T) {
	e := newTestEngine(t)
	s := session(t, e, "42")
	for _, q := range []string{
		`PREPARE "pgtenant.denied" AS SELECT 1`,
		`PREPARE pgtenant_x AS SELECT 1`,
		`PREPARE PGTENANTx AS SELECT 1`, // folded to pgtenantx
		`SELECT 1; PREPARE pgtenant AS SELECT 1`,
		`DECLARE pgtenant_c CURSOR FOR SELECT 1`,
	} {
		if d := s.CheckQuery(q); d.Allow || d.SQLState != "42501" || d.Reason != "reserved_name" {
			t.Errorf("%s: %+v", q, d)
		}
	}
	// a quoted name in another case is another name for PostgreSQL
	mustAllow(t, "quoted upper case", s.CheckQuery(`PREPARE "PGTENANT.x" AS SELECT 1`))
	if d := s.CheckParse("pgtenant.denied", "SELECT 1", nil); d.Allow || d.SQLState != "42501" {
		t.Errorf("Parse of a reserved name: %+v", d)
	}
	if d := s.CheckParse("", "PREPARE pgtenant_y AS SELECT 1", nil); d.Allow {
		t.Errorf("Parse of PREPARE of a reserved name: %+v", d)
	}
}

// Binary values of undeclared parameters are read by the type the server's
// ParameterDescription reports.
func TestMirrorDescribedParameterTypes(t *testing.T) {
	e := newTestEngine(t)
	s := session(t, e, "42")
	p := mustAllow(t, "parse", s.CheckParse("s", "SELECT note FROM orders WHERE account_id = $1", nil))
	desc := s.DescribeStatement("s")
	resolveAll(s, p, tenancy.Confirmed)
	mustDeny(t, "binary before the description", s.CheckBind("s", []int16{1}, [][]byte{be(42, 8)}))
	s.Resolve(desc.ID, tenancy.Confirmed, []uint32{oidInt8})
	mustAllow(t, "binary int8 42", s.CheckBind("s", []int16{1}, [][]byte{be(42, 8)}))
	mustDeny(t, "binary int8 7", s.CheckBind("s", []int16{1}, [][]byte{be(7, 8)}))
	// a type that cannot carry the tenant value: the bytes are not read as one
	p = mustAllow(t, "parse", s.CheckParse("n", "SELECT note FROM orders WHERE account_id = $1", nil))
	desc = s.DescribeStatement("n")
	resolveAll(s, p, tenancy.Confirmed)
	s.Resolve(desc.ID, tenancy.Confirmed, []uint32{1700})
	mustDeny(t, "binary numeric", s.CheckBind("n", []int16{1}, [][]byte{be(42, 8)}))
}

// A Query after an extended message of an unfinished batch may be skipped
// silently until the client's next Sync: a later check cannot wait for it
// (the server will not answer before that Sync), so the name is unknown.
func TestMirrorNoWaitOnAQuerySkippedUntilSync(t *testing.T) {
	e := newTestEngine(t)
	s := session(t, e, "42")
	s.DescribeStatement("a") // may fail: the server then skips to Sync
	mustAllow(t, "prepare", s.CheckQuery("PREPARE a AS SELECT note FROM orders WHERE account_id = 42 AND id > $1"))
	s.Sent('Q')
	if d := s.CheckQuery("EXECUTE a(7)"); d.Wait || d.Allow {
		t.Fatalf("EXECUTE depending on a Query that may be skipped until Sync: %+v", d)
	}
	s.Sent('Q')
	s.Sent('S') // now the server answers everything before
	if d := s.CheckQuery("EXECUTE a(7)"); !d.Wait {
		t.Fatalf("after a Sync the check must wait: %+v", d)
	}
	// every extended message may fail, a portal's Describe or Close and an
	// Execute (which the proxy reports with Sent) as much as a statement's
	for _, kind := range []byte{'D', 'C', 'E'} {
		s := session(t, e, "42")
		s.Sent(kind)
		mustAllow(t, "prepare", s.CheckQuery("PREPARE a AS SELECT note FROM orders WHERE account_id = 42 AND id > $1"))
		s.Sent('Q')
		if d := s.CheckParse("", "EXECUTE a(7)", nil); d.Wait || d.Allow {
			t.Fatalf("Parse of EXECUTE depending on a Query sent after %q, before a Sync: %+v", kind, d)
		}
	}
	// a Query with COPY waits for the client's data: never waited for
	s2 := session(t, e, "42")
	mustAllow(t, "copy+prepare", s2.CheckQuery("COPY (SELECT 1) TO STDOUT; PREPARE b AS SELECT 1"))
	s2.Sent('Q')
	s2.Sent('S')
	if d := s2.CheckQuery("EXECUTE b"); d.Wait || d.Allow {
		t.Fatalf("EXECUTE depending on a Query with COPY: %+v", d)
	}
}

// BenchmarkParseBindCycle: one extended-protocol statement as pgx's exec
// mode sends it, with the mirror's bookkeeping (Parse change, its
// confirmation, Bind, Sync).
func BenchmarkParseBindCycle(b *testing.B) {
	e := newTestEngine(b)
	s := session(b, e, "42")
	vals := [][]byte{[]byte("42"), []byte("7")}
	const q = "SELECT * FROM orders WHERE account_id = $1 AND id = $2"
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		p := s.CheckParse("", q, nil)
		if !p.Allow {
			b.Fatal(p.Message)
		}
		if d := s.CheckBind("", nil, vals); !d.Allow {
			b.Fatal(d.Message)
		}
		s.Resolve(p.Changes[0].ID, tenancy.Confirmed, nil)
		s.Sent('E')
		s.Sent('S')
	}
}

// A Parse of this batch decides what a later Bind of the batch binds,
// whatever earlier batches left unresolved or unknown.
func TestMirrorThisBatchDecides(t *testing.T) {
	e := newTestEngine(t)
	s := session(t, e, "42")
	d := mustAllow(t, "prepare", s.CheckQuery("PREPARE a AS SELECT note FROM orders WHERE account_id = $1"))
	resolveAll(s, d, tenancy.Unknown)
	s.Sent('Q')
	p := mustAllow(t, "parse unnamed", s.CheckParse("", "SELECT note FROM orders WHERE account_id = 42 AND id > $1", nil))
	s.Sent('S')
	// the unnamed Parse is unresolved, but a new Parse in this batch decides
	mustAllow(t, "parse again", s.CheckParse("", "SELECT note FROM orders WHERE account_id = $1", nil))
	mustDeny(t, "bind 7", s.CheckBind("", nil, [][]byte{[]byte("7")}))
	mustAllow(t, "bind 42", s.CheckBind("", nil, [][]byte{[]byte("42")}))
	resolveAll(s, p, tenancy.Confirmed)
	// a DEALLOCATE of this batch decides for an unknown name too
	if d := s.CheckQuery("DEALLOCATE a; EXECUTE a(42)"); d.Allow || d.Reason != "prepare" {
		t.Fatalf("EXECUTE after a DEALLOCATE of the same Query: %+v", d)
	}
	if d := s.CheckQuery("EXECUTE a(42)"); d.Allow || d.Reason != "prepare_unknown" {
		t.Fatalf("EXECUTE of an unknown name: %+v", d)
	}
	mustAllow(t, "prepare+execute", s.CheckQuery("DEALLOCATE a; PREPARE a AS SELECT note FROM orders WHERE account_id = $1; EXECUTE a(42)"))
}
