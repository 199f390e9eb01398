package e2e

import (
	encbin "encoding/binary"
	"fmt"
	"strconv"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgproto3"

	"github.com/pgtenant/pgtenant/config"
	"github.com/pgtenant/pgtenant/test/proxytest"
)

// FuzzMirrorAgainstServer drives random sequences of PREPARE, DEALLOCATE,
// EXECUTE, Parse, Bind, Execute, Describe and Close (of statements, portals
// and neither), Sync, Flush, errors and transactions
// through the real proxy and policy, as tenant 42, against a real
// PostgreSQL with RLS off (so the policy is the only layer), pipelined
// without waiting for replies except at explicit sync points. Whatever the
// sequence, no row of another tenant may be read (every statement returns
// account_id first) and tenant 7's rows must be unchanged; the session must
// never hang. Every script runs in both pool modes (in transaction mode a
// hang would also hold a pooled backend). Seeds under
// testdata/fuzz/FuzzMirrorAgainstServer hold the known bypasses.
func FuzzMirrorAgainstServer(f *testing.F) {
	session, c := rlsOffEnvPool(f, config.PoolSession)
	transaction, _ := rlsOffEnvPool(f, config.PoolTransaction)
	for _, seed := range mirrorFuzzSeeds {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, script []byte) {
		if len(script) > 3*64 {
			script = script[:3*64]
		}
		for _, env := range []*proxytest.Env{session, transaction} {
			before := tenantRows(t, c, 7)
			w := newWire(t, env, "42")
			m := &mirrorFuzz{t: t, w: w}
			for i := 0; i+2 < len(script); i += 3 {
				m.op(script[i], script[i+1], script[i+2])
			}
			m.syncPoint()
			if after := tenantRows(t, c, 7); after != before {
				t.Fatalf("tenant 7's rows changed (pool.mode %s)", env.Config.Pool.Mode)
			}
		}
	})
}

// mirrorFuzzSeeds encode the known attacks (3 bytes per operation: op,
// operand, operand; see mirrorFuzz.op).
var mirrorFuzzSeeds = [][]byte{
	// PREPARE a (tenant $1); SELECT 1/0; DEALLOCATE a; PREPARE a (decoy); EXECUTE a(7)
	{0, 1, 0, 14, 0, 0, 4, 1, 1, 3, 1, 1},
	// the same pipelined without a sync point
	{0, 1, 0, 4, 1, 1, 3, 1, 1},
	// DEALLOCATE ALL skipped (operand 131: DEALLOCATE ALL, decoy)
	{0, 1, 0, 14, 0, 0, 4, 1, 131, 14, 0, 0, 3, 1, 1},
	// Parse "", error, 40 skipped Parses of a decoy, Bind "" 7
	append(append([]byte{5, 0, 0, 10, 0, 0, 11, 0, 0}, repeatOp([]byte{5, 0, 1}, 40)...), 10, 0, 0, 6, 0, 1),
	// Parse+Bind of DEALLOCATE a without Execute, PREPARE a decoy (42P05), EXECUTE a(7)
	{0, 1, 2, 12, 1, 0, 10, 0, 0, 0, 1, 3, 3, 1, 1},
	// unnamed statement, binary tenant value of an inferred numeric type
	{5, 0, 4, 7, 0, 0, 10, 0, 0, 9, 0, 0, 10, 0, 0, 7, 0, 0},
	// transaction, Close skipped after an error, re-Parse, Bind 7
	{15, 0, 0, 5, 2, 0, 10, 0, 0, 11, 0, 0, 8, 2, 0, 5, 2, 1, 10, 0, 0, 6, 2, 1, 15, 1, 0},
	// Describe of a missing portal, then PREPARE a (skipped until Sync), EXECUTE a(7):
	// the check must not wait for the skipped PREPARE (a hang, holding the backend)
	{9, 1, 3, 0, 1, 0, 3, 1, 1},
	// the same after a Close of neither kind, and after an Execute of a missing portal
	{8, 1, 2, 0, 1, 0, 3, 1, 1},
	{11, 0, 1, 0, 1, 0, 3, 1, 1},
}

func repeatOp(op []byte, n int) []byte {
	var out []byte
	for range n {
		out = append(out, op...)
	}
	return out
}

// mirrorFuzz is one fuzzed session.
type mirrorFuzz struct {
	t       *testing.T
	w       *wire
	markers int
	pending bool // messages sent since the last sync point
}

var (
	fuzzNames = []string{"", "a", "b"}
	fuzzStmts = []string{scopedSelect, decoySelect, scopedUpdate, decoyUpdate,
		"SELECT account_id, note, $1::numeric FROM orders WHERE account_id = $1"}
	fuzzArgs = []string{"42", "7", "0"}
)

