package e2e

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgerrcode"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgconn/ctxwatch"
	"github.com/jackc/pgx/v5/pgproto3"

	"github.com/pgtenant/pgtenant/config"
	"github.com/pgtenant/pgtenant/test/pgtest"
	"github.com/pgtenant/pgtenant/test/proxytest"
)

// Transaction pooling (pool.mode: transaction) through the in-process proxy
// in front of real clusters, with pgx and raw protocol clients.

// startPooled starts a proxy in transaction mode with pool.size size.
func startPooled(t *testing.T, size int, maxWait time.Duration, policyOn bool) *proxytest.Env {
	t.Helper()
	return proxytest.Start(t, proxytest.Options{Regions: []string{"eu-west"}, Policy: policyOn, Configure: func(c *config.Config) {
		c.Pool.Mode = config.PoolTransaction
		c.Pool.Size = size
		if maxWait > 0 {
			c.Pool.MaxWait = maxWait
		}
	}})
}

// connectMode connects through the proxy with pgx in mode, with extra
// startup parameters as name, value pairs.
func connectMode(t *testing.T, env *proxytest.Env, account string, mode pgx.QueryExecMode, params ...string) *pgx.Conn {
	t.Helper()
	cfg, err := pgx.ParseConfig(env.DSN(t, account, "eu-west"))
	if err != nil {
		t.Fatal(err)
	}
	cfg.DefaultQueryExecMode = mode
	// context expiry sends a CancelRequest (pgx's default closes the socket)
	cfg.BuildContextWatcherHandler = func(pc *pgconn.PgConn) ctxwatch.Handler {
		return &pgconn.CancelRequestContextWatcherHandler{Conn: pc, DeadlineDelay: 20 * time.Second}
	}
	for i := 0; i+1 < len(params); i += 2 {
		cfg.RuntimeParams[params[i]] = params[i+1]
	}
	conn, err := pgx.ConnectConfig(ctxT(t), cfg)
	if err != nil {
		t.Fatalf("connect: %v", err)
	}
	t.Cleanup(func() { _ = conn.Close(context.Background()) })
	return conn
}

const probeSQL = "SELECT current_setting('app.current_account_id', true), pg_backend_pid(), txid_current()"

type probe struct {
	account string
	pid     int32
	txid    int64
}

func probeTx(t *testing.T, q interface {
	QueryRow(context.Context, string, ...any) pgx.Row
}) probe {
	t.Helper()
	var p probe
	if err := q.QueryRow(ctxT(t), probeSQL).Scan(&p.account, &p.pid, &p.txid); err != nil {
		t.Fatalf("probe: %v", err)
	}
	return p
}

// sessionLevel returns the backend's session-level value of the tenant
// setting: RESET inside a transaction falls back to it (the test proxy's
// checker allows RESET; the real policy refuses it).
func sessionLevel(t *testing.T, conn *pgx.Conn) string {
	t.Helper()
	tx, err := conn.Begin(ctxT(t))
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = tx.Rollback(context.Background()) }()
	if _, err := tx.Exec(ctxT(t), "RESET app.current_account_id"); err != nil {
		t.Fatal(err)
	}
	var v string
	if err := tx.QueryRow(ctxT(t), "SELECT current_setting('app.current_account_id', true)").Scan(&v); err != nil {
		t.Fatal(err)
	}
	return v
}

// Every transaction, implicit or explicit, in the simple and the extended
// protocol, sees the tenant setting; the backend holds none at session level.
func TestTxPoolTenantSettingInEveryTransaction(t *testing.T) {
	env := startPooled(t, 2, 0, false)
	for _, mode := range []pgx.QueryExecMode{pgx.QueryExecModeSimpleProtocol, pgx.QueryExecModeExec, pgx.QueryExecModeCacheStatement} {
		t.Run(mode.String(), func(t *testing.T) {
			conn := connectMode(t, env, "42", mode)
			a, b := probeTx(t, conn), probeTx(t, conn)
			if a.account != "42" || b.account != "42" {
				t.Errorf("implicit transactions saw %q and %q, want 42", a.account, b.account)
			}
			if a.txid == b.txid {
				t.Errorf("two implicit transactions share txid %d", a.txid)
			}
			tx, err := conn.Begin(ctxT(t))
			if err != nil {
				t.Fatal(err)
			}
			c, d := probeTx(t, tx), probeTx(t, tx)
			if err := tx.Commit(ctxT(t)); err != nil {
				t.Fatal(err)
			}
			if c.account != "42" || d.account != "42" || c.txid != d.txid || c.pid != d.pid {
				t.Errorf("explicit transaction: %+v then %+v, want tenant 42 on one backend in one transaction", c, d)
			}
			if v := sessionLevel(t, conn); v != "" {
				t.Errorf("the backend holds the tenant setting %q at session level, want none", v)
			}
		})
	}
}

