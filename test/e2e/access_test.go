package e2e

import (
	"context"
	"errors"
	"log/slog"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/pgtenant/pgtenant/audit"
	"github.com/pgtenant/pgtenant/cluster"
	"github.com/pgtenant/pgtenant/config"
	"github.com/pgtenant/pgtenant/proxy"
	"github.com/pgtenant/pgtenant/tenancy"
	"github.com/pgtenant/pgtenant/test/pgtest"
	"github.com/pgtenant/pgtenant/test/proxytest"
)

// accessRegion is a cluster of its own: it gets a tenant table without RLS
// (ro_probe), which the shared regions' isolation checks must not see.
const accessRegion = "access"

// eventLog is the audit sink of the access tests: it keeps every event the
// proxy records, in order.
type eventLog struct {
	mu     sync.Mutex
	events []tenancy.Event
}

func (l *eventLog) Record(_ context.Context, ev tenancy.Event) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.events = append(l.events, ev)
	return nil
}

func (l *eventLog) snapshot() []tenancy.Event {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]tenancy.Event(nil), l.events...)
}

// accessEnv starts a proxy (with or without the policy) in front of the
// access region, which holds the demo schema plus ro_probe, a tenant table
// with RLS off.
func accessEnv(t *testing.T, policy bool) (*proxytest.Env, *eventLog) {
	t.Helper()
	return accessEnvWith(t, policy, nil)
}

// accessEnvWith is accessEnv with the configuration edited by configure.
func accessEnvWith(t *testing.T, policy bool, configure func(*config.Config)) (*proxytest.Env, *eventLog) {
	t.Helper()
	installAccessSchema(t)
	log := &eventLog{}
	env := proxytest.Start(t, proxytest.Options{Regions: []string{accessRegion}, Policy: policy, Auditor: log,
		Configure: configure})
	return env, log
}

// accessAuditDB is the access region's audit database: a database of its
// own, so that the policy's catalog of the region's database never sees
// schema pgtenant_audit.
const accessAuditDB = "access_audit"

var accessAuditDBOnce sync.Once

// teeAuditor records every event with a real Recorder (the stored rows) and
// then in the in-memory log (the Event values the tests inspect).
type teeAuditor struct {
	rec *audit.Recorder
	log *eventLog
}

func (a teeAuditor) Record(ctx context.Context, ev tenancy.Event) error {
	err := a.rec.Record(ctx, ev)
	_ = a.log.Record(ctx, ev)
	return err
}

// accessEnvStored is accessEnv whose events are also stored by a real
// Recorder (strict mode) in the access cluster's audit database.
func accessEnvStored(t *testing.T) (*proxytest.Env, *eventLog) {
	t.Helper()
	c := installAccessSchema(t)
	accessAuditDBOnce.Do(func() {
		err := c.Exec(ctxT(t), c.Database, `CREATE DATABASE `+accessAuditDB)
		var pe *pgconn.PgError
		if err != nil && !(errors.As(err, &pe) && pe.Code == "42P04") && !strings.Contains(err.Error(), "already exists") {
			t.Fatal(err)
		}
	})
	log := &eventLog{}
	env := proxytest.Start(t, proxytest.Options{Regions: []string{accessRegion}, Policy: true,
		Configure: func(cfg *config.Config) {
			r := cfg.Regions[accessRegion]
			r.AuditDatabase, r.AdminUser = accessAuditDB, cluster.Superuser
			cfg.Regions[accessRegion] = r
			cfg.Audit.Disabled, cfg.Audit.Mode = false, audit.ModeStrict
			cfg.Audit.SpoolDir = t.TempDir()
		},
		NewAuditor: func(t testing.TB, cfg *config.Config) proxy.Auditor {
			ctx := context.Background()
			if err := audit.Init(ctx, cfg.Regions, nil); err != nil {
				t.Fatal(err)
			}
			rec, err := audit.NewRecorder(ctx, cfg.Audit, cfg.Regions, "e2e-access",
				slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn})))
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { _ = rec.Close(context.Background()) })
			return teeAuditor{rec: rec, log: log}
		}})
	return env, log
}

// storedRow is what the audit database holds of one event.
type storedRow struct {
	kind                         string
	hashVersion                  int16
	role, actor, purpose, ticket *string
}