// sqlName is a name usable in SQL PREPARE/EXECUTE/DEALLOCATE.
func sqlName(b byte) string {
	if n := fuzzNames[int(b)%len(fuzzNames)]; n != "" {
		return n
	}
	return "c"
}

func (m *mirrorFuzz) send(msgs ...pgproto3.FrontendMessage) {
	for _, msg := range msgs {
		m.w.fe.Send(msg)
	}
	m.pending = true
}

func (m *mirrorFuzz) op(op, x, y byte) {
	name := fuzzNames[int(x)%len(fuzzNames)]
	stmt := fuzzStmts[int(y)%len(fuzzStmts)]
	arg := fuzzArgs[int(y)%len(fuzzArgs)]
	q := func(sql string) { m.send(&pgproto3.Query{String: sql}) }
	switch op % 16 {
	case 0:
		q("PREPARE " + sqlName(x) + " AS " + stmt)
	case 1:
		q("DEALLOCATE " + sqlName(x))
	case 2:
		q("DEALLOCATE ALL")
	case 3:
		q("EXECUTE " + sqlName(x) + "(" + arg + ")")
	case 4:
		dealloc := "DEALLOCATE " + sqlName(x)
		if y >= 128 {
			dealloc = "DEALLOCATE ALL"
		}
		q("SELECT 1/0; " + dealloc + "; PREPARE " + sqlName(x) + " AS " + stmt)
	case 5:
		m.send(&pgproto3.Parse{Name: name, Query: stmt})
	case 6:
		m.send(&pgproto3.Bind{PreparedStatement: name, Parameters: [][]byte{[]byte(arg)}}, &pgproto3.Execute{})
	case 7:
		n, _ := strconv.ParseInt(arg, 10, 64)
		v := encbin.BigEndian.AppendUint64(nil, uint64(n))
		m.send(&pgproto3.Bind{PreparedStatement: name, ParameterFormatCodes: []int16{1}, Parameters: [][]byte{v}}, &pgproto3.Execute{})
	case 8:
		// a portal's Close, or one of neither kind (which fails), may
		// end the batch like any extended message
		m.send(&pgproto3.Close{ObjectType: []byte{'S', 'S', 'X', 'P'}[y%4], Name: name})
	case 9:
		// a Describe of a portal fails when it does not exist
		m.send(&pgproto3.Describe{ObjectType: []byte{'S', 'S', 'X', 'P'}[y%4], Name: name})
	case 10:
		if y%4 == 3 {
			m.send(&pgproto3.Flush{})
		} else {
			m.send(&pgproto3.Sync{})
		}
	case 11:
		if y%2 == 1 {
			m.send(&pgproto3.Execute{Portal: "no_such_portal"})
		} else {
			m.send(&pgproto3.Bind{PreparedStatement: "no_such_statement"})
		}
	case 12:
		msgs := []pgproto3.FrontendMessage{&pgproto3.Parse{Query: "DEALLOCATE " + sqlName(x)}, &pgproto3.Bind{}}
		if y%2 == 1 {
			msgs = append(msgs, &pgproto3.Execute{})
		}
		m.send(msgs...)
	case 13:
		q("EXPLAIN EXECUTE " + sqlName(x) + "(" + arg + ")")
	case 14:
		m.syncPoint()
	case 15:
		if x%2 == 0 {
			q("BEGIN")
		} else {
			q("ROLLBACK")
		}
	}
}

// syncPoint ends any batch and transaction, then reads every reply up to a
// marker query's.
func (m *mirrorFuzz) syncPoint() {
	m.t.Helper()
	if !m.pending {
		return
	}
	m.markers++
	marker := fmt.Sprintf("end-marker-%d", m.markers)
	m.send(&pgproto3.Sync{}, &pgproto3.Query{String: "ROLLBACK; SELECT '" + marker + "'"})
	if err := m.w.fe.Flush(); err != nil {
		m.t.Fatal(err)
	}
	m.pending = false
	deadline := time.Now().Add(30 * time.Second)
	for {
		if time.Now().After(deadline) {
			m.t.Fatal("no marker: the session hangs")
		}
		msg, err := m.w.fe.Receive()
		if err != nil {
			m.t.Fatalf("receive: %v", err)
		}
		row, ok := msg.(*pgproto3.DataRow)
		if !ok || len(row.Values) == 0 {
			continue
		}
		first := string(row.Values[0])
		if first == marker {
			break
		}
		if _, err := strconv.ParseInt(first, 10, 64); err == nil && first != "42" {
			m.t.Fatalf("read a row of account %s", first)
		}
	}
	for {
		msg, err := m.w.fe.Receive()
		if err != nil {
			m.t.Fatalf("receive: %v", err)
		}
		if _, ok := msg.(*pgproto3.ReadyForQuery); ok {
			return
		}
	}
}
