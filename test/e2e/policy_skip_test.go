package e2e

import (
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgproto3"

	"github.com/pgtenant/pgtenant/test/proxytest"
)

// receiveUntilReady reads backend messages until ReadyForQuery and returns
// the SQLSTATEs of the errors seen.
func receiveUntilReady(t *testing.T, fe *pgproto3.Frontend) []string {
	t.Helper()
	var codes []string
	for {
		msg, err := fe.Receive()
		if err != nil {
			t.Fatalf("receive: %v", err)
		}
		switch m := msg.(type) {
		case *pgproto3.ErrorResponse:
			codes = append(codes, m.Code)
		case *pgproto3.ReadyForQuery:
			return codes
		}
	}
}

// When PostgreSQL skips a Parse (it followed an error in the same batch),
// it keeps the statement it had under that name; Binds in later batches must
// be checked against that statement, not against the skipped text.
func TestSkippedParseKeepsTheServersStatementChecked(t *testing.T) {
	env := proxytest.Start(t, proxytest.Options{Policy: true})
	conn := connect(t, env.DSN(t, "42", "eu-west"))
	pc := conn.PgConn()
	fe := pc.Frontend()
	_ = pc.Conn().SetDeadline(time.Now().Add(20 * time.Second))
	send := func(msgs ...pgproto3.FrontendMessage) {
		for _, m := range msgs {
			fe.Send(m)
		}
		if err := fe.Flush(); err != nil {
			t.Fatal(err)
		}
	}
	text := []int16{0}
	// Batch 1: the server holds this unnamed statement; $1 must be the tenant.
	send(&pgproto3.Parse{Query: "SELECT note FROM orders WHERE account_id = $1 AND id > $2"}, &pgproto3.Sync{})
	if codes := receiveUntilReady(t, fe); len(codes) != 0 {
		t.Fatalf("batch 1: %v", codes)
	}
	// Batch 2: a failing Bind, then a Parse the server skips. Here $2 would
	// be the tenant.
	send(&pgproto3.Bind{PreparedStatement: "no_such_statement"},
		&pgproto3.Parse{Query: "SELECT note FROM orders WHERE id > $1 AND account_id = $2"},
		&pgproto3.Sync{})
	if codes := receiveUntilReady(t, fe); len(codes) != 1 || codes[0] != "26000" {
		t.Fatalf("batch 2: errors %v, want the server's 26000 only", codes)
	}
	// Batch 3: $1 = 7 against the server's statement is another tenant.
	send(&pgproto3.Bind{ParameterFormatCodes: text, Parameters: [][]byte{[]byte("7"), []byte("42")}},
		&pgproto3.Execute{}, &pgproto3.Sync{})
	if codes := receiveUntilReady(t, fe); len(codes) != 1 || codes[0] != "42501" {
		t.Fatalf("bind of the server's statement with another tenant's id: errors %v, want 42501", codes)
	}
	// And the statement stays usable for the caller's own tenant.
	send(&pgproto3.Bind{ParameterFormatCodes: text, Parameters: [][]byte{[]byte("42"), []byte("0")}},
		&pgproto3.Execute{}, &pgproto3.Sync{})
	if codes := receiveUntilReady(t, fe); len(codes) != 0 {
		t.Fatalf("bind for the caller's tenant: %v", codes)
	}
}
