package txpool

import (
	"context"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/pgtenant/pgtenant/cluster"
	"github.com/pgtenant/pgtenant/config"
	"github.com/pgtenant/pgtenant/test/pgtest"
	"github.com/pgtenant/pgtenant/test/proxytest"
)

func TestMain(m *testing.M) { pgtest.Main(m) }

// poolModeFlag lets a developer run the same scripts in session mode
// (`go test ./test/txpool -short -args -pool.mode=session`), where every
// client holds a backend: the checks that only transaction mode promises
// (no tenant outside a transaction, at most pool.size backends) are then
// skipped. CI runs the default, transaction.
var poolModeFlag = flag.String("pool.mode", "transaction", "pool.mode of the proxy under test: transaction | session")

// region is the only region of these tests.
const region = "eu-west"

// tenantSetting is the demo's tenant setting (policy.tenant_setting).
const tenantSetting = "app.current_account_id"

// probeSQL is installed once per test binary as the superuser, after the
// demo schema. tx_probe's SELECT policy fails closed like the demo's, but
// its INSERT policy accepts any row: a statement that runs under the wrong
// tenant's setting is then recorded (seen <> account_id) instead of being
// refused, so the checker can count it.
const probeSQL = `
CREATE TABLE IF NOT EXISTS public.tx_probe (
    id         bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    account_id bigint NOT NULL,
    client     integer NOT NULL,
    seq        integer,
    seen       text DEFAULT current_setting('app.current_account_id', true),
    pid        integer NOT NULL DEFAULT pg_backend_pid(),
    xid        xid8 NOT NULL DEFAULT pg_current_xact_id(),
    UNIQUE (client, seq)
);
CREATE INDEX IF NOT EXISTS tx_probe_account_idx ON public.tx_probe (account_id, client);
ALTER TABLE public.tx_probe ENABLE ROW LEVEL SECURITY;
ALTER TABLE public.tx_probe FORCE ROW LEVEL SECURITY;
DROP POLICY IF EXISTS probe_read ON public.tx_probe;
CREATE POLICY probe_read ON public.tx_probe FOR SELECT
    USING (account_id = NULLIF(current_setting('app.current_account_id', true), '')::bigint);
DROP POLICY IF EXISTS probe_insert ON public.tx_probe;
CREATE POLICY probe_insert ON public.tx_probe FOR INSERT WITH CHECK (true);

-- What the backend holds outside a transaction: the COMMIT ends the
-- client's transaction (and with it a transaction-local tenant setting)
-- in the middle of the statement, before the second read.
CREATE OR REPLACE PROCEDURE public.tx_probe_outside(INOUT inside text, INOUT outside text)
    LANGUAGE plpgsql AS $$
BEGIN
    inside := current_setting('app.current_account_id', true);
    COMMIT;
    outside := current_setting('app.current_account_id', true);
END
$$;

-- Sleeps while holding the tenant it runs as; the cancel tests cancel it.
CREATE OR REPLACE FUNCTION public.tx_sleep(seconds float8) RETURNS text
    LANGUAGE sql AS $$ SELECT pg_sleep(seconds)::text || current_setting('app.current_account_id', true) $$;
`

// probeGrants gives the service role what the tests need.
func probeGrants(role string) string {
	return fmt.Sprintf(`GRANT SELECT, INSERT ON public.tx_probe TO %[1]s;
GRANT EXECUTE ON PROCEDURE public.tx_probe_outside(text, text) TO %[1]s;
GRANT EXECUTE ON FUNCTION public.tx_sleep(float8) TO %[1]s;`, pgx.Identifier{role}.Sanitize())
}

var probeOnce sync.Once

// tenantID is the account id of tenant i (0-based) of these tests: 1001...,
// apart from the demo's 42 and 7.
func tenantID(i int) int64 { return int64(1001 + i) }

// ordersPerTenant is how many demo orders each test tenant owns.
const ordersPerTenant = 3

