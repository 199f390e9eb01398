package txpool

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/pgtenant/pgtenant/test/proxytest"
)

// scaleShape is the size of a TestScale run.
type scaleShape struct {
	Clients, Tenants, PoolSize, Iterations int
	PgbenchClients                         int // per pgbench process (one per -M mode), part of Clients
	PgbenchTx                              int // transactions per pgbench client
}

var (
	fullScale  = scaleShape{Clients: 2000, Tenants: 50, PoolSize: 20, Iterations: 8, PgbenchClients: 16, PgbenchTx: 10}
	shortScale = scaleShape{Clients: 200, Tenants: 10, PoolSize: 5, Iterations: 2, PgbenchClients: 4, PgbenchTx: 5}
)

// TestScale runs 2,000 client connections of 50 tenants through pgtenant in
// pool.mode transaction with pool.size 20 (200 / 10 / 5 with -short). All
// connections are open at once; each runs the scripts of client_test.go in
// one protocol (simple, extended, prepared, describe-then-execute, pgx
// batch, pgconn pipeline with several Syncs in flight) with explicit,
// implicit and rolled-back transactions, while pgbench runs a checking
// script in -M simple, extended and prepared as three more tenants. About
// 30 s on two cores. It asserts that
//   - every statement saw its own tenant's setting, its own rows exactly
//     (read-your-writes across backends), no other tenant's rows in tx_probe
//     and exactly its own orders under the demo's fail-closed RLS;
//   - outside a transaction the backend holds no tenant (tx_probe_outside);
//   - every row recorded its own tenant's setting, no transaction served two
//     clients, each client's committed rows and none of its rolled-back
//     ones exist;
//   - at no sample did more than pool.size backends serve the clients;
//   - pgbench completed every transaction in every mode.
func TestScale(t *testing.T) {
	shape := fullScale
	switch {
	case testing.Short():
		shape = shortScale
	case raceEnabled:
		shape.Iterations = 3 // `make test` runs -race: keep it near 30 s
	}
	if *poolModeFlag != "transaction" {
		// a backend per client: stay below the cluster's max_connections
		shape = shortScale
		shape.Clients = 60
	}
	runScale(t, shape, false)
}

// TestScalePolicy is TestScale at the -short size with the real statement
// policy on (policy.unscoped: rewrite): the policy's Parse and Bind checks
// and its mirror of the client's prepared statements in front of a pool
// that moves them between backends. The policy refuses CALL, so this run
// cannot probe the backend outside a transaction.
func TestScalePolicy(t *testing.T) { runScale(t, shortScale, true) }

