package audit

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/pgtenant/pgtenant/cluster"
	"github.com/pgtenant/pgtenant/config"
	"github.com/pgtenant/pgtenant/tenancy"
	"github.com/pgtenant/pgtenant/test/pgtest"
)

// The child process records statement events in spool mode and prints each
// session id once Record returned nil; the parent SIGKILLs it mid-load.
const (
	childEnv      = "PGTENANT_AUDIT_TEST_CHILD"
	childSpoolEnv = "PGTENANT_AUDIT_TEST_SPOOL"
	childPortEnv  = "PGTENANT_AUDIT_TEST_PORT"
	childDBEnv    = "PGTENANT_AUDIT_TEST_DB"
	childPassEnv  = "PGTENANT_AUDIT_TEST_PASS"
)

func runChild() int {
	port, _ := strconv.Atoi(os.Getenv(childPortEnv))
	r := config.Region{Host: "127.0.0.1", Port: port, User: "app", Password: os.Getenv(childPassEnv),
		AuditDatabase: os.Getenv(childDBEnv), SSLMode: "disable", ConnectTimeout: 5 * time.Second}
	cfg := config.Audit{Mode: ModeSpool, SpoolDir: os.Getenv(childSpoolEnv), SpoolMaxBytes: 1 << 30,
		QueueSize: 1024, Statement: StatementNormalized, OutageTimeout: time.Minute}
	ctx := context.Background()
	rec, err := NewRecorder(ctx, cfg, map[string]config.Region{"eu-west": r}, "child", nil)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	out := bufio.NewWriter(os.Stdout)
	for i := 0; ; i++ {
		sid := "k" + strconv.Itoa(i)
		if err := rec.Record(ctx, stmt("a1", sid, i)); err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		fmt.Fprintln(out, sid)
		out.Flush()
	}
}

