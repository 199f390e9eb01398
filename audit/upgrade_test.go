package audit

import (
	"context"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/pgtenant/pgtenant/config"
	"github.com/pgtenant/pgtenant/tenancy"
)

// insertV6 appends row to pgtenant_audit.ingest one row per event, the way
// a proxy of schema versions 3 to 6 does (its COPY, as an INSERT).
func insertV6(t *testing.T, conn *pgx.Conn, row *Row) {
	t.Helper()
	row.HashVersion = row.hashVersionFor()
	row.ContentHash = row.ComputeContentHash()
	if _, err := conn.Exec(testCtx(t), `INSERT INTO pgtenant_audit.ingest (event_id, chain_id, ts, kind, account_id, subject,
		client_user, client_addr, region, session_id, proxy_instance, statement, tables, verdict, reason, sqlstate,
		rows, duration_us, hash_version, content_hash, statement_salt, statement_commitment, role, actor, purpose, ticket, rewritten)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8::inet, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19, $20, $21, $22,
		$23, $24, $25, $26, $27)`,
		row.EventID, row.ChainID, row.TS, row.Kind, row.AccountID, row.Subject, row.ClientUser, row.ClientAddr,
		row.Region, row.SessionID, row.ProxyInstance, row.Statement, row.Tables, row.Verdict, row.Reason, row.SQLState,
		row.Rows, row.DurationUS, row.HashVersion, row.ContentHash, row.StatementSalt, row.StatementCommitment,
		row.Role, row.Actor, row.Purpose, row.Ticket, row.Rewritten); err != nil {
		t.Fatal(err)
	}
}

// integrateV6 runs one integration round the way the integrator of schema
// versions 3 to 6 did (ingest_pending, heads_of, tree_size, integrate),
// so that tests can build a region as an older proxy left it. It returns
// the number of events chained.
func integrateV6(ctx context.Context, conn *pgx.Conn, region string) (int, error) {
	n := 0
	err := pgx.BeginFunc(ctx, conn, func(tx pgx.Tx) error {
		rows, err := tx.Query(ctx, `SELECT event_id, chain_id, region, content_hash FROM pgtenant_audit.ingest_pending(0, 100000)`)
		if err != nil {
			return err
		}
		type pend struct {
			id            [16]byte
			chain, region string
			content       []byte
		}
		ps, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (pend, error) {
			var p pend
			err := r.Scan(&p.id, &p.chain, &p.region, &p.content)
			return p, err
		})
		if err != nil || len(ps) == 0 {
			return err
		}
		var chains, regions []string
		for _, p := range ps {
			chains, regions = append(chains, p.chain), append(regions, p.region)
		}
		type head struct {
			seq  int64
			hash []byte
		}
		heads := map[string]*head{}
		hr, err := tx.Query(ctx, `SELECT chain_id, seq, head FROM pgtenant_audit.heads_of($1, $2)`, chains, regions)
		if err != nil {
			return err
		}
		for hr.Next() {
			var c string
			h := &head{}
			if err := hr.Scan(&c, &h.seq, &h.hash); err != nil {
				return err
			}
			heads[c] = h
		}
		if err := hr.Err(); err != nil {
			return err
		}
		var ids [][16]byte
		var chainOf []string
		var contents, prevs, entries [][]byte
		var seqs []int64
		for _, p := range ps {
			h := heads[p.chain]
			h.seq++
			entry := EntryHash(p.chain, h.seq, h.hash, p.content)
			ids, chainOf, contents, prevs, entries = append(ids, p.id), append(chainOf, p.chain), append(contents, p.content),
				append(prevs, h.hash), append(entries, entry)
			seqs = append(seqs, h.seq)
			h.hash = entry
		}
		var size int64
		if err := tx.QueryRow(ctx, `SELECT pgtenant_audit.tree_size($1)`, region).Scan(&size); err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, `SELECT pgtenant_audit.integrate($1, $2, $3, $4, $5, $6, $7, $8)`,
			region, size, ids, chainOf, contents, seqs, prevs, entries); err != nil {
			return err
		}
		n = len(ps)
		return nil
	})
	return n, err
}

