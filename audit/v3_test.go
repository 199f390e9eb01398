package audit

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/pgtenant/pgtenant/config"
	"github.com/pgtenant/pgtenant/tenancy"
)

// A statement and its result (paired by Ref) become one row in spool and
// async mode; strict writes the result apart. A result whose statement is
// not waiting is its own row; a statement whose session ends without a
// result is shipped alone.
func TestOneRowPerStatement(t *testing.T) {
	for _, mode := range []string{ModeAsync, ModeSpool, ModeStrict} {
		t.Run(mode, func(t *testing.T) {
			r, c := initRegion(t, "eu-west")
			regions := map[string]config.Region{"eu-west": r}
			ctx := testCtx(t)
			rec := newTestRecorder(t, ctx, testAuditConfig(t, mode), regions, "merge")
			const n = 50
			for i := range n {
				ev := stmt("42", "s1", i)
				ev.Ref = uint64(i + 1)
				if err := rec.Record(ctx, ev); err != nil {
					t.Fatal(err)
				}
				res := ev
				res.Kind, res.Verdict, res.Rows, res.DurationUS, res.SQLState = tenancy.KindResult, "", int64(i), 1000+int64(i), ""
				if i%10 == 9 {
					res.SQLState = "22012"
				}
				if err := rec.Record(ctx, res); err != nil {
					t.Fatal(err)
				}
			}
			// No statement waits for ref 999: the result is its own row.
			orphan := stmt("42", "s1", 999)
			orphan.Kind, orphan.Verdict, orphan.Ref, orphan.Rows = tenancy.KindResult, "", 999, 1
			if err := rec.Record(ctx, orphan); err != nil {
				t.Fatal(err)
			}
			// A statement whose result never comes, then its session ends.
			lost := stmt("42", "s2", 1000)
			lost.Ref = 1
			if err := rec.Record(ctx, lost); err != nil {
				t.Fatal(err)
			}
			bye := stmt("42", "s2", 0)
			bye.Kind, bye.Verdict, bye.Statement, bye.Tables = tenancy.KindDisconnect, "", "", nil
			if err := rec.Record(ctx, bye); err != nil {
				t.Fatal(err)
			}
			if err := rec.Close(ctx); err != nil {
				t.Fatal(err)
			}
			db := adminConn(t, c, r)
			merged, results := int64(n), int64(1)
			if mode == ModeStrict {
				merged, results = 0, n+1
			}
			if got := countRows(t, db, `kind = 'statement' AND session_id = 's1' AND rows IS NOT NULL AND duration_us >= 1000`); got != merged {
				t.Errorf("statements carrying their result: %d, want %d", got, merged)
			}
			if got := countRows(t, db, `kind = 'result'`); got != results {
				t.Errorf("result rows: %d, want %d", got, results)
			}
			if mode != ModeStrict {
				if got := countRows(t, db, `kind = 'statement' AND sqlstate = '22012' AND rows IS NOT NULL`); got != n/10 {
					t.Errorf("merged statements with the result's SQLSTATE: %d, want %d", got, n/10)
				}
			}
			if got := countRows(t, db, `session_id = 's2' AND kind = 'statement' AND rows IS NULL`); got != 1 {
				t.Errorf("statement without a result: %d rows, want 1", got)
			}
			if rep := mustVerify(t, regions, VerifyOptions{}); !rep.OK {
				t.Fatalf("verify: %+v", rep.Failures)
			}
		})
	}
}

// The writer child appends childEvents statement events of one tenant in
// async mode and exits after Close.
const (
	childWriterEnv = "PGTENANT_AUDIT_TEST_WRITER"
	childEvents    = 3000
)

func runWriterChild() int {
	port, _ := strconv.Atoi(os.Getenv(childPortEnv))
	r := config.Region{Host: "127.0.0.1", Port: port, User: "app", Password: os.Getenv(childPassEnv),
		AuditDatabase: os.Getenv(childDBEnv), SSLMode: "disable", ConnectTimeout: 5 * time.Second}
	cfg := config.Audit{Mode: ModeAsync, SpoolMaxBytes: 1 << 30, QueueSize: 4096,
		Statement: StatementNormalized, OutageTimeout: time.Minute}
	ctx := context.Background()
	name := os.Getenv(childWriterEnv)
	rec, err := NewRecorder(ctx, cfg, map[string]config.Region{"eu-west": r}, name, nil)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	for i := range childEvents {
		if err := rec.Record(ctx, stmt("shared", name, i)); err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
	}
	ctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	if err := rec.Close(ctx); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	fmt.Println("integrating", rec.Stats().Regions["eu-west"].EventsIntegrated > 0)
	return 0
}

// Four processes append the same tenant's events at once, with no lock
// between them; whichever holds the integrator lock chains them, and the
// others take over when it exits. The result is one gap-free chain.
func TestFourProcessesOneGapFreeChain(t *testing.T) {
	if testing.Short() {
		t.Skip("starts child processes")
	}
	r, c := initRegion(t, "eu-west")
	const procs = 4
	cmds := make([]*exec.Cmd, procs)
	outs := make([]*strings.Builder, procs)
	for i := range procs {
		cmd := exec.Command(os.Args[0], "-test.run=^$")
		cmd.Env = append(os.Environ(), childWriterEnv+"=w"+strconv.Itoa(i),
			childPortEnv+"="+strconv.Itoa(c.Port), childDBEnv+"="+r.AuditDatabase, childPassEnv+"="+c.ServicePassword)
		outs[i] = &strings.Builder{}
		cmd.Stdout, cmd.Stderr = outs[i], outs[i]
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		cmds[i] = cmd
	}
	integrators := 0
	for i, cmd := range cmds {
		if err := cmd.Wait(); err != nil {
			t.Fatalf("writer %d: %v\n%s", i, err, outs[i])
		}
		if strings.Contains(outs[i].String(), "integrating true") {
			integrators++
		}
	}
	t.Logf("%d of %d processes integrated events", integrators, procs)
	if integrators == 0 {
		t.Fatal("no process integrated anything")
	}
	ctx := testCtx(t)
	db := adminConn(t, c, r)
	var cnt, maxSeq, distinct, writers int64
	if err := db.QueryRow(ctx, `SELECT count(*), max(seq), count(DISTINCT event_id), count(DISTINCT session_id)
		FROM pgtenant_audit.events WHERE chain_id = 'shared'`).Scan(&cnt, &maxSeq, &distinct, &writers); err != nil {
		t.Fatal(err)
	}
	const total = procs * childEvents
	if cnt != total || maxSeq != total || distinct != total || writers != procs {
		t.Fatalf("count %d, max seq %d, distinct ids %d, writers %d; want %d, %d, %d, %d", cnt, maxSeq, distinct, writers, total, total, total, procs)
	}
	regions := map[string]config.Region{"eu-west": r}
	if rep := mustVerify(t, regions, VerifyOptions{Account: "shared"}); !rep.OK || rep.Regions[0].Rows != total {
		t.Fatalf("verify: %+v", rep)
	}
}

