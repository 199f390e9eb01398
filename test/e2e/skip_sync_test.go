package e2e

import (
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgproto3"

	"github.com/pgtenant/pgtenant/auth"
	"github.com/pgtenant/pgtenant/cluster"
	"github.com/pgtenant/pgtenant/config"
	"github.com/pgtenant/pgtenant/proxy"
	"github.com/pgtenant/pgtenant/tenancy"
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

// A check that depends on a Query's PREPARE waits for the server's answer
// to that Query only when the server will give it without more input: not
// when an extended message before it, not yet synced, may have failed, for
// the server then skips the Query silently until the client's Sync. Every
// extended message that may fail counts (a Describe or Close of a missing
// portal or of neither kind, an Execute), or the session hangs, holding its
// backend. The name is then unknown and its use denied.
func TestCheckNeverWaitsForAQuerySkippedUntilSync(t *testing.T) {
	for _, mode := range []string{config.PoolSession, config.PoolTransaction} {
		t.Run(mode, func(t *testing.T) {
			env := proxytest.Start(t, proxytest.Options{Policy: true, Regions: []string{"eu-west"},
				Configure: func(cfg *config.Config) { cfg.Pool.Mode = mode }})
			token := proxytest.Token(t, "42", "eu-west", 0)
			base := env.Server.ActiveClients()
			failing := []struct {
				name string
				msg  pgproto3.FrontendMessage
				code string
			}{
				{"describe of a missing portal", &pgproto3.Describe{ObjectType: 'P', Name: "missing"}, "34000"},
				{"close of neither kind", &pgproto3.Close{ObjectType: 'X', Name: "x"}, "08P01"},
				{"execute of a missing portal", &pgproto3.Execute{Portal: "missing"}, "34000"},
			}
			for _, f := range failing {
				got, err := rawExchange(t, env.Addr, token, 2*time.Second,
					f.msg,
					&pgproto3.Query{String: "PREPARE p AS SELECT note FROM orders WHERE account_id = $1"},
					&pgproto3.Parse{Name: "s1", Query: "EXECUTE p(42)"},
					&pgproto3.Bind{PreparedStatement: "s1"},
					&pgproto3.Execute{},
					&pgproto3.Sync{},
					&pgproto3.Query{String: "SELECT 1"})
				if err != nil {
					t.Errorf("%s: %v", f.name, err)
				}
				// the server's error, the denied Parse's name unknown
				// (the rest up to Sync skipped), then the Query answered
				if types, want := replyTypes(got), "E:"+f.code+" Z T D C Z"; types != want {
					t.Errorf("%s: replies %q, want %q", f.name, types, want)
				}
				if n := settle(func() int { return int(env.Server.ActiveClients()) }, int(base)); n > int(base) {
					t.Fatalf("%s: the session did not end after the client closed (%d sessions, want %d)", f.name, n, base)
				}
			}
		})
	}
}

// waitingChecker allows every statement but answers Wait, forever, for any
// mentioning "wait_marker": a checker whose model of the server's prepared
// statements is wrong, waiting for a reply the server does not owe.
type waitingChecker struct{ markerChecker }

func (w *waitingChecker) CheckQuery(sql string) tenancy.Decision { return w.waitOr(sql) }
func (w *waitingChecker) CheckParse(_, sql string, _ []uint32) tenancy.Decision {
	return w.waitOr(sql)
}
func (w *waitingChecker) waitOr(sql string) tenancy.Decision {
	if strings.Contains(sql, "wait_marker") {
		return tenancy.Decision{Wait: true, Reason: "await_server", Statement: sql, Text: sql}
	}
	return tenancy.Decision{Allow: true, Statement: sql, Text: sql}
}

// Whatever the checker's model says, a check never waits for a reply the
// server does not owe: the proxy denies the statement instead of hanging
// (and, in transaction mode, instead of holding a pooled backend), and the
// session goes on, also when the wait began while a reply was owed (a slow
// query in flight): the denial then follows that reply. (Which replies are
// owed is TestPendingQueueOwesReply's.)
func TestCheckWaitingForNothingOwedIsDenied(t *testing.T) {
	for _, mode := range []string{config.PoolSession, config.PoolTransaction} {
		t.Run(mode, func(t *testing.T) {
			env := proxytest.Start(t, proxytest.Options{
				Configure: func(cfg *config.Config) { cfg.Pool.Mode = mode },
				Checkers: func(*config.Config, map[string]*cluster.Cluster) proxy.CheckerFactory {
					return func(auth.Principal) proxy.StatementChecker {
						return &waitingChecker{markerChecker{stmts: map[string]bool{}}}
					}
				}})
			token := proxytest.Token(t, "42", "eu-west", 0)
			base := env.Server.ActiveClients()
			got, err := rawExchange(t, env.Addr, token, 3*time.Second,
				&pgproto3.Query{String: "SELECT 'wait_marker'"},
				// owed while it runs; its reply comes first, then the denial
				&pgproto3.Query{String: "SELECT pg_sleep(0.3)"},
				&pgproto3.Parse{Query: "SELECT 'wait_marker'"},
				&pgproto3.Sync{},
				&pgproto3.Query{String: "SELECT 1"})
			if err != nil {
				t.Fatal(err)
			}
			if types, want := replyTypes(got), "E:42501 Z T D C Z E:42501 Z T D C Z"; types != want {
				t.Errorf("replies %q, want %q", types, want)
			}
			if n := settle(func() int { return int(env.Server.ActiveClients()) }, int(base)); n > int(base) {
				t.Fatalf("the session did not end after the client closed (%d sessions, want %d)", n, base)
			}
		})
	}
}

// rawExchange logs in with token on a raw socket, sends msgs in one write
// and returns what the proxy sent back until it went quiet for idle or
// closed the connection, which it then closes.
func rawExchange(t *testing.T, addr, token string, idle time.Duration, msgs ...pgproto3.FrontendMessage) ([]byte, error) {
	t.Helper()
	var stream []byte
	for _, m := range msgs {
		var err error
		if stream, err = m.Encode(stream); err != nil {
			t.Fatalf("encode %T: %v", m, err)
		}
	}
	conn, err := loginRaw(addr, token, false, 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	return liveFuzzExchange(conn, stream, idle)
}
