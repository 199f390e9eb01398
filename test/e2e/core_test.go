package e2e

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/pgtenant/pgtenant/config"
	"github.com/pgtenant/pgtenant/test/pgtest"
	"github.com/pgtenant/pgtenant/test/proxytest"
)

func TestMain(m *testing.M) {
	flag.Parse()
	if testing.Short() {
		// every test here drives real clusters, the built binary and real clients
		fmt.Println("e2e: skipped with -short (make test runs it)")
		os.Exit(0)
	}
	pgtest.MainCleanup(m, removeBinary)
}

func ctxT(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func connect(t *testing.T, dsn string) *pgx.Conn {
	t.Helper()
	conn, err := pgx.Connect(ctxT(t), dsn)
	if err != nil {
		t.Fatalf("connect: %v", err)
	}
	t.Cleanup(func() { _ = conn.Close(context.Background()) })
	return conn
}

// pgCode returns the SQLSTATE of err, or "" when err is not a PostgreSQL error.
func pgCode(err error) string {
	var pe *pgconn.PgError
	if errors.As(err, &pe) {
		return pe.Code
	}
	return ""
}

func TestRoutesEachTenantToItsRegion(t *testing.T) {
	env := proxytest.Start(t, proxytest.Options{})
	for region, c := range env.Clusters {
		conn := connect(t, env.DSN(t, "42", region))
		var port int
		var account, subject string
		err := conn.QueryRow(ctxT(t), "SELECT inet_server_port(), current_setting('app.current_account_id'), current_setting('app.current_subject')").Scan(&port, &account, &subject)
		if err != nil {
			t.Fatalf("%s: %v", region, err)
		}
		if port != c.Port {
			t.Errorf("token for %s landed on port %d, want %d", region, port, c.Port)
		}
		if account != "42" || subject != "user-42" {
			t.Errorf("%s: tenant context = (%q, %q), want (42, user-42)", region, account, subject)
		}
	}
}

func TestRLSScopesRowsToTheTokensTenant(t *testing.T) {
	env := proxytest.Start(t, proxytest.Options{})
	for _, account := range []string{"42", "7"} {
		conn := connect(t, env.DSN(t, account, "eu-west"))
		rows, err := conn.Query(ctxT(t), "SELECT DISTINCT account_id FROM orders")
		if err != nil {
			t.Fatal(err)
		}
		ids, err := pgx.CollectRows(rows, pgx.RowTo[int64])
		if err != nil {
			t.Fatal(err)
		}
		if len(ids) != 1 || strconv.FormatInt(ids[0], 10) != account {
			t.Errorf("tenant %s sees accounts %v, want only its own", account, ids)
		}
	}
}

func TestTokenSources(t *testing.T) {
	env := proxytest.Start(t, proxytest.Options{})
	tok := proxytest.Token(t, "42", "eu-west", 0)
	base := "postgres://tester@" + env.Addr + "/app?sslmode=disable"
	for name, dsn := range map[string]string{
		"jwt parameter": base + "&jwt=" + tok,
		"options -c":    base + "&options=" + urlEscape("-c jwt="+tok+" -c application_name=fromopts"),
		"password":      env.DSNWithToken(tok),
	} {
		t.Run(name, func(t *testing.T) {
			conn := connect(t, dsn)
			var account, opts string
			if err := conn.QueryRow(ctxT(t), "SELECT current_setting('app.current_account_id'), current_setting('application_name')").Scan(&account, &opts); err != nil {
				t.Fatal(err)
			}
			if account != "42" {
				t.Errorf("account = %q", account)
			}
			if name == "options -c" && opts != "fromopts" {
				t.Errorf("other -c options were not kept: application_name = %q", opts)
			}
		})
	}
}

func TestRejections(t *testing.T) {
	env := proxytest.Start(t, proxytest.Options{Configure: func(c *config.Config) {
		c.Regions["down"] = config.Region{Host: "127.0.0.1", Port: 1, User: "app", SSLMode: "disable", ConnectTimeout: time.Second}
	}})
	good := proxytest.Token(t, "42", "eu-west", 0)
	cases := []struct {
		name, dsn, code, mentions string
	}{
		{"no token", "postgres://tester@" + env.Addr + "/app?sslmode=disable", "28000", ""},
		{"garbage", env.DSNWithToken("not-a-jwt"), "28000", ""},
		{"bad signature", env.DSNWithToken(good[:len(good)-4] + "AAAA"), "28000", ""},
		{"expired", env.DSNWithToken(proxytest.SignedToken(t, map[string]any{"account_id": 42, "data_region": "eu-west", "exp": time.Now().Add(-time.Hour).Unix()})), "28000", "expired"},
		{"no exp", env.DSNWithToken(proxytest.SignedToken(t, map[string]any{"account_id": 42, "data_region": "eu-west"})), "28000", ""},
		{"empty tenant", env.DSNWithToken(proxytest.SignedToken(t, map[string]any{"account_id": "", "data_region": "eu-west", "exp": time.Now().Add(time.Hour).Unix()})), "28000", ""},
		{"missing region", env.DSNWithToken(proxytest.SignedToken(t, map[string]any{"account_id": 42, "exp": time.Now().Add(time.Hour).Unix()})), "28000", ""},
		{"unknown region", env.DSN(t, "42", "mars-1"), "28000", "mars-1"},
		{"region unreachable", env.DSN(t, "42", "down"), "08006", "down"},
		{"tenant setting in options", env.DSN(t, "42", "eu-west") + "&options=" + urlEscape("-c app.current_account_id=7"), "28000", ""},
		{"role in options", env.DSN(t, "42", "eu-west") + "&options=" + urlEscape("-c role=postgres"), "28000", ""},
		{"standard_conforming_strings", env.DSN(t, "42", "eu-west") + "&options=" + urlEscape("-c standard_conforming_strings=off"), "28000", ""},
		{"huge token", env.DSNWithToken(strings.Repeat("a", 100<<10)), "28000", ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			conn, err := pgx.Connect(ctxT(t), tc.dsn)
			if err == nil {
				conn.Close(context.Background())
				t.Fatal("connected; want a rejection")
			}
			var pe *pgconn.PgError
			if !errors.As(err, &pe) {
				t.Fatalf("error %v is not a PostgreSQL error", err)
			}
			if pe.Code != tc.code || pe.Severity != "FATAL" || !strings.HasPrefix(pe.Message, "pgtenant:") {
				t.Errorf("got %s %s %q, want FATAL %s with a pgtenant: message", pe.Severity, pe.Code, pe.Message, tc.code)
			}
			if tc.mentions != "" && !strings.Contains(pe.Message, tc.mentions) {
				t.Errorf("message %q does not mention %q", pe.Message, tc.mentions)
			}
			if strings.Contains(pe.Message, good[:20]) {
				t.Errorf("message echoes the token")
			}
		})
	}
	// The proxy keeps serving after all of that.
	conn := connect(t, env.DSN(t, "42", "eu-west"))
	if err := conn.Ping(ctxT(t)); err != nil {
		t.Fatalf("proxy stopped serving: %v", err)
	}
}

func urlEscape(s string) string {
	return strings.NewReplacer("%", "%25", " ", "%20", "=", "%3D", "&", "%26", "+", "%2B").Replace(s)
}

func TestIdleSessionTimeout(t *testing.T) {
	env := proxytest.Start(t, proxytest.Options{Configure: func(c *config.Config) { c.Limits.IdleTimeout = 300 * time.Millisecond }})
	conn := connect(t, env.DSN(t, "42", "eu-west"))
	ctx := ctxT(t)
	// Busy longer than the timeout: a running statement is not idle.
	if _, err := conn.Exec(ctx, "SELECT pg_sleep(0.6)"); err != nil {
		t.Fatalf("a statement outlasting the idle timeout was cut: %v", err)
	}
	// Idle inside a transaction is not idle-session either.
	tx, err := conn.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	time.Sleep(600 * time.Millisecond)
	if err := tx.Commit(ctx); err != nil {
		t.Fatalf("idle in transaction was cut by the idle-session timeout: %v", err)
	}
	time.Sleep(900 * time.Millisecond)
	if err := conn.Ping(ctx); err == nil {
		t.Fatal("the idle session was not closed")
	}
}
