package e2e

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgproto3"

	"github.com/pgtenant/pgtenant/cluster"
	"github.com/pgtenant/pgtenant/config"
	"github.com/pgtenant/pgtenant/tenancy"
	"github.com/pgtenant/pgtenant/test/pgtest"
	"github.com/pgtenant/pgtenant/test/proxytest"
)

// Regression tests of the proxy's mirror of the server's prepared
// statements, against a real PostgreSQL whose tenant tables have row-level
// security switched OFF: the policy is the only layer, so any divergence
// between what the proxy checked and what the server runs shows up as
// tenant 42 reading or changing tenant 7's rows.

const rlsOffClusterName = "rlsoff"

var rlsOffOnce sync.Once

// rlsOffEnv starts the real policy in front of a cluster with the demo
// schema and RLS disabled on every tenant table, as region eu-west.
func rlsOffEnv(t testing.TB) (*proxytest.Env, *cluster.Cluster) {
	t.Helper()
	return rlsOffEnvPool(t, config.PoolSession)
}

// rlsOffEnvPool is rlsOffEnv in pool.mode poolMode.
func rlsOffEnvPool(t testing.TB, poolMode string) (*proxytest.Env, *cluster.Cluster) {
	t.Helper()
	c := pgtest.Shared(t, rlsOffClusterName)
	proxytest.InstallDemo(t, c)
	var err error
	rlsOffOnce.Do(func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		for _, tb := range []string{"orders", "customers", "line_items"} {
			if err = c.Exec(ctx, c.Database, "ALTER TABLE public."+tb+" NO FORCE ROW LEVEL SECURITY, DISABLE ROW LEVEL SECURITY"); err != nil {
				return
			}
		}
		// a row of account 0: what bytes of int8 42 are to an inferred numeric
		err = c.Exec(ctx, c.Database, "INSERT INTO public.orders (id, account_id, total, note) VALUES (3001, 0, 1, 'tenant zero') ON CONFLICT DO NOTHING")
	})
	if err != nil {
		t.Fatalf("disable RLS: %v", err)
	}
	env := proxytest.Start(t, proxytest.Options{Regions: []string{"eu-west"}, Policy: true, Configure: func(cfg *config.Config) {
		r := cfg.Regions["eu-west"]
		r.Port, r.User, r.Password, r.Database = c.Port, c.ServiceUser, c.ServicePassword, c.Database
		cfg.Regions["eu-west"] = r
		cfg.Policy.GlobalTables = []string{"public.countries"}
		cfg.Pool.Mode = poolMode
	}})
	return env, c
}

// tenantRows digests tenant 7's rows as the superuser sees them.
func tenantRows(t testing.TB, c *cluster.Cluster, account int) string {
	t.Helper()
	conn := pgtest.Conn(t, c.SuperuserDSN(c.Database))
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var fp string
	err := conn.QueryRow(ctx, `SELECT coalesce(md5(string_agg(x, '|' ORDER BY x)), '') FROM (
		SELECT 'o' || o::text AS x FROM public.orders o WHERE account_id = $1
		UNION ALL SELECT 'c' || c::text FROM public.customers c WHERE account_id = $1
		UNION ALL SELECT 'l' || l::text FROM public.line_items l WHERE account_id = $1) t`, account).Scan(&fp)
	if err != nil {
		t.Fatalf("fingerprint: %v", err)
	}
	return fp
}

// wire is a raw protocol session of one tenant through the proxy.
type wire struct {
	t  *testing.T
	fe *pgproto3.Frontend
}

func newWire(t *testing.T, env *proxytest.Env, account string) *wire {
	t.Helper()
	conn := connect(t, env.DSN(t, account, "eu-west"))
	pc := conn.PgConn()
	_ = pc.Conn().SetDeadline(time.Now().Add(60 * time.Second))
	return &wire{t: t, fe: pc.Frontend()}
}

// reply is what the server (or the proxy) answered up to ReadyForQuery.
type reply struct {
	codes []string
	rows  [][]string // first column of each DataRow
	tags  []string
}

func (r reply) String() string {
	return fmt.Sprintf("errors %v tags %v rows %v", r.codes, r.tags, r.rows)
}

// send sends msgs and reads the replies up to the next ReadyForQuery.
func (w *wire) send(msgs ...pgproto3.FrontendMessage) reply {
	w.t.Helper()
	for _, m := range msgs {
		w.fe.Send(m)
	}
	if err := w.fe.Flush(); err != nil {
		w.t.Fatal(err)
	}
	return w.receive()
}

