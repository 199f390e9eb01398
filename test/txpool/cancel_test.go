package txpool

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// sqlstate returns err's SQLSTATE, or "" when err is not a server error.
func sqlstate(err error) string {
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) {
		return pgErr.Code
	}
	return ""
}

const queryCanceled = "57014"

// TestCancelReachesOwnBackend: client A (tenant 1001) sleeps in a BEGIN
// block while client B (tenant 1002) sleeps in its own, on a pool of two
// backends. A CancelRequest sent with A's key must end A's statement with
// 57014 quickly and leave B's statement to finish; afterwards both
// connections work and see their own tenants.
func TestCancelReachesOwnBackend(t *testing.T) {
	e := start(t, poolOptions{Size: 2})
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	a := e.mustConnect(ctx, t, tenantID(0), pgx.QueryExecModeExec)
	b := e.mustConnect(ctx, t, tenantID(1), pgx.QueryExecModeExec)

	for round := range 5 {
		bDone := make(chan error, 1)
		go func() {
			tx, err := b.Begin(ctx)
			if err != nil {
				bDone <- err
				return
			}
			defer func() { _ = tx.Rollback(context.WithoutCancel(ctx)) }()
			var got string
			if err := tx.QueryRow(ctx, `SELECT public.tx_sleep(1.5)`).Scan(&got); err != nil {
				bDone <- fmt.Errorf("B's statement: %w", err)
				return
			}
			if got != fmt.Sprint(tenantID(1)) {
				bDone <- fmt.Errorf("B's statement ran as tenant %q", got)
				return
			}
			bDone <- tx.Commit(ctx)
		}()
		tx, err := a.Begin(ctx)
		if err != nil {
			t.Fatal(err)
		}
		aErr := make(chan error, 1)
		go func() {
			_, err := tx.Exec(ctx, `SELECT public.tx_sleep(20)`)
			aErr <- err
		}()
		time.Sleep(300 * time.Millisecond) // both statements are running
		sent := time.Now()
		if err := a.PgConn().CancelRequest(ctx); err != nil {
			t.Fatalf("round %d: cancel request: %v", round, err)
		}
		select {
		case err := <-aErr:
			if sqlstate(err) != queryCanceled {
				t.Errorf("round %d: A's statement ended with %v, want SQLSTATE %s", round, err, queryCanceled)
			}
			if d := time.Since(sent); d > 5*time.Second {
				t.Errorf("round %d: A's statement was cancelled only after %s", round, d)
			}
		case <-time.After(15 * time.Second):
			t.Fatalf("round %d: A's statement was not cancelled within 15s of its CancelRequest", round)
		}
		_ = tx.Rollback(ctx)
		if err := <-bDone; err != nil {
			t.Errorf("round %d: B (another tenant, same pool) was hit by A's cancel: %v", round, err)
		}
		for _, c := range []struct {
			conn   *pgx.Conn
			tenant int64
		}{{a, tenantID(0)}, {b, tenantID(1)}} {
			var got string
			if err := c.conn.QueryRow(ctx, settingSQL).Scan(&got); err != nil || got != fmt.Sprint(c.tenant) {
				t.Errorf("round %d: after the cancel tenant %d's connection: setting %q, %v", round, c.tenant, got, err)
			}
		}
	}
}

