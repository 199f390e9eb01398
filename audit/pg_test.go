package audit

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/pgtenant/pgtenant/cluster"
	"github.com/pgtenant/pgtenant/config"
	"github.com/pgtenant/pgtenant/tenancy"
	"github.com/pgtenant/pgtenant/test/pgtest"
)

func TestMain(m *testing.M) {
	if os.Getenv(childEnv) != "" {
		os.Exit(runChild())
	}
	if os.Getenv(childWriterEnv) != "" {
		os.Exit(runWriterChild())
	}
	pgtest.Main(m)
}

var dbCounter atomic.Int64

func testCtx(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	t.Cleanup(cancel)
	return ctx
}

// freshRegion creates a new database in c for the audit schema of one test
// and returns a region that logs in as the cluster's unprivileged service
// role, with the superuser as admin.
func freshRegion(t testing.TB, c *cluster.Cluster) config.Region {
	t.Helper()
	db := fmt.Sprintf("audit_%d_%d", os.Getpid(), dbCounter.Add(1))
	if err := c.Exec(testCtx(t), "postgres", "CREATE DATABASE "+db); err != nil {
		t.Fatal(err)
	}
	return regionFor(c, db)
}

func regionFor(c *cluster.Cluster, db string) config.Region {
	return config.Region{Host: "127.0.0.1", Port: c.Port, User: c.ServiceUser, Password: c.ServicePassword,
		Database: c.Database, AuditDatabase: db, SSLMode: "disable", ConnectTimeout: 5 * time.Second,
		AdminUser: c.Superuser}
}

// initRegion creates the audit schema in a fresh database of the shared cluster.
func initRegion(t testing.TB, name string) (config.Region, *cluster.Cluster) {
	t.Helper()
	c := pgtest.Shared(t, "audit")
	r := freshRegion(t, c)
	if err := InitRegion(testCtx(t), name, r, nil); err != nil {
		t.Fatal(err)
	}
	return r, c
}

// initRegionAt is initRegion with the audit schema only up to version v:
// where an upgrade test starts.
func initRegionAt(t testing.TB, name string, v int) (config.Region, *cluster.Cluster) {
	t.Helper()
	orig := migrations
	migrations = orig[:v]
	defer func() { migrations = orig }()
	return initRegion(t, name)
}

func adminConn(t testing.TB, c *cluster.Cluster, r config.Region) *pgx.Conn {
	t.Helper()
	conn, err := pgx.Connect(testCtx(t), c.SuperuserDSN(r.AuditDatabase))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close(context.Background()) })
	return conn
}

func serviceConn(t testing.TB, c *cluster.Cluster, r config.Region) *pgx.Conn {
	t.Helper()
	conn, err := pgx.Connect(testCtx(t), c.DSN(c.ServiceUser, c.ServicePassword, r.AuditDatabase))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close(context.Background()) })
	return conn
}

func sqlState(err error) string {
	var pe *pgconn.PgError
	if errors.As(err, &pe) {
		return pe.Code
	}
	return ""
}

func testAuditConfig(t testing.TB, mode string) config.Audit {
	return config.Audit{Mode: mode, SpoolDir: t.TempDir(), SpoolMaxBytes: 1 << 30, QueueSize: 1024,
		Statement: StatementNormalized, OutageTimeout: 10 * time.Second}
}

func testLogger(t testing.TB) *slog.Logger {
	return slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelWarn}))
}

type testWriter struct{ t testing.TB }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimSpace(string(p)))
	return len(p), nil
}