// A region at schema version 6 holding chained events of hash versions 1,
// 2 and 3 and rows still pending in its per-event ingest upgrades to
// version 7: the chained events keep verifying, the pending rows (and rows
// a proxy of version 6 appends during the rolling upgrade) are integrated
// from batches, the version-6 integrate refuses to run, and new events
// continue the same chains and tree.
func TestUpgradeFromSchema6KeepsEventsVerifiable(t *testing.T) {
	ctx := testCtx(t)
	r, c := initRegionAt(t, "eu-west", 6)
	regions := map[string]config.Region{"eu-west": r}
	db := adminConn(t, c, r)
	pub, key := sealKey(t)
	row := func(ev tenancy.Event, mode string) *Row {
		row, err := NewRow(ev, "eu-west", "v6-proxy", mode)
		if err != nil {
			t.Fatal(err)
		}
		return row
	}
	for i := range 12 {
		ev, mode := stmt("42", "old", i), StatementNormalized
		switch i % 3 {
		case 1:
			mode = StatementFull
		case 2:
			ev.Role, ev.Actor = "support", "alice@vendor.example"
		}
		insertV6(t, db, row(ev, mode))
		insertV6(t, db, row(stmt("7", "old", i), StatementNormalized))
	}
	if n, err := integrateV6(ctx, db, "eu-west"); err != nil || n != 24 {
		t.Fatalf("integrating at schema version 6: %d events, %v", n, err)
	}
	// A tree checkpoint signed at version 6 must still be extended.
	if _, err := Seal(ctx, regions, key, "", nil); err != nil {
		t.Fatal(err)
	}
	for i := range 4 {
		insertV6(t, db, row(stmt("42", "pending", i), StatementFull))
	}
	if err := InitRegion(ctx, "eu-west", r, nil); err != nil {
		t.Fatal(err)
	}
	var v int
	if err := db.QueryRow(ctx, `SELECT pgtenant_audit.schema_version()`).Scan(&v); err != nil || v != SchemaVersion {
		t.Fatalf("schema version after the upgrade: %d %v", v, err)
	}
	// A proxy of version 6 still appending during the rolling upgrade: its
	// rows are forwarded into a batch; its integrator can no longer chain.
	// It logs in as the service role, which may insert into ingest (and,
	// through the forwarding trigger, into ingest_batches) and nothing else.
	svc := serviceConn(t, c, r)
	insertV6(t, svc, row(stmt("7", "late", 0), StatementNormalized))
	insertV6(t, svc, row(stmt("7", "late", 1), StatementNormalized))
	if _, err := integrateV6(ctx, svc, "eu-west"); err == nil || !strings.Contains(err.Error(), "integrate_batches") {
		t.Fatalf("the version-6 integrator after the upgrade: %v, want a refusal", err)
	}
	rec := newTestRecorder(t, ctx, testAuditConfig(t, ModeAsync), regions, "v7-proxy")
	for i := range 5 {
		if err := rec.Record(ctx, attributed(i)); err != nil {
			t.Fatal(err)
		}
		if err := rec.Record(ctx, stmt("7", "new", i)); err != nil {
			t.Fatal(err)
		}
	}
	if err := rec.Close(ctx); err != nil {
		t.Fatal(err)
	}
	for where, want := range map[string]int64{
		`session_id = 'old' AND chain_id = '42' AND hash_version = 1`: 4,
		`session_id = 'old' AND chain_id = '42' AND hash_version = 2`: 4,
		`session_id = 'old' AND chain_id = '42' AND hash_version = 3`: 4,
		`session_id = 'pending' AND hash_version = 2`:                 4,
		`session_id = 'late'`:                         2,
		`session_id = 'support' AND hash_version = 3`: 5,
		`session_id = 'new'`:                          5,
		`leaf IS NOT NULL`:                            40,
	} {
		if got := countRows(t, db, where); got != want {
			t.Fatalf("rows where %s: %d, want %d", where, got, want)
		}
	}
	var pending int64
	if err := db.QueryRow(ctx, `SELECT count(*) FROM pgtenant_audit.ingest_batches`).Scan(&pending); err != nil || pending != 0 {
		t.Fatalf("batches left: %d %v", pending, err)
	}
	if _, err := Seal(ctx, regions, key, "", nil); err != nil {
		t.Fatal(err)
	}
	if rep := mustVerify(t, regions, VerifyOptions{PublicKey: pub}); !rep.OK || rep.Regions[0].Rows != 40 {
		t.Fatalf("verify after the upgrade: %+v", rep)
	}
	for _, account := range []string{"42", "7"} {
		var buf strings.Builder
		if _, err := Export(ctx, regions, ExportOptions{Account: account}, &buf); err != nil {
			t.Fatal(err)
		}
		if rep, err := VerifyExport(strings.NewReader(buf.String()), pub); err != nil || !rep.OK {
			t.Fatalf("export of %s after the upgrade: %+v %v", account, rep, err)
		}
	}
	// Erasure and retention still reach the events chained at version 6.
	if n, err := Erase(ctx, regions, "42", time.Now().Add(time.Hour)); err != nil || n != 8 {
		t.Fatalf("erase: %d %v, want the 4 old and 4 pending full-mode rows", n, err)
	}
	if rep := mustVerify(t, regions, VerifyOptions{PublicKey: pub}); !rep.OK {
		t.Fatalf("verify after erasure: %+v", rep)
	}
}