func runScale(t *testing.T, shape scaleShape, policy bool) {
	pgbench, _ := exec.LookPath("pgbench")
	e := start(t, poolOptions{Size: shape.PoolSize, MaxWait: time.Minute, Policy: policy})
	seedTenants(t, e.c, shape.Tenants)
	began := time.Now()
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()

	pgbenchModes := []string{"simple", "extended", "prepared"}
	goClients := shape.Clients
	if pgbench != "" {
		goClients -= len(pgbenchModes) * shape.PgbenchClients
	} else {
		t.Log("pgbench is not installed: the Go clients alone make the connections")
	}

	dsns := map[int64]string{}
	for i := range shape.Tenants {
		id := tenantID(i)
		dsns[id] = e.DSNWithToken(proxytest.Token(t, strconv.FormatInt(id, 10), region, 0))
	}

	// Open every connection first: the point is that they are all open at
	// once on a pool of a few backends.
	clients := make([]*client, goClients)
	var errs errorList
	var wg sync.WaitGroup
	sem := make(chan struct{}, 32)
	for i := range clients {
		c := &client{id: i, tenant: tenantID(i % shape.Tenants), proto: proto(i / shape.Tenants % int(numProtos)), txMode: e.transactionMode(), noCall: policy}
		clients[i] = c
		wg.Add(1)
		go func() {
			defer wg.Done()
			sem <- struct{}{}
			defer func() { <-sem }()
			cfg, err := pgx.ParseConfig(dsns[c.tenant])
			if err != nil {
				errs.add(err)
				return
			}
			cfg.DefaultQueryExecMode = c.proto.execMode()
			cfg.ConnectTimeout = time.Minute
			if c.conn, err = pgx.ConnectConfig(ctx, cfg); err != nil {
				errs.add(fmt.Errorf("client %d connect: %w", c.id, err))
			}
		}()
	}
	wg.Wait()
	t.Cleanup(func() {
		for _, c := range clients {
			if c.conn != nil {
				cctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
				_ = c.conn.Close(cctx)
				cancel()
			}
		}
	})
	if errs.count() > 0 {
		t.Fatalf("opening %d connections: %s", goClients, errs.String())
	}
	t.Logf("%d Go client connections open after %s", goClients, time.Since(began).Round(time.Millisecond))

	// Sample the backends serving the pool while the clients run.
	var peak atomic.Int64
	sampleDone := make(chan struct{})
	stopSampling := make(chan struct{})
	go func() {
		defer close(sampleDone)
		tick := time.NewTicker(100 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-stopSampling:
				return
			case <-tick.C:
				if n, err := e.backendsNow(ctx); err == nil && int64(n) > peak.Load() {
					peak.Store(int64(n))
				}
			}
		}
	}()

	// pgbench, in every mode, as three more tenants, at the same time.
	type benchOut struct {
		mode string
		out  []byte
		err  error
	}
	benchResults := make(chan benchOut, len(pgbenchModes))
	if pgbench != "" {
		script := filepath.Join(t.TempDir(), "check.sql")
		if err := os.WriteFile(script, []byte(pgbenchCheckScript), 0o600); err != nil {
			t.Fatal(err)
		}
		for k, mode := range pgbenchModes {
			tenant := tenantID(k % shape.Tenants)
			go func() {
				cmd := exec.CommandContext(ctx, pgbench, "-n", "-f", script, "-M", mode,
					"-c", strconv.Itoa(shape.PgbenchClients), "-j", "2", "-t", strconv.Itoa(shape.PgbenchTx),
					"-D", "tenant="+strconv.FormatInt(tenant, 10))
				cmd.Env = pgEnv(e, dsnToken(t, tenant))
				var out bytes.Buffer
				cmd.Stdout, cmd.Stderr = &out, &out
				err := cmd.Run()
				benchResults <- benchOut{mode, out.Bytes(), err}
			}()
		}
	}

	runStart := time.Now()
	for _, c := range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs.add(c.run(ctx, shape.Iterations))
		}()
	}
	wg.Wait()
	if pgbench != "" {
		for range pgbenchModes {
			r := <-benchResults
			checkPgbench(t, r.mode, r.out, r.err, shape.PgbenchClients*shape.PgbenchTx)
		}
	}
	close(stopSampling)
	<-sampleDone
	t.Logf("scripts done in %s (%d clients × %d iterations)", time.Since(runStart).Round(time.Millisecond), goClients, shape.Iterations)
	if errs.count() > 0 {
		t.Errorf("clients: %s", errs.String())
	}

	vs := e.checkDatabase(ctx, t, false)
	// Each client's committed rows, and none of its rolled-back ones.
	want := map[int]int{}
	for _, c := range clients {
		want[c.id] = c.committed
	}
	rows, err := e.su.Query(ctx, `SELECT client, count(*) FROM public.tx_probe WHERE client < $1 GROUP BY client`, goClients)
	if err != nil {
		t.Fatal(err)
	}
	got := map[int]int{}
	for rows.Next() {
		var c, n int
		if err := rows.Scan(&c, &n); err != nil {
			t.Fatal(err)
		}
		got[c] = n
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	mismatched := 0
	for id, n := range want {
		if got[id] != n && errs.count() == 0 {
			if mismatched < 10 {
				vs = append(vs, violation{"client's rows in tx_probe differ from its committed rows", fmt.Sprintf("client %d (%s): %d rows, committed %d", id, clients[id].proto, got[id], n)})
			}
			mismatched++
		}
	}
	reportViolations(t, vs)
	if e.transactionMode() && peak.Load() > int64(shape.PoolSize) {
		t.Errorf("up to %d backends served the clients at once, pool.size is %d", peak.Load(), shape.PoolSize)
	}
	var pids int
	if err := e.su.QueryRow(ctx, `SELECT count(DISTINCT pid) FROM public.tx_probe`).Scan(&pids); err != nil {
		t.Fatal(err)
	}
	t.Logf("%d backends served %d rows; peak %d backends at once; whole test %s",
		pids, func() (n int) { _ = e.su.QueryRow(ctx, `SELECT count(*) FROM public.tx_probe`).Scan(&n); return }(),
		peak.Load(), time.Since(began).Round(time.Millisecond))
}