// seedTenants gives each of n test tenants ordersPerTenant orders (as the
// superuser, idempotently), so reads of orders have an exact expected
// answer per tenant.
func seedTenants(t testing.TB, c *cluster.Cluster, n int) {
	t.Helper()
	sql := fmt.Sprintf(`INSERT INTO public.orders (account_id, total, note)
SELECT a, o, 'txpool'
FROM generate_series(%d, %d) a, generate_series(1, %d) o
WHERE NOT EXISTS (SELECT 1 FROM public.orders x WHERE x.account_id = a)`, tenantID(0), tenantID(n-1), ordersPerTenant)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := c.Exec(ctx, c.Database, sql); err != nil {
		t.Fatalf("seed tenants: %v", err)
	}
}

// poolOptions are the pool.* keys a test sets.
type poolOptions struct {
	Size        int
	MinIdle     int
	MaxWait     time.Duration // default 30s: these tests measure isolation, not waiting
	IdleTimeout time.Duration // default: the product's (10m)
	// Policy enforces the real statement policy (with policy.unscoped:
	// rewrite, so unpinned reads are scoped by the proxy as well as by
	// RLS); without it every statement is allowed and RLS alone scopes.
	Policy bool
}

// txEnv is a proxy in front of the shared cluster with the probe schema.
type txEnv struct {
	*proxytest.Env
	c    *cluster.Cluster
	mode string // pool.mode
	size int    // pool.size
	su   *pgx.Conn
}

// start starts a proxy in pool.mode (the -pool.mode flag) with o, on the
// test binary's shared cluster, and truncates tx_probe.
func start(t testing.TB, o poolOptions) *txEnv {
	t.Helper()
	c := pgtest.Shared(t, region)
	proxytest.InstallDemo(t, c)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	var err error
	probeOnce.Do(func() { err = c.Exec(ctx, c.Database, probeSQL+probeGrants(c.ServiceUser)) })
	if err != nil {
		t.Fatalf("install probe schema: %v", err)
	}
	if err := c.Exec(ctx, c.Database, "TRUNCATE public.tx_probe"); err != nil {
		t.Fatalf("truncate tx_probe: %v", err)
	}
	e := &txEnv{c: c, mode: *poolModeFlag, size: o.Size}
	e.Env = proxytest.Start(t, proxytest.Options{
		Regions: []string{region},
		Policy:  o.Policy,
		Configure: func(cfg *config.Config) {
			*cfg = *loadConfig(t, cfg.Regions[region], e.mode, o)
		},
	})
	e.su = pgtest.Conn(t, c.SuperuserDSN(c.Database))
	return e
}

// loadConfig writes the configuration as a YAML file with the
// specification's key names and reads it with config.Load, as `pgtenant
// serve` would: the test depends on the documented keys, not on the
// fields that hold them.
func loadConfig(t testing.TB, r config.Region, mode string, o poolOptions) *config.Config {
	t.Helper()
	maxWait := o.MaxWait
	if maxWait == 0 {
		maxWait = 30 * time.Second
	}
	idle := ""
	if o.IdleTimeout > 0 {
		idle = fmt.Sprintf("  idle_timeout: %s\n", o.IdleTimeout)
	}
	policy := ""
	if o.Policy {
		policy = `policy:
  unscoped: rewrite
  allowed_functions: [public.tx_probe_outside, public.tx_sleep]
`
	}
	y := fmt.Sprintf(`listen: 127.0.0.1:6432
admin_listen: ""
log: { level: warn, format: text }
auth:
  hs256_secret: %q
regions:
  %s: { host: %q, port: %d, user: %q, password: %q, database: %q, sslmode: disable }
audit:
  disabled: true
%spool:
  mode: %s
  size: %d
  min_idle: %d
  max_wait: %s
%s`, proxytest.Secret, region, r.Host, r.Port, r.User, r.Password, r.Database, policy, mode, o.Size, o.MinIdle, maxWait, idle)
	path := filepath.Join(t.TempDir(), "pgtenant.yaml")
	if err := os.WriteFile(path, []byte(y), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, err := config.Load(path)
	if err != nil {
		t.Fatalf("config with pool.mode %s: %v\n%s", mode, err, y)
	}
	return cfg
}

// transactionMode reports whether the proxy runs in pool.mode: transaction.
func (e *txEnv) transactionMode() bool { return e.mode == "transaction" }

// connect opens a pgx connection of tenant through the proxy with the
// given default query mode.
func (e *txEnv) connect(ctx context.Context, t testing.TB, tenant int64, mode pgx.QueryExecMode) (*pgx.Conn, error) {
	cfg, err := pgx.ParseConfig(e.DSN(t, strconv.FormatInt(tenant, 10), region))
	if err != nil {
		return nil, err
	}
	cfg.DefaultQueryExecMode = mode
	cfg.ConnectTimeout = 60 * time.Second
	// A FATAL ends the connection (pgx's default); log it, since the
	// statement that meets the closed connection afterwards only says
	// "conn closed".
	cfg.OnPgError = func(_ *pgconn.PgConn, pe *pgconn.PgError) bool {
		if strings.EqualFold(pe.Severity, "FATAL") {
			t.Logf("tenant %d: the proxy ended the connection: FATAL %s (SQLSTATE %s)", tenant, pe.Message, pe.Code)
			return false
		}
		return true
	}
	return pgx.ConnectConfig(ctx, cfg)
}

// mustConnect is connect that fails the test on error and closes the
// connection when the test (or subtest) ends.
func (e *txEnv) mustConnect(ctx context.Context, t testing.TB, tenant int64, mode pgx.QueryExecMode) *pgx.Conn {
	t.Helper()
	conn, err := e.connect(ctx, t, tenant, mode)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close(context.Background()) })
	return conn
}

