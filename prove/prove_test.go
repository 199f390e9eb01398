package prove

import (
	"bytes"
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/pgtenant/pgtenant/auth"
	"github.com/pgtenant/pgtenant/cluster"
	"github.com/pgtenant/pgtenant/demo"
	"github.com/pgtenant/pgtenant/test/pgtest"
	"github.com/pgtenant/pgtenant/test/proxytest"
)

func TestMain(m *testing.M) { pgtest.Main(m) }

// region is the one region these tests prove (a shared cluster with the demo schema).
const testRegion = "prove-eu"

// startEnv starts the real proxy with the real policy in front of the
// shared cluster; prepare runs as the superuser before the proxy discovers
// the catalog, and its undo in t.Cleanup.
func startEnv(t *testing.T, prepare, undo string) *proxytest.Env {
	t.Helper()
	if testing.Short() {
		t.Skip("starts a PostgreSQL cluster")
	}
	c := pgtest.Shared(t, testRegion)
	proxytest.InstallDemo(t, c)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if undo != "" {
		t.Cleanup(func() {
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			if err := c.Exec(ctx, c.Database, undo); err != nil {
				t.Errorf("undo: %v", err)
			}
			if err := demo.Install(ctx, c); err != nil {
				t.Errorf("reinstall demo: %v", err)
			}
		})
	}
	if prepare != "" {
		if err := c.Exec(ctx, c.Database, prepare); err != nil {
			t.Fatalf("prepare: %v", err)
		}
	}
	return proxytest.Start(t, proxytest.Options{Regions: []string{testRegion}, Policy: true})
}

// options runs against env with tokens minted from proxytest's secret.
func options(env *proxytest.Env) Options {
	return Options{Config: env.Config, Addr: env.Addr, SSLMode: "disable", Token: func(account, region string) (string, error) {
		return auth.Mint(auth.MintOptions{Secret: []byte(proxytest.Secret), Account: account, Region: region, Subject: "prove-test", TTL: time.Hour})
	}}
}

func run(t *testing.T, o Options) *Report {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	rep, err := Run(ctx, o)
	if err != nil {
		t.Fatalf("Run: %v", err)
	}
	var buf bytes.Buffer
	if err := rep.WriteTable(&buf); err != nil {
		t.Fatal(err)
	}
	t.Logf("report:\n%s", buf.String())
	return rep
}

// rowsOf counts, as the superuser (no RLS), the rows of the given tenants in every demo tenant table.
func rowsOf(t *testing.T, c *cluster.Cluster, ids ...string) int64 {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	conn := pgtest.Conn(t, c.SuperuserDSN(c.Database))
	var total int64
	for _, tbl := range append(demo.TenantTables, "prove_norls") {
		var n int64
		err := conn.QueryRow(ctx, "SELECT count(*) FROM public."+tbl+" WHERE account_id::text = ANY($1)", ids).Scan(&n)
		if err != nil && strings.Contains(err.Error(), "does not exist") {
			continue
		}
		if err != nil {
			t.Fatal(err)
		}
		total += n
	}
	return total
}

func TestDemoSchemaPasses(t *testing.T) {
	env := startEnv(t, "", "")
	rep := run(t, options(env))
	if !rep.OK || rep.Failed != 0 || rep.Warned != 0 {
		t.Fatalf("report not clean: ok=%t failed=%d warned=%d: %+v", rep.OK, rep.Failed, rep.Warned, rep.Failures())
	}
	// Every table got every check.
	for _, tbl := range demo.TenantTables {
		for _, check := range []string{"seed_as_a", "select_unscoped", "select_where_a", "select_param_a_text", "select_param_a_binary",
			"prepared_rebound_to_a", "update_a", "delete_a", "insert_for_a", "copy_to_stdout", "a_rows_intact",
			"rls_enabled_forced", "rls_select_a", "rls_update_a", "rls_delete_a", "rls_insert_a", "rls_fail_closed"} {
			if !hasResult(rep, "public."+tbl, check, Pass) {
				t.Errorf("no passing %s on %s", check, tbl)
			}
		}
	}
	for _, check := range []string{"escape_set_tenant_setting", "escape_set_config", "escape_reset_all", "escape_set_role",
		"escape_set_session_authorization", "escape_startup_options", "escape_startup_parameter", "no_rows_left"} {
		if !hasResult(rep, "", check, Pass) {
			t.Errorf("no passing %s", check)
		}
	}
	if n := rowsOf(t, env.Clusters[testRegion], rep.TenantA, rep.TenantB); n != 0 {
		t.Errorf("%d rows of the synthetic tenants left", n)
	}
	var buf bytes.Buffer
	if err := rep.WriteJSON(&buf); err != nil {
		t.Fatal(err)
	}
	var back Report
	if err := json.Unmarshal(buf.Bytes(), &back); err != nil || len(back.Results) != len(rep.Results) || back.TenantA != rep.TenantA {
		t.Fatalf("JSON round trip: %v", err)
	}
}

func hasResult(rep *Report, table, check, status string) bool {
	for _, r := range rep.Results {
		if r.Table == table && r.Check == check && r.Status == status {
			return true
		}
	}
	return false
}

var _ = pgx.Identifier{}
