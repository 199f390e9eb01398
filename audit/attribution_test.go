package audit

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/pgtenant/pgtenant/config"
	"github.com/pgtenant/pgtenant/tenancy"
)

// attributed is a support session's statement: role, actor, purpose,
// ticket and the rewritten flag set.
func attributed(i int) tenancy.Event {
	ev := stmt("42", "support", i)
	ev.Role, ev.Actor, ev.Purpose, ev.Ticket = "support", "alice@vendor.example", "debug invoice export", "SUP-7"
	ev.Rewritten = i%2 == 0
	return ev
}

// The binary spool record carries the version-3 fields (with and without a
// statement commitment).
func TestSpoolRecordRoundTripV3(t *testing.T) {
	for _, mode := range []string{StatementNormalized, StatementFull} {
		ev := attributed(0)
		ev.FullStatement = "SELECT * FROM orders WHERE account_id = 42"
		row, err := NewRow(ev, "eu-west", "inst", mode)
		if err != nil {
			t.Fatal(err)
		}
		if row.HashVersion != HashVersionAttributed || *row.Actor != "alice@vendor.example" || !*row.Rewritten {
			t.Fatalf("%s: NewRow = version %d %+v", mode, row.HashVersion, row)
		}
		buf := encodeSpoolRecord(nil, row, 5)
		got, _, err := decodeSpoolRecord(buf[recordHeader:])
		if err != nil {
			t.Fatal(err)
		}
		if got.HashVersion != HashVersionAttributed || string(got.ComputeContentHash()) != string(row.ComputeContentHash()) {
			t.Fatalf("%s: the spool round trip changed the row: version %d", mode, got.HashVersion)
		}
	}
}