func countRows(t testing.TB, conn *pgx.Conn, where string, args ...any) int64 {
	t.Helper()
	var n int64
	if err := conn.QueryRow(testCtx(t), `SELECT count(*) FROM pgtenant_audit.events WHERE `+where, args...).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

func mustVerify(t testing.TB, regions map[string]config.Region, opts VerifyOptions) *Report {
	t.Helper()
	rep, err := VerifyDB(testCtx(t), regions, opts)
	if err != nil {
		t.Fatal(err)
	}
	return rep
}

func stmt(account, session string, i int) tenancy.Event {
	return tenancy.Event{Kind: tenancy.KindStatement, Time: time.Now(), AccountID: account, Region: "eu-west", Subject: "sub-" + account,
		ClientUser: "app", ClientAddr: "127.0.0.1", SessionID: session,
		Statement: fmt.Sprintf("SELECT * FROM orders WHERE account_id = $1 /* %d */", i),
		Tables:    []string{"public.orders"}, Verdict: tenancy.VerdictAllow}
}

func TestInitIsIdempotentAndLocksTheServiceRoleOut(t *testing.T) {
	r, c := initRegion(t, "eu-west")
	ctx := testCtx(t)
	if err := InitRegion(ctx, "eu-west", r, nil); err != nil {
		t.Fatalf("second init: %v", err)
	}
	regions := map[string]config.Region{"eu-west": r}
	rec := newTestRecorder(t, ctx, testAuditConfig(t, ModeStrict), regions, "i1")
	for i := range 3 {
		if err := rec.Record(ctx, stmt("a1", "s1", i)); err != nil {
			t.Fatal(err)
		}
	}
	if err := rec.Close(ctx); err != nil {
		t.Fatal(err)
	}

	svc := serviceConn(t, c, r)
	for _, q := range []string{
		`SELECT count(*) FROM pgtenant_audit.events`,
		`UPDATE pgtenant_audit.events SET statement = 'x'`,
		`DELETE FROM pgtenant_audit.events`,
		`TRUNCATE pgtenant_audit.events`,
		`ALTER TABLE pgtenant_audit.events DISABLE TRIGGER ALL`,
		`INSERT INTO pgtenant_audit.checkpoints (chain_id, region, size, head, ts, key_id, signature) VALUES ('a1','eu-west',1,'\x00',now(),'k','\x00')`,
		`UPDATE pgtenant_audit.chain_heads SET seq = 0`,
		`DELETE FROM pgtenant_audit.chain_heads`,
		`SET session_replication_role = replica`,
	} {
		if _, err := svc.Exec(ctx, q); sqlState(err) != "42501" {
			t.Errorf("service role: %s: got %v, want SQLSTATE 42501", q, err)
		}
	}
	// Even a superuser in replica mode hits the ENABLE ALWAYS triggers.
	adm := adminConn(t, c, r)
	if _, err := adm.Exec(ctx, `SET session_replication_role = replica`); err != nil {
		t.Fatal(err)
	}
	for _, q := range []string{
		`UPDATE pgtenant_audit.events SET statement = 'x' WHERE seq = 1`,
		`DELETE FROM pgtenant_audit.events WHERE seq = 3`,
		`TRUNCATE pgtenant_audit.events`,
		`DELETE FROM pgtenant_audit.chain_heads`,
		`UPDATE pgtenant_audit.chain_heads SET seq = seq - 1`,
	} {
		if _, err := adm.Exec(ctx, q); sqlState(err) != "42501" {
			t.Errorf("superuser in replica mode: %s: got %v, want the trigger's 42501", q, err)
		}
	}
	var rules int
	if err := adm.QueryRow(ctx, `SELECT count(*) FROM pg_rules WHERE schemaname = 'pgtenant_audit'`).Scan(&rules); err != nil || rules != 0 {
		t.Errorf("rules on the audit schema: %d (%v)", rules, err)
	}
	if n := countRows(t, adm, `chain_id = 'a1'`); n != 3 {
		t.Errorf("a1 has %d rows, want 3", n)
	}
	// The service role cannot forge a row that does not extend the head.
	_, err := svc.Exec(ctx, `SELECT pgtenant_audit.append('a1', '[{"chain_id":"a1","seq":9,"event_id":"01890a5d-ac96-774b-bcce-b302099a8057","ts":"2026-01-01T00:00:00Z","kind":"statement","region":"eu-west","hash_version":1,"content_hash":"\\x00","prev_hash":"\\x00","entry_hash":"\\x00"}]')`)
	if err == nil {
		t.Error("append accepted a row that does not extend the chain head")
	}
	if rep := mustVerify(t, regions, VerifyOptions{}); !rep.OK {
		t.Fatalf("verify: %+v", rep.Failures)
	}
}

func TestRecorderModesWriteVerifiableChains(t *testing.T) {
	for _, mode := range []string{ModeStrict, ModeAsync, ModeSpool} {
		t.Run(mode, func(t *testing.T) {
			r, c := initRegion(t, "eu-west")
			r2 := freshRegion(t, c)
			if err := InitRegion(testCtx(t), "us-east", r2, nil); err != nil {
				t.Fatal(err)
			}
			regions := map[string]config.Region{"eu-west": r, "us-east": r2}
			ctx := testCtx(t)
			rec := newTestRecorder(t, ctx, testAuditConfig(t, mode), regions, "i1")
			for i := range 50 {
				acct := []string{"a1", "a2"}[i%2]
				ev := stmt(acct, "s", i)
				ev.Region = "eu-west"
				if err := rec.Record(ctx, ev); err != nil {
					t.Fatal(err)
				}
				res := tenancy.Event{Kind: tenancy.KindResult, AccountID: acct, Region: "eu-west", Rows: int64(i), DurationUS: 10}
				if err := rec.Record(ctx, res); err != nil {
					t.Fatal(err)
				}
			}
			// A rejected login with no region goes to every region's no-tenant chain.
			// Even when it names an account: with no region it is not a verified tenant.
			if err := rec.Record(ctx, tenancy.Event{Kind: tenancy.KindReject, AccountID: "claimed", ClientAddr: "10.9.8.7", Reason: "bad signature", Verdict: tenancy.VerdictDeny}); err != nil {
				t.Fatal(err)
			}
			if err := rec.Close(ctx); err != nil {
				t.Fatal(err)
			}
			st := rec.Stats().Regions["eu-west"]
			if st.EventsWritten != 101 || st.QueueDepth != 0 {
				t.Errorf("stats: written %d queue %d, want 101 and 0", st.EventsWritten, st.QueueDepth)
			}
			eu, us := adminConn(t, c, r), adminConn(t, c, r2)
			for _, chk := range []struct {
				conn  *pgx.Conn
				where string
				want  int64
			}{
				{eu, `chain_id = 'a1'`, 50}, {eu, `chain_id = 'a2'`, 50}, {eu, `chain_id = '-' AND account_id = 'claimed'`, 1}, {eu, `chain_id = 'claimed'`, 0},
				{us, `chain_id = '-' AND client_addr = '10.9.8.7'`, 1}, {us, `chain_id <> '-'`, 0},
				{eu, `kind = 'result' AND rows IS NOT NULL AND duration_us = 10`, 50},
			} {
				if n := countRows(t, chk.conn, chk.where); n != chk.want {
					t.Errorf("%s: %d rows, want %d", chk.where, n, chk.want)
				}
			}
			rep := mustVerify(t, regions, VerifyOptions{})
			if !rep.OK || len(rep.Regions) != 2 || rep.Regions[0].Rows != 101 {
				t.Fatalf("verify: %+v", rep)
			}
		})
	}
}

func clusterConfig(name string) cluster.Config { return cluster.Config{Name: name} }

func TestInitWithoutAdminRole(t *testing.T) {
	c := pgtest.Shared(t, "audit")
	r := freshRegion(t, c)
	r.AdminUser = "" // the unprivileged service role
	err := InitRegion(testCtx(t), "eu-west", r, nil)
	if err == nil || !strings.Contains(err.Error(), "admin_user") {
		t.Fatalf("init as the service role: %v, want an error naming admin_user", err)
	}
	r.AdminUser = c.Superuser
	if err := InitRegion(testCtx(t), "eu-west", r, nil); err != nil {
		t.Fatal(err)
	}
	r.AdminUser = ""
	if err := InitRegion(testCtx(t), "eu-west", r, nil); err != nil {
		t.Fatalf("serve's init with a current schema and no admin role: %v", err)
	}
}

// sealKey returns a fresh Ed25519 seal key pair.
func sealKey(t testing.TB) (ed25519.PublicKey, ed25519.PrivateKey) {
	t.Helper()
	pub, key, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return pub, key
}

// newTestRecorder starts a Recorder for a test; the test closes it (closing
// is what it waits on before verifying).
func newTestRecorder(t testing.TB, ctx context.Context, cfg config.Audit, regions map[string]config.Region, instance string) *Recorder {
	t.Helper()
	rec, err := NewRecorder(ctx, cfg, regions, instance, testLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	return rec
}