func TestSpoolSurvivesSIGKILLWithoutLossOrDuplicates(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a child process")
	}
	r, c := initRegion(t, "eu-west")
	spoolDir := t.TempDir()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), childEnv+"=1", childSpoolEnv+"="+spoolDir,
		childPortEnv+"="+strconv.Itoa(c.Port), childDBEnv+"="+r.AuditDatabase, childPassEnv+"="+c.ServicePassword)
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var stderr strings.Builder
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	acked := map[string]bool{}
	sc := bufio.NewScanner(stdout)
	for sc.Scan() {
		acked[sc.Text()] = true
		if len(acked) == 3000 {
			if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
				t.Fatal(err)
			}
			break
		}
	}
	for sc.Scan() {
		acked[sc.Text()] = true // lines already written before the kill
	}
	_ = cmd.Wait()
	if len(acked) < 3000 {
		t.Fatalf("child stopped after %d events: %s", len(acked), stderr.String())
	}

	// A new process with the same spool ships what is left, then Close flushes.
	ctx := testCtx(t)
	regions := map[string]config.Region{"eu-west": r}
	cfg := testAuditConfig(t, ModeSpool)
	cfg.SpoolDir = spoolDir
	rec, err := NewRecorder(ctx, cfg, regions, "restarted", testLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	if err := rec.Close(ctx); err != nil {
		t.Fatal(err)
	}
	st := rec.Stats().Regions["eu-west"]
	t.Logf("after restart: shipped %d left-over events, skipped %d already stored", st.EventsWritten, st.Duplicates)
	if st.Duplicates > directBatchMax { // a spool writer's batch limit
		t.Errorf("restart re-shipped %d stored events; the shipped cursor should limit that to one batch", st.Duplicates)
	}
	adm := adminConn(t, c, r)
	rows, err := adm.Query(ctx, `SELECT session_id, count(*) FROM pgtenant_audit.events GROUP BY 1`)
	if err != nil {
		t.Fatal(err)
	}
	stored := map[string]int{}
	for rows.Next() {
		var sid string
		var n int
		if err := rows.Scan(&sid, &n); err != nil {
			t.Fatal(err)
		}
		stored[sid] = n
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	for sid := range acked {
		if stored[sid] != 1 {
			t.Fatalf("acknowledged event %s stored %d times", sid, stored[sid])
		}
	}
	for sid, n := range stored {
		if n != 1 {
			t.Fatalf("event %s stored %d times", sid, n)
		}
	}
	t.Logf("acknowledged %d, stored %d (unacknowledged but spooled events may be stored too)", len(acked), len(stored))
	if rep := mustVerify(t, regions, VerifyOptions{}); !rep.OK {
		t.Fatalf("verify: %+v", rep.Failures)
	}
}

func TestSpoolRefusesWhileDatabaseIsDownAndResumes(t *testing.T) {
	if testing.Short() {
		t.Skip("stops and restarts a cluster")
	}
	c := pgtest.Start(t, clusterConfig("down"))
	r := freshRegion(t, c)
	ctx := testCtx(t)
	if err := InitRegion(ctx, "eu-west", r, nil); err != nil {
		t.Fatal(err)
	}
	regions := map[string]config.Region{"eu-west": r}
	cfg := testAuditConfig(t, ModeSpool)
	cfg.OutageTimeout = 100 * time.Millisecond
	rec, err := NewRecorder(ctx, cfg, regions, "i1", testLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	accepted := 0
	record := func(i int) error {
		err := rec.Record(ctx, stmt("a1", "s"+strconv.Itoa(i), i))
		if err == nil {
			accepted++
		}
		return err
	}
	for i := range 20 {
		if err := record(i); err != nil {
			t.Fatal(err)
		}
	}
	if err := c.Stop(ctx); err != nil {
		t.Fatal(err)
	}
	// Keep recording until the outage is noticed; bounded, not timed.
	var refused error
	for i := 20; i < 100000 && refused == nil; i++ {
		refused = record(i)
		if refused == nil {
			time.Sleep(time.Millisecond)
		}
	}
	if !errors.Is(refused, ErrUnavailable) {
		t.Fatalf("Record while the database is down: %v, want ErrUnavailable", refused)
	}
	if rec.Healthy("eu-west") == nil {
		t.Error("Healthy reports a down database as writable")
	}
	if err := rec.Record(ctx, tenancy.Event{Kind: tenancy.KindDisconnect, AccountID: "a1", Region: "eu-west"}); err != nil {
		t.Errorf("a non-statement event was refused during the outage: %v", err)
	}
	accepted++ // the disconnect event
	if err := c.Restart(ctx); err != nil {
		t.Fatal(err)
	}
	var err2 error = ErrUnavailable
	for i := 0; i < 100000 && err2 != nil; i++ {
		err2 = record(100000 + i)
		if err2 != nil {
			time.Sleep(5 * time.Millisecond)
		}
	}
	if err2 != nil {
		t.Fatalf("Record after the database came back: %v", err2)
	}
	if err := rec.Close(ctx); err != nil {
		t.Fatal(err)
	}
	adm := adminConn(t, c, r)
	if n := countRows(t, adm, `chain_id = 'a1'`); n != int64(accepted) {
		t.Fatalf("stored %d events, accepted %d", n, accepted)
	}
	if rep := mustVerify(t, regions, VerifyOptions{}); !rep.OK {
		t.Fatalf("verify: %+v", rep.Failures)
	}
}

// backlogRig is a recorder of mode on a fresh region of a cluster of its
// own, with a queue that holds a backlog of full batches, recording
// statement events of three tenants.
type backlogRig struct {
	t        *testing.T
	ctx      context.Context
	c        *cluster.Cluster
	r        config.Region
	regions  map[string]config.Region
	rec      *Recorder
	w        *regionWriter
	accepted int // events whose Record returned nil
}

func newBacklogRig(t *testing.T, name, mode string) *backlogRig {
	g := &backlogRig{t: t, ctx: testCtx(t), c: pgtest.Start(t, clusterConfig(name))}
	g.r = freshRegion(t, g.c)
	if err := InitRegion(g.ctx, "eu-west", g.r, nil); err != nil {
		t.Fatal(err)
	}
	g.regions = map[string]config.Region{"eu-west": g.r}
	cfg := testAuditConfig(t, mode)
	cfg.QueueSize = 1 << 16
	rec, err := NewRecorder(g.ctx, cfg, g.regions, "i1", testLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	g.rec, g.w = rec, rec.writers["eu-west"]
	return g
}

// record records n statement events.
func (g *backlogRig) record(n int) {
	for range n {
		if err := g.rec.Record(g.ctx, stmt("a"+strconv.Itoa(g.accepted%3), "s", g.accepted)); err != nil {
			g.t.Fatalf("Record: %v", err)
		}
		g.accepted++
	}
}

// closeAndCheck closes the recorder and checks that every accepted event
// is stored once, each chain in the order its events were recorded, and
// that the log verifies.
func (g *backlogRig) closeAndCheck() {
	t := g.t
	if err := g.rec.Close(g.ctx); err != nil {
		t.Fatal(err)
	}
	if st := g.rec.Stats().Regions["eu-west"]; st.EventsFailed != 0 {
		t.Fatalf("%d events failed", st.EventsFailed)
	}
	adm := adminConn(t, g.c, g.r)
	if n := countRows(t, adm, `true`); n != int64(g.accepted) {
		t.Fatalf("stored %d events, accepted %d", n, g.accepted)
	}
	var disorder int
	if err := adm.QueryRow(g.ctx, `SELECT count(*) FROM (SELECT ts < lag(ts) OVER (PARTITION BY chain_id ORDER BY seq) AS back
		FROM pgtenant_audit.events) x WHERE back`).Scan(&disorder); err != nil || disorder != 0 {
		t.Fatalf("%d events chained before an older one of their chain (%v)", disorder, err)
	}
	if rep := mustVerify(t, g.regions, VerifyOptions{}); !rep.OK {
		t.Fatalf("verify: %+v", rep.Failures)
	}
}

// An async writer keeps a batch in flight with its integrator; when the
// database stops, the flight and the batch submitted after it fail, and
// both are written again, in order, once it is back: every accepted event
// is stored once, each chain in the order its events were recorded.
func TestAsyncOutageKeepsEveryEventInOrder(t *testing.T) {
	if testing.Short() {
		t.Skip("stops and restarts a cluster")
	}
	g := newBacklogRig(t, "down-async", ModeAsync)
	for !g.w.integ.active.Load() {
		time.Sleep(time.Millisecond)
	}
	// Stop the database while a batch is in flight (handed to the
	// integrator, its round not reported).
	for g.w.writtenDirect.Load() == 0 || g.w.queued.Load() == 0 {
		if g.accepted > 1<<15 {
			t.Fatalf("%d events recorded and no batch in flight with the integrator", g.accepted)
		}
		g.record(100)
		time.Sleep(time.Millisecond)
	}
	if err := g.c.Stop(g.ctx); err != nil {
		t.Fatal(err)
	}
	g.record(3000) // queued while the writer fails and backs off
	time.Sleep(300 * time.Millisecond)
	if err := g.c.Restart(g.ctx); err != nil {
		t.Fatal(err)
	}
	g.record(3000)
	g.closeAndCheck()
}

// TestFailedRoundRetriesTheBatchInFlightAfterIt fails the round that
// carries a writer's batch while the writer's next batch is already
// submitted after it (a backlog guarantees one: the round before sleeps
// while the test queues more than two full batches). The next batch must
// not be chained without its predecessor; the writer retries both in
// order, and every accepted event is stored once, each chain in recording
// order.
func TestFailedRoundRetriesTheBatchInFlightAfterIt(t *testing.T) {
	if testing.Short() {
		t.Skip("queues a backlog of full batches")
	}
	for _, mode := range []string{ModeAsync, ModeSpool} {
		t.Run(mode, func(t *testing.T) {
			g := newBacklogRig(t, "flight-fails-"+mode, mode)
			// One event through a round of this process's integrator
			// first, so that the hook below counts the rounds after it.
			g.record(1)
			for g.w.integ.integrated.Load() == 0 {
				time.Sleep(5 * time.Millisecond)
			}
			adm := adminConn(t, g.c, g.r)
			// The next round sleeps (the test queues a backlog meanwhile);
			// the one after it fails.
			if _, err := adm.Exec(g.ctx, `
CREATE SEQUENCE public.test_rounds;
CREATE FUNCTION public.test_round_hook() RETURNS trigger LANGUAGE plpgsql SECURITY DEFINER AS $$
DECLARE k bigint := nextval('public.test_rounds');
BEGIN
	IF k = 1 THEN
		PERFORM pg_sleep(3);
	ELSIF k = 2 THEN
		RAISE EXCEPTION 'test: round % fails', k;
	END IF;
	RETURN NULL;
END $$;
CREATE TRIGGER test_round_hook AFTER INSERT ON pgtenant_audit.events
	FOR EACH STATEMENT EXECUTE FUNCTION public.test_round_hook();`); err != nil {
				t.Fatal(err)
			}
			rounds := func() int64 {
				var n int64
				if err := adm.QueryRow(g.ctx, `SELECT CASE WHEN is_called THEN last_value ELSE 0 END FROM public.test_rounds`).Scan(&n); err != nil {
					t.Fatal(err)
				}
				return n
			}
			g.record(1)
			for rounds() == 0 {
				time.Sleep(5 * time.Millisecond)
			}
			g.record(2*directBatchMax + 5000) // while the first round sleeps
			if n := rounds(); n != 1 {
				t.Fatalf("the backlog was queued during round %d, not while the first slept", n)
			}
			for rounds() < 2 {
				time.Sleep(5 * time.Millisecond)
			}
			g.record(3000)
			g.closeAndCheck()
		})
	}
}
