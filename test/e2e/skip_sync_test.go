package e2e

import (
	"testing"

	"github.com/jackc/pgx/v5/pgproto3"

	"github.com/pgtenant/pgtenant/test/proxytest"
)

// After an error in an extended-protocol message PostgreSQL ignores every
// message up to Sync, simple Queries included. The proxy must match the
// replies that follow to the right messages: the Sync's ReadyForQuery is not
// the skipped Query's, and a later denial still reads as the denial (42501),
// not as the server's error for the proxy's injected query (42601).
func TestQuerySkippedAfterExtendedErrorKeepsRepliesMatched(t *testing.T) {
	env := proxytest.Start(t, proxytest.Options{Policy: true, Regions: []string{"eu-west"}})
	conn := dialRaw(t, env)
	fe, _ := rawLogin(t, conn)

	fe.Send(&pgproto3.Bind{PreparedStatement: "no_such_statement"})
	fe.Send(&pgproto3.Query{String: "SELECT 'skipped'"})
	fe.Send(&pgproto3.Query{String: "SELECT note FROM orders"}) // denied, and skipped
	fe.Send(&pgproto3.Sync{})
	if err := fe.Flush(); err != nil {
		t.Fatal(err)
	}
	var got []string
	for {
		m := rawReceive(t, fe)
		switch m := m.(type) {
		case *pgproto3.ErrorResponse:
			got = append(got, "E"+m.Code)
		case *pgproto3.DataRow:
			got = append(got, "D"+string(m.Values[0]))
		case *pgproto3.ReadyForQuery:
			got = append(got, "Z")
		}
		if _, ok := m.(*pgproto3.ReadyForQuery); ok {
			break
		}
	}
	if len(got) != 2 || got[0] != "E26000" {
		t.Fatalf("batch replies %v, want [E26000 Z]: PostgreSQL skips both Queries", got)
	}

	// The session is in step: a query answers with its own row, a denied
	// query with the denial.
	if rows, er := rawQuery(t, fe, "SELECT 'after'"); er != nil || len(rows) != 1 || rows[0] != "after" {
		t.Fatalf("query after the batch: %v, %v", rows, er)
	}
	if _, er := rawQuery(t, fe, "SELECT note FROM orders"); er == nil || er.Code != "42501" {
		t.Fatalf("denied query after the batch: %+v, want 42501", er)
	}
	if rows, er := rawQuery(t, fe, "SELECT 'still'"); er != nil || len(rows) != 1 || rows[0] != "still" {
		t.Fatalf("query after the denial: %v, %v", rows, er)
	}
}