// Version-3 rows are stored with their fields in every mode, verify (in
// the database, as an export, and with the Python verifier), and a changed
// role, actor or ticket, or one added to a version-1 row, is
// content_mismatch.
func TestAttributionIsStoredAndVerified(t *testing.T) {
	for _, mode := range []string{ModeAsync, ModeSpool, ModeStrict} {
		t.Run(mode, func(t *testing.T) {
			r, c := initRegion(t, "eu-west")
			regions := map[string]config.Region{"eu-west": r}
			ctx := testCtx(t)
			pub, key := sealKey(t)
			rec := newTestRecorder(t, ctx, testAuditConfig(t, mode), regions, "attr")
			for i := range 6 {
				if err := rec.Record(ctx, attributed(i)); err != nil {
					t.Fatal(err)
				}
				viewer := stmt("42", "viewer", i)
				viewer.Role = "viewer"
				if err := rec.Record(ctx, viewer); err != nil {
					t.Fatal(err)
				}
				if err := rec.Record(ctx, stmt("42", "plain", i)); err != nil {
					t.Fatal(err)
				}
			}
			if err := rec.Close(ctx); err != nil {
				t.Fatal(err)
			}
			db := adminConn(t, c, r)
			for where, want := range map[string]int64{
				`session_id = 'support' AND hash_version = 3 AND role = 'support' AND actor = 'alice@vendor.example'
				 AND purpose = 'debug invoice export' AND ticket = 'SUP-7'`: 6,
				`session_id = 'support' AND rewritten`:                                             3,
				`session_id = 'support' AND rewritten IS NULL`:                                     3,
				`session_id = 'viewer' AND hash_version = 3 AND role = 'viewer' AND actor IS NULL`: 6,
				`session_id = 'plain' AND hash_version = 1 AND role IS NULL AND rewritten IS NULL`: 6,
			} {
				if got := countRows(t, db, where); got != want {
					t.Fatalf("rows where %s: %d, want %d", where, got, want)
				}
			}
			if _, err := Seal(ctx, regions, key, "", nil); err != nil {
				t.Fatal(err)
			}
			opts := VerifyOptions{PublicKey: pub}
			if rep := mustVerify(t, regions, opts); !rep.OK || rep.Regions[0].Rows != 18 {
				t.Fatalf("verify: %+v", rep)
			}
			var buf strings.Builder
			if _, err := Export(ctx, regions, ExportOptions{Account: "42"}, &buf); err != nil {
				t.Fatal(err)
			}
			export := buf.String()
			if !strings.Contains(export, `"role":"support","actor":"alice@vendor.example","purpose":"debug invoice export","ticket":"SUP-7","rewritten":true`) {
				t.Fatalf("the export lacks the support fields:\n%s", export)
			}
			var csvBuf strings.Builder
			if _, err := Export(ctx, regions, ExportOptions{Account: "42", Format: "csv"}, &csvBuf); err != nil {
				t.Fatal(err)
			}
			if c := csvBuf.String(); !strings.Contains(c, ",role,actor,purpose,ticket,rewritten\n") ||
				!strings.Contains(c, ",support,alice@vendor.example,debug invoice export,SUP-7,true\n") {
				t.Fatalf("the CSV export lacks the support columns or values:\n%s", c)
			}
			if rep, err := VerifyExport(strings.NewReader(export), pub); err != nil || !rep.OK {
				t.Fatalf("verify the export: %+v %v", rep, err)
			}
			edited := strings.Replace(export, `"role":"viewer"`, `"role":"admin"`, 1)
			if rep, err := VerifyExport(strings.NewReader(edited), pub); err != nil || rep.OK || rep.Failures[0].Kind != FailContentMismatch {
				t.Fatalf("verify an export with a changed role: %+v %v", rep, err)
			}
			if py, err := exec.LookPath("python3"); err == nil {
				for body, want := range map[string]int{export: 0, edited: 1} {
					p := filepath.Join(t.TempDir(), "export.jsonl")
					if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
						t.Fatal(err)
					}
					out, err := exec.Command(py, "verifier/pgtenant_audit_verify.py", p).CombinedOutput()
					code := 0
					if ee, ok := err.(*exec.ExitError); ok {
						code = ee.ExitCode()
					} else if err != nil {
						t.Fatal(err)
					}
					if code != want || (want == 1 && !strings.Contains(string(out), "content_mismatch")) {
						t.Fatalf("python verifier: exit %d, want %d\n%s", code, want, out)
					}
				}
			}
			page, err := Read(ctx, "eu-west", r, Query{Account: "42", Limit: 100})
			if err != nil {
				t.Fatal(err)
			}
			supportRows := 0
			for _, e := range page.Events {
				if e.Actor != nil && *e.Actor == "alice@vendor.example" && *e.Purpose == "debug invoice export" && *e.Ticket == "SUP-7" {
					supportRows++
				}
			}
			if supportRows != 6 {
				t.Fatalf("Read returned %d support rows with actor, purpose and ticket, want 6", supportRows)
			}

			// The redaction path of the append-only trigger does not let a
			// purge change role or actor.
			if _, err := db.Exec(ctx, `UPDATE pgtenant_audit.events SET purged = true, subject = NULL, client_user = NULL,
				client_addr = NULL, session_id = NULL, statement = NULL, tables = NULL, reason = NULL, actor = 'mallory'
				WHERE chain_id = '42' AND session_id = 'support'`); err == nil || !strings.Contains(err.Error(), "append-only") {
				t.Fatalf("a redaction that changes actor: %v, want the append-only refusal", err)
			}
			for _, tamper := range []struct{ name, do, undo string }{
				{"changed role", `UPDATE pgtenant_audit.events SET role = 'admin' WHERE chain_id = '42' AND role = 'viewer'`,
					`UPDATE pgtenant_audit.events SET role = 'viewer' WHERE chain_id = '42' AND role = 'admin'`},
				{"changed actor", `UPDATE pgtenant_audit.events SET actor = 'mallory' WHERE chain_id = '42' AND actor IS NOT NULL`,
					`UPDATE pgtenant_audit.events SET actor = 'alice@vendor.example' WHERE chain_id = '42' AND actor = 'mallory'`},
				{"changed ticket", `UPDATE pgtenant_audit.events SET ticket = 'SUP-8' WHERE chain_id = '42' AND ticket IS NOT NULL`,
					`UPDATE pgtenant_audit.events SET ticket = 'SUP-7' WHERE chain_id = '42' AND ticket = 'SUP-8'`},
				{"cleared rewritten", `UPDATE pgtenant_audit.events SET rewritten = false WHERE chain_id = '42' AND rewritten`,
					`UPDATE pgtenant_audit.events SET rewritten = true WHERE chain_id = '42' AND rewritten = false`},
				{"role added to a v1 row", `UPDATE pgtenant_audit.events SET role = 'admin' WHERE chain_id = '42' AND hash_version = 1`,
					`UPDATE pgtenant_audit.events SET role = NULL WHERE chain_id = '42' AND hash_version = 1`},
			} {
				asAttacker(t, db, tamper.do)
				rep := mustVerify(t, regions, opts)
				if rep.OK || rep.Failures[0].Kind != FailContentMismatch {
					t.Fatalf("%s: verify = %+v, want content_mismatch", tamper.name, rep)
				}
				asAttacker(t, db, tamper.undo)
				if rep := mustVerify(t, regions, opts); !rep.OK {
					t.Fatalf("after undoing %s: %+v", tamper.name, rep.Failures)
				}
			}
		})
	}
}