// violation is one row of the database-side checks.
type violation struct{ what, detail string }

// checkDatabase runs the database-side invariants over everything the
// clients wrote to tx_probe and returns what broke them:
//   - every row recorded its own account as the tenant setting of its
//     transaction;
//   - no transaction (xid) wrote rows of two clients or two accounts;
//   - in transaction mode, no more distinct backends served the clients
//     than pool.size (backends replaced after a failure excepted, so
//     allowReplaced lifts that bound).
func (e *txEnv) checkDatabase(ctx context.Context, t testing.TB, allowReplaced bool) []violation {
	t.Helper()
	var out []violation
	q := func(what, sql string, args ...any) {
		rows, err := e.su.Query(ctx, sql, args...)
		if err != nil {
			t.Fatalf("check %s: %v", what, err)
		}
		for rows.Next() {
			vals, err := rows.Values()
			if err != nil {
				t.Fatalf("check %s: %v", what, err)
			}
			out = append(out, violation{what, fmt.Sprint(vals...)})
		}
		if err := rows.Err(); err != nil {
			t.Fatalf("check %s: %v", what, err)
		}
	}
	q("row written under another tenant's setting (id account client seq seen pid xid)",
		`SELECT id, ' account=', account_id, ' client=', client, ' seq=', seq, ' seen=', coalesce(seen, '<unset>'), ' pid=', pid, ' xid=', xid::text
		 FROM public.tx_probe WHERE seen IS DISTINCT FROM account_id::text ORDER BY id LIMIT 20`)
	q("transaction shared by two clients or accounts (xid clients accounts)",
		`SELECT xid::text, ' clients=', count(DISTINCT client), ' accounts=', count(DISTINCT account_id)
		 FROM public.tx_probe GROUP BY xid HAVING count(DISTINCT client) > 1 OR count(DISTINCT account_id) > 1 LIMIT 20`)
	if e.transactionMode() && !allowReplaced {
		q("more backends than pool.size served the clients",
			`SELECT 'backends=', count(DISTINCT pid), ' pool.size=', $1::int FROM public.tx_probe HAVING count(DISTINCT pid) > $1::int`, e.size)
	}
	return out
}

// backendsNow counts the service role's backends that are not pgtenant's
// own service connections (application_name pgtenant-*): the pool.
func (e *txEnv) backendsNow(ctx context.Context) (int, error) {
	var n int
	err := e.su.QueryRow(ctx, `SELECT count(*) FROM pg_stat_activity
		WHERE usename = $1 AND datname = $2 AND backend_type = 'client backend'
		  AND application_name NOT LIKE 'pgtenant-%' AND application_name NOT LIKE 'proxytest-%'`,
		e.c.ServiceUser, e.c.Database).Scan(&n)
	return n, err
}

// reportViolations fails t with every violation.
func reportViolations(t testing.TB, vs []violation) {
	t.Helper()
	if len(vs) == 0 {
		return
	}
	var b strings.Builder
	for _, v := range vs {
		fmt.Fprintf(&b, "\n  %s: %s", v.what, v.detail)
	}
	t.Errorf("database-side isolation checks failed:%s", b.String())
}
