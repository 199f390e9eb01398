package e2e

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/pgtenant/pgtenant/test/proxytest"
)

// parkedAfter is long enough for an idle session's backend goroutine to
// park (the proxy sweeps every 250 ms and parks sessions idle across a sweep).
const parkedAfter = time.Second

// TestParkedIdleSession drives a session whose backend side parked while
// idle: what the backend sends unasked (a notification, a FATAL) still
// reaches the client at once, and queries still run.
func TestParkedIdleSession(t *testing.T) {
	c := ownCluster(t, "park", nil)
	env := faultEnv(t, c, proxytest.Options{Regions: []string{"eu-west"}})
	admin := connect(t, c.SuperuserDSN(c.Database))
	listener := connect(t, env.DSN(t, "42", "eu-west")+"&application_name=park-listener")
	notifier := connect(t, env.DSN(t, "42", "eu-west"))
	if _, err := listener.Exec(ctxT(t), "LISTEN pgtenant_park"); err != nil {
		t.Fatal(err)
	}

	// A notification for a parked session wakes it.
	time.Sleep(parkedAfter)
	if _, err := notifier.Exec(ctxT(t), "SELECT pg_notify('pgtenant_park', 'p1')"); err != nil {
		t.Fatal(err)
	}
	wctx, cancel := context.WithTimeout(ctxT(t), 10*time.Second)
	nt, err := listener.WaitForNotification(wctx)
	cancel()
	if err != nil || nt.Channel != "pgtenant_park" || nt.Payload != "p1" {
		t.Fatalf("notification to a parked session: %+v, %v", nt, err)
	}

	// Parked again, it still answers queries, many times over.
	for i := range 3 {
		time.Sleep(parkedAfter)
		mustServe(t, listener, "query on a parked session")
		if i == 0 {
			mustServe(t, listener, "query right after waking")
		}
	}

	// Its backend ends while parked: the client is told and the handler ends
	// without the client sending anything.
	time.Sleep(parkedAfter)
	before := env.Server.ActiveClients()
	var pid int
	if err := admin.QueryRow(ctxT(t), `SELECT pid FROM pg_stat_activity WHERE application_name = 'park-listener'`).Scan(&pid); err != nil {
		t.Fatal(err)
	}
	var ok bool
	if err := admin.QueryRow(ctxT(t), "SELECT pg_terminate_backend($1)", pid).Scan(&ok); err != nil || !ok {
		t.Fatalf("pg_terminate_backend: %v, %v", ok, err)
	}
	settleClients(t, env, before-1)
	wctx, cancel = context.WithTimeout(ctxT(t), 10*time.Second)
	_, err = listener.WaitForNotification(wctx)
	cancel()
	var pe *pgconn.PgError
	if !errors.As(err, &pe) || pe.Code != "57P01" || pe.Severity != "FATAL" {
		t.Fatalf("parked session's backend terminated: got %v, want PostgreSQL's FATAL 57P01 passed through", err)
	}
	mustServe(t, notifier, "the other session")
}