func (w *wire) receive() reply {
	w.t.Helper()
	var r reply
	for {
		msg, err := w.fe.Receive()
		if err != nil {
			w.t.Fatalf("receive: %v", err)
		}
		switch m := msg.(type) {
		case *pgproto3.ErrorResponse:
			r.codes = append(r.codes, m.Code)
		case *pgproto3.DataRow:
			var row []string
			for _, v := range m.Values {
				row = append(row, string(v))
			}
			r.rows = append(r.rows, row)
		case *pgproto3.CommandComplete:
			r.tags = append(r.tags, string(m.CommandTag))
		case *pgproto3.ReadyForQuery:
			return r
		}
	}
}

func (w *wire) query(sql string) reply {
	w.t.Helper()
	return w.send(&pgproto3.Query{String: sql})
}

// noForeignRows fails unless every row's first column is account 42.
func noForeignRows(t *testing.T, what string, r reply) {
	t.Helper()
	for _, row := range r.rows {
		if len(row) > 0 && row[0] != "42" {
			t.Errorf("%s: read a row of account %s: %v", what, row[0], row)
		}
	}
}

func wantCodes(t *testing.T, what string, r reply, codes ...string) {
	t.Helper()
	if strings.Join(r.codes, ",") != strings.Join(codes, ",") {
		t.Errorf("%s: %v, want errors %v", what, r, codes)
	}
}

// The tenant-scoped statement each attack starts from, and the one the
// attack tries to have checked in its place: its $1 is not the tenant.
const (
	scopedSelect  = "SELECT account_id, note FROM orders WHERE account_id = $1"
	decoySelect   = "SELECT account_id, note FROM orders WHERE account_id = 42 AND id > $1"
	scopedUpdate  = "UPDATE orders SET note = 'pwned' WHERE account_id = $1 RETURNING account_id"
	decoyUpdate   = "UPDATE orders SET note = 'pwned' WHERE account_id = 42 AND id = $1 RETURNING account_id"
	foreignTenant = "7"
)

// runMirrorAttack runs setup as tenant 42, then EXECUTE p(7) and EXECUTE
// u(7) must be denied and tenant 7's rows unread and unchanged.
func runMirrorAttack(t *testing.T, setup func(w *wire)) {
	env, c := rlsOffEnv(t)
	before := tenantRows(t, c, 7)
	w := newWire(t, env, "42")
	wantCodes(t, "prepare p", w.query("PREPARE p AS "+scopedSelect))
	wantCodes(t, "prepare u", w.query("PREPARE u AS "+scopedUpdate))
	setup(w)
	r := w.query("EXECUTE p(" + foreignTenant + ")")
	noForeignRows(t, "EXECUTE p(7)", r)
	wantCodes(t, "EXECUTE p(7)", r, "42501")
	r = w.query("EXECUTE u(" + foreignTenant + ")")
	noForeignRows(t, "EXECUTE u(7)", r)
	wantCodes(t, "EXECUTE u(7)", r, "42501")
	wantCodes(t, "EXPLAIN EXECUTE p(7)", w.query("EXPLAIN EXECUTE p("+foreignTenant+")"), "42501")
	// the server's statements stay usable for the caller's own rows
	r = w.query("EXECUTE p(42)")
	wantCodes(t, "EXECUTE p(42)", r)
	if len(r.rows) == 0 {
		t.Errorf("EXECUTE p(42): no rows")
	}
	noForeignRows(t, "EXECUTE p(42)", r)
	if after := tenantRows(t, c, 7); after != before {
		t.Errorf("tenant 7's rows changed")
	}
}

// A Query stops at its first error: DEALLOCATE and PREPARE after it never ran.
func TestMirrorQueryErrorSkipsDeallocateAndPrepare(t *testing.T) {
	runMirrorAttack(t, func(w *wire) {
		wantCodes(t, "poisoned query", w.query("SELECT 1/0; DEALLOCATE p; PREPARE p AS "+decoySelect+"; DEALLOCATE u; PREPARE u AS "+decoyUpdate), "22012")
	})
}

func TestMirrorQueryErrorSkipsDeallocateAll(t *testing.T) {
	runMirrorAttack(t, func(w *wire) {
		wantCodes(t, "poisoned query", w.query("SELECT 1/0; DEALLOCATE ALL; PREPARE p AS "+decoySelect+"; PREPARE u AS "+decoyUpdate), "22012")
	})
}