// A region at schema version 5 holding hash-version-1 and -2 rows (in
// events and still pending in ingest) upgrades to version 6 (and on to 7): the old rows
// keep verifying, pending ones are integrated with the new columns NULL,
// and version-3 rows continue the same chain.
func TestUpgradeFromSchema5KeepsV1AndV2RowsVerifiable(t *testing.T) {
	ctx := testCtx(t)
	r, c := initRegionAt(t, "eu-west", 5)
	regions := map[string]config.Region{"eu-west": r}
	db := adminConn(t, c, r)
	// The schema-5 ingest columns, as a proxy of that version appends.
	insertOld := func(row *Row) {
		row.HashVersion = row.hashVersionFor()
		row.ContentHash = row.ComputeContentHash()
		if _, err := db.Exec(ctx, `INSERT INTO pgtenant_audit.ingest (event_id, chain_id, ts, kind, account_id, subject,
			client_user, client_addr, region, session_id, proxy_instance, statement, tables, verdict, reason, sqlstate,
			rows, duration_us, hash_version, content_hash, statement_salt, statement_commitment)
			VALUES ($1, $2, $3, $4, $5, $6, $7, $8::inet, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19, $20, $21, $22)`,
			row.EventID, row.ChainID, row.TS, row.Kind, row.AccountID, row.Subject, row.ClientUser, row.ClientAddr,
			row.Region, row.SessionID, row.ProxyInstance, row.Statement, row.Tables, row.Verdict, row.Reason, row.SQLState,
			row.Rows, row.DurationUS, row.HashVersion, row.ContentHash, row.StatementSalt, row.StatementCommitment); err != nil {
			t.Fatal(err)
		}
	}
	for i := range 10 {
		mode := StatementNormalized
		if i%2 == 1 {
			mode = StatementFull
		}
		row, err := NewRow(stmt("42", "old", i), "eu-west", "v5-proxy", mode)
		if err != nil {
			t.Fatal(err)
		}
		insertOld(row)
	}
	// Integrate them at schema 5, as an integrator of that version did.
	if n, err := integrateV6(ctx, db, "eu-west"); err != nil || n != 10 {
		t.Fatalf("integrating at schema version 5: %d rows, %v", n, err)
	}
	if got := countRows(t, db, `session_id = 'old'`); got != 10 {
		t.Fatalf("rows integrated at schema version 5: %d, want 10", got)
	}
	for i := range 4 {
		row, err := NewRow(stmt("42", "pending", i), "eu-west", "v5-proxy", StatementFull)
		if err != nil {
			t.Fatal(err)
		}
		insertOld(row)
	}
	if err := InitRegion(ctx, "eu-west", r, nil); err != nil {
		t.Fatal(err)
	}
	rec := newTestRecorder(t, ctx, testAuditConfig(t, ModeAsync), regions, "v6-proxy")
	for i := range 5 {
		if err := rec.Record(ctx, attributed(i)); err != nil {
			t.Fatal(err)
		}
	}
	if err := rec.Close(ctx); err != nil {
		t.Fatal(err)
	}
	for where, want := range map[string]int64{
		`session_id = 'old' AND hash_version = 1 AND role IS NULL`:                     5,
		`session_id = 'old' AND hash_version = 2 AND statement_commitment IS NOT NULL`: 5,
		`session_id = 'pending' AND hash_version = 2 AND actor IS NULL`:                4,
		`session_id = 'support' AND hash_version = 3 AND actor IS NOT NULL`:            5,
	} {
		if got := countRows(t, db, where); got != want {
			t.Fatalf("rows where %s: %d, want %d", where, got, want)
		}
	}
	if rep := mustVerify(t, regions, VerifyOptions{}); !rep.OK || rep.Regions[0].Rows != 19 {
		t.Fatalf("verify after the upgrade: %+v", rep)
	}
	// Erasure reaches the committed rows of versions 2 and 3 alike.
	full := attributed(9)
	full.FullStatement = "SELECT * FROM orders WHERE account_id = 42 AND note = 'secret'"
	full.Time = full.Time.Add(-time.Hour)
	cfg := testAuditConfig(t, ModeAsync)
	cfg.Statement = StatementFull
	rec = newTestRecorder(t, ctx, cfg, regions, "v6-proxy")
	if err := rec.Record(ctx, full); err != nil {
		t.Fatal(err)
	}
	if err := rec.Close(ctx); err != nil {
		t.Fatal(err)
	}
	if got := countRows(t, db, `hash_version = 3 AND statement LIKE '%secret%' AND statement_commitment IS NOT NULL`); got != 1 {
		t.Fatalf("committed version-3 rows: %d, want 1", got)
	}
	if n, err := Erase(ctx, regions, "42", time.Now()); err != nil || n != 10 {
		t.Fatalf("erase: %d %v, want the 9 version-2 rows and the version-3 one", n, err)
	}
	if rep := mustVerify(t, regions, VerifyOptions{}); !rep.OK || rep.Regions[0].Rows != 20 {
		t.Fatalf("verify after erasure: %+v", rep)
	}
}
