package audit

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"

	"github.com/jackc/pgx/v5"

	"github.com/pgtenant/pgtenant/config"
)

// asAttacker runs sql as the superuser with the audit triggers disabled, as
// an attacker with full database access would, then re-enables them.
func asAttacker(t *testing.T, conn *pgx.Conn, sql string, args ...any) {
	t.Helper()
	ctx := testCtx(t)
	tx, err := conn.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback(ctx)
	for _, tbl := range []string{"events", "chain_heads", "checkpoints", "tree_checkpoints", "tree_heads", "ingest"} {
		if _, err := tx.Exec(ctx, `ALTER TABLE pgtenant_audit.`+tbl+` DISABLE TRIGGER USER`); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := tx.Exec(ctx, sql, args...); err != nil {
		t.Fatalf("tamper %q: %v", sql, err)
	}
	for _, tr := range [][2]string{{"events", "events_append_only"}, {"events", "events_no_truncate"},
		{"checkpoints", "checkpoints_append_only"}, {"checkpoints", "checkpoints_no_truncate"},
		{"chain_heads", "chain_heads_no_delete"}, {"chain_heads", "chain_heads_no_truncate"}, {"chain_heads", "chain_heads_forward"},
		{"tree_checkpoints", "tree_checkpoints_append_only"}, {"tree_checkpoints", "tree_checkpoints_no_truncate"},
		{"tree_heads", "tree_heads_no_delete"}, {"tree_heads", "tree_heads_no_truncate"}, {"tree_heads", "tree_heads_forward"},
		{"ingest", "ingest_append_only"}, {"ingest", "ingest_no_truncate"}} {
		if _, err := tx.Exec(ctx, `ALTER TABLE pgtenant_audit.`+tr[0]+` ENABLE ALWAYS TRIGGER `+tr[1]); err != nil {
			t.Fatal(err)
		}
	}
	if err := tx.Commit(ctx); err != nil {
		t.Fatal(err)
	}
}

// rehashFrom recomputes the hashes of chain's rows from seq on, as they
// now are in the database, and moves chain_heads to the new last row: an
// attacker covering their tracks.
func rehashFrom(t *testing.T, conn *pgx.Conn, region, chain string, from int64) {
	t.Helper()
	ctx := testCtx(t)
	var rows []*Row
	if err := streamChain(ctx, conn, chain, 1, 0, func(r *Row) error { rows = append(rows, r); return nil }); err != nil {
		t.Fatal(err)
	}
	prev := GenesisHash(region, chain)
	var b strings.Builder
	for _, r := range rows {
		if r.Seq >= from {
			r.Seal(r.Seq, prev)
			fmt.Fprintf(&b, "UPDATE pgtenant_audit.events SET content_hash = '\\x%x', prev_hash = '\\x%x', entry_hash = '\\x%x' WHERE chain_id = '%s' AND seq = %d;\n",
				r.ContentHash, r.PrevHash, r.EntryHash, chain, r.Seq)
		}
		prev = r.EntryHash
	}
	last := rows[len(rows)-1]
	fmt.Fprintf(&b, "UPDATE pgtenant_audit.chain_heads SET seq = %d, head = '\\x%x' WHERE chain_id = '%s';", last.Seq, last.EntryHash, chain)
	asAttacker(t, conn, b.String())
}

func TestTamperingIsDetected(t *testing.T) {
	r, c := initRegion(t, "eu-west")
	regions := map[string]config.Region{"eu-west": r}
	ctx := testCtx(t)
	pub, key := sealKey(t)
	cpDir := t.TempDir()
	const n = 20
	type tcase struct {
		name   string
		tamper func(t *testing.T, conn *pgx.Conn, chain string)
		kind   string
		seq    int64
	}
	cases := []tcase{
		{"edit a field", func(t *testing.T, db *pgx.Conn, ch string) {
			asAttacker(t, db, `UPDATE pgtenant_audit.events SET statement = 'SELECT 1' WHERE chain_id = $1 AND seq = 5`, ch)
		}, FailContentMismatch, 5},
		{"NULL to empty string", func(t *testing.T, db *pgx.Conn, ch string) {
			asAttacker(t, db, `UPDATE pgtenant_audit.events SET reason = '' WHERE chain_id = $1 AND seq = 5`, ch)
		}, FailContentMismatch, 5},
		{"edit and rehash the row", func(t *testing.T, db *pgx.Conn, ch string) {
			asAttacker(t, db, `UPDATE pgtenant_audit.events SET subject = 'someone-else' WHERE chain_id = $1 AND seq = 5`, ch)
			var rows []*Row
			streamChain(testCtx(t), db, ch, 4, 5, func(r *Row) error { rows = append(rows, r); return nil })
			rows[1].Seal(5, rows[0].EntryHash)
			asAttacker(t, db, `UPDATE pgtenant_audit.events SET content_hash = $2, entry_hash = $3 WHERE chain_id = $1 AND seq = 5`,
				ch, rows[1].ContentHash, rows[1].EntryHash)
		}, FailLinkMismatch, 6},
		{"edit and rehash all later rows", func(t *testing.T, db *pgx.Conn, ch string) {
			asAttacker(t, db, `UPDATE pgtenant_audit.events SET subject = 'someone-else' WHERE chain_id = $1 AND seq = 5`, ch)
			rehashFrom(t, db, "eu-west", ch, 5)
		}, FailCheckpointMismatch, n},
		{"delete a middle row", func(t *testing.T, db *pgx.Conn, ch string) {
			asAttacker(t, db, `DELETE FROM pgtenant_audit.events WHERE chain_id = $1 AND seq = 5`, ch)
		}, FailSeqGap, 5},
		{"delete, renumber and rehash", func(t *testing.T, db *pgx.Conn, ch string) {
			asAttacker(t, db, `DELETE FROM pgtenant_audit.events WHERE chain_id = $1 AND seq = 5;`, ch)
			asAttacker(t, db, `UPDATE pgtenant_audit.events SET seq = seq - 1 + 1000000 WHERE chain_id = $1 AND seq > 5`, ch)
			asAttacker(t, db, `UPDATE pgtenant_audit.events SET seq = seq - 1000000 WHERE chain_id = $1 AND seq > 1000000`, ch)
			rehashFrom(t, db, "eu-west", ch, 5)
		}, FailTruncated, n},
		{"reorder two rows", func(t *testing.T, db *pgx.Conn, ch string) {
			asAttacker(t, db, `UPDATE pgtenant_audit.events SET seq = CASE seq WHEN 5 THEN 1000006 ELSE 1000005 END WHERE chain_id = $1 AND seq IN (5, 6)`, ch)
			asAttacker(t, db, `UPDATE pgtenant_audit.events SET seq = seq - 1000000 WHERE chain_id = $1 AND seq > 1000000`, ch)
		}, FailLinkMismatch, 5},
		{"splice a row from another tenant's chain", func(t *testing.T, db *pgx.Conn, ch string) {
			asAttacker(t, db, `INSERT INTO pgtenant_audit.events SELECT $1, 21, gen_random_uuid(), ts, kind, account_id, subject,
				client_user, client_addr, region, session_id, proxy_instance, statement, tables, verdict, reason, sqlstate, rows,
				duration_us, hash_version, content_hash, prev_hash, entry_hash FROM pgtenant_audit.events WHERE chain_id = 'other' AND seq = 3`, ch)
		}, FailContentMismatch, 21},
		{"insert a forged row with recomputed hashes", func(t *testing.T, db *pgx.Conn, ch string) {
			asAttacker(t, db, `UPDATE pgtenant_audit.events SET seq = seq + 1 + 1000000 WHERE chain_id = $1 AND seq >= 8`, ch)
			asAttacker(t, db, `UPDATE pgtenant_audit.events SET seq = seq - 1000000 WHERE chain_id = $1 AND seq > 1000000`, ch)
			forged, _ := NewRow(stmt(ch, "forged", 0), "eu-west", "i1", StatementNormalized)
			forged.Seal(8, make([]byte, 32))
			j := forged.ToJSON(true)
			asAttacker(t, db, `INSERT INTO pgtenant_audit.events SELECT * FROM jsonb_populate_record(NULL::pgtenant_audit.events, $1::jsonb)`, j)
			rehashFrom(t, db, "eu-west", ch, 8)
		}, FailCheckpointMismatch, n},
		{"append a forged row without moving the head", func(t *testing.T, db *pgx.Conn, ch string) {
			var rows []*Row
			streamChain(testCtx(t), db, ch, n, n, func(r *Row) error { rows = append(rows, r); return nil })
			forged, _ := NewRow(stmt(ch, "forged", 0), "eu-west", "i1", StatementNormalized)
			forged.Seal(n+1, rows[0].EntryHash)
			asAttacker(t, db, `INSERT INTO pgtenant_audit.events SELECT * FROM jsonb_populate_record(NULL::pgtenant_audit.events, $1::jsonb)`, forged.ToJSON(true))
		}, FailHeadMismatch, n + 1},
		{"truncate the tail", func(t *testing.T, db *pgx.Conn, ch string) {
			asAttacker(t, db, `DELETE FROM pgtenant_audit.events WHERE chain_id = $1 AND seq > 15`, ch)
			rehashFrom(t, db, "eu-west", ch, 16)
		}, FailTruncated, 16},
		{"truncate the tail and the database checkpoints", func(t *testing.T, db *pgx.Conn, ch string) {
			asAttacker(t, db, `DELETE FROM pgtenant_audit.events WHERE chain_id = $1 AND seq > 15`, ch)
			asAttacker(t, db, `DELETE FROM pgtenant_audit.checkpoints WHERE chain_id = $1`, ch)
			rehashFrom(t, db, "eu-west", ch, 16)
		}, FailTruncated, 16},
		{"delete a whole chain", func(t *testing.T, db *pgx.Conn, ch string) {
			asAttacker(t, db, `DELETE FROM pgtenant_audit.events WHERE chain_id = $1`, ch)
			asAttacker(t, db, `DELETE FROM pgtenant_audit.chain_heads WHERE chain_id = $1`, ch)
			asAttacker(t, db, `DELETE FROM pgtenant_audit.checkpoints WHERE chain_id = $1`, ch)
		}, FailChainMissing, 1},
		{"replace a chain with a freshly hashed one", func(t *testing.T, db *pgx.Conn, ch string) {
			asAttacker(t, db, `UPDATE pgtenant_audit.events SET statement = 'SELECT 42' WHERE chain_id = $1`, ch)
			rehashFrom(t, db, "eu-west", ch, 1)
		}, FailCheckpointMismatch, n},
		{"forge a checkpoint signature", func(t *testing.T, db *pgx.Conn, ch string) {
			asAttacker(t, db, `UPDATE pgtenant_audit.checkpoints SET size = 19 WHERE chain_id = $1`, ch)
		}, FailBadSignature, 19},
	}

	rec := newTestRecorder(t, ctx, testAuditConfig(t, ModeAsync), regions, "i1")
	chains := []string{"other"}
	for i := range cases {
		chains = append(chains, fmt.Sprintf("t%02d", i))
	}
	for _, ch := range chains {
		for i := range n {
			ev := stmt(ch, "s", i)
			if i%4 == 0 {
				ev.Reason = "" // NULL in the database
			}
			if err := rec.Record(ctx, ev); err != nil {
				t.Fatal(err)
			}
		}
	}
	if err := rec.Close(ctx); err != nil {
		t.Fatal(err)
	}
	res, err := Seal(ctx, regions, key, cpDir, nil)
	if err != nil || res.Sealed != len(chains) || len(res.Failures) != 0 {
		t.Fatalf("seal: %+v %v", res, err)
	}
	opts := VerifyOptions{PublicKey: pub, CheckpointDir: cpDir}
	if rep := mustVerify(t, regions, opts); !rep.OK || rep.Regions[0].ExternalCheckpoints != len(chains) {
		t.Fatalf("intact trail: %+v", rep)
	}
	if res, err := Seal(ctx, regions, key, cpDir, nil); err != nil || res.Sealed != 0 || res.Skipped != len(chains) {
		t.Fatalf("second seal with nothing new: %+v %v", res, err)
	}
	db := adminConn(t, c, r)
	for i, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			ch := fmt.Sprintf("t%02d", i)
			tc.tamper(t, db, ch)
			o := opts
			o.Account = ch
			rep := mustVerify(t, regions, o)
			if rep.OK || len(rep.Failures) != 1 {
				t.Fatalf("not detected: %+v", rep)
			}
			f := rep.Failures[0]
			if f.Kind != tc.kind || f.Seq != tc.seq || f.ChainID != ch {
				t.Fatalf("got %s, want %s at seq %d", f, tc.kind, tc.seq)
			}
		})
	}
	// Tampering with one chain never breaks another.
	o := opts
	o.Account = "other"
	if rep := mustVerify(t, regions, o); !rep.OK {
		t.Fatalf("untouched chain reported broken: %+v", rep.Failures)
	}
	// Seal refuses to sign a broken chain.
	res, err = Seal(ctx, regions, key, cpDir, nil)
	if err != nil || len(res.Failures) == 0 {
		t.Fatalf("seal over tampered chains: %+v %v", res, err)
	}
}