// TestCancelRacesCommit is the PgBouncer #717 class: a CancelRequest that
// arrives when its client's transaction has just committed (or is
// committing) must not reach the backend, now serving another client's
// transaction. On a pool of one backend, client A runs short BEGIN blocks
// and fires its own cancel right after (and sometimes during) each COMMIT,
// while clients of other tenants run sleeping statements back to back on
// the same backend. No statement of the others may ever be cancelled;
// every answer must carry the caller's tenant.
func TestCancelRacesCommit(t *testing.T) {
	rounds := 200
	if testing.Short() {
		rounds = 60
	}
	for _, size := range []int{1, 2} {
		t.Run(fmt.Sprintf("pool.size=%d", size), func(t *testing.T) {
			e := start(t, poolOptions{Size: size})
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
			defer cancel()
			a := e.mustConnect(ctx, t, tenantID(0), pgx.QueryExecModeExec)

			var (
				stop       atomic.Bool
				wg         sync.WaitGroup
				victims    atomic.Int64 // other clients' cancelled statements
				otherStmts atomic.Int64
				errs       errorList
			)
			for k := 1; k <= 3; k++ {
				tenant := tenantID(k)
				mode := []pgx.QueryExecMode{pgx.QueryExecModeExec, pgx.QueryExecModeSimpleProtocol, pgx.QueryExecModeCacheStatement}[k-1]
				conn := e.mustConnect(ctx, t, tenant, mode)
				wg.Add(1)
				go func() {
					defer wg.Done()
					for !stop.Load() {
						var got string
						err := conn.QueryRow(ctx, `SELECT public.tx_sleep(0.003)`).Scan(&got)
						otherStmts.Add(1)
						switch {
						case sqlstate(err) == queryCanceled:
							victims.Add(1)
							errs.add(isolationf("tenant %d's statement was cancelled by tenant %d's CancelRequest", tenant, tenantID(0)))
						case err != nil:
							errs.add(fmt.Errorf("tenant %d: %w", tenant, err))
							return
						case got != fmt.Sprint(tenant):
							errs.add(isolationf("tenant %d's statement ran as tenant %q", tenant, got))
						}
					}
				}()
			}

			r := rand.New(rand.NewPCG(uint64(size), 717))
			ownCancelled := 0
			for i := range rounds {
				tx, err := a.Begin(ctx)
				if sqlstate(err) == queryCanceled { // A's own late cancel
					ownCancelled++
					continue
				}
				if err != nil {
					t.Fatalf("round %d: begin: %v", i, err)
				}
				// Each round fires one cancel at a random point: while A's
				// statement runs (it must land there or nowhere), while
				// COMMIT is in flight, or right after COMMIT returned.
				when := r.IntN(3)
				fired := make(chan error, 1)
				fire := func(delay time.Duration) {
					go func() {
						time.Sleep(delay)
						fired <- a.PgConn().CancelRequest(ctx)
					}()
				}
				if when == 0 {
					fire(time.Duration(r.IntN(30)) * time.Millisecond)
				}
				_, err = tx.Exec(ctx, `SELECT public.tx_sleep(0.015)`)
				if sqlstate(err) == queryCanceled {
					ownCancelled++
				} else if err != nil {
					t.Fatalf("round %d: %v", i, err)
				}
				if when == 1 {
					fire(0)
				}
				if err := tx.Commit(ctx); err != nil {
					if sqlstate(err) != queryCanceled && !errors.Is(err, pgx.ErrTxCommitRollback) {
						t.Fatalf("round %d: commit: %v", i, err)
					}
					_ = tx.Rollback(ctx)
				}
				if when == 2 {
					fire(0)
				}
				if err := <-fired; err != nil {
					t.Fatalf("round %d: cancel request: %v", i, err)
				}
				if a.IsClosed() {
					// pgx closes the connection itself when COMMIT fails
					// and leaves the transaction open (the cancel hit the
					// COMMIT): a client-side choice, not the proxy's.
					if a, err = e.connect(ctx, t, tenantID(0), pgx.QueryExecModeExec); err != nil {
						t.Fatalf("round %d: reconnect: %v", i, err)
					}
					defer a.Close(context.Background())
				}
				if r.IntN(4) == 0 {
					time.Sleep(time.Duration(r.IntN(3000)) * time.Microsecond)
				}
			}
			stop.Store(true)
			wg.Wait()
			t.Logf("%d rounds, %d statements of other tenants, %d of A's own statements cancelled", rounds, otherStmts.Load(), ownCancelled)
			if victims.Load() > 0 || errs.count() > 0 {
				t.Errorf("%s", errs.String())
			}
			if ownCancelled == 0 {
				t.Errorf("none of A's statements was cancelled in %d rounds: its CancelRequests reach no backend", rounds)
			}
			var got string
			if err := a.QueryRow(ctx, settingSQL).Scan(&got); err != nil || got != fmt.Sprint(tenantID(0)) {
				t.Errorf("A after the rounds: setting %q, %v", got, err)
			}
		})
	}
}