// DEALLOCATE skipped, then a PREPARE the server refuses with 42P05.
func TestMirrorPrepareRefusedByTheServer(t *testing.T) {
	runMirrorAttack(t, func(w *wire) {
		wantCodes(t, "skipped deallocate", w.query("SELECT 1/0; DEALLOCATE p; DEALLOCATE u"), "22012")
		wantCodes(t, "prepare p again", w.query("PREPARE p AS "+decoySelect), "42P05")
		wantCodes(t, "prepare u again", w.query("PREPARE u AS "+decoyUpdate), "42P05")
	})
}

// A DEALLOCATE Parsed and Bound but never Executed deallocates nothing.
func TestMirrorBoundDeallocateNeverExecuted(t *testing.T) {
	runMirrorAttack(t, func(w *wire) {
		for _, name := range []string{"p", "u"} {
			wantCodes(t, "bound deallocate", w.send(&pgproto3.Parse{Query: "DEALLOCATE " + name}, &pgproto3.Bind{}, &pgproto3.Sync{}))
		}
		wantCodes(t, "prepare p again", w.query("PREPARE p AS "+decoySelect), "42P05")
		wantCodes(t, "prepare u again", w.query("PREPARE u AS "+decoyUpdate), "42P05")
	})
}

// More skipped Parses of one name than any fixed history holds.
func TestMirrorManySkippedParses(t *testing.T) {
	env, c := rlsOffEnv(t)
	before := tenantRows(t, c, 7)
	w := newWire(t, env, "42")
	text := []int16{0}
	for _, q := range []string{scopedSelect, scopedUpdate} {
		wantCodes(t, "parse", w.send(&pgproto3.Parse{Query: q}, &pgproto3.Sync{}))
		decoy := decoySelect
		if q == scopedUpdate {
			decoy = decoyUpdate
		}
		msgs := []pgproto3.FrontendMessage{&pgproto3.Bind{PreparedStatement: "no_such_statement"}}
		for range 40 {
			msgs = append(msgs, &pgproto3.Parse{Query: decoy})
		}
		msgs = append(msgs, &pgproto3.Sync{})
		wantCodes(t, "skipped parses", w.send(msgs...), "26000")
		r := w.send(&pgproto3.Bind{ParameterFormatCodes: text, Parameters: [][]byte{[]byte(foreignTenant)}},
			&pgproto3.Execute{}, &pgproto3.Sync{})
		noForeignRows(t, "bind 7", r)
		wantCodes(t, "bind 7", r, "42501")
	}
	if after := tenantRows(t, c, 7); after != before {
		t.Errorf("tenant 7's rows changed")
	}
}

// The same attacks through a pipeline that does not wait for the replies:
// a later batch's check waits for the earlier batch's outcome.
func TestMirrorPipelinedBatchesWaitForTheServer(t *testing.T) {
	env, c := rlsOffEnv(t)
	before := tenantRows(t, c, 7)
	w := newWire(t, env, "42")
	wantCodes(t, "prepare", w.query("PREPARE p AS "+scopedSelect))
	for _, m := range []pgproto3.FrontendMessage{
		&pgproto3.Query{String: "SELECT 1/0; DEALLOCATE p; PREPARE p AS " + decoySelect},
		&pgproto3.Query{String: "EXECUTE p(" + foreignTenant + ")"},
	} {
		w.fe.Send(m)
	}
	if err := w.fe.Flush(); err != nil {
		t.Fatal(err)
	}
	wantCodes(t, "poisoned query", w.receive(), "22012")
	r := w.receive()
	noForeignRows(t, "EXECUTE p(7)", r)
	wantCodes(t, "EXECUTE p(7)", r, "42501")
	if after := tenantRows(t, c, 7); after != before {
		t.Errorf("tenant 7's rows changed")
	}
}

// The audit-relevant text: a Bind is checked, and reported, against the
// statement the server holds, and a denied Bind names it.
func TestMirrorBindDenialNamesTheServersStatement(t *testing.T) {
	env, _ := rlsOffEnv(t)
	w := newWire(t, env, "42")
	wantCodes(t, "parse", w.send(&pgproto3.Parse{Name: "s", Query: scopedSelect}, &pgproto3.Sync{}))
	wantCodes(t, "redefine", w.send(&pgproto3.Parse{Name: "s", Query: decoySelect}, &pgproto3.Sync{}), "42P05")
	r := w.send(&pgproto3.Bind{PreparedStatement: "s", Parameters: [][]byte{[]byte(foreignTenant)}}, &pgproto3.Execute{}, &pgproto3.Sync{})
	noForeignRows(t, "bind s 7", r)
	wantCodes(t, "bind s 7", r, "42501")
}

