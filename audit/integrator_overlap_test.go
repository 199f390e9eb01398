package audit

import (
	"strconv"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/pgtenant/pgtenant/config"
)

// A round planned while the one before it integrates may reach the
// database first: its goroutine can send integrate_round before the
// earlier round's goroutine does. It must then wait for the earlier round
// rather than take the key that round ends at, which made the two deadlock
// (the earlier round holds the tree's row since its planning and waited
// for that key, the later one held the key and waited for the row:
// SQLSTATE 40P01, the integrator stopped for takeoverPoll). Here the later
// round is launched first and seen waiting on a lock before the earlier
// one is launched; both must commit, in order, into chains that verify.
func TestOverlappingRoundSentFirstWaitsForTheRoundBefore(t *testing.T) {
	r, c := initRegion(t, "eu-west")
	ctx := testCtx(t)
	pool, oid := ingestPool(ctx, t, "eu-west", r)
	first, second := serviceConn(t, c, r), serviceConn(t, c, r)
	g := newIntegrator("eu-west", nil, testLogger(t))
	next := statementRows(t)
	ingest := func() {
		if err := ingestRows(ctx, pool, "eu-west", oid, next(30)); err != nil {
			t.Fatal(err)
		}
	}
	// A region that has integrated before: the tree's row exists, as in
	// production, so that the race shows as the deadlock it was.
	ingest()
	if n, err := g.rounds(ctx, first); err != nil || n != 30 {
		t.Fatalf("first round: %d events, %v", n, err)
	}
	ingest()
	tx1, p1, err := g.prepare(ctx, first, false, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	ingest()
	tx2, p2, err := g.prepare(ctx, second, false, nil, p1)
	if err != nil {
		t.Fatal(err)
	}
	if p1.n != 30 || p2.n != 30 {
		t.Fatalf("rounds of %d and %d events, want 30 each", p1.n, p2.n)
	}
	later := g.launch(ctx, tx2, p2)
	// The later round waits on a lock (the earlier round's end key) before
	// the earlier round is sent at all.
	admin := adminConn(t, c, r)
	deadline := time.Now().Add(30 * time.Second)
	for {
		var waiting bool
		if err := admin.QueryRow(ctx, `SELECT coalesce(wait_event_type = 'Lock', false) FROM pg_stat_activity WHERE pid = $1`,
			second.PgConn().PID()).Scan(&waiting); err != nil {
			t.Fatal(err)
		}
		if waiting {
			break
		}
		select {
		case <-later.done:
			t.Fatalf("the later round ended before the earlier one ran: %v", later.err)
		default:
		}
		if time.Now().After(deadline) {
			t.Fatal("the later round never waited for a lock")
		}
		time.Sleep(10 * time.Millisecond)
	}
	earlier := g.launch(ctx, tx1, p1)
	if err := g.finish(earlier); err != nil {
		t.Fatalf("earlier round: %v", err)
	}
	if err := g.finish(later); err != nil {
		t.Fatalf("later round: %v", err)
	}
	if got := countRows(t, admin, `true`); got != 90 {
		t.Fatalf("events: %d, want 90", got)
	}
	var misordered int
	if err := admin.QueryRow(ctx, `SELECT count(*) FROM pgtenant_audit.events e
		WHERE e.leaf < $1 AND e.seq > (SELECT min(l.seq) FROM pgtenant_audit.events l WHERE l.chain_id = e.chain_id AND l.leaf >= $1)`,
		p1.size).Scan(&misordered); err != nil || misordered != 0 {
		t.Fatalf("%d events of the earlier round follow the later round's in their chain (%v)", misordered, err)
	}
	if rep := mustVerify(t, map[string]config.Region{"eu-west": r}, VerifyOptions{}); !rep.OK || rep.Regions[0].Rows != 90 {
		t.Fatalf("verify: %+v", rep)
	}
}

// A round aborted as a deadlock (an operator's session can hold what a
// round needs) or refused as out of date is retried once, as it was: its
// submissions are written and their writers told so. Any other failure
// fails them, for their writers to retry.
func TestRecoverRetriesADeadlockedRound(t *testing.T) {
	r, c := initRegion(t, "eu-west")
	ctx := testCtx(t)
	_, oid := ingestPool(ctx, t, "eu-west", r)
	conn := serviceConn(t, c, r)
	g := newIntegrator("eu-west", nil, testLogger(t))
	g.setActive(true)
	next := statementRows(t)
	submit := func() *submission {
		rows := next(20)
		o, err := g.submitAfter(ownRows{rows: rows, oid: oid, array: encodeEventArray(nil, oid, rows)}, nil)
		if err != nil {
			t.Fatal(err)
		}
		return o
	}
	for _, code := range []string{"40P01", "40001"} {
		o := submit()
		n, err := g.recover(ctx, conn, g.takeOwn(), &pgconn.PgError{Code: code, Message: "the round before"})
		if err != nil || n != 20 {
			t.Fatalf("%s: retried %d events, %v; want 20", code, n, err)
		}
		if err := o.wait(ctx); err != nil {
			t.Fatalf("%s: the submission failed: %v", code, err)
		}
	}
	o := submit()
	refused := &pgconn.PgError{Code: "42501", Message: "permission denied"}
	if n, err := g.recover(ctx, conn, g.takeOwn(), refused); err == nil || n != 0 {
		t.Fatalf("42501: %d events, %v; want the error and nothing written", n, err)
	}
	if err := o.wait(ctx); err == nil {
		t.Fatal("42501: the submission did not fail")
	}
	admin := adminConn(t, c, r)
	if got := countRows(t, admin, `true`); got != 40 {
		t.Fatalf("events: %d, want 40", got)
	}
	if rep := mustVerify(t, map[string]config.Region{"eu-west": r}, VerifyOptions{}); !rep.OK || rep.Regions[0].Rows != 40 {
		t.Fatalf("verify: %+v", rep)
	}
}

// statementRows returns a function that makes the next n hashed statement
// rows of three tenants, numbered on from the last call's.
func statementRows(t *testing.T) func(n int) []*Row {
	k := 0
	return func(n int) []*Row {
		rows := make([]*Row, 0, n)
		for range n {
			k++
			rows = append(rows, hashedRow(t, stmt("t"+strconv.Itoa(k%3), "s", k)))
		}
		return rows
	}
}