// TestCancelAtTransactionStart fires a client's CancelRequest at the same
// moment as the first statement of its transaction, when the proxy may be
// setting the transaction's tenant context on the backend just before the
// client's statement. Whatever the cancel hits, the client must see its
// statement either complete or fail with 57014, and keep its connection:
// a cancel is not a reason to end the session.
func TestCancelAtTransactionStart(t *testing.T) {
	rounds := 400
	if testing.Short() {
		rounds = 50
	}
	e := start(t, poolOptions{Size: 2})
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	// CacheStatement and DescribeExec prepare a new statement text in a
	// round trip of its own (Parse, Describe, Sync) before executing it:
	// the proxy's tenant context may be the only statement running then.
	for _, mode := range []pgx.QueryExecMode{pgx.QueryExecModeSimpleProtocol, pgx.QueryExecModeExec,
		pgx.QueryExecModeCacheStatement, pgx.QueryExecModeDescribeExec} {
		conn := e.mustConnect(ctx, t, tenantID(0), mode)
		cancelled := 0
		for i := range rounds {
			sent := make(chan error, 1)
			go func() { sent <- conn.PgConn().CancelRequest(ctx) }()
			var got string
			err := conn.QueryRow(ctx, fmt.Sprintf(`SELECT public.tx_sleep(0.002) /* round %d */`, i)).Scan(&got)
			if serr := <-sent; serr != nil {
				t.Fatalf("%v round %d: cancel request: %v", mode, i, serr)
			}
			switch {
			case sqlstate(err) == queryCanceled:
				cancelled++
			case err != nil:
				t.Fatalf("%v round %d: a cancel at the start of a transaction ended with %v (want the statement's result or SQLSTATE %s)", mode, i, err, queryCanceled)
			case got != fmt.Sprint(tenantID(0)):
				t.Fatalf("%v round %d: statement ran as tenant %q", mode, i, got)
			}
		}
		t.Logf("%v: %d of %d statements cancelled", mode, cancelled, rounds)
	}
}

// TestCancelWhileWaitingForBackend: on a pool of one backend kept busy by
// another tenant, client A's statements wait for the backend, and A's
// CancelRequest fires at a random moment around the hand-over: while A
// waits, as the proxy sets A's tenant context on the backend, or while A's
// statement runs. A must see its statement's result or 57014 and keep its
// connection; the other tenant's statements are never cancelled.
func TestCancelWhileWaitingForBackend(t *testing.T) {
	rounds := 300
	if testing.Short() {
		rounds = 80
	}
	e := start(t, poolOptions{Size: 1})
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	hog := e.mustConnect(ctx, t, tenantID(1), pgx.QueryExecModeExec)
	var stop atomic.Bool
	hogErr := make(chan error, 1)
	go func() {
		for !stop.Load() {
			var got string
			if err := hog.QueryRow(ctx, `SELECT public.tx_sleep(0.004)`).Scan(&got); err != nil {
				hogErr <- fmt.Errorf("the other tenant's statement: %w", err)
				return
			}
		}
		hogErr <- nil
	}()
	r := rand.New(rand.NewPCG(1, 2))
	outcomes := map[string]int{}
	for _, mode := range []pgx.QueryExecMode{pgx.QueryExecModeSimpleProtocol, pgx.QueryExecModeExec, pgx.QueryExecModeCacheStatement} {
		a := e.mustConnect(ctx, t, tenantID(0), mode)
		for i := range rounds / 3 {
			delay := time.Duration(r.IntN(6000)) * time.Microsecond
			sent := make(chan error, 1)
			go func() {
				time.Sleep(delay)
				sent <- a.PgConn().CancelRequest(ctx)
			}()
			var got string
			err := a.QueryRow(ctx, `SELECT public.tx_sleep(0.003)`).Scan(&got)
			if serr := <-sent; serr != nil {
				t.Fatalf("%v round %d: cancel request: %v", mode, i, serr)
			}
			switch {
			case sqlstate(err) == queryCanceled:
				outcomes["cancelled"]++
			case err != nil:
				t.Fatalf("%v round %d (cancel after %s): %v (want the statement's result or SQLSTATE %s, and the connection kept)", mode, i, delay, err, queryCanceled)
			case got != fmt.Sprint(tenantID(0)):
				t.Fatalf("%v round %d: statement ran as tenant %q", mode, i, got)
			default:
				outcomes["completed"]++
			}
		}
	}
	stop.Store(true)
	if err := <-hogErr; err != nil {
		t.Error(err)
	}
	t.Logf("outcomes of A's statements: %v", outcomes)
}