// Names starting with pgtenant are reserved, in every form PostgreSQL
// resolves to such a name.
func TestMirrorReservedNames(t *testing.T) {
	env, _ := rlsOffEnv(t)
	w := newWire(t, env, "42")
	for _, q := range []string{
		`PREPARE "pgtenant.denied" AS SELECT 1`,
		`PREPARE PGTENANT_X AS SELECT 1`,
		`DECLARE pgtenant_c CURSOR WITH HOLD FOR SELECT 1`,
	} {
		wantCodes(t, q, w.query(q), "42501")
	}
	wantCodes(t, "Parse of a reserved name", w.send(&pgproto3.Parse{Name: "pgtenant.denied", Query: "SELECT 1"}, &pgproto3.Sync{}), "42501")
	wantCodes(t, "Bind of a reserved portal", w.send(&pgproto3.Parse{Query: "SELECT 1"}, &pgproto3.Bind{DestinationPortal: "pgtenantp"}, &pgproto3.Sync{}), "42501")
	// a quoted name in another case is another name
	wantCodes(t, "quoted other case", w.query(`PREPARE "PGTENANT.x" AS SELECT 1`))
}

// Binary parameters with no declared type are read by PostgreSQL as the type
// it infers from the whole statement: here numeric (from the first use of
// $1), whose binary form of the bytes of int8 42 is 0 with scale 42. The
// proxy refuses such bytes until the server has told it the type
// (ParameterDescription), and then reads them by that type.
func TestMirrorBinaryParameterOfAnInferredType(t *testing.T) {
	env, _ := rlsOffEnv(t)
	w := newWire(t, env, "42")
	const q = "SELECT account_id, note, $1::numeric FROM orders WHERE account_id = $1"
	bin := []int16{1}
	int8of42 := []byte{0, 0, 0, 0, 0, 0, 0, 42}
	r := w.send(&pgproto3.Parse{Query: q}, &pgproto3.Bind{ParameterFormatCodes: bin, Parameters: [][]byte{int8of42}},
		&pgproto3.Execute{}, &pgproto3.Sync{})
	noForeignRows(t, "binary bytes of an undescribed type", r)
	wantCodes(t, "binary bytes of an undescribed type", r, "42501")
	// described: the server says numeric, which cannot carry the tenant id
	r = w.send(&pgproto3.Parse{Name: "n", Query: q}, &pgproto3.Describe{ObjectType: 'S', Name: "n"}, &pgproto3.Sync{})
	wantCodes(t, "parse+describe", r)
	r = w.send(&pgproto3.Bind{PreparedStatement: "n", ParameterFormatCodes: bin, Parameters: [][]byte{int8of42}},
		&pgproto3.Execute{}, &pgproto3.Sync{})
	noForeignRows(t, "binary bytes of a described numeric", r)
	wantCodes(t, "binary bytes of a described numeric", r, "42501")
	// described as int8 (as pgx and GORM do): binary int8 42 is the tenant
	r = w.send(&pgproto3.Parse{Name: "i", Query: scopedSelect}, &pgproto3.Describe{ObjectType: 'S', Name: "i"}, &pgproto3.Sync{})
	wantCodes(t, "parse+describe int8", r)
	r = w.send(&pgproto3.Bind{PreparedStatement: "i", ParameterFormatCodes: bin, Parameters: [][]byte{int8of42}},
		&pgproto3.Execute{}, &pgproto3.Sync{})
	wantCodes(t, "binary int8 42 after Describe", r)
	if len(r.rows) == 0 {
		t.Errorf("binary int8 42 after Describe: no rows")
	}
	noForeignRows(t, "binary int8 42 after Describe", r)
	r = w.send(&pgproto3.Bind{PreparedStatement: "i", ParameterFormatCodes: bin, Parameters: [][]byte{{0, 0, 0, 0, 0, 0, 0, 7}}},
		&pgproto3.Execute{}, &pgproto3.Sync{})
	noForeignRows(t, "binary int8 7 after Describe", r)
	wantCodes(t, "binary int8 7 after Describe", r, "42501")
}

