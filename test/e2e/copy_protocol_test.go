package e2e

import (
	"context"
	encbin "encoding/binary"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgproto3"

	"github.com/pgtenant/pgtenant/config"
	"github.com/pgtenant/pgtenant/test/proxytest"
)

// COPY ... FROM STDIN's sub-protocol, sent raw against a cluster with RLS
// off, so pgtenant's row check is all that stands between tenant 42 and
// tenant 7's rows. While the server is in COPY it ignores Sync and Flush and
// fails the COPY on any other message; a COPY that fails before it starts
// leaves the server reading messages as usual. pgtenant must follow the
// server in every case: a Sync or Flush inside the COPY must not end the
// row check, and pipelined messages must be answered in order.
func TestCopyFromStdinProtocolEdges(t *testing.T) {
	for _, mode := range []string{config.PoolSession, config.PoolTransaction} {
		t.Run(mode, func(t *testing.T) { testCopyFromStdinProtocolEdges(t, mode) })
	}
}

func testCopyFromStdinProtocolEdges(t *testing.T, poolMode string) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	c := oracleCluster(t, ctx, "copy-protocol", false)
	env := proxytest.Start(t, rewriteOptions(c, func(cfg *config.Config) { cfg.Pool.Mode = poolMode }))
	super := connect(t, c.SuperuserDSN(c.Database))
	token := proxytest.Token(t, "42", "eu-west", 0)
	base := env.Server.ActiveClients()
	enc := func(ms ...pgproto3.FrontendMessage) []byte {
		var b []byte
		for _, m := range ms {
			b, _ = m.Encode(b)
		}
		return b
	}
	const copySQL = "COPY customers (account_id, name) FROM STDIN"
	copyQ := &pgproto3.Query{String: copySQL}
	row := func(name string) *pgproto3.CopyData { return &pgproto3.CopyData{Data: []byte("7\t" + name + "\n")} }
	cases := []struct {
		name   string
		stream []byte
		// want is the reply's message types (ErrorResponse as E:SQLSTATE),
		// in order; the exchange ends with the proxy closing or going quiet.
		want string
	}{
		{"sync inside the COPY", enc(copyQ, &pgproto3.Sync{}, row("edge-sync"), &pgproto3.CopyDone{}, &pgproto3.Query{String: "SELECT 1"}),
			"G E:42501 Z T D C Z"},
		{"flush inside the COPY", enc(copyQ, &pgproto3.Flush{}, row("edge-flush"), &pgproto3.CopyDone{}, &pgproto3.Query{String: "SELECT 1"}),
			"G E:42501 Z T D C Z"},
		{"query inside the COPY", enc(copyQ, &pgproto3.Query{String: "SELECT 1"}, row("edge-query"), &pgproto3.CopyDone{}),
			"G E:08P01!"},
		{"parse inside the COPY", enc(copyQ, &pgproto3.Parse{Query: "SELECT 1"}, row("edge-parse"), &pgproto3.CopyDone{}, &pgproto3.Sync{}),
			"G E:08P01!"},
		// the client leaves while the server waits for its data: the
		// session ends (in transaction mode it must not wait for the
		// COPY's end, holding a pooled backend)
		{"terminate inside the COPY", enc(copyQ, &pgproto3.CopyData{Data: []byte("42\tedge-terminate\n")}, &pgproto3.Terminate{}), "G"},
		{"own rows, then a Sync after CopyDone", enc(copyQ, &pgproto3.CopyData{Data: []byte("42\tedge-own\n")}, &pgproto3.CopyDone{}, &pgproto3.Sync{}, &pgproto3.Query{String: "SELECT 1"}),
			"G C Z Z T D C Z"},
		// the server fails the COPY on a row pgtenant let through (an extra
		// column): it reads messages as usual again, ignoring the COPY's
		// rest, so the Sync after it is answered
		{"a COPY the server fails midway", enc(copyQ, &pgproto3.CopyData{Data: []byte("42\tedge-extra\tcolumn\n")}, &pgproto3.CopyData{Data: []byte("42\tedge-after\n")}, &pgproto3.CopyDone{}, &pgproto3.Sync{}, &pgproto3.Query{String: "SELECT 1"}),
			"G E:22P04 Z Z T D C Z"},
		// after extended messages not yet synced: the server runs the COPY
		// when they succeeded, and skips it up to the Sync when one failed
		{"a COPY after an unsynced Parse", enc(&pgproto3.Parse{Query: "SELECT 1"}, copyQ, row("edge-unsynced"), &pgproto3.CopyDone{}, &pgproto3.Sync{}, &pgproto3.Query{String: "SELECT 1"}),
			"1 G E:42501 Z Z T D C Z"},
		{"a COPY after a failed Bind and a Sync", enc(&pgproto3.Bind{PreparedStatement: "missing"}, &pgproto3.Sync{}, copyQ, row("edge-synced"), &pgproto3.CopyDone{}, &pgproto3.Query{String: "SELECT 1"}),
			"E:26000 Z G E:42501 Z T D C Z"},
		// the failed Bind's error reaches pgtenant before the COPY does
		{"a COPY after a failed Bind, flushed", enc(&pgproto3.Bind{PreparedStatement: "missing"}, &pgproto3.Flush{}, &pgproto3.Query{String: "SELECT pg_sleep(0.2)"}, copyQ, row("edge-flushed"), &pgproto3.CopyDone{}, &pgproto3.Sync{}, &pgproto3.Query{String: "SELECT 1"}),
			"E:26000 Z T D C Z"},
		{"a COPY after a failed Bind", enc(&pgproto3.Bind{PreparedStatement: "missing"}, copyQ, row("edge-skipped"), &pgproto3.CopyDone{}, &pgproto3.Sync{}, &pgproto3.Query{String: "SELECT 1"}),
			"E:26000 Z T D C Z"},
		// the server fails this COPY before it starts (no such column) and
		// then reads the pipelined Sync, CopyData and Query as usual
		{"a COPY that fails to start", enc(&pgproto3.Query{String: "COPY customers (account_id, name, no_such_column) FROM STDIN"}, &pgproto3.Sync{}, row("edge-nostart"), &pgproto3.CopyDone{}, &pgproto3.Query{String: "SELECT 1"}),
			"E:42703 Z Z T D C Z"},
	}
	for _, tc := range cases {
		conn, err := loginRaw(env.Addr, token, false, 10*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		got, err := liveFuzzExchange(conn, tc.stream, 2*time.Second)
		if err != nil {
			t.Errorf("%s: %v", tc.name, err)
		}
		if types := replyTypes(got); types != tc.want {
			t.Errorf("%s: replies %q, want %q", tc.name, types, tc.want)
		}
		if n := settle(func() int { return int(env.Server.ActiveClients()) }, int(base)); n > int(base) {
			t.Fatalf("%s: the session did not end after the client closed (%d sessions, want %d)", tc.name, n, base)
		}
	}
	var n int
	if err := super.QueryRow(ctx, "SELECT count(*) FROM customers WHERE name LIKE 'edge-%' AND account_id = 7").Scan(&n); err != nil {
		t.Fatal(err)
	}
	if n != 0 {
		t.Errorf("tenant 42 wrote %d rows of tenant 7 through COPY", n)
	}
}

// replyTypes lists the backend messages in b by type, an ErrorResponse as
// E:SQLSTATE; a FATAL's type is followed by !.
func replyTypes(b []byte) string {
	var out []string
	for len(b) >= 5 {
		n := int(encbin.BigEndian.Uint32(b[1:]))
		if n < 4 || n+1 > len(b) {
			out = append(out, "?")
			break
		}
		m := string(b[0])
		if b[0] == 'E' {
			var er pgproto3.ErrorResponse
			if er.Decode(b[5:n+1]) == nil {
				m += ":" + er.Code
				if er.Severity == "FATAL" {
					m += "!"
				}
			}
		}
		out = append(out, m)
		b = b[n+1:]
	}
	return strings.Join(out, " ")
}