// integrateV8 chains region's pending batches the way a proxy of schema
// version 8 does (integrate_batches, one transaction), and returns how many
// events it chained.
func integrateV8(ctx context.Context, conn *pgx.Conn, region string) (int, error) {
	n := 0
	err := pgx.BeginFunc(ctx, conn, func(tx pgx.Tx) error {
		type ev struct {
			batch   int64
			chain   string
			content []byte
		}
		var evs []ev
		rows, err := tx.Query(ctx, `SELECT batch, chain_id, content_hash FROM pgtenant_audit.pending_events($1, 16384, false, '{}')`, region)
		if err != nil {
			return err
		}
		for rows.Next() {
			var e ev
			if err := rows.Scan(&e.batch, &e.chain, &e.content); err != nil {
				return err
			}
			evs = append(evs, e)
		}
		if err := rows.Err(); err != nil {
			return err
		}
		var batches []int64
		var chains, regions []string
		for i, e := range evs {
			if i == 0 || e.batch != evs[i-1].batch {
				batches = append(batches, e.batch)
			}
			if !slices.Contains(chains, e.chain) {
				chains, regions = append(chains, e.chain), append(regions, region)
			}
		}
		seqs, heads := map[string]int64{}, map[string][]byte{}
		hr, err := tx.Query(ctx, `SELECT chain_id, seq, head FROM pgtenant_audit.heads_of($1, $2)`, chains, regions)
		if err != nil {
			return err
		}
		for hr.Next() {
			var c string
			var s int64
			var h []byte
			if err := hr.Scan(&c, &s, &h); err != nil {
				return err
			}
			seqs[c], heads[c] = s, h
		}
		if err := hr.Err(); err != nil {
			return err
		}
		var size int64
		if err := tx.QueryRow(ctx, `SELECT pgtenant_audit.tree_size($1)`, region).Scan(&size); err != nil {
			return err
		}
		var seq, leaf []int64
		var prev, entry [][]byte
		for i, e := range evs {
			seqs[e.chain]++
			h := EntryHash(e.chain, seqs[e.chain], heads[e.chain], e.content)
			seq, leaf = append(seq, seqs[e.chain]), append(leaf, size+int64(i))
			prev, entry = append(prev, heads[e.chain]), append(entry, h)
			heads[e.chain] = h
		}
		var headSeq []int64
		var headEntry [][]byte
		for _, c := range chains {
			headSeq, headEntry = append(headSeq, seqs[c]), append(headEntry, heads[c])
		}
		n = len(evs)
		_, err = tx.Exec(ctx, `SELECT pgtenant_audit.integrate_batches($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)`,
			region, size, batches, seq, prev, entry, leaf, chains, headSeq, headEntry)
		return err
	})
	return n, err
}

// A region at schema version 8, with events chained and a batch pending,
// upgrades to version 9: a proxy of version 8 still chains the pending batch
// as the service role during the rolling upgrade (integrate_batches, now
// integrate_round without own events), a proxy of this build then writes its
// own events straight into events, continuing the same chains and tree, and
// everything verifies against a tree checkpoint signed at version 8.
func TestUpgradeFromSchema8KeepsEventsVerifiable(t *testing.T) {
	ctx := testCtx(t)
	r, c := initRegionAt(t, "eu-west", 8)
	regions := map[string]config.Region{"eu-west": r}
	pub, key := sealKey(t)
	pool, oid := ingestPool(ctx, t, "eu-west", r)
	svc := serviceConn(t, c, r)
	batch := func(session string) {
		t.Helper()
		rows := []*Row{hashedRow(t, stmt("42", session, 0)), hashedRow(t, stmt("7", session, 1)), hashedRow(t, stmt("42", session, 2))}
		if err := ingestRows(ctx, pool, "eu-west", oid, rows); err != nil {
			t.Fatal(err)
		}
	}
	batch("v8")
	if n, err := integrateV8(ctx, svc, "eu-west"); err != nil || n != 3 {
		t.Fatalf("integrating at schema version 8: %d events, %v", n, err)
	}
	if _, err := Seal(ctx, regions, key, "", nil); err != nil {
		t.Fatal(err)
	}
	batch("pending")
	if err := InitRegion(ctx, "eu-west", r, nil); err != nil {
		t.Fatal(err)
	}
	if n, err := integrateV8(ctx, svc, "eu-west"); err != nil || n != 3 {
		t.Fatalf("a proxy of version 8 after the upgrade: %d events, %v", n, err)
	}
	rec := newTestRecorder(t, ctx, testAuditConfig(t, ModeAsync), regions, "v9-proxy")
	for !rec.Stats().Regions["eu-west"].Integrating {
		time.Sleep(5 * time.Millisecond)
	}
	for i := range 5 {
		if err := rec.Record(ctx, stmt("42", "v9", i)); err != nil {
			t.Fatal(err)
		}
	}
	if err := rec.Close(ctx); err != nil {
		t.Fatal(err)
	}
	if st := rec.Stats().Regions["eu-west"]; st.EventsWrittenDirect != 5 {
		t.Fatalf("%d of 5 events written directly", st.EventsWrittenDirect)
	}
	db := adminConn(t, c, r)
	for where, want := range map[string]int64{
		`session_id = 'v8'`: 3, `session_id = 'pending'`: 3, `session_id = 'v9'`: 5,
		`chain_id = '42' AND seq BETWEEN 1 AND 9`: 9, `leaf BETWEEN 0 AND 10`: 11,
	} {
		if got := countRows(t, db, where); got != want {
			t.Fatalf("rows where %s: %d, want %d", where, got, want)
		}
	}
	if rep := mustVerify(t, regions, VerifyOptions{PublicKey: pub}); !rep.OK || rep.Regions[0].Rows != 11 {
		t.Fatalf("verify after the upgrade: %+v", rep)
	}
}