// pgx in every exec mode (Parse with unspecified types, Describe, then binary
// int8, as GORM through pgx does) keeps working with RLS off, and another
// tenant's id stays refused in each.
func TestMirrorPgxEveryExecModeRLSOff(t *testing.T) {
	env, _ := rlsOffEnv(t)
	conn := connect(t, env.DSN(t, "42", "eu-west"))
	ctx := ctxT(t)
	for _, mode := range execModes {
		t.Run(fmt.Sprint(mode), func(t *testing.T) {
			for range 2 { // the second run uses pgx's caches
				ids, err := accountsOf(ctx, conn, "SELECT account_id FROM orders WHERE account_id = $1", mode, int64(42))
				onlyTenant42(t, "int8 42", ids, err)
				_, err = accountsOf(ctx, conn, "SELECT account_id FROM orders WHERE account_id = $1", mode, int64(7))
				wantDenied(t, "int8 7", err)
			}
		})
	}
}

// The injected message a denial rides on fails whatever the session holds:
// even when the client created a statement under the reserved name (the
// marker checker leaves SQL names alone), a denied Bind is an error that
// aborts the transaction.
func TestDenialDoesNotDependOnTheReservedName(t *testing.T) {
	env := markerEnv(t)
	w := newWire(t, env, "42")
	wantCodes(t, "prepare the reserved name", w.query(`PREPARE "pgtenant.denied" AS SELECT 1`))
	wantCodes(t, "begin", w.query("BEGIN"))
	r := w.send(&pgproto3.Parse{Query: "SELECT $1::text"}, &pgproto3.Bind{Parameters: [][]byte{[]byte("7")}},
		&pgproto3.Execute{}, &pgproto3.Sync{})
	wantCodes(t, "denied bind", r, "42501")
	wantCodes(t, "the transaction is aborted", w.query("SELECT 1"), "25P02")
	wantCodes(t, "rollback", w.query("ROLLBACK"))
}

// memAuditor keeps every event in memory.
type memAuditor struct {
	mu     sync.Mutex
	events []tenancy.Event
}

func (m *memAuditor) Record(_ context.Context, ev tenancy.Event) error {
	m.mu.Lock()
	m.events = append(m.events, ev)
	m.mu.Unlock()
	return nil
}

func (m *memAuditor) statements() []tenancy.Event {
	m.mu.Lock()
	defer m.mu.Unlock()
	var out []tenancy.Event
	for _, ev := range m.events {
		if ev.Kind == tenancy.KindStatement {
			out = append(out, ev)
		}
	}
	return out
}

// The audit records what the server executes: a Bind after a skipped Parse
// is audited with the statement the server holds, and a Bind denial names
// its statement.
func TestMirrorAuditRecordsTheServersStatement(t *testing.T) {
	c := pgtest.Shared(t, rlsOffClusterName)
	rlsOffEnv(t) // installs and prepares the cluster
	mem := &memAuditor{}
	env := proxytest.Start(t, proxytest.Options{Regions: []string{"eu-west"}, Policy: true, Auditor: mem, Configure: func(cfg *config.Config) {
		r := cfg.Regions["eu-west"]
		r.Port, r.User, r.Password, r.Database = c.Port, c.ServiceUser, c.ServicePassword, c.Database
		cfg.Regions["eu-west"] = r
		cfg.Policy.GlobalTables = []string{"public.countries"}
	}})
	w := newWire(t, env, "42")
	text := []int16{0}
	wantCodes(t, "parse", w.send(&pgproto3.Parse{Query: scopedSelect}, &pgproto3.Sync{}))
	wantCodes(t, "skipped parse", w.send(&pgproto3.Bind{PreparedStatement: "no_such_statement"},
		&pgproto3.Parse{Query: decoySelect}, &pgproto3.Sync{}), "26000")
	n := len(mem.statements())
	r := w.send(&pgproto3.Bind{ParameterFormatCodes: text, Parameters: [][]byte{[]byte("42")}}, &pgproto3.Execute{}, &pgproto3.Sync{})
	wantCodes(t, "bind 42", r)
	evs := mem.statements()[n:]
	if len(evs) != 1 || evs[0].Verdict != tenancy.VerdictAllow || evs[0].FullStatement != scopedSelect {
		t.Fatalf("allowed Bind audited as %+v, want the server's statement %q", evs, scopedSelect)
	}
	n = len(mem.statements())
	wantCodes(t, "bind 7", w.send(&pgproto3.Bind{ParameterFormatCodes: text, Parameters: [][]byte{[]byte("7")}}, &pgproto3.Execute{}, &pgproto3.Sync{}), "42501")
	evs = mem.statements()[n:]
	if len(evs) != 1 || evs[0].Verdict != tenancy.VerdictDeny || evs[0].Statement == "" || evs[0].FullStatement != scopedSelect {
		t.Fatalf("denied Bind audited as %+v, want its statement", evs)
	}
}
