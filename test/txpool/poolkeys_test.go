package txpool

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// waitBackends polls until the pool's backends number want, or fails t
// after timeout with the last count.
func (e *txEnv) waitBackends(ctx context.Context, t *testing.T, want int, timeout time.Duration, why string) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	n := -1
	for time.Now().Before(deadline) {
		var err error
		if n, err = e.backendsNow(ctx); err != nil {
			t.Fatal(err)
		}
		if n == want {
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("%s: %d pooled backends after %s, want %d", why, n, timeout, want)
}

// TestPoolMinIdleAndIdleTimeout: the pool of the region's database opens
// pool.min_idle backends when the proxy starts, before any client; a burst
// opens up to pool.size; pool.idle_timeout after the burst the pool is back
// to pool.min_idle, not below; and when the proxy shuts down, none of its
// backends is left on the server.
func TestPoolMinIdleAndIdleTimeout(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	e := start(t, poolOptions{Size: 5, MinIdle: 2, IdleTimeout: time.Second})
	e.waitBackends(ctx, t, 2, 10*time.Second, "pool.min_idle 2 at start, before any client")
	first := e.mustConnect(ctx, t, tenantID(9), pgx.QueryExecModeExec)
	if _, err := first.Exec(ctx, "SELECT 1"); err != nil {
		t.Fatal(err)
	}
	e.waitBackends(ctx, t, 2, 10*time.Second, "pool.min_idle 2 after one statement")

	// Five clients hold a transaction each at once: five backends.
	conns := make([]*pgx.Conn, 5)
	txs := make([]pgx.Tx, 5)
	var err error
	for i := range conns {
		c := e.mustConnect(ctx, t, tenantID(i), pgx.QueryExecModeExec)
		conns[i] = c
		if txs[i], err = c.Begin(ctx); err != nil {
			t.Fatal(err)
		}
		var got string
		if err := txs[i].QueryRow(ctx, settingSQL).Scan(&got); err != nil || got != fmt.Sprint(tenantID(i)) {
			t.Fatalf("client %d: setting %q, %v", i, got, err)
		}
	}
	e.waitBackends(ctx, t, 5, 5*time.Second, "five clients in a transaction each (pool.size 5)")
	for _, tx := range txs {
		if err := tx.Commit(ctx); err != nil {
			t.Fatal(err)
		}
	}
	// Idle for pool.idle_timeout (1s): back to min_idle, with some slack
	// for the pool's sweep period.
	e.waitBackends(ctx, t, 2, 10*time.Second, "pool.idle_timeout 1s after the burst")
	// The clients still work, on the remaining backends.
	for i, c := range conns {
		var got string
		if err := c.QueryRow(ctx, settingSQL).Scan(&got); err != nil || got != fmt.Sprint(tenantID(i)) {
			t.Fatalf("client %d after the pool shrank: setting %q, %v", i, got, err)
		}
	}
	for _, c := range conns {
		_ = c.Close(ctx)
	}
	sctx, scancel := context.WithTimeout(ctx, 10*time.Second)
	defer scancel()
	if err := e.Server.Shutdown(sctx); err != nil {
		t.Fatalf("shutdown: %v", err)
	}
	e.waitBackends(ctx, t, 0, 10*time.Second, "after the proxy shut down")
}

// TestPoolMaxWait: with every backend held by an open transaction, a
// client's statement waits pool.max_wait and then fails with SQLSTATE
// class 53 (insufficient resources) — not sooner, not much later, not
// hanging — and its connection stays usable once a backend is free.
func TestPoolMaxWait(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	const maxWait = 700 * time.Millisecond
	e := start(t, poolOptions{Size: 1, MaxWait: maxWait})
	holder := e.mustConnect(ctx, t, tenantID(0), pgx.QueryExecModeExec)
	waiter := e.mustConnect(ctx, t, tenantID(1), pgx.QueryExecModeExec)
	tx, err := holder.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, mode := range []pgx.QueryExecMode{pgx.QueryExecModeSimpleProtocol, pgx.QueryExecModeExec} {
		began := time.Now()
		var got string
		err := waiter.QueryRow(ctx, settingSQL, mode).Scan(&got)
		waited := time.Since(began)
		var pgErr *pgconn.PgError
		if !errors.As(err, &pgErr) || !strings.HasPrefix(pgErr.Code, "53") {
			t.Fatalf("%v: statement with the only backend held: %v after %s, want an error of SQLSTATE class 53", mode, err, waited)
		}
		if waited < maxWait-50*time.Millisecond || waited > maxWait+3*time.Second {
			t.Errorf("%v: refused after %s, pool.max_wait is %s", mode, waited, maxWait)
		}
		t.Logf("%v: %s after %s (%s; hint %q)", mode, pgErr.Code, waited.Round(time.Millisecond), pgErr.Message, pgErr.Hint)
	}
	if err := tx.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	var got string
	if err := waiter.QueryRow(ctx, settingSQL).Scan(&got); err != nil || got != fmt.Sprint(tenantID(1)) {
		t.Fatalf("the refused client once the backend is free: setting %q, %v", got, err)
	}
}

// TestSessionStateRefused: with the statement policy on, session state
// that a pooled backend would keep after the transaction (SQL PREPARE, a
// WITH HOLD cursor, LISTEN, a session advisory lock, a temporary table) is
// refused, with a message that names pool.mode: session; the connection
// goes on with its tenant afterwards. A session advisory lock that got
// through would be held by whichever client gets the backend next.
func TestSessionStateRefused(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	e := start(t, poolOptions{Size: 2, Policy: true})
	conn := e.mustConnect(ctx, t, tenantID(0), pgx.QueryExecModeExec)
	for _, c := range []struct {
		stmt string
		// always: the policy refuses it in every pool mode (42501), so
		// only the refusal matters, not its wording.
		always bool
	}{
		{"PREPARE p AS SELECT 1", false},
		{"DECLARE c CURSOR WITH HOLD FOR SELECT 1", false},
		{"LISTEN txpool_channel", false},
		{"SELECT pg_advisory_lock(42)", true},
		{"SELECT pg_try_advisory_lock(42)", true},
		{"CREATE TEMP TABLE txpool_tmp (x int)", true},
	} {
		stmt := c.stmt
		_, err := conn.Exec(ctx, stmt, pgx.QueryExecModeSimpleProtocol)
		var pgErr *pgconn.PgError
		switch {
		case err == nil:
			t.Errorf("%s: allowed in pool.mode transaction", stmt)
		case !errors.As(err, &pgErr):
			t.Fatalf("%s: %v", stmt, err)
		case c.always && pgErr.Code != "42501":
			t.Errorf("%s: refused with %s %q, want the policy's 42501", stmt, pgErr.Code, pgErr.Message)
		case !c.always && !strings.Contains(pgErr.Message+" "+pgErr.Hint, "pool.mode: session"):
			t.Errorf("%s: refused with %s %q (hint %q), which does not name pool.mode: session", stmt, pgErr.Code, pgErr.Message, pgErr.Hint)
		}
		var got string
		if err := conn.QueryRow(ctx, settingSQL).Scan(&got); err != nil || got != fmt.Sprint(tenantID(0)) {
			t.Fatalf("after %s: setting %q, %v", stmt, got, err)
		}
	}
}

// TestSessionSetsFollowTheClient: with the policy on, an allowed
// session-level SET (work_mem) follows its client into every later
// transaction, whichever backend runs it, and no other client ever sees it;
// RESET takes it back. Four clients of four tenants on two backends.
func TestSessionSetsFollowTheClient(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	e := start(t, poolOptions{Size: 2, Policy: true})
	var def string
	if err := e.su.QueryRow(ctx, "SHOW work_mem").Scan(&def); err != nil {
		t.Fatal(err)
	}
	type cl struct {
		conn *pgx.Conn
		want string
	}
	var cls []*cl
	for i := range 4 {
		mode := []pgx.QueryExecMode{pgx.QueryExecModeSimpleProtocol, pgx.QueryExecModeExec, pgx.QueryExecModeCacheStatement, pgx.QueryExecModeDescribeExec}[i]
		c := e.mustConnect(ctx, t, tenantID(i), mode)
		cls = append(cls, &cl{conn: c, want: def})
	}
	check := func(round int) {
		for i, c := range cls {
			var got string
			if err := c.conn.QueryRow(ctx, `SELECT current_setting('work_mem')`).Scan(&got); err != nil {
				t.Fatalf("round %d client %d: %v", round, i, err)
			}
			if got != c.want {
				t.Fatalf("round %d client %d: work_mem %q, want %q (its own SET, or the default)", round, i, got, c.want)
			}
		}
	}
	for round := range 30 {
		i := round % len(cls)
		c := cls[i]
		switch round % 3 {
		case 0, 1:
			v := fmt.Sprintf("%dkB", 100+round*10+i)
			if _, err := c.conn.Exec(ctx, "SET work_mem = '"+v+"'", pgx.QueryExecModeSimpleProtocol); err != nil {
				t.Fatalf("round %d: SET work_mem: %v", round, err)
			}
			c.want = v
		case 2:
			if _, err := c.conn.Exec(ctx, "RESET work_mem", pgx.QueryExecModeSimpleProtocol); err != nil {
				t.Fatalf("round %d: RESET work_mem: %v", round, err)
			}
			c.want = def
		}
		check(round)
		// A BEGIN block sees it too, and a SET LOCAL inside ends with it.
		tx, err := c.conn.Begin(ctx)
		if err != nil {
			t.Fatal(err)
		}
		var got string
		if _, err := tx.Exec(ctx, "SET LOCAL work_mem = '77kB'", pgx.QueryExecModeSimpleProtocol); err != nil {
			t.Fatalf("round %d: SET LOCAL: %v", round, err)
		}
		if err := tx.QueryRow(ctx, `SELECT current_setting('work_mem')`).Scan(&got); err != nil || got != "77kB" {
			t.Fatalf("round %d: SET LOCAL in a BEGIN block: %q, %v", round, got, err)
		}
		if err := tx.Commit(ctx); err != nil {
			t.Fatal(err)
		}
		check(round)
	}
}
