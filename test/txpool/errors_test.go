package txpool

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// TestStatementAfterError: a statement that fails outside a BEGIN block
// (a unique violation, a division by zero) ends its implicit transaction;
// the client's very next statement starts a new one and must run with the
// client's tenant, in every protocol. The pool has one backend, so the
// next statement usually finds it still attached to the client: the proxy
// must still recognise the new transaction and set the tenant for it.
// Other tenants' statements run meanwhile to keep the backend changing
// hands.
func TestStatementAfterError(t *testing.T) {
	rounds := 2000
	if testing.Short() {
		rounds = 200
	}
	e := start(t, poolOptions{Size: 1})
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	other := e.mustConnect(ctx, t, tenantID(1), pgx.QueryExecModeExec)
	otherDone := make(chan error, 1)
	stop := make(chan struct{})
	go func() {
		for {
			select {
			case <-stop:
				otherDone <- nil
				return
			default:
			}
			var got string
			if err := other.QueryRow(ctx, settingSQL).Scan(&got); err != nil || got != fmt.Sprint(tenantID(1)) {
				otherDone <- fmt.Errorf("the other tenant: setting %q, %v", got, err)
				return
			}
		}
	}()
	for _, p := range []proto{protoSimple, protoExtended, protoPrepared} {
		conn := e.mustConnect(ctx, t, tenantID(0), p.execMode())
		id := 500_000 + int(p)
		if _, err := conn.Exec(ctx, insertSQL, tenantID(0), id, 0); err != nil {
			t.Fatal(err)
		}
		for i := range rounds {
			var err error
			var failing string
			if i%2 == 0 {
				_, err = conn.Exec(ctx, insertSQL, tenantID(0), id, 0)
				failing = "duplicate insert"
				if sqlstate(err) != "23505" {
					t.Fatalf("%s round %d: %s: %v, want SQLSTATE 23505", p, i, failing, err)
				}
			} else {
				_, err = conn.Exec(ctx, "SELECT 1/0")
				failing = "SELECT 1/0"
				if sqlstate(err) != "22012" {
					t.Fatalf("%s round %d: %s: %v, want SQLSTATE 22012", p, i, failing, err)
				}
			}
			var got string
			if err := conn.QueryRow(ctx, settingSQL).Scan(&got); err != nil {
				t.Fatalf("%s round %d: statement after %s: %v", p, i, failing, err)
			}
			if got != fmt.Sprint(tenantID(0)) {
				t.Fatalf("%s round %d: the statement after a failed %s ran with tenant setting %q, want %d", p, i, failing, got, tenantID(0))
			}
		}
	}
	close(stop)
	if err := <-otherDone; err != nil {
		t.Error(err)
	}
}
