package audit

import (
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// An integration round must cost the same however large events grows: each
// of its lookups in events goes through an index. Once plpgsql caches a
// generic plan for integrate_batches (after five calls in a session) while
// events is small, the planner would otherwise check the moved heads with a
// sequential scan of all of events in every round (schema version 7). The
// plans are read with auto_explain, as the integrator's session runs them.
func TestIntegratorRoundsNeverScanEvents(t *testing.T) {
	r, c := initRegion(t, "eu-west")
	ctx := testCtx(t)
	pool, oid := ingestPool(ctx, t, "eu-west", r)
	cc, err := pgx.ParseConfig(c.SuperuserDSN(r.AuditDatabase))
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var plans []string
	cc.OnNotice = func(_ *pgconn.PgConn, n *pgconn.Notice) {
		mu.Lock()
		plans = append(plans, n.Message)
		mu.Unlock()
	}
	conn, err := pgx.ConnectConfig(ctx, cc)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close(ctx) })
	if _, err := conn.Exec(ctx, `LOAD 'auto_explain'`); err != nil {
		t.Skipf("auto_explain is not installed: %v", err)
	}
	g := newIntegrator("eu-west", nil, testLogger(t))
	k := 0
	for round := range 12 {
		if round == 8 {
			// The generic plans are cached by now: show every plan run.
			for _, s := range []string{`SET auto_explain.log_min_duration = 0`, `SET auto_explain.log_nested_statements = on`,
				`SET client_min_messages = log`} {
				if _, err := conn.Exec(ctx, s); err != nil {
					t.Fatal(err)
				}
			}
		}
		rows := make([]*Row, 0, 40)
		for i := range 40 {
			k++
			rows = append(rows, hashedRow(t, stmt("42", "s"+strconv.Itoa(i%8), k)))
		}
		if err := ingestRows(ctx, pool, "eu-west", oid, rows); err != nil {
			t.Fatal(err)
		}
		if n, err := g.rounds(ctx, conn); err != nil || n != 40 {
			t.Fatalf("round %d: %d events, %v", round, n, err)
		}
	}
	mu.Lock()
	defer mu.Unlock()
	if len(plans) == 0 {
		t.Fatal("auto_explain showed no plan")
	}
	for _, p := range plans {
		if strings.Contains(p, "Seq Scan on events") {
			t.Fatalf("a round scans all of events:\n%s", p)
		}
	}
}