// run is one client's script: per iteration a BEGIN block, implicit
// transactions, every other iteration a rolled-back one; the outside probe
// first and last.
func (c *client) run(ctx context.Context, iterations int) error {
	if err := c.outside(ctx); err != nil {
		return err
	}
	for i := range iterations {
		if err := c.explicit(ctx); err != nil {
			return err
		}
		if err := c.implicit(ctx); err != nil {
			return err
		}
		if i%2 == 0 {
			if err := c.rollback(ctx); err != nil {
				return err
			}
		}
	}
	return c.outside(ctx)
}

// pgbenchCheckScript fails a pgbench transaction (division by zero aborts
// the client) unless the tenant setting is the connecting tenant's and
// exactly its orders are visible, in a BEGIN block and outside one. Its
// tx_probe rows have no seq (client 100000 + tenant), so only the
// recorded-setting check counts them.
const pgbenchCheckScript = `BEGIN;
SELECT (coalesce(nullif(current_setting('app.current_account_id', true), ''), '0')::bigint = :tenant)::int AS ok \gset
SELECT 1 / :ok AS own_tenant_in_begin_block;
INSERT INTO public.tx_probe (account_id, client) VALUES (:tenant, 100000 + :tenant);
SELECT (count(*) = 3 AND bool_and(account_id = :tenant))::int AS ok FROM public.orders \gset
SELECT 1 / :ok AS only_own_orders;
COMMIT;
SELECT (coalesce(nullif(current_setting('app.current_account_id', true), ''), '0')::bigint = :tenant)::int AS ok \gset
SELECT 1 / :ok AS own_tenant_outside_begin;
`

var pgbenchProcessed = regexp.MustCompile(`(?m)^number of transactions actually processed: (\d+)/(\d+)$`)

// checkPgbench fails t unless pgbench processed all want transactions.
func checkPgbench(t *testing.T, mode string, out []byte, err error, want int) {
	t.Helper()
	m := pgbenchProcessed.FindSubmatch(out)
	if err != nil || m == nil || string(m[1]) != strconv.Itoa(want) {
		t.Errorf("pgbench -M %s: %v (want %d transactions processed)\n%s", mode, err, want, out)
	}
}

// dsnToken mints tenant's token.
func dsnToken(t testing.TB, tenant int64) string {
	return proxytest.Token(t, strconv.FormatInt(tenant, 10), region, 0)
}

// pgEnv is the environment of a libpq client through the proxy as the
// token's tenant: no inherited PG* variable can redirect it.
func pgEnv(e *txEnv, token string) []string {
	var out []string
	for _, kv := range os.Environ() {
		if len(kv) < 2 || kv[:2] != "PG" {
			out = append(out, kv)
		}
	}
	return append(out, "PGHOST="+e.Host(), "PGPORT="+e.Port(), "PGUSER=tester", "PGDATABASE=app",
		"PGPASSWORD="+token, "PGSSLMODE=disable", "PGCONNECT_TIMEOUT=60")
}