// storedSessionRows waits (up to 10 s) until the audit database holds want
// integrated rows of session and returns them, read as the superuser.
func storedSessionRows(t *testing.T, env *proxytest.Env, session string, want int) []storedRow {
	t.Helper()
	c := env.Clusters[accessRegion]
	conn := connect(t, c.SuperuserDSN(accessAuditDB))
	defer conn.Close(context.Background())
	deadline := time.Now().Add(10 * time.Second)
	for {
		rows, err := conn.Query(ctxT(t), `SELECT kind, hash_version, role, actor, purpose, ticket
			FROM pgtenant_audit.events WHERE session_id = $1 ORDER BY seq`, session)
		if err != nil {
			t.Fatal(err)
		}
		var out []storedRow
		for rows.Next() {
			var r storedRow
			if err := rows.Scan(&r.kind, &r.hashVersion, &r.role, &r.actor, &r.purpose, &r.ticket); err != nil {
				t.Fatal(err)
			}
			out = append(out, r)
		}
		if err := rows.Err(); err != nil {
			t.Fatal(err)
		}
		if len(out) >= want || time.Now().After(deadline) {
			return out
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func deref(s *string) string {
	if s == nil {
		return "<NULL>"
	}
	return *s
}

// installAccessSchema installs the demo schema and ro_probe in the access
// region and returns its cluster.
func installAccessSchema(t *testing.T) *cluster.Cluster {
	t.Helper()
	c := pgtest.Shared(t, accessRegion)
	proxytest.InstallDemo(t, c)
	probe := `CREATE TABLE IF NOT EXISTS public.ro_probe (id bigserial PRIMARY KEY, account_id bigint NOT NULL, note text);
		GRANT SELECT, INSERT, UPDATE, DELETE ON public.ro_probe TO "` + c.ServiceUser + `";
		GRANT USAGE, SELECT, UPDATE ON SEQUENCE public.ro_probe_id_seq TO "` + c.ServiceUser + `";
		INSERT INTO public.ro_probe (account_id, note) SELECT 42, 'seed' WHERE NOT EXISTS (SELECT FROM public.ro_probe)`
	if err := c.Exec(ctxT(t), c.Database, probe); err != nil {
		t.Fatal(err)
	}
	return c
}

// accessToken signs a token for account 42 in the access region with extra claims.
func accessToken(t *testing.T, extra map[string]any) string {
	now := time.Now()
	claims := map[string]any{"account_id": 42, "data_region": accessRegion, "sub": "user-42",
		"iat": now.Unix(), "exp": now.Add(time.Hour).Unix()}
	for k, v := range extra {
		if v == nil {
			delete(claims, k)
			continue
		}
		claims[k] = v
	}
	return proxytest.SignedToken(t, claims)
}

// readOnlyRoutes are every way a read-only session could write or become
// read-write again, on a table with RLS (orders) and one without (ro_probe).
var readOnlyRoutes = []string{
	"INSERT INTO orders (account_id, note) VALUES (42, 'w')",
	"INSERT INTO ro_probe (account_id, note) VALUES (42, 'w')",
	"UPDATE orders SET note = 'w' WHERE account_id = 42",
	"UPDATE ro_probe SET note = 'w' WHERE account_id = 42",
	"DELETE FROM ro_probe WHERE account_id = 42",
	"MERGE INTO ro_probe p USING (SELECT 1 AS id) s ON p.id = s.id AND p.account_id = 42 WHEN MATCHED THEN UPDATE SET note = 'w'",
	"SELECT * FROM orders WHERE account_id = 42 FOR UPDATE",
	"SELECT * FROM ro_probe WHERE account_id = 42 FOR NO KEY UPDATE",
	"SELECT * FROM ro_probe WHERE account_id = 42 FOR SHARE",
	"SELECT * FROM ro_probe WHERE account_id = 42 FOR KEY SHARE",
	"WITH d AS (DELETE FROM ro_probe WHERE account_id = 42 RETURNING id) SELECT count(*) FROM d",
	"SELECT nextval('ro_probe_id_seq')",
	"SELECT setval('ro_probe_id_seq', 1000)",
	"BEGIN READ WRITE",
	"START TRANSACTION READ WRITE",
	"START TRANSACTION ISOLATION LEVEL SERIALIZABLE, READ WRITE",
	"SET SESSION CHARACTERISTICS AS TRANSACTION READ WRITE",
	"SET default_transaction_read_only = off",
	"SET default_transaction_read_only TO DEFAULT",
	"RESET default_transaction_read_only",
	"SET transaction_read_only = off",
	"SELECT set_config('default_transaction_read_only', 'off', false)",
	"PREPARE w AS INSERT INTO ro_probe (account_id, note) VALUES (42, 'w')",
}

// A viewer token cannot write through the policy by any route, in the
// simple and the extended protocol, on tables with and without RLS; the
// backend session stays pinned read-only; and the table is unchanged.
func TestViewerCannotWrite(t *testing.T) {
	env, log := accessEnvStored(t)
	ctx := ctxT(t)
	conn := connect(t, env.DSNWithToken(accessToken(t, map[string]any{"role": "viewer"})))
	before := probeState(t, env)
	for _, sql := range readOnlyRoutes {
		for _, mode := range []pgx.QueryExecMode{pgx.QueryExecModeSimpleProtocol, pgx.QueryExecModeDescribeExec} {
			_, err := conn.Exec(ctx, sql, mode)
			var pe *pgconn.PgError
			if !errors.As(err, &pe) || pe.Code != "42501" || !strings.Contains(pe.Message, "read-only") {
				t.Errorf("%q (mode %v): err = %v; want a pgtenant read-only refusal (42501)", sql, mode, err)
			}
		}
	}
	// SET TRANSACTION READ WRITE inside a read-only transaction
	if _, err := conn.Exec(ctx, "BEGIN"); err != nil {
		t.Fatal(err)
	}
	if _, err := conn.Exec(ctx, "SET TRANSACTION READ WRITE"); pgCode(err) != "42501" {
		t.Errorf("SET TRANSACTION READ WRITE: err = %v; want 42501", err)
	}
	if _, err := conn.Exec(ctx, "ROLLBACK"); err != nil {
		t.Fatal(err)
	}
	// COPY FROM through the copy sub-protocol
	_, err := conn.PgConn().CopyFrom(ctx, strings.NewReader("42\tcopied\n"), "COPY ro_probe (account_id, note) FROM STDIN")
	if pgCode(err) != "42501" {
		t.Errorf("COPY FROM STDIN: err = %v; want 42501", err)
	}
	// reads work, and the backend session is pinned read-only, RESET ALL included
	var n int
	if err := conn.QueryRow(ctx, "SELECT count(*) FROM ro_probe WHERE account_id = 42").Scan(&n); err != nil || n == 0 {
		t.Fatalf("read: n=%d err=%v", n, err)
	}
	assertPinnedReadOnly(t, conn)
	_, _ = conn.Exec(ctx, "RESET ALL") // allowed or refused by the policy: either way the pin holds
	assertPinnedReadOnly(t, conn)
	if after := probeState(t, env); after != before {
		t.Errorf("ro_probe changed under a viewer: %s -> %s", before, after)
	}
	// the role is recorded on the session's events
	var roles int
	for _, ev := range log.snapshot() {
		if ev.Kind == tenancy.KindStatement || ev.Kind == tenancy.KindConnect {
			if ev.Role != "viewer" {
				t.Errorf("%s event has role %q, want viewer", ev.Kind, ev.Role)
			}
			roles++
		}
	}
	if roles == 0 {
		t.Error("no connect or statement events recorded")
	}
	// and stored, hashed (version 3), in every row of the session
	if err := conn.Close(ctx); err != nil {
		t.Fatal(err)
	}
	var session string
	events := 0
	for _, ev := range waitForKind(t, log, tenancy.KindDisconnect) {
		if ev.Role == "viewer" {
			session = ev.SessionID
		}
	}
	for _, ev := range log.snapshot() {
		if ev.SessionID == session {
			events++
		}
	}
	stored := storedSessionRows(t, env, session, events)
	if len(stored) < events || session == "" {
		t.Fatalf("stored rows of the viewer session %q: %d, want %d", session, len(stored), events)
	}
	for _, r := range stored {
		if deref(r.role) != "viewer" || r.hashVersion != audit.HashVersionAttributed || r.actor != nil {
			t.Errorf("stored %s row: role %s actor %s hash_version %d; want role viewer, no actor, version 3",
				r.kind, deref(r.role), deref(r.actor), r.hashVersion)
		}
	}
}

// waitForKind waits (up to 5 s) until the log holds an event of kind and
// returns the log.
func waitForKind(t *testing.T, log *eventLog, kind string) []tenancy.Event {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		evs := log.snapshot()
		for _, ev := range evs {
			if ev.Kind == kind {
				return evs
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("no %s event recorded", kind)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// The backend pin alone (no policy at all) makes PostgreSQL refuse a
// viewer's writes, also on a table without RLS, while a token without a role
// keeps full access.
func TestViewerBackendPinWithoutPolicy(t *testing.T) {
	env, _ := accessEnv(t, false)
	ctx := ctxT(t)
	viewer := connect(t, env.DSNWithToken(accessToken(t, map[string]any{"role": "viewer"})))
	for _, sql := range []string{
		"INSERT INTO ro_probe (account_id, note) VALUES (42, 'w')",
		"UPDATE ro_probe SET note = 'w' WHERE account_id = 42",
		"DELETE FROM ro_probe WHERE account_id = 42",
		"SELECT * FROM ro_probe WHERE account_id = 42 FOR UPDATE",
		"SELECT nextval('ro_probe_id_seq')",
	} {
		if _, err := viewer.Exec(ctx, sql); pgCode(err) != "25006" {
			t.Errorf("%q: err = %v; want PostgreSQL's 25006 read_only_sql_transaction", sql, err)
		}
	}
	assertPinnedReadOnly(t, viewer)
	if _, err := viewer.Exec(ctx, "RESET ALL"); err != nil {
		t.Fatal(err)
	}
	assertPinnedReadOnly(t, viewer)

	full := connect(t, env.DSNWithToken(accessToken(t, nil)))
	var id int64
	if err := full.QueryRow(ctx, "INSERT INTO ro_probe (account_id, note) VALUES (42, 'full') RETURNING id").Scan(&id); err != nil {
		t.Fatalf("a token without a role claim lost write access: %v", err)
	}
	if _, err := full.Exec(ctx, "DELETE FROM ro_probe WHERE id = $1", id); err != nil {
		t.Fatal(err)
	}
}

// A support token needs a purpose and an iat and may live at most
// access.support.max_ttl; a valid one is read-only, and every event of its
// session records the actor, the purpose and the ticket.
func TestSupportSessions(t *testing.T) {
	env, log := accessEnvStored(t)
	ctx := ctxT(t)
	act := map[string]any{"sub": "agent@support.example"}
	now := time.Now()
	refused := []struct {
		name   string
		claims map[string]any
		want   string
	}{
		{"no purpose", map[string]any{"act": act}, "purpose"},
		{"empty purpose", map[string]any{"act": act, "purpose": ""}, "purpose"},
		{"no iat", map[string]any{"act": act, "purpose": "SUP-1", "iat": nil}, "iat"},
		{"over max_ttl", map[string]any{"act": act, "purpose": "SUP-1", "iat": now.Unix(), "exp": now.Add(25 * time.Hour).Unix()}, "max_ttl"},
		{"actor without sub", map[string]any{"act": map[string]any{"iss": "x"}, "purpose": "SUP-1"}, "act"},
	}
	for _, tc := range refused {
		_, err := pgx.Connect(ctx, env.DSNWithToken(accessToken(t, tc.claims)))
		var pe *pgconn.PgError
		if !errors.As(err, &pe) || pe.Code != "28000" || !strings.HasPrefix(pe.Message, "pgtenant: ") || !strings.Contains(pe.Message, tc.want) {
			t.Errorf("%s: err = %v; want 28000 naming %s", tc.name, err, tc.want)
		}
	}

	tok := accessToken(t, map[string]any{"act": act, "purpose": "investigate invoice totals", "ticket": "SUP-4521",
		"iat": now.Unix(), "exp": now.Add(24 * time.Hour).Unix()})
	conn := connect(t, env.DSNWithToken(tok))
	var n int
	if err := conn.QueryRow(ctx, "SELECT count(*) FROM orders WHERE account_id = 42").Scan(&n); err != nil {
		t.Fatalf("support read: %v", err)
	}
	if _, err := conn.Exec(ctx, "UPDATE orders SET note = 'support' WHERE account_id = 42"); pgCode(err) != "42501" {
		t.Errorf("support write: err = %v; want 42501 (support sessions are read-only)", err)
	}
	assertPinnedReadOnly(t, conn)
	if err := conn.Close(ctx); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		kinds := map[string]int{}
		for _, ev := range log.snapshot() {
			if ev.Actor == "" {
				continue
			}
			kinds[ev.Kind]++
			if ev.Actor != "agent@support.example" || ev.Purpose != "investigate invoice totals" || ev.Ticket != "SUP-4521" {
				t.Fatalf("support event %s records actor %q purpose %q ticket %q", ev.Kind, ev.Actor, ev.Purpose, ev.Ticket)
			}
		}
		if kinds[tenancy.KindConnect] == 1 && kinds[tenancy.KindStatement] >= 2 && kinds[tenancy.KindDisconnect] == 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("support session events by kind: %v; want connect, statements and disconnect", kinds)
		}
		time.Sleep(20 * time.Millisecond)
	}
	// no event of the support session lacks the actor, the purpose or the ticket
	sessions := map[string]bool{}
	for _, ev := range log.snapshot() {
		if ev.Actor != "" {
			sessions[ev.SessionID] = true
		}
	}
	if len(sessions) != 1 {
		t.Fatalf("support events span %d sessions, want 1", len(sessions))
	}
	events, session := 0, ""
	for _, ev := range log.snapshot() {
		if sessions[ev.SessionID] && (ev.Actor == "" || ev.Purpose == "" || ev.Ticket == "") {
			t.Errorf("%s event of the support session lacks actor, purpose or ticket: %+v", ev.Kind, ev)
		}
		if sessions[ev.SessionID] {
			events, session = events+1, ev.SessionID
		}
	}
	// every stored row of the session carries them too, hashed (version 3)
	stored := storedSessionRows(t, env, session, events)
	if len(stored) < events {
		t.Fatalf("stored rows of the support session: %d, want %d", len(stored), events)
	}
	kinds := map[string]int{}
	for _, r := range stored {
		kinds[r.kind]++
		if deref(r.actor) != "agent@support.example" || deref(r.purpose) != "investigate invoice totals" ||
			deref(r.ticket) != "SUP-4521" || r.hashVersion != audit.HashVersionAttributed {
			t.Errorf("stored %s row: actor %s purpose %s ticket %s hash_version %d", r.kind, deref(r.actor),
				deref(r.purpose), deref(r.ticket), r.hashVersion)
		}
	}
	if kinds[tenancy.KindConnect] != 1 || kinds[tenancy.KindStatement] < 2 || kinds[tenancy.KindDisconnect] != 1 {
		t.Errorf("stored rows of the support session by kind: %v", kinds)
	}
	// and the stored rows verify
	rep, err := audit.VerifyDB(ctx, env.Config.Regions, audit.VerifyOptions{Account: "42"})
	if err != nil || !rep.OK {
		t.Fatalf("verify the access region's chain: %+v %v", rep, err)
	}
}

// assertPinnedReadOnly checks the backend session's read-only default.
func assertPinnedReadOnly(t *testing.T, conn *pgx.Conn) {
	t.Helper()
	var v string
	if err := conn.QueryRow(ctxT(t), "SHOW default_transaction_read_only").Scan(&v); err != nil || v != "on" {
		t.Errorf("default_transaction_read_only = %q (err %v); want on", v, err)
	}
}

// probeState summarises ro_probe as the superuser sees it.
func probeState(t *testing.T, env *proxytest.Env) string {
	t.Helper()
	c := env.Clusters[accessRegion]
	conn := connect(t, c.SuperuserDSN(c.Database))
	defer conn.Close(context.Background())
	var s string
	if err := conn.QueryRow(ctxT(t), `SELECT count(*)::text || ':' || coalesce(string_agg(note, ',' ORDER BY id), '') || ':' ||
		(SELECT last_value::text FROM ro_probe_id_seq) FROM ro_probe`).Scan(&s); err != nil {
		t.Fatal(err)
	}
	return s
}
