package e2e

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/pgtenant/pgtenant/config"
	"github.com/pgtenant/pgtenant/test/proxytest"
)

// consoleDSN is a DSN for the admin console with a token of the given role.
func consoleDSN(env *proxytest.Env, t *testing.T, role string) string {
	t.Helper()
	claims := map[string]any{"account_id": "ops", "data_region": "eu-west", "sub": "operator@example.com",
		"exp": time.Now().Add(time.Hour).Unix()}
	if role != "" {
		claims["role"] = role
	}
	tok := proxytest.SignedToken(t, claims)
	return "postgres://operator:" + tok + "@" + env.Addr + "/pgtenant?sslmode=disable&default_query_exec_mode=simple_protocol"
}

func consoleRows(t *testing.T, conn *pgx.Conn, q string) []map[string]string {
	t.Helper()
	rows, err := conn.Query(ctxT(t), q)
	if err != nil {
		t.Fatalf("%s: %v", q, err)
	}
	defer rows.Close()
	var out []map[string]string
	for rows.Next() {
		vals, err := rows.Values()
		if err != nil {
			t.Fatal(err)
		}
		m := map[string]string{}
		for i, f := range rows.FieldDescriptions() {
			if s, ok := vals[i].(string); ok {
				m[f.Name] = s
			}
		}
		out = append(out, m)
	}
	if err := rows.Err(); err != nil {
		t.Fatalf("%s: %v", q, err)
	}
	return out
}

func TestAdminConsole(t *testing.T) {
	env := proxytest.Start(t, proxytest.Options{Regions: []string{"eu-west"}, Policy: true,
		Configure: func(cfg *config.Config) {
			cfg.Admin.Roles = []string{"platform-admin"}
			cfg.Limits.Tenant.Overrides = map[string]config.BudgetLimits{"42": {StatementsPerSecond: 1000, ConcurrentStatements: 10}}
		}})
	ctx := ctxT(t)
	tenant := connect(t, env.DSN(t, "42", "eu-west"))
	if _, err := tenant.Exec(ctx, pinned42); err != nil {
		t.Fatal(err)
	}
	if _, err := tenant.Exec(ctx, "SELECT count(*) FROM orders"); pgCode(err) != "42501" {
		t.Fatalf("unscoped read: %v", err)
	}

	t.Run("a role outside admin.roles is refused", func(t *testing.T) {
		for _, role := range []string{"", "viewer"} {
			_, err := pgx.Connect(ctx, consoleDSN(env, t, role))
			if pgCode(err) != "28000" {
				t.Fatalf("role %q: %v, want 28000", role, err)
			}
		}
	})
	con := connect(t, consoleDSN(env, t, "platform-admin"))
	t.Run("SHOW TENANTS", func(t *testing.T) {
		var row map[string]string
		for _, r := range consoleRows(t, con, "SHOW TENANTS") {
			if r["account_id"] == "42" {
				row = r
			}
		}
		if row == nil || row["connections"] != "1" || row["statements"] == "0" || row["denials"] != "1" ||
			row["statements_per_second"] != "1000" || row["budget_admitted"] == "0" {
			t.Fatalf("tenant 42 = %v", row)
		}
	})
	t.Run("SHOW CLIENTS, SERVERS, POOLS, STATS, CONFIG, VERSION", func(t *testing.T) {
		clients := consoleRows(t, con, "SHOW CLIENTS")
		if len(clients) != 1 || clients[0]["account_id"] != "42" || clients[0]["type"] != "C" || clients[0]["id"] == "" {
			t.Fatalf("clients = %v", clients)
		}
		if s := consoleRows(t, con, "show servers"); len(s) != 1 || s[0]["link"] != clients[0]["id"] {
			t.Fatalf("servers = %v", s)
		}
		if p := consoleRows(t, con, "SHOW POOLS"); len(p) != 1 || p[0]["pool_mode"] != "session" || p[0]["cl_active"] != "1" {
			t.Fatalf("pools = %v", p)
		}
		if s := consoleRows(t, con, "SHOW STATS"); len(s) != 1 || s[0]["total_query_count"] == "0" {
			t.Fatalf("stats = %v", s)
		}
		cfg := consoleRows(t, con, "SHOW CONFIG")
		if len(cfg) == 0 || strings.Contains(strings.ToLower(strings.Join(func() []string {
			var ks []string
			for _, r := range cfg {
				ks = append(ks, r["key"]+"="+r["value"])
			}
			return ks
		}(), " ")), proxytest.Secret) {
			t.Fatalf("config = %v", cfg)
		}
		if v := consoleRows(t, con, "SHOW VERSION"); len(v) != 1 || !strings.HasPrefix(v[0]["version"], "pgtenant") {
			t.Fatalf("version = %v", v)
		}
	})
	t.Run("PAUSE holds new transactions until RESUME", func(t *testing.T) {
		if _, err := con.Exec(ctx, "PAUSE"); err != nil {
			t.Fatal(err)
		}
		done := make(chan error, 1)
		go func() {
			_, err := tenant.Exec(context.Background(), pinned42)
			done <- err
		}()
		select {
		case err := <-done:
			t.Fatalf("a statement ran while paused: %v", err)
		case <-time.After(300 * time.Millisecond):
		}
		if _, err := con.Exec(ctx, "RESUME"); err != nil {
			t.Fatal(err)
		}
		select {
		case err := <-done:
			if err != nil {
				t.Fatalf("after RESUME: %v", err)
			}
		case <-time.After(10 * time.Second):
			t.Fatal("the held statement did not run after RESUME")
		}
	})
	t.Run("KILL ends a client", func(t *testing.T) {
		id := consoleRows(t, con, "SHOW CLIENTS")[0]["id"]
		if _, err := con.Exec(ctx, "KILL "+id); err != nil {
			t.Fatal(err)
		}
		if _, err := tenant.Exec(ctx, pinned42); err == nil {
			t.Fatal("the killed client still works")
		}
		if _, err := con.Exec(ctx, "KILL "+id); err == nil {
			t.Fatal("killing a gone client succeeded")
		}
		if _, err := con.Exec(ctx, "SELECT 1"); pgCode(err) != "42601" {
			t.Fatalf("a non-console command: %v, want 42601", err)
		}
	})
}

func TestAdminConsoleOff(t *testing.T) {
	env := proxytest.Start(t, proxytest.Options{Regions: []string{"eu-west"}})
	_, err := pgx.Connect(ctxT(t), consoleDSN(env, t, "platform-admin"))
	if pgCode(err) != "3D000" {
		t.Fatalf("console with admin.roles empty: %v, want 3D000", err)
	}
}