// A region whose events were written by the schema-2 write path (rows
// appended with their seq and hashes through append_rows) is upgraded in
// place: its events still verify, and new events continue each chain.
func TestUpgradeFromSchema2KeepsChainsVerifiable(t *testing.T) {
	ctx := testCtx(t)
	orig := migrations
	migrations = orig[:2]
	r, c := initRegion(t, "eu-west")
	pool, err := newPool(ctx, "eu-west", r, 2)
	if err != nil {
		migrations = orig
		t.Fatal(err)
	}
	var old []*Row
	for i := range 20 {
		row, err := NewRow(stmt("42", "v2", i), "eu-west", "v2-proxy", StatementNormalized)
		if err != nil {
			t.Fatal(err)
		}
		old = append(old, row)
	}
	_, _, err = appendRows(ctx, pool, "eu-west", old)
	pool.Close()
	migrations = orig
	if err != nil {
		t.Fatal(err)
	}
	regions := map[string]config.Region{"eu-west": r}
	if rep := mustVerify(t, regions, VerifyOptions{}); !rep.OK {
		t.Fatalf("verify before the upgrade: %+v", rep.Failures)
	}
	if err := InitRegion(ctx, "eu-west", r, nil); err != nil {
		t.Fatal(err)
	}
	if rep := mustVerify(t, regions, VerifyOptions{}); !rep.OK {
		t.Fatalf("verify right after the upgrade: %+v", rep.Failures)
	}
	rec := newTestRecorder(t, ctx, testAuditConfig(t, ModeAsync), regions, "v3-proxy")
	for i := range 30 {
		if err := rec.Record(ctx, stmt("42", "v3", i)); err != nil {
			t.Fatal(err)
		}
	}
	if err := rec.Close(ctx); err != nil {
		t.Fatal(err)
	}
	db := adminConn(t, c, r)
	if got := countRows(t, db, `chain_id = '42' AND session_id = 'v3' AND seq > 20`); got != 30 {
		t.Fatalf("new events continuing the chain after seq 20: %d, want 30", got)
	}
	if rep := mustVerify(t, regions, VerifyOptions{}); !rep.OK || rep.Regions[0].Rows != 50 {
		t.Fatalf("verify after the upgrade and new events: %+v", rep)
	}
}

// The binary spool record round-trips every field, including NULLs and
// awkward text.
func TestSpoolRecordRoundTrip(t *testing.T) {
	ev := stmt("42", "s", 1)
	ev.Tables = []string{"a,b", `q"uote`, "NULL", ""}
	ev.ClientAddr = "[::1]:5432"
	row, err := NewRow(ev, "eu-west", "inst", StatementNormalized)
	if err != nil {
		t.Fatal(err)
	}
	rows, d := int64(-3), int64(7)
	row.Rows, row.DurationUS = &rows, &d
	buf := encodeSpoolRecord(nil, row, 77)
	got, ref, err := decodeSpoolRecord(buf[recordHeader:])
	if err != nil || ref != 77 {
		t.Fatalf("decode: %v ref %d", err, ref)
	}
	if a, b := string(row.EncodeContent(nil)), string(got.EncodeContent(nil)); a != b {
		t.Fatalf("round trip changed the row:\n%q\n%q", a, b)
	}
	if _, _, err := decodeSpoolRecord(buf[recordHeader : len(buf)-1]); err == nil {
		t.Fatal("a truncated record decoded")
	}
}

// audit.spool_fsync: interval acknowledges a durable append once it is
// written, and the sync loop then fsyncs it; group waits for the fsync.
func TestSpoolFsyncModes(t *testing.T) {
	s, err := openSpoolSync(t.TempDir(), 1<<30, 5*time.Millisecond)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	for range 10 {
		if err := s.Append(spoolRows(t, 1), true, true); err != nil {
			t.Fatal(err)
		}
	}
	if s.Pending() != 10 {
		t.Fatalf("pending %d, want 10", s.Pending())
	}
	deadline := time.Now().Add(30 * time.Second)
	for s.syncedGen.Load() < 10 {
		if time.Now().After(deadline) {
			t.Fatalf("the interval fsync never covered the writes: synced generation %d of 10", s.syncedGen.Load())
		}
		time.Sleep(time.Millisecond)
	}
	g, err := openSpool(t.TempDir(), 1<<30)
	if err != nil {
		t.Fatal(err)
	}
	defer g.Close()
	if err := g.Append(spoolRows(t, 1), true, true); err != nil {
		t.Fatal(err)
	}
	if g.syncedGen.Load() != 1 {
		t.Fatalf("group mode returned before its fsync: synced generation %d", g.syncedGen.Load())
	}
}