// A simple multi-statement Query is one implicit transaction, and a simple
// Query after extended messages without Sync runs in the transaction they
// opened, with the context set once at its start (PostgreSQL's postgres.c).
func TestTxPoolImplicitTransactionsRawProtocol(t *testing.T) {
	env := startPooled(t, 2, 0, false)
	w := newWire(t, env, "42")
	r := w.query("SELECT txid_current()::text, current_setting('app.current_account_id'); SELECT txid_current()::text, current_setting('app.current_account_id')")
	if len(r.codes) > 0 || len(r.rows) != 2 || r.rows[0][0] != r.rows[1][0] || r.rows[0][1] != "42" || r.rows[1][1] != "42" {
		t.Errorf("multi-statement query: %v; want one transaction with tenant 42", r)
	}
	r = w.send(
		&pgproto3.Parse{Query: "SELECT txid_current()::text, current_setting('app.current_account_id')"},
		&pgproto3.Bind{}, &pgproto3.Execute{},
		&pgproto3.Query{String: "SELECT txid_current()::text, current_setting('app.current_account_id')"},
	)
	if len(r.codes) > 0 || len(r.rows) != 2 || r.rows[0][0] != r.rows[1][0] || r.rows[0][1] != "42" || r.rows[1][1] != "42" {
		t.Errorf("extended messages then a Query without Sync: %v; want one transaction with tenant 42", r)
	}
	// An extended batch up to Sync is one transaction.
	r = w.send(
		&pgproto3.Parse{Query: "SELECT txid_current()::text, current_setting('app.current_account_id')"},
		&pgproto3.Bind{}, &pgproto3.Execute{}, &pgproto3.Bind{}, &pgproto3.Execute{}, &pgproto3.Sync{},
	)
	if len(r.codes) > 0 || len(r.rows) != 2 || r.rows[0][0] != r.rows[1][0] || r.rows[0][1] != "42" {
		t.Errorf("extended batch: %v; want one transaction with tenant 42", r)
	}
	// A Sync with no transaction open is answered, and the session goes on.
	if r = w.send(&pgproto3.Sync{}); len(r.codes) > 0 {
		t.Errorf("lone Sync: %v", r)
	}
	if r = w.query("SELECT current_setting('app.current_account_id')"); len(r.rows) != 1 || r.rows[0][0] != "42" {
		t.Errorf("after a lone Sync: %v", r)
	}
}