func TestConcurrentRecordersNeverForkOrGap(t *testing.T) {
	r, c := initRegion(t, "eu-west")
	regions := map[string]config.Region{"eu-west": r}
	ctx := testCtx(t)
	const instances, workers, each = 4, 4, 250
	var wg sync.WaitGroup
	errs := make(chan error, instances*workers)
	for i := range instances {
		mode := []string{ModeStrict, ModeAsync, ModeSpool, ModeStrict}[i]
		rec, err := NewRecorder(ctx, testAuditConfig(t, mode), regions, fmt.Sprintf("proxy-%d", i), testLogger(t))
		if err != nil {
			t.Fatal(err)
		}
		var rwg sync.WaitGroup
		for w := range workers {
			rwg.Add(1)
			go func() {
				defer rwg.Done()
				for k := range each {
					if err := rec.Record(ctx, stmt("shared", fmt.Sprintf("p%d-w%d", i, w), k)); err != nil {
						errs <- err
						return
					}
				}
			}()
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			rwg.Wait()
			if err := rec.Close(context.Background()); err != nil {
				errs <- err
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	db := adminConn(t, c, r)
	var cnt, maxSeq, distinct int64
	if err := db.QueryRow(ctx, `SELECT count(*), max(seq), count(DISTINCT event_id) FROM pgtenant_audit.events WHERE chain_id = 'shared'`).Scan(&cnt, &maxSeq, &distinct); err != nil {
		t.Fatal(err)
	}
	const total = instances * workers * each
	if cnt != total || maxSeq != total || distinct != total {
		t.Fatalf("count %d, max seq %d, distinct ids %d; want %d each", cnt, maxSeq, distinct, total)
	}
	if rep := mustVerify(t, regions, VerifyOptions{Account: "shared"}); !rep.OK || rep.Regions[0].Rows != total {
		t.Fatalf("verify after %d concurrent appends: %+v", total, rep)
	}
}