// A history rewritten after a signed tree checkpoint, every chain hash and
// head recomputed and the database's checkpoints deleted, verifies on its
// own; the checkpoint a verifier kept (--since-checkpoint) exposes it.
func TestKeptTreeCheckpointDetectsARewrittenHistory(t *testing.T) {
	r, c := initRegion(t, "eu-west")
	regions := map[string]config.Region{"eu-west": r}
	ctx := testCtx(t)
	pub, key := sealKey(t)
	rec := newTestRecorder(t, ctx, testAuditConfig(t, ModeAsync), regions, "i1")
	for i := range 30 {
		if err := rec.Record(ctx, stmt([]string{"a", "b", "c"}[i%3], "s", i)); err != nil {
			t.Fatal(err)
		}
	}
	if err := rec.Close(ctx); err != nil {
		t.Fatal(err)
	}
	cpDir := t.TempDir()
	res, err := Seal(ctx, regions, key, cpDir, nil)
	if err != nil || res.TreesSealed != 1 || len(res.Failures) != 0 {
		t.Fatalf("seal: %+v %v", res, err)
	}
	notes, err := readTreeCheckpoints(cpDir, "eu-west")
	if err != nil || len(notes) != 1 {
		t.Fatalf("tree checkpoint copies: %d %v", len(notes), err)
	}
	kept := notes[0]
	cp, err := OpenTreeCheckpoint(kept, pub)
	if err != nil || cp.Size != 30 || cp.Region != "eu-west" {
		t.Fatalf("kept checkpoint: %+v %v", cp, err)
	}
	if !strings.HasPrefix(string(kept), "pgtenant.audit/eu-west\n30\n") {
		t.Fatalf("not a C2SP checkpoint note:\n%s", kept)
	}
	opts := VerifyOptions{PublicKey: pub, SinceCheckpoints: [][]byte{kept}}
	if rep := mustVerify(t, regions, opts); !rep.OK || rep.Regions[0].Leaves != 30 {
		t.Fatalf("intact trail against the kept checkpoint: %+v", rep)
	}
	// More events: the tree grows and still extends the kept checkpoint.
	rec, err = NewRecorder(ctx, testAuditConfig(t, ModeSpool), regions, "i2", testLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	for i := range 10 {
		if err := rec.Record(ctx, stmt("b", "s2", i)); err != nil {
			t.Fatal(err)
		}
	}
	if err := rec.Close(ctx); err != nil {
		t.Fatal(err)
	}
	if rep := mustVerify(t, regions, opts); !rep.OK || rep.Regions[0].Leaves != 40 {
		t.Fatalf("grown trail against the kept checkpoint: %+v", rep)
	}

	db := adminConn(t, c, r)
	asAttacker(t, db, `UPDATE pgtenant_audit.events SET subject = 'someone-else' WHERE chain_id = 'b' AND seq = 2`)
	rehashFrom(t, db, "eu-west", "b", 2)
	asAttacker(t, db, `DELETE FROM pgtenant_audit.checkpoints`)
	asAttacker(t, db, `DELETE FROM pgtenant_audit.tree_checkpoints`)
	if rep := mustVerify(t, regions, VerifyOptions{PublicKey: pub}); !rep.OK {
		t.Fatalf("the rewrite was expected to pass without a kept checkpoint (else this test proves nothing): %+v", rep.Failures)
	}
	rep := mustVerify(t, regions, opts)
	if rep.OK || len(rep.Failures) != 1 || rep.Failures[0].Kind != FailTreeMismatch {
		t.Fatalf("rewritten history against the kept checkpoint: %+v", rep)
	}
	t.Logf("detected: %s", rep.Failures[0])
	// A note signed by another key is not accepted as a kept checkpoint.
	_, other, _ := ed25519.GenerateKey(rand.Reader)
	forged, err := signTree(other, "eu-west", cp.Size, cp.Root)
	if err != nil {
		t.Fatal(err)
	}
	rep = mustVerify(t, regions, VerifyOptions{PublicKey: pub, SinceCheckpoints: [][]byte{forged}})
	if rep.OK || rep.Failures[0].Kind != FailBadSignature {
		t.Fatalf("a checkpoint signed by another key: %+v", rep)
	}
}

// An export carries the region's signed tree checkpoint and an inclusion
// proof per event inside it: the tenant checks offline that each of its
// events is in the signed tree without seeing any other tenant's entry.
func TestExportInclusionProofs(t *testing.T) {
	r, _ := initRegion(t, "eu-west")
	regions := map[string]config.Region{"eu-west": r}
	ctx := testCtx(t)
	pub, key := sealKey(t)
	rec := newTestRecorder(t, ctx, testAuditConfig(t, ModeAsync), regions, "i1")
	for i := range 25 {
		if err := rec.Record(ctx, stmt([]string{"a", "b"}[i%2], "s", i)); err != nil {
			t.Fatal(err)
		}
	}
	if err := rec.Close(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := Seal(ctx, regions, key, "", nil); err != nil {
		t.Fatal(err)
	}
	var buf strings.Builder
	n, err := Export(ctx, regions, ExportOptions{Account: "b"}, &buf)
	if err != nil || n != 12 {
		t.Fatalf("export: %d rows, %v", n, err)
	}
	out := buf.String()
	if got := strings.Count(out, `"proof":[`); got != 12 {
		t.Fatalf("%d events carry an inclusion proof, want 12:\n%s", got, out)
	}
	if strings.Count(out, `"type":"tree_checkpoint"`) != 1 || strings.Contains(out, `"chain_id":"a"`) {
		t.Fatalf("export should hold one tree checkpoint and only tenant b's events:\n%s", out)
	}
	rep, err := VerifyExport(strings.NewReader(out), pub)
	if err != nil || !rep.OK {
		t.Fatalf("verify export: %+v %v", rep, err)
	}
	// A proof that does not lead to the signed root is reported.
	lines := strings.Split(out, "\n")
	for i, l := range lines {
		if strings.Contains(l, `"proof":["`) {
			j := strings.Index(l, `"proof":["`) + len(`"proof":["`)
			c := byte('A')
			if l[j] == 'A' {
				c = 'B'
			}
			lines[i] = l[:j] + string(c) + l[j+1:]
			break
		}
	}
	rep, err = VerifyExport(strings.NewReader(strings.Join(lines, "\n")), pub)
	if err != nil || rep.OK || rep.Failures[0].Kind != FailTreeMismatch {
		t.Fatalf("a bad proof: %+v %v", rep, err)
	}
}

// Retention: purge redacts each chain's expired prefix (per-tenant
// windows), leaves a signed purge record and a purge event, and everything
// still verifies, in the database and in an export; the service role cannot
// purge, nobody can change a row any other way, and a redaction without a
// signed record is reported.
func TestRetentionPurgeKeepsEveryChainVerifiable(t *testing.T) {
	r, c := initRegion(t, "eu-west")
	regions := map[string]config.Region{"eu-west": r}
	ctx := testCtx(t)
	pub, key := sealKey(t)
	now := time.Now()
	rec := newTestRecorder(t, ctx, testAuditConfig(t, ModeAsync), regions, "i1")
	record := func(account string, age time.Duration, i int) {
		ev := stmt(account, "s", i)
		ev.Time = now.Add(-age)
		if err := rec.Record(ctx, ev); err != nil {
			t.Fatal(err)
		}
	}
	for i := range 6 {
		record("a", 3000*24*time.Hour, i) // older than 7 years
	}
	for i := range 4 {
		record("a", time.Hour, 10+i)
		record("b", 48*time.Hour, i) // older than b's 1-day override
		record("c", 48*time.Hour, i) // within the default window
	}
	if err := rec.Close(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := Seal(ctx, regions, key, "", nil); err != nil {
		t.Fatal(err)
	}
	cfg := config.Audit{RetentionDays: DefaultRetentionDays, RetentionOverrides: map[string]int{"b": 1}}
	res, err := Purge(ctx, regions, cfg, key, now, nil)
	if err != nil || res.Chains != 2 || res.Redacted != 10 {
		t.Fatalf("purge: %+v %v (want a's 6 and b's 4 rows)", res, err)
	}
	if res, err := Purge(ctx, regions, cfg, key, now, nil); err != nil || res.Chains != 0 {
		t.Fatalf("second purge: %+v %v", res, err)
	}
	db := adminConn(t, c, r)
	if got := countRows(t, db, `purged AND statement IS NULL AND subject IS NULL`); got != 10 {
		t.Fatalf("redacted rows: %d, want 10", got)
	}
	// Integrated batches are gone: nothing is stored twice, so a purge
	// leaves no unredacted copy behind.
	var copies int64
	if err := db.QueryRow(ctx, `SELECT count(*) FROM pgtenant_audit.ingest_batches b, unnest(b.events) x
		JOIN pgtenant_audit.events e USING (event_id) WHERE e.purged`).Scan(&copies); err != nil || copies != 0 {
		t.Fatalf("ingest_batches still holds %d copies of purged events (%v)", copies, err)
	}
	// A row awaiting integration can be neither deleted nor changed.
	pool, err := newPool(ctx, "eu-west", r, 1)
	if err != nil {
		t.Fatal(err)
	}
	waiting, _ := NewRow(stmt("z", "s", 0), "eu-west", "x", StatementNormalized)
	waiting.HashVersion, waiting.ContentHash = HashVersion, waiting.ComputeContentHash()
	oid, err := ingestEventOID(ctx, pool)
	if err == nil {
		err = ingestRows(ctx, pool, "eu-west", oid, []*Row{waiting})
	}
	pool.Close()
	if err != nil {
		t.Fatal(err)
	}
	const zBatch = `(SELECT b.id FROM pgtenant_audit.ingest_batches b, unnest(b.events) x WHERE x.chain_id = 'z')`
	if _, err := db.Exec(ctx, `DELETE FROM pgtenant_audit.ingest_batches WHERE id IN `+zBatch); sqlState(err) != "42501" {
		t.Fatalf("delete of a batch awaiting integration: %v", err)
	}
	// The round's list of deleted batches lets only the ids it names
	// through: not one that is part of a longer id in it.
	var zID int64
	if err := db.QueryRow(ctx, zBatch).Scan(&zID); err != nil {
		t.Fatal(err)
	}
	tx, err := db.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tx.Exec(ctx, `SELECT set_config('pgtenant_audit.integrated_batches', $1, true)`,
		fmt.Sprintf("%d1,9%d,%d0,%d", zID, zID, zID, zID+1)); err != nil {
		t.Fatal(err)
	}
	if _, err := tx.Exec(ctx, `DELETE FROM pgtenant_audit.ingest_batches WHERE id = $1`, zID); sqlState(err) != "42501" {
		t.Fatalf("delete of a batch awaiting integration, its id inside others of the list: %v", err)
	}
	tx.Rollback(ctx) //nolint:errcheck // the transaction failed
	// A batch whose events are all chained (a re-shipped one) may go
	// without the list: every event is looked up.
	var chained uuid.UUID
	if err := db.QueryRow(ctx, `SELECT event_id FROM pgtenant_audit.events WHERE chain_id = 'c' LIMIT 1`).Scan(&chained); err != nil {
		t.Fatal(err)
	}
	again, _ := NewRow(stmt("c", "s", 0), "eu-west", "x", StatementNormalized)
	again.EventID = chained
	again.HashVersion, again.ContentHash = HashVersion, again.ComputeContentHash()
	if pool, err = newPool(ctx, "eu-west", r, 1); err != nil {
		t.Fatal(err)
	}
	err = ingestRows(ctx, pool, "eu-west", oid, []*Row{again})
	pool.Close()
	if err != nil {
		t.Fatal(err)
	}
	if tag, err := db.Exec(ctx, `DELETE FROM pgtenant_audit.ingest_batches b WHERE $1 = ANY (SELECT x.event_id FROM unnest(b.events) x)`, chained); err != nil || tag.RowsAffected() != 1 {
		t.Fatalf("delete of a batch whose events are all chained: %v (%d rows)", err, tag.RowsAffected())
	}
	if _, err := db.Exec(ctx, `UPDATE pgtenant_audit.ingest_batches SET region = 'x' WHERE id IN `+zBatch); sqlState(err) != "42501" {
		t.Fatalf("update of a batch awaiting integration: %v", err)
	}
	if _, err := db.Exec(ctx, `TRUNCATE pgtenant_audit.ingest_batches`); sqlState(err) != "42501" {
		t.Fatalf("truncate of the batches awaiting integration: %v", err)
	}
	// The purge events wait in ingest until an integrator chains them.
	rec, err = NewRecorder(ctx, testAuditConfig(t, ModeAsync), regions, "i2", testLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	record("c", 0, 99)
	if err := rec.Close(ctx); err != nil {
		t.Fatal(err)
	}
	if got := countRows(t, db, `kind = 'purge'`); got != 2 {
		t.Fatalf("purge events: %d, want 2", got)
	}
	opts := VerifyOptions{PublicKey: pub}
	if rep := mustVerify(t, regions, opts); !rep.OK {
		t.Fatalf("verify after the purge: %+v", rep.Failures)
	}
	var buf strings.Builder
	if _, err := Export(ctx, regions, ExportOptions{Account: "a"}, &buf); err != nil {
		t.Fatal(err)
	}
	if rep, err := VerifyExport(strings.NewReader(buf.String()), pub); err != nil || !rep.OK {
		t.Fatalf("verify the purged chain's export: %+v %v", rep, err)
	}

	svc := serviceConn(t, c, r)
	if _, err := svc.Exec(ctx, `SELECT * FROM pgtenant_audit.purge_chain('c', now())`); sqlState(err) != "42501" {
		t.Fatalf("service role ran purge_chain: %v", err)
	}
	if _, err := db.Exec(ctx, `UPDATE pgtenant_audit.events SET statement = 'x' WHERE chain_id = 'c' AND seq = 1`); sqlState(err) != "42501" {
		t.Fatalf("an update that is not a redaction: %v", err)
	}
	if _, err := db.Exec(ctx, `DELETE FROM pgtenant_audit.events WHERE chain_id = 'a' AND seq = 1`); sqlState(err) != "42501" {
		t.Fatalf("delete of a purged row: %v", err)
	}
	// A redaction nobody signed (the owner may redact, only the key holder signs).
	if _, err := db.Exec(ctx, `UPDATE pgtenant_audit.events SET purged = true, subject = NULL, client_user = NULL,
		client_addr = NULL, session_id = NULL, statement = NULL, tables = NULL, reason = NULL WHERE chain_id = 'c' AND seq = 2`); err != nil {
		t.Fatal(err)
	}
	rep := mustVerify(t, regions, opts)
	if rep.OK || len(rep.Failures) != 1 || rep.Failures[0].Kind != FailUnsignedPurge || rep.Failures[0].ChainID != "c" {
		t.Fatalf("unsigned redaction: %+v", rep)
	}
}

// A batch that repeats stored events (a spool batch re-shipped after a
// crash) is appended as it is; the integrator, as the service role, chains
// each event once, counts the repeats, and removes both batches.
func TestIntegratorSkipsDuplicates(t *testing.T) {
	r, c := initRegion(t, "eu-west")
	ctx := testCtx(t)
	pool, oid := ingestPool(ctx, t, "eu-west", r)
	var rows []*Row
	for i := range 5 {
		row, err := NewRow(stmt("42", "s", i), "eu-west", "x", StatementNormalized)
		if err != nil {
			t.Fatal(err)
		}
		row.HashVersion, row.ContentHash = HashVersion, row.ComputeContentHash()
		rows = append(rows, row)
	}
	g := newIntegrator("eu-west", nil, testLogger(t))
	svc := serviceConn(t, c, r)
	if err := ingestRows(ctx, pool, "eu-west", oid, rows[:3]); err != nil {
		t.Fatal(err)
	}
	if n, err := g.rounds(ctx, svc); err != nil || n != 3 {
		t.Fatalf("first round: %d %v", n, err)
	}
	// Re-shipped twice, once in the same round as a new copy: the round
	// that does not look events up is refused by the unique event_id index
	// and redone with the lookups.
	if err := ingestRows(ctx, pool, "eu-west", oid, rows); err != nil {
		t.Fatal(err)
	}
	if err := ingestRows(ctx, pool, "eu-west", oid, rows[3:]); err != nil {
		t.Fatal(err)
	}
	if n, err := g.rounds(ctx, svc); err != nil || n != 7 {
		t.Fatalf("second round read %d events (%v), want 7", n, err)
	}
	if got, dups := g.integrated.Load(), g.dups.Load(); got != 5 || dups != 5 {
		t.Fatalf("integrated %d, skipped %d; want 5 and 5", got, dups)
	}
	db := adminConn(t, c, r)
	if got := countRows(t, db, `chain_id = '42'`); got != 5 {
		t.Fatalf("events: %d, want 5", got)
	}
	var pending int64
	if err := db.QueryRow(ctx, `SELECT count(*) FROM pgtenant_audit.ingest_batches`).Scan(&pending); err != nil || pending != 0 {
		t.Fatalf("ingest_batches holds %d batches (%v), want none", pending, err)
	}
	if rep := mustVerify(t, map[string]config.Region{"eu-west": r}, VerifyOptions{}); !rep.OK || rep.Regions[0].Rows != 5 {
		t.Fatalf("verify: %+v", rep)
	}

	// The integrator's own writers' rows (no batch) are checked the same
	// way: the five stored ones repeated and two new ones, submitted while
	// the integrator is active, go through one round that stores the two.
	for i := 5; i < 7; i++ {
		rows = append(rows, hashedRow(t, stmt("42", "s", i)))
	}
	batch := func(rows []*Row) ownRows {
		return ownRows{rows: rows, oid: oid, array: encodeEventArray(nil, oid, rows)}
	}
	if err := g.submit(ctx, batch(rows)); !errors.Is(err, errNotIntegrating) {
		t.Fatalf("submit to an inactive integrator: %v", err)
	}
	g.setActive(true)
	submitted := make(chan error, 1)
	go func() { submitted <- g.submit(ctx, batch(rows)) }()
	for len(g.ownQueued()) == 0 {
		time.Sleep(time.Millisecond)
	}
	if n, err := g.rounds(ctx, svc); err != nil || n != 7 {
		t.Fatalf("own round read %d events (%v), want 7", n, err)
	}
	if err := <-submitted; err != nil {
		t.Fatalf("submit: %v", err)
	}
	if got, dups := g.integrated.Load(), g.dups.Load(); got != 7 || dups != 10 {
		t.Fatalf("integrated %d, skipped %d; want 7 and 10", got, dups)
	}
	if rep := mustVerify(t, map[string]config.Region{"eu-west": r}, VerifyOptions{}); !rep.OK || rep.Regions[0].Rows != 7 {
		t.Fatalf("verify: %+v", rep)
	}
	// Losing the lock fails what no round took.
	go func() { submitted <- g.submit(ctx, batch(rows[:1])) }()
	for len(g.ownQueued()) == 0 {
		time.Sleep(time.Millisecond)
	}
	g.setActive(false)
	if err := <-submitted; !errors.Is(err, errNotIntegrating) {
		t.Fatalf("submit across a lost lock: %v", err)
	}
}

// ownQueued returns the batches submitted and not yet taken by a round.
func (g *integrator) ownQueued() []*submission {
	g.ownMu.Lock()
	defer g.ownMu.Unlock()
	return slices.Clone(g.own)
}

// While a recorder's process integrates its region, its writers hand their
// batches to its integrator: every event is written once, straight into
// events (no ingest batch is ever appended), and the chains verify.
func TestOwnEventsAreWrittenOnce(t *testing.T) {
	for _, mode := range []string{ModeAsync, ModeSpool} {
		t.Run(mode, func(t *testing.T) {
			r, c := initRegion(t, "eu-west")
			regions := map[string]config.Region{"eu-west": r}
			ctx := testCtx(t)
			rec := newTestRecorder(t, ctx, testAuditConfig(t, mode), regions, "i1")
			for !rec.Stats().Regions["eu-west"].Integrating {
				time.Sleep(5 * time.Millisecond)
			}
			const n = 3000
			for i := range n {
				ev := stmt("t"+strconv.Itoa(i%5), "s"+strconv.Itoa(i%5), i)
				ev.Ref = uint64(i + 1)
				if err := rec.Record(ctx, ev); err != nil {
					t.Fatal(err)
				}
				res := ev
				res.Kind, res.Verdict, res.Rows, res.SQLState = tenancy.KindResult, "", 1, "00000"
				if err := rec.Record(ctx, res); err != nil {
					t.Fatal(err)
				}
			}
			if err := rec.Close(ctx); err != nil {
				t.Fatal(err)
			}
			st := rec.Stats().Regions["eu-west"]
			if st.EventsWritten != n || st.EventsWrittenDirect != n || st.EventsIntegrated != n {
				t.Errorf("written %d, directly %d, integrated %d; want %d each", st.EventsWritten, st.EventsWrittenDirect, st.EventsIntegrated, n)
			}
			db := adminConn(t, c, r)
			if got := countRows(t, db, `kind = 'statement' AND rows = 1`); got != n {
				t.Errorf("%d statements with their results stored, want %d", got, n)
			}
			var last *int64
			if err := db.QueryRow(ctx, `SELECT pg_sequence_last_value(pg_get_serial_sequence('pgtenant_audit.ingest_batches', 'id'))`).Scan(&last); err != nil {
				t.Fatal(err)
			}
			if last != nil {
				t.Errorf("ingest batches were appended (the last id is %d)", *last)
			}
			if rep := mustVerify(t, regions, VerifyOptions{}); !rep.OK || rep.Regions[0].Rows != n {
				t.Fatalf("verify: %+v", rep)
			}
		})
	}
}

// audit.statement: full keeps the text outside the hashed content (hash
// version 2, a salted commitment); erasing it leaves every chain, tree
// checkpoint and export verifiable, and a changed text is still detected.
func TestEraseStatementTextKeepsEverythingVerifiable(t *testing.T) {
	for _, mode := range []string{ModeAsync, ModeSpool} {
		t.Run(mode, func(t *testing.T) {
			r, c := initRegion(t, "eu-west")
			regions := map[string]config.Region{"eu-west": r}
			ctx := testCtx(t)
			pub, key := sealKey(t)
			cfg := testAuditConfig(t, mode)
			cfg.Statement = StatementFull
			rec, err := NewRecorder(ctx, cfg, regions, "full", testLogger(t))
			if err != nil {
				t.Fatal(err)
			}
			cut := time.Now()
			for i := range 8 {
				ev := stmt("42", "s", i)
				ev.FullStatement = fmt.Sprintf("SELECT * FROM orders WHERE account_id = 42 AND note = 'secret-%d'", i)
				ev.Time = cut.Add(-time.Hour)
				if i >= 5 {
					ev.Time = cut.Add(time.Hour)
				}
				if err := rec.Record(ctx, ev); err != nil {
					t.Fatal(err)
				}
			}
			if err := rec.Close(ctx); err != nil {
				t.Fatal(err)
			}
			db := adminConn(t, c, r)
			if got := countRows(t, db, `hash_version = 2 AND statement LIKE '%secret-%' AND statement_salt IS NOT NULL`); got != 8 {
				t.Fatalf("full-mode rows with text, salt and version 2: %d, want 8", got)
			}
			if _, err := Seal(ctx, regions, key, "", nil); err != nil {
				t.Fatal(err)
			}
			opts := VerifyOptions{PublicKey: pub}
			if rep := mustVerify(t, regions, opts); !rep.OK {
				t.Fatalf("verify before erasure: %+v", rep.Failures)
			}
			n, err := Erase(ctx, regions, "42", cut)
			if err != nil || n != 5 {
				t.Fatalf("erase: %d %v, want 5", n, err)
			}
			if got := countRows(t, db, `statement LIKE '%secret-%'`); got != 3 {
				t.Fatalf("rows still holding text: %d, want the 3 newer ones", got)
			}
			var copies int64
			if err := db.QueryRow(ctx, `SELECT count(*) FROM pgtenant_audit.ingest WHERE statement LIKE '%secret-%' AND ts < $1`, cut).Scan(&copies); err != nil || copies != 0 {
				t.Fatalf("ingest still holds %d erased texts (%v)", copies, err)
			}
			if rep := mustVerify(t, regions, opts); !rep.OK {
				t.Fatalf("verify after erasure: %+v", rep.Failures)
			}
			var buf strings.Builder
			if _, err := Export(ctx, regions, ExportOptions{Account: "42"}, &buf); err != nil {
				t.Fatal(err)
			}
			if rep, err := VerifyExport(strings.NewReader(buf.String()), pub); err != nil || !rep.OK {
				t.Fatalf("verify the export after erasure: %+v %v", rep, err)
			}
			if py, err := exec.LookPath("python3"); err == nil {
				p := filepath.Join(t.TempDir(), "export.jsonl")
				if err := os.WriteFile(p, []byte(buf.String()), 0o600); err != nil {
					t.Fatal(err)
				}
				if out, err := exec.Command(py, "verifier/pgtenant_audit_verify.py", p).CombinedOutput(); err != nil {
					t.Fatalf("python verifier after erasure: %v\n%s", err, out)
				}
			}
			// Editing a text that is still there breaks its commitment.
			asAttacker(t, db, `UPDATE pgtenant_audit.events SET statement = 'SELECT 1' WHERE chain_id = '42' AND statement LIKE '%secret-6%'`)
			rep := mustVerify(t, regions, opts)
			if rep.OK || rep.Failures[0].Kind != FailContentMismatch {
				t.Fatalf("an edited committed text: %+v", rep)
			}
		})
	}
}

// integrate_round refuses, as the service role, a round that does not
// extend its chain exactly or does not number the next tree leaves, and
// stores nothing then, whether its events come from a pending batch
// (integrate_batches) or from the integrator's own process (p_own); the
// correct round goes through, and a later round of the batch, which
// repeats those events, skips them and deletes it.
func TestIntegrateBatchesRefusesABrokenRound(t *testing.T) {
	r, c := initRegion(t, "eu-west")
	ctx := testCtx(t)
	pool, oid := ingestPool(ctx, t, "eu-west", r)
	var rows []*Row
	for i := range 3 {
		row, err := NewRow(stmt("42", "s", i), "eu-west", "x", StatementNormalized)
		if err != nil {
			t.Fatal(err)
		}
		row.HashVersion, row.ContentHash = HashVersion, row.ComputeContentHash()
		rows = append(rows, row)
	}
	if err := ingestRows(ctx, pool, "eu-west", oid, rows); err != nil {
		t.Fatal(err)
	}
	svc := serviceConn(t, c, r)
	var batch int64
	if err := svc.QueryRow(ctx, `SELECT min(batch) FROM pgtenant_audit.pending_events('eu-west', 100, false, '{}')`).Scan(&batch); err != nil {
		t.Fatal(err)
	}
	// The correct round: seq 1-3 from genesis, leaves 0-2, and the head it
	// declares for chain 42 (heads: the chains' new heads, as the
	// integrator declares them).
	type head struct {
		chain string
		seq   int64
		entry []byte
	}
	type round struct {
		seq         []*int64
		prev, entry [][]byte
		leaf        []*int64
		heads       []head
		firstLeaf   int64
	}
	headArrays := func(rd round) (chains []string, seqs []int64, entries [][]byte) {
		for _, h := range rd.heads {
			chains, seqs, entries = append(chains, h.chain), append(seqs, h.seq), append(entries, h.entry)
		}
		return chains, seqs, entries
	}
	// chained is the three events chained from prev, the first at seq
	// first: a well-formed chain that extends the head only from genesis
	// at seq 1.
	chained := func(prev []byte, first int64) round {
		var rd round
		for i, row := range rows {
			seq, leaf := first+int64(i), int64(i)
			e := EntryHash("42", seq, prev, row.ContentHash)
			rd.seq, rd.prev, rd.entry, rd.leaf = append(rd.seq, &seq), append(rd.prev, prev), append(rd.entry, e), append(rd.leaf, &leaf)
			prev = e
		}
		rd.heads = []head{{"42", first + 2, prev}}
		return rd
	}
	good := func() round { return chained(GenesisHash("eu-west", "42"), 1) }
	run := func(rd round) error {
		return pgx.BeginFunc(ctx, svc, func(tx pgx.Tx) error {
			if _, err := tx.Exec(ctx, `SELECT * FROM pgtenant_audit.heads_of('{42}', '{eu-west}')`); err != nil {
				return err
			}
			if _, err := tx.Exec(ctx, `SELECT pgtenant_audit.tree_size('eu-west')`); err != nil {
				return err
			}
			chains, seqs, entries := headArrays(rd)
			_, err := tx.Exec(ctx, `SELECT pgtenant_audit.integrate_batches('eu-west', $1, $2, $3, $4, $5, $6, $7, $8, $9)`,
				rd.firstLeaf, []int64{batch}, rd.seq, rd.prev, rd.entry, rd.leaf, chains, seqs, entries)
			return err
		})
	}
	// rollBack makes integrateOwn roll its round back once
	// integrate_round accepted it (errRolledBack).
	rollBack := false
	errRolledBack := errors.New("accepted, rolled back")
	int8s := func(v []*int64) [][]byte {
		out := make([][]byte, len(v))
		for i, x := range v {
			if x != nil {
				out[i] = binary.BigEndian.AppendUint64(nil, uint64(*x))
			}
		}
		return out
	}
	// flat lays hashes out as integrate_round's form of schema version 12
	// takes them: 32 bytes per element, zeros for a skipped one.
	flat := func(hashes [][]byte) []byte {
		out := make([]byte, 0, HashSize*len(hashes))
		for _, h := range hashes {
			if h == nil {
				h = make([]byte, HashSize)
			}
			out = append(out, h...)
		}
		return out
	}
	// integrateOwn is the same round with the rows as the integrator's
	// own (p_own, in the binary form the integrator sends) and no batch,
	// the hashes in the form the integrator sends (flat) or as the bytea[]
	// of proxies of version 11, which that form lays out flat and passes on.
	integrateOwn := func(rd round, flatHashes bool) error {
		own := encodeEventArray(nil, oid, rows)
		prevs, entries, hashOID := binArray(oidBytea, rd.prev), binArray(oidBytea, rd.entry), uint32(oidByteaArray)
		if flatHashes {
			prevs, entries, hashOID = flat(rd.prev), flat(rd.entry), oidBytea
		}
		return pgx.BeginFunc(ctx, svc, func(tx pgx.Tx) error {
			if _, err := tx.Exec(ctx, `SELECT * FROM pgtenant_audit.heads_of('{42}', '{eu-west}')`); err != nil {
				return err
			}
			if _, err := tx.Exec(ctx, `SELECT pgtenant_audit.tree_size('eu-west')`); err != nil {
				return err
			}
			chains, seqs, heads := headArrays(rd)
			var texts, ints [][]byte
			for i := range chains {
				texts = append(texts, []byte(chains[i]))
				ints = append(ints, binary.BigEndian.AppendUint64(nil, uint64(seqs[i])))
			}
			err := tx.Conn().PgConn().ExecParams(ctx, `SELECT pgtenant_audit.integrate_round('eu-west', $1, '{}', $2, $3, $4, $5, $6, $7, $8, $9)`,
				[][]byte{binary.BigEndian.AppendUint64(nil, uint64(rd.firstLeaf)), own, binArray(oidInt8, int8s(rd.seq)),
					prevs, entries, binArray(oidInt8, int8s(rd.leaf)),
					binArray(oidText, texts), binArray(oidInt8, ints), binArray(oidBytea, heads)},
				[]uint32{oidInt8, 0, oidInt8Array, hashOID, hashOID, oidInt8Array, oidTextArray, oidInt8Array, oidByteaArray},
				[]int16{1, 1, 1, 1, 1, 1, 1, 1, 1}, nil).Read().Err
			if err == nil && rollBack {
				return errRolledBack
			}
			return err
		})
	}
	runOwn := func(rd round) error { return integrateOwn(rd, false) }
	runFlat := func(rd round) error { return integrateOwn(rd, true) }
	one := int64(1)
	for name, broken := range map[string]func(*round){
		"a wrong entry hash":      func(rd *round) { rd.entry[1] = rd.entry[0]; rd.prev[2] = rd.entry[0] },
		"a broken link":           func(rd *round) { rd.prev[2] = rd.prev[1] },
		"a gap in seq":            func(rd *round) { s := int64(4); rd.seq[2] = &s; rd.heads[0].seq = 4 },
		"a repeated leaf":         func(rd *round) { rd.leaf[2] = &one },
		"leaves past the tree":    func(rd *round) { l := int64(5); rd.leaf[2] = &l },
		"a head short of the end": func(rd *round) { rd.heads[0] = head{"42", 2, rd.entry[1]} },
		"an event skipped, unseen": func(rd *round) {
			rd.seq[2], rd.prev[2], rd.entry[2], rd.leaf[2] = nil, nil, nil, nil
			rd.heads[0] = head{"42", 2, rd.entry[1]}
		},
		"the wrong first leaf": func(rd *round) { rd.firstLeaf = 1 },
		// well-formed among themselves, but not from the chain's head
		"a chain from another head":         func(rd *round) { *rd = chained(GenesisHash("eu-west", "43"), 1) },
		"a chain past the head":             func(rd *round) { *rd = chained(GenesisHash("eu-west", "42"), 2) },
		"a head that is not the last event": func(rd *round) { rd.heads[0].entry = rd.entry[1] },
		// the declared heads must be the round's chains, each once
		"no head declared":             func(rd *round) { rd.heads = nil },
		"the head declared twice":      func(rd *round) { rd.heads = append(rd.heads, rd.heads[0]) },
		"a head for a chain not in it": func(rd *round) { rd.heads = append(rd.heads, head{"43", 1, rd.entry[0]}) },
		// schema 12 cuts the hashes from strings of 32 bytes per element:
		// a shorter one would shift every hash after it
		"a hash of 31 bytes": func(rd *round) { rd.prev[1] = rd.prev[1][:31] },
	} {
		for how, integrate := range map[string]func(round) error{"batch": run, "own": runOwn, "own, flat hashes": runFlat} {
			rd := good()
			broken(&rd)
			if err := integrate(rd); err == nil {
				t.Errorf("%s (%s): the round was accepted", name, how)
			} else if !strings.Contains(err.Error(), "pgtenant_audit.integrate_round") {
				t.Errorf("%s (%s): refused for another reason: %v", name, how, err)
			}
		}
	}
	db := adminConn(t, c, r)
	if got := countRows(t, db, `true`); got != 0 {
		t.Fatalf("refused rounds stored %d events", got)
	}
	rollBack = true
	if err := runOwn(good()); !errors.Is(err, errRolledBack) {
		t.Fatalf("the correct round, hashes as bytea[]: %v", err)
	}
	rollBack = false
	if err := runFlat(good()); err != nil {
		t.Fatalf("the correct round: %v", err)
	}
	if rep := mustVerify(t, map[string]config.Region{"eu-west": r}, VerifyOptions{}); !rep.OK || rep.Regions[0].Rows != 3 {
		t.Fatalf("verify: %+v", rep)
	}
	// The batch repeats the three events: skipped, it is deleted.
	skipped := round{seq: make([]*int64, 3), prev: make([][]byte, 3), entry: make([][]byte, 3), leaf: make([]*int64, 3), firstLeaf: 3}
	err := pgx.BeginFunc(ctx, svc, func(tx pgx.Tx) error {
		_, err := tx.Exec(ctx, `SELECT pgtenant_audit.integrate_batches('eu-west', 3, $1, $2, $3, $4, $5, '{}', '{}', '{}')`,
			[]int64{batch}, skipped.seq, skipped.prev, skipped.entry, skipped.leaf)
		return err
	})
	if err != nil {
		t.Fatalf("the repeating batch: %v", err)
	}
	var left int
	if err := db.QueryRow(ctx, `SELECT count(*) FROM pgtenant_audit.ingest_batches`).Scan(&left); err != nil || left != 0 {
		t.Fatalf("batches left: %d (%v)", left, err)
	}
}

// Under a backlog the integrator plans each round while the one before
// integrates, on a second connection, and integrate_round inserts before
// it waits for that round: every event is chained once, in gap-free
// chains, in the order its writer submitted it. A round that fails there
// (here the unique event_id index refuses a batch that repeats events of
// the round still integrating beside it) takes the round planned after it
// down too, and both are retried, in order, by a round that looks every
// event up.
func TestRoundsOverlapUnderABacklog(t *testing.T) {
	r, c := initRegion(t, "eu-west")
	ctx := testCtx(t)
	_, oid := ingestPool(ctx, t, "eu-west", r)
	dsn := c.DSN(c.ServiceUser, c.ServicePassword, r.AuditDatabase)
	g := newIntegrator("eu-west", func(ctx context.Context) (*pgx.Conn, error) { return pgx.Connect(ctx, dsn) }, testLogger(t))
	defer g.closeSecond()
	g.setActive(true)
	const size = integrateBatch - batchMax + 100 // a full round each
	var batches [][]*Row
	k := 0
	for b := range 4 {
		var rows []*Row
		if b == 2 {
			rows = append(rows, batches[1][:50]...) // repeats of the round before
		}
		for len(rows) < size {
			k++
			rows = append(rows, hashedRow(t, stmt("t"+strconv.Itoa(k%7), "s", k)))
		}
		batches = append(batches, rows)
	}
	// Each batch is submitted once the round before took its predecessor,
	// as a writer with one batch in flight does.
	results := make([]chan error, len(batches))
	for b := range results {
		results[b] = make(chan error, 1)
	}
	go func() {
		var prev *submission
		for b, rows := range batches {
			o, err := g.submitAfter(ownRows{rows: rows, oid: oid, array: encodeEventArray(nil, oid, rows)}, prev)
			if err != nil {
				results[b] <- err
				return
			}
			go func() { results[b] <- o.wait(ctx) }()
			for len(g.ownQueued()) > 0 {
				time.Sleep(time.Millisecond)
			}
			prev = o
		}
	}()
	svc := serviceConn(t, c, r)
	for b := range batches {
		for {
			select {
			case err := <-results[b]:
				if err != nil {
					t.Fatalf("batch %d: %v", b, err)
				}
			default:
				if _, err := g.rounds(ctx, svc); err != nil {
					t.Fatalf("rounds: %v", err)
				}
				continue
			}
			break
		}
	}
	if g.overlapped.Load() == 0 {
		t.Fatal("no round was planned while another integrated")
	}
	want := uint64(k)
	if got, dups := g.integrated.Load(), g.dups.Load(); got != want || dups != 50 {
		t.Fatalf("integrated %d events and skipped %d, want %d and 50", got, dups, want)
	}
	if got := countRows(t, adminConn(t, c, r), `true`); got != int64(want) {
		t.Fatalf("events: %d, want %d", got, want)
	}
	// Each chain holds its events in the order they were submitted.
	var disorder int
	if err := adminConn(t, c, r).QueryRow(ctx, `SELECT count(*) FROM (SELECT ts < lag(ts) OVER (PARTITION BY chain_id ORDER BY seq) AS back
		FROM pgtenant_audit.events) x WHERE back`).Scan(&disorder); err != nil || disorder != 0 {
		t.Fatalf("%d events chained before an older one of their chain (%v)", disorder, err)
	}
	if rep := mustVerify(t, map[string]config.Region{"eu-west": r}, VerifyOptions{}); !rep.OK || rep.Regions[0].Rows != int64(want) {
		t.Fatalf("verify: %+v", rep)
	}
}

// A backlog of other proxies' batches overlaps the same way: each full
// round's successor reads the pending batches but those of the round still
// integrating, and every event is chained once, in gap-free chains.
func TestRoundsOverlapUnderABacklogOfBatches(t *testing.T) {
	r, c := initRegion(t, "eu-west")
	ctx := testCtx(t)
	pool, oid := ingestPool(ctx, t, "eu-west", r)
	const batches = 20 // 40960 events: three rounds
	for b := range batches {
		rows := make([]*Row, 0, batchMax)
		for i := range batchMax {
			rows = append(rows, hashedRow(t, stmt("t"+strconv.Itoa(i%7), "s", b*batchMax+i)))
		}
		if err := ingestRows(ctx, pool, "eu-west", oid, rows); err != nil {
			t.Fatal(err)
		}
	}
	dsn := c.DSN(c.ServiceUser, c.ServicePassword, r.AuditDatabase)
	g := newIntegrator("eu-west", func(ctx context.Context) (*pgx.Conn, error) { return pgx.Connect(ctx, dsn) }, testLogger(t))
	defer g.closeSecond()
	svc := serviceConn(t, c, r)
	for g.integrated.Load() < batches*batchMax {
		if n, err := g.rounds(ctx, svc); err != nil || n == 0 {
			t.Fatalf("rounds: %d events, %v", n, err)
		}
	}
	if got, overlapped := g.integrated.Load(), g.overlapped.Load(); got != batches*batchMax || overlapped == 0 {
		t.Fatalf("chained %d events (%d rounds overlapped), want %d with some overlapped", got, overlapped, batches*batchMax)
	}
	db := adminConn(t, c, r)
	if got := countRows(t, db, `true`); got != batches*batchMax {
		t.Fatalf("events: %d", got)
	}
	var left int
	if err := db.QueryRow(ctx, `SELECT count(*) FROM pgtenant_audit.ingest_batches`).Scan(&left); err != nil || left != 0 {
		t.Fatalf("batches left: %d (%v)", left, err)
	}
	if rep := mustVerify(t, map[string]config.Region{"eu-west": r}, VerifyOptions{}); !rep.OK || rep.Regions[0].Rows != batches*batchMax {
		t.Fatalf("verify: %+v", rep)
	}
}

// ingestPool is a writer's pool on region's audit database, closed when
// the test ends, and the OID of pgtenant_audit.ingest_event for ingestRows.
func ingestPool(ctx context.Context, t *testing.T, region string, r config.Region) (*pgxpool.Pool, uint32) {
	t.Helper()
	pool, err := newPool(ctx, region, r, 1)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	oid, err := ingestEventOID(ctx, pool)
	if err != nil {
		t.Fatal(err)
	}
	return pool, oid
}

// hashedRow is ev as an eu-west row ready to ingest: content-hashed as a
// writer hashes it before the COPY.
func hashedRow(t testing.TB, ev tenancy.Event) *Row {
	t.Helper()
	row, err := NewRow(ev, "eu-west", "x", StatementNormalized)
	if err != nil {
		t.Fatal(err)
	}
	row.HashVersion, row.ContentHash = row.hashVersionFor(), row.ComputeContentHash()
	return row
}

// Erase does not skip events appended and not yet chained: it waits for
// the integrator, fails naming them when none chains them in time, and
// erases them once chained.
func TestEraseWaitsForPendingEvents(t *testing.T) {
	r, c := initRegion(t, "eu-west")
	regions := map[string]config.Region{"eu-west": r}
	ctx := testCtx(t)
	pool, oid := ingestPool(ctx, t, "eu-west", r)
	cut := time.Now()
	var rows []*Row
	for i := range 3 {
		ev := stmt("42", "s", i)
		ev.FullStatement = fmt.Sprintf("SELECT * FROM orders WHERE account_id = 42 AND note = 'secret-%d'", i)
		ev.Time = cut.Add(-time.Hour)
		row, err := NewRow(ev, "eu-west", "x", StatementFull)
		if err != nil {
			t.Fatal(err)
		}
		row.HashVersion, row.ContentHash = row.hashVersionFor(), row.ComputeContentHash()
		rows = append(rows, row)
	}
	if err := ingestRows(ctx, pool, "eu-west", oid, rows); err != nil {
		t.Fatal(err)
	}
	old := EraseWait
	EraseWait = 300 * time.Millisecond
	defer func() { EraseWait = old }()
	if n, err := Erase(ctx, regions, "42", cut); err == nil || !strings.Contains(err.Error(), "3 events") ||
		!strings.Contains(err.Error(), "await integration") {
		t.Fatalf("erase with 3 events pending: %d, %v", n, err)
	}
	dsn := c.DSN(c.ServiceUser, c.ServicePassword, r.AuditDatabase)
	g := newIntegrator("eu-west", func(ctx context.Context) (*pgx.Conn, error) { return pgx.Connect(ctx, dsn) }, testLogger(t))
	defer g.closeSecond()
	if n, err := g.rounds(ctx, serviceConn(t, c, r)); err != nil || n != 3 {
		t.Fatalf("integration round: %d, %v", n, err)
	}
	if n, err := Erase(ctx, regions, "42", cut); err != nil || n != 3 {
		t.Fatalf("erase once chained: %d, %v, want 3", n, err)
	}
	if got := countRows(t, adminConn(t, c, r), `statement LIKE '%secret-%'`); got != 0 {
		t.Fatalf("%d rows still hold an erased text", got)
	}
	if rep := mustVerify(t, regions, VerifyOptions{}); !rep.OK {
		t.Fatalf("verify after erasure: %+v", rep.Failures)
	}
}

// The pace between rounds ends as soon as this process's writers have
// submitted a full round: after a small round, a backlog is not held back.
func TestPauseEndsOnABacklog(t *testing.T) {
	g := newIntegrator("eu-west", nil, testLogger(t))
	g.setActive(true)
	if _, err := g.submitAfter(ownRows{rows: make([]*Row, integrateBatch-batchMax)}, nil); err != nil {
		t.Fatal(err)
	}
	paused := make(chan bool, 1)
	go func() { paused <- g.pause(time.Hour) }()
	select {
	case <-paused:
		t.Fatal("the pace ended before a full round was submitted")
	case <-time.After(50 * time.Millisecond):
	}
	if _, err := g.submitAfter(ownRows{rows: make([]*Row, 1)}, nil); err != nil {
		t.Fatal(err)
	}
	select {
	case ok := <-paused:
		if !ok {
			t.Fatal("pause asked the integrator to exit")
		}
	case <-time.After(time.Minute):
		t.Fatal("the pace went on with a full round submitted")
	}
}

// TestIngestPreparesItsInsertOnceAndAgainAfterAFailure checks the writer's
// prepared INSERT: the statement is prepared once on a connection and
// reused, and a batch the server refuses (here a count that does not match
// the events, which the table's CHECK refuses) drops it, so the next batch
// prepares it again rather than running a statement that may be what
// failed; what was refused is not stored and what follows is.
func TestIngestPreparesItsInsertOnceAndAgainAfterAFailure(t *testing.T) {
	r, c := initRegion(t, "eu-west")
	ctx := testCtx(t)
	pool, oid := ingestPool(ctx, t, "eu-west", r)
	conn, err := pool.Acquire(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Release()
	row := func(i int) []byte {
		t.Helper()
		r, err := NewRow(stmt("42", "s", i), "eu-west", "x", StatementNormalized)
		if err != nil {
			t.Fatal(err)
		}
		r.HashVersion, r.ContentHash = HashVersion, r.ComputeContentHash()
		return encodeEventArray(nil, oid, []*Row{r})
	}
	prepared := func() int64 {
		t.Helper()
		var n int64
		if err := conn.QueryRow(ctx, `SELECT count(*) FROM pg_prepared_statements WHERE name = $1`, ingestStatement).Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n
	}
	for i := range 3 {
		if err := insertBatch(ctx, conn.Conn(), "eu-west", 1, row(i)); err != nil {
			t.Fatalf("batch %d: %v", i, err)
		}
		if n := prepared(); n != 1 {
			t.Fatalf("after batch %d: %d prepared statements named %s, want 1", i, n, ingestStatement)
		}
	}
	err = insertBatch(ctx, conn.Conn(), "eu-west", 2, row(3))
	if sqlState(err) != "23514" {
		t.Fatalf("a batch of 1 event sent as 2: %v, want the CHECK's 23514", err)
	}
	if n := prepared(); n != 0 {
		t.Fatalf("after a refused batch: %d prepared statements named %s, want 0 (dropped)", n, ingestStatement)
	}
	if err := insertBatch(ctx, conn.Conn(), "eu-west", 1, row(4)); err != nil {
		t.Fatalf("the batch after the refused one: %v", err)
	}
	if n := prepared(); n != 1 {
		t.Fatalf("after the next batch: %d prepared statements, want 1", n)
	}
	db := adminConn(t, c, r)
	var batches, events int64
	if err := db.QueryRow(ctx, `SELECT count(*), coalesce(sum(n), 0) FROM pgtenant_audit.ingest_batches`).Scan(&batches, &events); err != nil {
		t.Fatal(err)
	}
	if batches != 4 || events != 4 {
		t.Fatalf("ingest_batches: %d batches of %d events, want 4 of 4", batches, events)
	}
}

// TestIntegratorRefusesAHeadThatIsNoHash checks the integrator's check of
// the chain heads it reads: integrate_round takes a round's hashes as 32
// bytes each (schema version 12), so a head of another length (a damaged
// chain_heads row, here written by the admin role) stops the round with
// an error that names the chain, and nothing is chained.
func TestIntegratorRefusesAHeadThatIsNoHash(t *testing.T) {
	r, c := initRegion(t, "eu-west")
	ctx := testCtx(t)
	db := adminConn(t, c, r)
	if _, err := db.Exec(ctx, `INSERT INTO pgtenant_audit.chain_heads (chain_id, region, seq, head) VALUES ('99', 'eu-west', 0, '\x0102')`); err != nil {
		t.Fatal(err)
	}
	pool, oid := ingestPool(ctx, t, "eu-west", r)
	row, err := NewRow(stmt("99", "s", 0), "eu-west", "x", StatementNormalized)
	if err != nil {
		t.Fatal(err)
	}
	row.HashVersion, row.ContentHash = HashVersion, row.ComputeContentHash()
	if err := ingestRows(ctx, pool, "eu-west", oid, []*Row{row}); err != nil {
		t.Fatal(err)
	}
	g := newIntegrator("eu-west", nil, testLogger(t))
	_, err = g.rounds(ctx, serviceConn(t, c, r))
	if err == nil || !strings.Contains(err.Error(), `chain "99"'s head is a hash of 2 bytes`) {
		t.Fatalf("a round over a 2-byte head: %v, want the head refused", err)
	}
	if got := countRows(t, db, `true`); got != 0 {
		t.Fatalf("%d events chained over a damaged head", got)
	}
}