// Two tenants interleaving transactions on one backend each see only their
// own setting and rows.
func TestTxPoolTenantsInterleaveOnOneBackend(t *testing.T) {
	env := startPooled(t, 1, 0, false)
	a := connectMode(t, env, "42", pgx.QueryExecModeCacheStatement)
	b := connectMode(t, env, "7", pgx.QueryExecModeSimpleProtocol)
	var pids []int32
	for i := range 6 {
		for _, c := range []struct {
			conn    *pgx.Conn
			account string
		}{{a, "42"}, {b, "7"}} {
			p := probeTx(t, c.conn)
			if p.account != c.account {
				t.Fatalf("round %d: tenant %s saw setting %q", i, c.account, p.account)
			}
			pids = append(pids, p.pid)
			var accounts []string
			rows, err := c.conn.Query(ctxT(t), "SELECT DISTINCT account_id::text FROM orders")
			if err != nil {
				t.Fatal(err)
			}
			for rows.Next() {
				var s string
				if err := rows.Scan(&s); err != nil {
					t.Fatal(err)
				}
				accounts = append(accounts, s)
			}
			if rows.Err() != nil {
				t.Fatal(rows.Err())
			}
			if len(accounts) != 1 || accounts[0] != c.account {
				t.Fatalf("round %d: tenant %s read rows of %v", i, c.account, accounts)
			}
		}
	}
	for _, pid := range pids {
		if pid != pids[0] {
			t.Fatalf("pool.size 1 used backends %v", pids)
		}
	}
	// Tenant 7's explicit transaction keeps the backend: tenant 42 waits,
	// then runs with its own context once 7 commits.
	tx, err := b.Begin(ctxT(t))
	if err != nil {
		t.Fatal(err)
	}
	got := make(chan probe, 1)
	go func() {
		var p probe
		_ = a.QueryRow(context.Background(), probeSQL).Scan(&p.account, &p.pid, &p.txid)
		got <- p
	}()
	time.Sleep(100 * time.Millisecond)
	if p := probeTx(t, tx); p.account != "7" {
		t.Errorf("tenant 7 inside its transaction saw %q", p.account)
	}
	if err := tx.Commit(ctxT(t)); err != nil {
		t.Fatal(err)
	}
	select {
	case p := <-got:
		if p.account != "42" {
			t.Errorf("tenant 42 after tenant 7's transaction saw %q", p.account)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("tenant 42 never got the backend")
	}
}

// Prepared statements follow the client to another backend.
func TestTxPoolPreparedStatementsAcrossBackends(t *testing.T) {
	env := startPooled(t, 2, 0, false)
	a := connectMode(t, env, "42", pgx.QueryExecModeCacheStatement)
	b := connectMode(t, env, "7", pgx.QueryExecModeSimpleProtocol)
	const q = "SELECT $1::int + 1, current_setting('app.current_account_id', true), pg_backend_pid()"
	run := func() (int, string, int32) {
		var n int
		var acc string
		var pid int32
		if err := a.QueryRow(ctxT(t), q, 41).Scan(&n, &acc, &pid); err != nil {
			t.Fatalf("prepared query: %v", err)
		}
		return n, acc, pid
	}
	n, acc, first := run()
	if n != 42 || acc != "42" {
		t.Fatalf("first run = (%d, %q)", n, acc)
	}
	// Tenant 7 holds the backend 42 used last (the pool reuses the most
	// recently used one), so 42's next run lands on the other backend.
	tx, err := b.Begin(ctxT(t))
	if err != nil {
		t.Fatal(err)
	}
	if p := probeTx(t, tx); p.pid != first {
		t.Fatalf("tenant 7 got backend %d, want the one 42 used (%d)", p.pid, first)
	}
	n, acc, second := run()
	if n != 42 || acc != "42" || second == first {
		t.Errorf("run on another backend = (%d, %q, pid %d; first %d)", n, acc, second, first)
	}
	if err := tx.Commit(ctxT(t)); err != nil {
		t.Fatal(err)
	}
	// Named statements: prepared, used on both backends, closed by the
	// client (answered by the proxy), then unknown to the server.
	if _, err := a.Prepare(ctxT(t), "mine", "SELECT $1::text || current_setting('app.current_account_id', true)"); err != nil {
		t.Fatal(err)
	}
	for range 3 {
		var s string
		if err := a.QueryRow(ctxT(t), "mine", "x").Scan(&s); err != nil || s != "x42" {
			t.Fatalf("named statement = %q, %v", s, err)
		}
	}
	if err := a.Deallocate(ctxT(t), "mine"); err != nil {
		t.Fatalf("deallocate: %v", err)
	}
	_, err = a.PgConn().ExecPrepared(ctxT(t), "mine", [][]byte{[]byte("x")}, nil, nil).Close()
	if pgCode(err) != pgerrcode.InvalidSQLStatementName {
		t.Errorf("statement after Close: %v, want 26000", err)
	}
}

// A client that waits pool.max_wait for a backend gets 53300 naming
// pool.size and pool.max_wait, and the next statement runs once one is free.
func TestTxPoolMaxWait(t *testing.T) {
	env := startPooled(t, 1, 300*time.Millisecond, false)
	holder := connectMode(t, env, "7", pgx.QueryExecModeSimpleProtocol)
	waiter := connectMode(t, env, "42", pgx.QueryExecModeCacheStatement)
	tx, err := holder.Begin(ctxT(t))
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	_, err = waiter.Exec(ctxT(t), "SELECT 1")
	var pe *pgconn.PgError
	if !errors.As(err, &pe) || pe.Code != pgerrcode.TooManyConnections ||
		!strings.Contains(pe.Hint, "pool.size") || !strings.Contains(pe.Hint, "pool.max_wait") {
		t.Fatalf("waiting client: %v, want 53300 with a hint naming pool.size and pool.max_wait", err)
	}
	if d := time.Since(start); d < 300*time.Millisecond || d > 5*time.Second {
		t.Errorf("refused after %s, want about pool.max_wait (300ms)", d)
	}
	if err := tx.Commit(ctxT(t)); err != nil {
		t.Fatal(err)
	}
	if p := probeTx(t, waiter); p.account != "42" {
		t.Errorf("after the wait: %+v", p)
	}
}

// Session state that cannot move between backends is refused with 0A000
// naming pool.mode: session; transaction-scoped forms work, and the
// session stays usable.
func TestTxPoolRefusesSessionState(t *testing.T) {
	env := startPooled(t, 2, 0, true)
	conn := connectMode(t, env, "42", pgx.QueryExecModeSimpleProtocol)
	for _, sql := range []string{
		"SET default_transaction_isolation = 'serializable'",
		"PREPARE p AS SELECT 1",
		"DECLARE c CURSOR WITH HOLD FOR SELECT 1",
		"SELECT set_config('application_name', 'x', false)",
	} {
		_, err := conn.Exec(ctxT(t), sql)
		var pe *pgconn.PgError
		if !errors.As(err, &pe) || pe.Code != pgerrcode.FeatureNotSupported || !strings.Contains(pe.Message, "pool.mode: session") {
			t.Errorf("%s: %v, want 0A000 naming pool.mode: session", sql, err)
		}
	}
	tx, err := conn.Begin(ctxT(t))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tx.Exec(ctxT(t), "SET LOCAL TimeZone = 'UTC'"); err != nil {
		t.Fatalf("SET LOCAL: %v", err)
	}
	var tz string
	if err := tx.QueryRow(ctxT(t), "SHOW TimeZone").Scan(&tz); err != nil || tz != "UTC" {
		t.Errorf("TimeZone in the transaction = %q, %v", tz, err)
	}
	if err := tx.Commit(ctxT(t)); err != nil {
		t.Fatal(err)
	}
	var n int
	if err := conn.QueryRow(ctxT(t), "SELECT count(*) FROM orders WHERE account_id = 42").Scan(&n); err != nil || n == 0 {
		t.Errorf("after the refusals: %d rows, %v", n, err)
	}
}

// Startup settings are replayed in every transaction, and the client's
// ParameterStatus keeps its own value.
func TestTxPoolReplaysStartupSettings(t *testing.T) {
	env := startPooled(t, 1, 0, false)
	a := connectMode(t, env, "42", pgx.QueryExecModeCacheStatement, "application_name", "app-a", "TimeZone", "Asia/Tokyo")
	b := connectMode(t, env, "7", pgx.QueryExecModeSimpleProtocol, "application_name", "app-b")
	for range 3 {
		for _, c := range []struct {
			conn     *pgx.Conn
			app, tz  string
			explicit bool
		}{{a, "app-a", "Asia/Tokyo", false}, {b, "app-b", "", true}} {
			var app, tz string
			var err error
			if c.explicit {
				err = pgx.BeginFunc(ctxT(t), c.conn, func(tx pgx.Tx) error {
					return tx.QueryRow(ctxT(t), "SELECT current_setting('application_name'), current_setting('TimeZone')").Scan(&app, &tz)
				})
			} else {
				err = c.conn.QueryRow(ctxT(t), "SELECT current_setting('application_name'), current_setting('TimeZone')").Scan(&app, &tz)
			}
			if err != nil {
				t.Fatal(err)
			}
			if app != c.app || (c.tz != "" && tz != c.tz) || (c.tz == "" && tz == "Asia/Tokyo") {
				t.Errorf("%s saw application_name %q, TimeZone %q", c.app, app, tz)
			}
			if got := c.conn.PgConn().ParameterStatus("application_name"); got != c.app {
				t.Errorf("%s: ParameterStatus application_name = %q", c.app, got)
			}
		}
	}
}

// A cancel reaches the backend running the client's statement, and a
// client that holds no backend cancels nothing, whoever runs on the backend
// it used before.
func TestTxPoolCancelReachesTheRightBackend(t *testing.T) {
	env := startPooled(t, 1, 0, false)
	a := connectMode(t, env, "42", pgx.QueryExecModeSimpleProtocol)
	b := connectMode(t, env, "7", pgx.QueryExecModeSimpleProtocol)
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	start := time.Now()
	_, err := a.Exec(ctx, "SELECT pg_sleep(20)")
	if pgCode(err) != pgerrcode.QueryCanceled || time.Since(start) > 10*time.Second {
		t.Fatalf("cancelled sleep: err %v after %s, want 57014 at once", err, time.Since(start))
	}
	if p := probeTx(t, a); p.account != "42" {
		t.Errorf("after the cancel: %+v", p)
	}
	// a is idle (holds no backend); b sleeps on the only backend, which a
	// used before. a's cancels must not touch it.
	var wg sync.WaitGroup
	wg.Add(1)
	var sleepErr error
	go func() {
		defer wg.Done()
		_, sleepErr = b.Exec(ctxT(t), "SELECT pg_sleep(1)")
	}()
	time.Sleep(200 * time.Millisecond)
	for range 3 {
		if err := a.PgConn().CancelRequest(ctxT(t)); err != nil {
			t.Fatalf("cancel request: %v", err)
		}
		time.Sleep(50 * time.Millisecond)
	}
	wg.Wait()
	if sleepErr != nil {
		t.Errorf("tenant 7's statement was hit by tenant 42's cancel: %v", sleepErr)
	}
	// A cancel while the statement waits for a backend ends the wait with
	// 57014 (not 53300 after pool.max_wait).
	tx, err := b.Begin(ctxT(t))
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = tx.Rollback(context.Background()) }()
	wctx, wcancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer wcancel()
	start = time.Now()
	_, err = a.Exec(wctx, "SELECT 1")
	if pgCode(err) != pgerrcode.QueryCanceled || time.Since(start) > 3*time.Second {
		t.Errorf("cancel while waiting for a backend: %v after %s, want 57014 at once", err, time.Since(start))
	}
	if err := tx.Commit(ctxT(t)); err != nil {
		t.Fatal(err)
	}
	if p := probeTx(t, a); p.account != "42" {
		t.Errorf("after a cancelled wait: %+v", p)
	}
}

// SHOW POOLS and SHOW SERVERS show the pool in PgBouncer's columns, and
// idle backends beyond pool.min_idle close after pool.idle_timeout.
func TestTxPoolConsoleAndIdleTimeout(t *testing.T) {
	env := proxytest.Start(t, proxytest.Options{Regions: []string{"eu-west"}, Configure: func(c *config.Config) {
		c.Pool.Mode = config.PoolTransaction
		c.Pool.Size = 3
		c.Pool.MinIdle = 1
		c.Pool.IdleTimeout = 300 * time.Millisecond
		c.Admin.Roles = []string{"platform-admin"}
	}})
	admin, err := pgx.Connect(ctxT(t), consoleDSN(env, t, "platform-admin"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = admin.Close(context.Background()) })
	var txs []pgx.Tx
	for _, acc := range []string{"42", "7", "42"} {
		tx, err := connectMode(t, env, acc, pgx.QueryExecModeSimpleProtocol).Begin(ctxT(t))
		if err != nil {
			t.Fatal(err)
		}
		probeTx(t, tx)
		txs = append(txs, tx)
	}
	waiter := connectMode(t, env, "7", pgx.QueryExecModeSimpleProtocol)
	waited := make(chan error, 1)
	go func() { _, err := waiter.Exec(context.Background(), "SELECT 1"); waited <- err }()
	deadline := time.Now().Add(5 * time.Second)
	var pools []map[string]string
	for {
		pools = consoleRows(t, admin, "SHOW POOLS")
		if len(pools) == 1 && pools[0]["cl_waiting"] == "1" || time.Now().After(deadline) {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if len(pools) != 1 {
		t.Fatalf("SHOW POOLS = %v, want one pool", pools)
	}
	p := pools[0]
	if p["pool_mode"] != "transaction" || p["sv_active"] != "3" || p["sv_idle"] != "0" || p["cl_active"] != "3" ||
		p["cl_waiting"] != "1" || p["region"] != "eu-west" {
		t.Errorf("SHOW POOLS with 3 transactions open and one client waiting = %v", p)
	}
	servers := consoleRows(t, admin, "SHOW SERVERS")
	active := 0
	for _, s := range servers {
		if s["state"] == "active" && s["link"] != "" {
			active++
		}
	}
	if len(servers) != 3 || active != 3 {
		t.Errorf("SHOW SERVERS = %v, want 3 active servers linked to their clients", servers)
	}
	for _, tx := range txs {
		if err := tx.Commit(ctxT(t)); err != nil {
			t.Fatal(err)
		}
	}
	if err := <-waited; err != nil {
		t.Fatalf("waiting client: %v", err)
	}
	deadline = time.Now().Add(5 * time.Second)
	for {
		p = consoleRows(t, admin, "SHOW POOLS")[0]
		if p["sv_idle"] == "1" && p["sv_active"] == "0" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("after idle_timeout: SHOW POOLS = %v, want sv_idle 1 (min_idle) and sv_active 0", p)
		}
		time.Sleep(50 * time.Millisecond)
	}
	// RECONNECT replaces the backends and keeps the clients
	before := probeTx(t, waiter)
	if _, err := admin.Exec(ctxT(t), "RECONNECT"); err != nil {
		t.Fatal(err)
	}
	after := probeTx(t, waiter)
	if after.pid == before.pid || after.account != "7" {
		t.Errorf("after RECONNECT: %+v, before %+v; want a new backend for the same client", after, before)
	}
}

// Session-level SETs of allowed settings follow the client from backend to
// backend once committed (a rolled-back SET does not), never reach another
// client, and the client's ParameterStatus keeps its value.
func TestTxPoolReplaysSessionSets(t *testing.T) {
	env := startPooled(t, 1, 0, true)
	a := connectMode(t, env, "42", pgx.QueryExecModeSimpleProtocol)
	b := connectMode(t, env, "7", pgx.QueryExecModeCacheStatement)
	show := func(c *pgx.Conn, name string) string {
		t.Helper()
		var v string
		if err := c.QueryRow(ctxT(t), "SELECT current_setting('"+name+"')").Scan(&v); err != nil {
			t.Fatalf("show %s: %v", name, err)
		}
		return v
	}
	base := show(b, "TimeZone")
	if base == "Asia/Tokyo" {
		t.Skip("the cluster's own TimeZone is the test value")
	}
	if _, err := a.Exec(ctxT(t), "SET TimeZone = 'Asia/Tokyo'"); err != nil {
		t.Fatalf("SET: %v", err)
	}
	for range 3 {
		if got := show(a, "TimeZone"); got != "Asia/Tokyo" {
			t.Errorf("tenant 42 after its SET: TimeZone %q", got)
		}
		if got := show(b, "TimeZone"); got != base {
			t.Errorf("tenant 7 on the same backend: TimeZone %q, want %q", got, base)
		}
	}
	if got := a.PgConn().ParameterStatus("TimeZone"); got != "Asia/Tokyo" {
		t.Errorf("ParameterStatus TimeZone = %q", got)
	}
	// a SET in a transaction that rolls back is undone, as in PostgreSQL
	if _, err := a.Exec(ctxT(t), "BEGIN; SET TimeZone = 'UTC'; ROLLBACK"); err != nil {
		t.Fatal(err)
	}
	if got := show(a, "TimeZone"); got != "Asia/Tokyo" {
		t.Errorf("after a rolled-back SET: TimeZone %q", got)
	}
	// extended protocol
	if _, err := b.Exec(ctxT(t), "SET statement_timeout = 1234"); err != nil {
		t.Fatalf("extended SET: %v", err)
	}
	if got := show(b, "statement_timeout"); got != "1234ms" {
		t.Errorf("statement_timeout after an extended SET = %q", got)
	}
	if got := show(a, "statement_timeout"); got == "1234ms" {
		t.Error("tenant 42 got tenant 7's statement_timeout")
	}
	if _, err := a.Exec(ctxT(t), "RESET TimeZone"); err != nil {
		t.Fatal(err)
	}
	if got := show(a, "TimeZone"); got != base {
		t.Errorf("after RESET: TimeZone %q, want %q", got, base)
	}
	// asyncpg's reset at pool release; RESET ALL drops every tracked SET
	if _, err := b.Exec(ctxT(t), "SELECT pg_advisory_unlock_all(); CLOSE ALL; UNLISTEN *; RESET ALL;", pgx.QueryExecModeSimpleProtocol); err != nil {
		t.Fatalf("asyncpg's reset: %v", err)
	}
	if got := show(b, "statement_timeout"); got == "1234ms" {
		t.Error("statement_timeout survived RESET ALL")
	}
	if p := probeTx(t, b); p.account != "7" {
		t.Errorf("after RESET ALL: %+v", p)
	}
}

// An idle pooled backend the server ended (a restart, idle_session_timeout,
// pg_terminate_backend) is dropped at checkout, not handed to a client.
func TestTxPoolDropsBackendsTheServerClosed(t *testing.T) {
	env := startPooled(t, 1, 0, false)
	a := connectMode(t, env, "42", pgx.QueryExecModeSimpleProtocol)
	first := probeTx(t, a)
	su := pgtest.Conn(t, env.Clusters["eu-west"].SuperuserDSN(env.Clusters["eu-west"].Database))
	var ok bool
	if err := su.QueryRow(ctxT(t), "SELECT pg_terminate_backend($1)", first.pid).Scan(&ok); err != nil || !ok {
		t.Fatalf("terminate backend %d: %v", first.pid, err)
	}
	time.Sleep(1200 * time.Millisecond) // beyond the idle check delay
	second := probeTx(t, a)
	if second.account != "42" || second.pid == first.pid {
		t.Errorf("after the server ended the idle backend: %+v (first %+v)", second, first)
	}
}

// A client's unnamed statement outlives its batch as in PostgreSQL, even
// when another client's transaction replaced the backend's unnamed
// statement in between: the proxy parses it again before the Bind.
func TestTxPoolUnnamedStatementAcrossTransactions(t *testing.T) {
	env := startPooled(t, 1, 0, false)
	a, b := newWire(t, env, "42"), newWire(t, env, "7")
	if r := a.send(&pgproto3.Parse{Query: "SELECT 'a:' || current_setting('app.current_account_id')"}, &pgproto3.Sync{}); len(r.codes) > 0 {
		t.Fatalf("parse: %v", r)
	}
	if r := b.send(&pgproto3.Parse{Query: "SELECT 'b:' || current_setting('app.current_account_id')"}, &pgproto3.Bind{},
		&pgproto3.Execute{}, &pgproto3.Sync{}); len(r.rows) != 1 || r.rows[0][0] != "b:7" {
		t.Fatalf("tenant 7's unnamed statement: %v", r)
	}
	for range 2 {
		r := a.send(&pgproto3.Bind{}, &pgproto3.Execute{}, &pgproto3.Sync{})
		if len(r.codes) > 0 || len(r.rows) != 1 || r.rows[0][0] != "a:42" {
			t.Fatalf("tenant 42's unnamed statement after tenant 7's transaction: %v, want a:42", r)
		}
	}
	// a simple Query drops the unnamed statement, as the server does
	a.query("SELECT 1")
	if r := a.send(&pgproto3.Bind{}, &pgproto3.Execute{}, &pgproto3.Sync{}); len(r.codes) != 1 || r.codes[0] != pgerrcode.InvalidSQLStatementName {
		t.Errorf("Bind of the unnamed statement after a Query: %v, want 26000", r)
	}
}

// After an error in an extended message the server skips up to Sync, a
// simple Query included; a pipelined next batch still starts its own
// transaction with the tenant context.
func TestTxPoolErrorsInPipelines(t *testing.T) {
	env := startPooled(t, 1, 0, false)
	a := newWire(t, env, "42")
	const setting = "SELECT current_setting('app.current_account_id')"
	r := a.send(&pgproto3.Parse{Query: "SELECT no_such_column FROM orders"}, &pgproto3.Bind{}, &pgproto3.Execute{}, &pgproto3.Sync{},
		&pgproto3.Parse{Query: setting}, &pgproto3.Bind{}, &pgproto3.Execute{}, &pgproto3.Sync{})
	if len(r.codes) != 1 || r.codes[0] != pgerrcode.UndefinedColumn || len(r.rows) != 0 {
		t.Fatalf("failing batch: %v", r)
	}
	if r = a.receive(); len(r.codes) != 0 || len(r.rows) != 1 || r.rows[0][0] != "42" {
		t.Fatalf("the pipelined batch after a failed one: %v, want tenant 42", r)
	}
	r = a.send(&pgproto3.Parse{Query: "SELECT no_such_column FROM orders"}, &pgproto3.Bind{}, &pgproto3.Execute{},
		&pgproto3.Query{String: "SELECT 'skipped'"}, &pgproto3.Parse{Query: setting}, &pgproto3.Sync{})
	if len(r.codes) != 1 || len(r.rows) != 0 {
		t.Fatalf("messages after an extended error up to Sync: %v, want one error and nothing run", r)
	}
	if r = a.query(setting); len(r.rows) != 1 || r.rows[0][0] != "42" {
		t.Errorf("after the skipped messages: %v", r)
	}
}

// Many clients of two tenants, in every pgx mode, share three backends:
// every statement sees its own tenant's setting and rows only.
func TestTxPoolManyClientsFewBackends(t *testing.T) {
	env := startPooled(t, 3, 10*time.Second, false)
	modes := []pgx.QueryExecMode{pgx.QueryExecModeSimpleProtocol, pgx.QueryExecModeExec, pgx.QueryExecModeCacheStatement,
		pgx.QueryExecModeDescribeExec, pgx.QueryExecModeCacheDescribe}
	var wg sync.WaitGroup
	errs := make(chan error, 100)
	deadline := time.Now().Add(2 * time.Second)
	for i := range 24 {
		account := []string{"42", "7"}[i%2]
		conn := connectMode(t, env, account, modes[i%len(modes)])
		wg.Add(1)
		go func() {
			defer wg.Done()
			ctx := context.Background()
			for n := 0; time.Now().Before(deadline); n++ {
				var acc string
				var rows int
				var err error
				if n%3 == 0 {
					err = pgx.BeginFunc(ctx, conn, func(tx pgx.Tx) error {
						if err := tx.QueryRow(ctx, "SELECT current_setting('app.current_account_id')").Scan(&acc); err != nil {
							return err
						}
						return tx.QueryRow(ctx, "SELECT count(*) FROM orders WHERE account_id <> $1::bigint", account).Scan(&rows)
					})
				} else {
					err = conn.QueryRow(ctx, "SELECT current_setting('app.current_account_id'), (SELECT count(*) FROM orders WHERE account_id <> $1::bigint)",
						account).Scan(&acc, &rows)
				}
				if err != nil {
					errs <- fmt.Errorf("tenant %s: %w", account, err)
					return
				}
				if acc != account || rows != 0 {
					errs <- fmt.Errorf("tenant %s saw setting %q and %d rows of other tenants", account, acc, rows)
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}

// Read-only sessions get backends of their own pool, pinned read-only at
// the server; a denial in transaction mode keeps PostgreSQL's semantics.
func TestTxPoolReadOnlyAndDenials(t *testing.T) {
	env := startPooled(t, 2, 0, true)
	viewerTok := proxytest.SignedToken(t, map[string]any{"account_id": "42", "data_region": "eu-west", "sub": "v-42",
		"role": "viewer", "exp": time.Now().Add(time.Hour).Unix()})
	viewer := connect(t, env.DSNWithToken(viewerTok))
	writer := connectMode(t, env, "42", pgx.QueryExecModeSimpleProtocol)
	for range 3 {
		var ro string
		if err := viewer.QueryRow(ctxT(t), "SELECT current_setting('default_transaction_read_only')").Scan(&ro); err != nil || ro != "on" {
			t.Errorf("viewer backend default_transaction_read_only = %q, %v", ro, err)
		}
		if err := writer.QueryRow(ctxT(t), "SELECT current_setting('default_transaction_read_only')").Scan(&ro); err != nil || ro != "off" {
			t.Errorf("writer backend default_transaction_read_only = %q, %v", ro, err)
		}
	}
	// a denied statement fails the open transaction as a server error would
	tx, err := writer.Begin(ctxT(t))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tx.Exec(ctxT(t), "SELECT * FROM orders"); pgCode(err) != pgerrcode.InsufficientPrivilege {
		t.Fatalf("unscoped read: %v, want 42501", err)
	}
	if _, err := tx.Exec(ctxT(t), "SELECT 1"); pgCode(err) != pgerrcode.InFailedSQLTransaction {
		t.Errorf("after the denial in the transaction: %v, want 25P02", err)
	}
	_ = tx.Rollback(ctxT(t))
	if p := probeTx(t, writer); p.account != "42" {
		t.Errorf("after the rollback: %+v", p)
	}
}

// The tenant's statement timeout cancels the statement on the backend the
// session holds, and the pooled session goes on.
func TestTxPoolStatementTimeout(t *testing.T) {
	env := proxytest.Start(t, proxytest.Options{Regions: []string{"eu-west"}, Configure: func(c *config.Config) {
		c.Pool.Mode = config.PoolTransaction
		c.Pool.Size = 1
		c.Limits.Tenant.StatementTimeout = 300 * time.Millisecond
	}})
	conn := connectMode(t, env, "42", pgx.QueryExecModeCacheStatement)
	start := time.Now()
	_, err := conn.Exec(ctxT(t), "SELECT pg_sleep(10)")
	var pe *pgconn.PgError
	if !errors.As(err, &pe) || pe.Code != pgerrcode.QueryCanceled || !strings.Contains(pe.Message, "statement timeout") {
		t.Fatalf("pg_sleep(10) under a 300ms tenant timeout: %v", err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("cancelled after %s", d)
	}
	if p := probeTx(t, conn); p.account != "42" {
		t.Errorf("after the timeout: %+v", p)
	}
}

// COPY TO STDOUT runs in a pooled transaction with the tenant context.
func TestTxPoolCopyOut(t *testing.T) {
	env := startPooled(t, 1, 0, false)
	a := connectMode(t, env, "42", pgx.QueryExecModeSimpleProtocol)
	b := connectMode(t, env, "7", pgx.QueryExecModeSimpleProtocol)
	for _, c := range []struct {
		conn    *pgx.Conn
		account string
	}{{a, "42"}, {b, "7"}, {a, "42"}} {
		var buf strings.Builder
		tag, err := c.conn.PgConn().CopyTo(ctxT(t), &buf, "COPY (SELECT account_id FROM orders) TO STDOUT")
		if err != nil {
			t.Fatal(err)
		}
		lines := strings.Fields(buf.String())
		if tag.RowsAffected() == 0 || len(lines) == 0 {
			t.Fatalf("tenant %s copied nothing", c.account)
		}
		for _, l := range lines {
			if l != c.account {
				t.Fatalf("tenant %s copied a row of %s", c.account, l)
			}
		}
	}
}

// pgx batches and a pipeline of several Syncs: each Sync ends a
// transaction, and every one of them has the tenant context.
func TestTxPoolBatchesAndPipelines(t *testing.T) {
	env := startPooled(t, 2, 0, false)
	conn := connectMode(t, env, "42", pgx.QueryExecModeCacheStatement)
	batch := &pgx.Batch{}
	for i := range 20 {
		batch.Queue("SELECT $1::int, current_setting('app.current_account_id')", i)
	}
	res := conn.SendBatch(ctxT(t), batch)
	for i := range 20 {
		var n int
		var acc string
		if err := res.QueryRow().Scan(&n, &acc); err != nil || n != i || acc != "42" {
			t.Fatalf("batch query %d = (%d, %q), %v", i, n, acc, err)
		}
	}
	if err := res.Close(); err != nil {
		t.Fatal(err)
	}
	pipe := conn.PgConn().StartPipeline(ctxT(t))
	const segments = 4
	for range segments {
		pipe.SendQueryParams("SELECT txid_current()::text, current_setting('app.current_account_id')", nil, nil, nil, nil)
		pipe.SendQueryParams("SELECT txid_current()::text, current_setting('app.current_account_id')", nil, nil, nil, nil)
		pipe.SendPipelineSync()
	}
	if err := pipe.Flush(); err != nil {
		t.Fatal(err)
	}
	seen := map[string]bool{}
	for seg := range segments {
		var txids []string
		for range 2 {
			r, err := pipe.GetResults()
			if err != nil {
				t.Fatalf("segment %d: %v", seg, err)
			}
			rr, ok := r.(*pgconn.ResultReader)
			if !ok {
				t.Fatalf("segment %d: result %T", seg, r)
			}
			rows := rr.Read()
			if rows.Err != nil || len(rows.Rows) != 1 || string(rows.Rows[0][1]) != "42" {
				t.Fatalf("segment %d: %v %v", seg, rows.Err, rows.Rows)
			}
			txids = append(txids, string(rows.Rows[0][0]))
		}
		if txids[0] != txids[1] || seen[txids[0]] {
			t.Errorf("segment %d ran in transactions %v (seen %v): want one new transaction per Sync", seg, txids, seen)
		}
		seen[txids[0]] = true
		if r, err := pipe.GetResults(); err != nil {
			t.Fatalf("segment %d sync: %v", seg, err)
		} else if _, ok := r.(*pgconn.PipelineSync); !ok {
			t.Fatalf("segment %d: %T, want the Sync", seg, r)
		}
	}
	if err := pipe.Close(); err != nil {
		t.Fatal(err)
	}
}

// pgbench (libpq) in every protocol mode, 16 clients on 4 pooled backends:
// every transaction sees exactly tenant 42's row (the script divides by
// zero otherwise).
func TestTxPoolPgbench(t *testing.T) {
	runPgbenchModes(t, startPooled(t, 4, 30*time.Second, false), 16, 100)
}

// Errors, cancels and disconnects in the middle of transactions of many
// clients on two backends: every later transaction still sees its own
// tenant, and no client is hurt by another's cancel.
func TestTxPoolChaos(t *testing.T) {
	env := startPooled(t, 2, 20*time.Second, false)
	var wg sync.WaitGroup
	var cancelled atomic.Int32
	errs := make(chan error, 64)
	deadline := time.Now().Add(3 * time.Second)
	for i := range 12 {
		account := []string{"42", "7", "9"}[i%3]
		mode := []pgx.QueryExecMode{pgx.QueryExecModeSimpleProtocol, pgx.QueryExecModeCacheStatement, pgx.QueryExecModeExec}[i%3]
		wg.Add(1)
		go func() {
			defer wg.Done()
			ctx := context.Background()
			conn := connectMode(t, env, account, mode)
			for n := i; time.Now().Before(deadline); n++ {
				switch n % 5 {
				case 0: // a failing statement
					if _, err := conn.Exec(ctx, "SELECT 1/0"); pgCode(err) != pgerrcode.DivisionByZero {
						errs <- fmt.Errorf("tenant %s: 1/0: %v", account, err)
						return
					}
				case 1: // an explicit transaction that fails, then rolls back
					tx, err := conn.Begin(ctx)
					if err != nil {
						errs <- err
						return
					}
					_, _ = tx.Exec(ctx, "SELECT 1/0")
					if err := tx.Rollback(ctx); err != nil {
						errs <- fmt.Errorf("tenant %s: rollback: %v", account, err)
						return
					}
				case 2: // a statement cancelled by its context: on the backend,
					// or while it waits for one (a cancel that overtakes the
					// statement on its way is lost, as with PostgreSQL)
					cctx, cancel := context.WithTimeout(ctx, 30*time.Millisecond)
					_, err := conn.Exec(cctx, "SELECT pg_sleep(0.5)")
					cancel()
					switch {
					case pgCode(err) == pgerrcode.QueryCanceled:
						cancelled.Add(1)
					case err != nil:
						errs <- fmt.Errorf("tenant %s: cancelled sleep: %v", account, err)
						return
					}
				case 3: // disconnect in the middle of a transaction
					tx, err := conn.Begin(ctx)
					if err != nil {
						errs <- err
						return
					}
					if _, err := tx.Exec(ctx, "SELECT 1"); err != nil {
						errs <- err
						return
					}
					_ = conn.PgConn().Conn().Close()
					conn = connectMode(t, env, account, mode)
				}
				var acc string
				if err := conn.QueryRow(ctx, "SELECT current_setting('app.current_account_id')").Scan(&acc); err != nil || acc != account {
					errs <- fmt.Errorf("tenant %s after step %d: setting %q, %v", account, n%5, acc, err)
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if cancelled.Load() == 0 {
		t.Error("no statement was cancelled")
	}
}

// The client loop relays a batch's replies itself only when the server
// answers without more client input; otherwise a backend goroutine takes
// over: COPY FROM STDIN (the server waits for the data after
// CopyInResponse) and a batch larger than a write buffer each way (the
// server answers its first part while the proxy still writes the rest).
// With one pooled backend, each must end with the backend given back.
func TestTxPoolCopyInAndLargeBatches(t *testing.T) {
	env := startPooled(t, 1, 0, false)
	a := connectMode(t, env, "42", pgx.QueryExecModeSimpleProtocol)
	big := connectMode(t, env, "42", pgx.QueryExecModeCacheStatement)
	b := connectMode(t, env, "7", pgx.QueryExecModeSimpleProtocol)

	// a table without row-level security (COPY FROM refuses RLS tables)
	c := env.Clusters["eu-west"]
	if err := c.Exec(ctxT(t), c.Database, "CREATE TABLE copy_in (account_id bigint, note text); GRANT INSERT, SELECT ON copy_in TO "+c.ServiceUser); err != nil {
		t.Fatal(err)
	}
	data := "42\tone\n42\ttwo\n"
	tag, err := a.PgConn().CopyFrom(ctxT(t), strings.NewReader(data), "COPY copy_in (account_id, note) FROM STDIN")
	if err != nil || tag.RowsAffected() != 2 {
		t.Fatalf("copy from stdin: %v, %v", tag, err)
	}
	var n int
	if err := a.QueryRow(ctxT(t), "SELECT count(*) FROM copy_in").Scan(&n); err != nil || n != 2 {
		t.Fatalf("copied rows = %d, %v", n, err)
	}
	if p := probeTx(t, b); p.account != "7" {
		t.Fatalf("after COPY: tenant 7 saw %q", p.account)
	}

	const queries, size = 2000, 16 << 10 // 32 MiB each way: more than the socket buffers hold
	param := strings.Repeat("x", size)
	batch := &pgx.Batch{}
	for range queries {
		batch.Queue("SELECT $1::text, current_setting('app.current_account_id')", param)
	}
	res := big.SendBatch(ctxT(t), batch)
	for i := range queries {
		var s, acc string
		if err := res.QueryRow().Scan(&s, &acc); err != nil || len(s) != size || acc != "42" {
			t.Fatalf("batch query %d = (%d bytes, %q), %v", i, len(s), acc, err)
		}
	}
	if err := res.Close(); err != nil {
		t.Fatal(err)
	}
	if p := probeTx(t, b); p.account != "7" {
		t.Fatalf("after the large batch: tenant 7 saw %q", p.account)
	}
	if p := probeTx(t, a); p.account != "42" {
		t.Fatalf("tenant 42 saw %q", p.account)
	}
}
