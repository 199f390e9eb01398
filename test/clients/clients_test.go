package clients

import (
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/pgtenant/pgtenant/cluster"
	"github.com/pgtenant/pgtenant/config"
	"github.com/pgtenant/pgtenant/demo"
	"github.com/pgtenant/pgtenant/tenancy"
	"github.com/pgtenant/pgtenant/test/pgtest"
	"github.com/pgtenant/pgtenant/test/proxytest"
)

var update = flag.Bool("update", false, "write the compatibility table to docs/compat.md")

func TestMain(m *testing.M) { pgtest.Main(m) }

const (
	region      = "clients"
	tenant      = "42"
	other       = "7"
	template    = "clients_tmpl"
	oracleRole  = "clients_oracle"
	oraclePass  = "clients-oracle-pw"
	markerStart = "pgtenant-op:"
	// missingPin is the policy's reason for a tenant table used without a
	// pin: the one refusal deny mode may give an ORM's default statements.
	missingPin = "unscoped_table"
	runTimeout = 4 * time.Minute
)

// modes are the runs of every client: the policy mode, and "-rls" for a
// database with row-level security ON behind the proxy (the realistic
// deployment: it checks that the tenant setting the proxy pins reaches
// every pooled and reset session, since RLS then filters by it). Without
// the suffix RLS is OFF and the policy is judged alone.
var modes = []string{"deny", "deny-rls", "rewrite"}

// policyOf is the policy.unscoped value of a mode.
func policyOf(mode string) string { return strings.TrimSuffix(mode, "-rls") }

// rlsOf tells whether a mode runs with RLS ON behind the proxy.
func rlsOf(mode string) bool { return strings.HasSuffix(mode, "-rls") }

// TestClients runs every client program in every mode and judges the
// proxy's decisions (see the package doc).
func TestClients(t *testing.T) {
	if testing.Short() {
		t.Skip("client matrix: skipped under -short")
	}
	c := pgtest.Shared(t, region)
	setupCluster(t, c)
	workDir = t.TempDir()
	results := &matrix{}
	start := time.Now()
	t.Run("matrix", func(t *testing.T) {
		for _, cl := range selectedClients(t) {
			for _, mode := range modes {
				t.Run(cl.name+"/"+mode, func(t *testing.T) {
					t.Parallel()
					res := &runResult{client: cl.name, lang: cl.lang, mode: mode}
					results.add(res)
					defer func() {
						if t.Failed() {
							res.status = "fail"
						}
					}()
					runClient(t, c, cl, res)
				})
			}
		}
	})
	t.Logf("client matrix: %d runs in %s", len(results.runs), time.Since(start).Round(time.Second))
	table := results.markdown()
	t.Logf("compatibility table:\n%s", table)
	if *update {
		path := filepath.Join("..", "..", "docs", "compat.md")
		if err := os.WriteFile(path, []byte(compatHeader+table), 0o644); err != nil {
			t.Fatalf("write %s: %v", path, err)
		}
	}
}

// selectedClients are all clients, or those named in PGT_CLIENTS (comma-separated).
func selectedClients(t *testing.T) []client {
	want := os.Getenv("PGT_CLIENTS")
	if want == "" {
		return clients
	}
	var out []client
	for _, cl := range clients {
		for _, w := range strings.Split(want, ",") {
			if strings.TrimSpace(w) == cl.name {
				out = append(out, cl)
			}
		}
	}
	if len(out) == 0 {
		t.Fatalf("PGT_CLIENTS=%q names no client", want)
	}
	return out
}

// setupCluster installs the demo schema into the template database, and
// creates the oracle role: the service role's privileges, pinned to tenant
// 42 by a role setting, so that a program connecting as it straight to
// PostgreSQL sees what RLS gives tenant 42.
func setupCluster(t *testing.T, c *cluster.Cluster) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	svc := pgx.Identifier{c.ServiceUser}.Sanitize()
	for _, q := range []string{"DROP DATABASE IF EXISTS " + template, "CREATE DATABASE " + template} {
		if err := c.Exec(ctx, "postgres", q); err != nil {
			t.Fatal(err)
		}
	}
	roleSQL := fmt.Sprintf(`DO $$ BEGIN
  IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '%[1]s') THEN
    CREATE ROLE %[1]s LOGIN NOSUPERUSER NOBYPASSRLS PASSWORD '%[2]s';
  END IF;
END $$;
GRANT %[3]s TO %[1]s;
ALTER ROLE %[1]s SET app.current_account_id = '42';`, oracleRole, oraclePass, svc)
	if err := c.Exec(ctx, "postgres", roleSQL); err != nil {
		t.Fatal(err)
	}
	lit := "'" + strings.ReplaceAll(c.ServiceUser, "'", "''") + "'"
	install := "SELECT set_config('pgtenant.service_role', " + lit + ", true);\n" + demo.InstallSQL()
	if err := c.Exec(ctx, template, install); err != nil {
		t.Fatal(err)
	}
}

// dbMu serializes CREATE DATABASE ... TEMPLATE (the template must have no
// other session while it is copied).
var dbMu sync.Mutex

// newDB copies the template into a new database; rls false disables
// row-level security on the tenant tables so the proxy is judged alone.
func newDB(t *testing.T, c *cluster.Cluster, name string, rls bool) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	dbMu.Lock()
	err := c.Exec(ctx, "postgres", "DROP DATABASE IF EXISTS "+name)
	if err == nil {
		err = c.Exec(ctx, "postgres", "CREATE DATABASE "+name+" TEMPLATE "+template)
	}
	dbMu.Unlock()
	if err != nil {
		t.Fatal(err)
	}
	if !rls {
		off := `ALTER TABLE public.orders NO FORCE ROW LEVEL SECURITY, DISABLE ROW LEVEL SECURITY;
ALTER TABLE public.customers NO FORCE ROW LEVEL SECURITY, DISABLE ROW LEVEL SECURITY;
ALTER TABLE public.line_items NO FORCE ROW LEVEL SECURITY, DISABLE ROW LEVEL SECURITY;`
		if err := c.Exec(ctx, name, off); err != nil {
			t.Fatal(err)
		}
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		_ = c.Exec(ctx, "postgres", "DROP DATABASE IF EXISTS "+name+" WITH (FORCE)")
	})
}

// unscopedField finds h7's policy.unscoped configuration key by its
// mapstructure tag, so this suite needs no change when it lands.
func unscopedField(p *config.Policy) (reflect.Value, bool) {
	v := reflect.ValueOf(p).Elem()
	for i := 0; i < v.NumField(); i++ {
		f := v.Type().Field(i)
		if strings.Split(f.Tag.Get("mapstructure"), ",")[0] == "unscoped" && f.Type.Kind() == reflect.String {
			return v.Field(i), true
		}
	}
	return reflect.Value{}, false
}

// runClient runs one client in one mode and judges it.
func runClient(t *testing.T, c *cluster.Cluster, cl client, res *runResult) {
	mode := res.mode
	if policyOf(mode) == "rewrite" {
		if _, ok := unscopedField(&config.Default().Policy); !ok {
			res.status, res.note = "skip", "policy.unscoped is not a configuration key yet (issue 11 section 1)"
			t.Skip("expected to fail until policy.unscoped: rewrite exists (issue 11 section 1): skipped")
		}
	}
	argv, err := cl.prepare(t)
	if err != nil {
		res.status, res.note = "missing", err.Error()
		if os.Getenv("CI") == "true" {
			t.Fatalf("%s is not installed (run test/clients/install.sh): %v", cl.name, err)
		}
		t.Skipf("%s is not installed (run test/clients/install.sh): %v", cl.name, err)
	}
	db := dbName(cl.name, mode)
	newDB(t, c, db, rlsOf(mode))
	rec := &recorder{op: "connect"} // a program connects before its first marker
	env := proxytest.Start(t, proxytest.Options{
		Regions: []string{region},
		Policy:  true,
		Auditor: rec,
		Configure: func(cfg *config.Config) {
			r := cfg.Regions[region]
			r.Database = db
			cfg.Regions[region] = r
			if policyOf(mode) == "rewrite" {
				f, _ := unscopedField(&cfg.Policy)
				f.SetString("rewrite")
			}
		},
	})
	before := snapshot(t, c, db, "account_id <> 42")
	tok := proxytest.Token(t, tenant, region, 0)
	start := time.Now()
	rep := execProgram(t, cl, argv, programEnv(env.Host(), env.Port(), "tester", tok, "app", policyOf(mode)))
	res.duration = time.Since(start)
	res.version = rep.Version
	if after := snapshot(t, c, db, "account_id <> 42"); after != before {
		res.fail(t, "tenant 7's rows changed through tenant 42's session")
	}
	judge(t, res, rep, rec.denials(), policyOf(mode))
	if len(rep.Ops) == 1 && !rep.Ops[0].OK {
		res.note = "could not connect: its other operations did not run"
	}
	odb := dbName(cl.name, mode+"_oracle")
	newDB(t, c, odb, true)
	orep := execProgram(t, cl, argv, programEnv("127.0.0.1", fmt.Sprint(c.Port), oracleRole, oraclePass, odb, "oracle"))
	compareOracle(t, res, rep, orep)
	if policyOf(mode) == "rewrite" {
		if got, want := snapshot(t, c, db, "account_id = 42"), snapshot(t, c, odb, "account_id = 42"); got != want {
			only, missing := setDiff(got, want)
			res.fail(t, "tenant 42's rows after the run differ from the RLS oracle's: only through pgtenant %v; only with RLS %v", only, missing)
		}
	}
	if res.status == "" {
		res.status = "pass"
	}
}

func dbName(client, mode string) string {
	return "c_" + strings.NewReplacer("-", "_", ".", "_").Replace(client+"_"+mode)
}

func programEnv(host, port, user, password, db, mode string) []string {
	url := fmt.Sprintf("postgres://%s:%s@%s:%s/%s?sslmode=disable", user, password, host, port, db)
	return append(os.Environ(), "PGT_HOST="+host, "PGT_PORT="+port, "PGT_USER="+user, "PGT_PASSWORD="+password,
		"PGT_DB="+db, "PGT_URL="+url, "PGT_MODE="+mode, "PGT_TENANT="+tenant, "PGT_OTHER="+other,
		"PGSSLMODE=disable")
}

// report is what a program prints (report.md).
type report struct {
	Client  string     `json:"client"`
	Version string     `json:"version"`
	Ops     []opResult `json:"ops"`
}

type opResult struct {
	Name     string          `json:"name"`
	Kind     string          `json:"kind"`
	OK       bool            `json:"ok"`
	SQLState string          `json:"sqlstate"`
	Error    string          `json:"error"`
	Rows     json.RawMessage `json:"rows"`
	// SQL is the statement as the program wrote it (optional): shown when
	// the audit event carries no text.
	SQL string `json:"sql"`
}

// execProgram runs argv and parses its report; a crash or an unparsable
// report fails the test.
func execProgram(t *testing.T, cl client, argv []string, env []string) report {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), runTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, argv[0], argv[1:]...)
	cmd.Dir = cl.dir
	cmd.Env = env
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	var rep report
	line := lastLine(out.Bytes())
	if jerr := json.Unmarshal(line, &rep); jerr != nil || len(rep.Ops) == 0 {
		t.Fatalf("%s: no report (exit %v, json %v)\nstdout:\n%s\nstderr:\n%s", cl.name, err, jerr, tail(out.String()), tail(errb.String()))
	}
	if err != nil {
		t.Errorf("%s exited with %v\nstderr:\n%s", cl.name, err, tail(errb.String()))
	}
	return rep
}

func lastLine(b []byte) []byte {
	lines := bytes.Split(bytes.TrimSpace(b), []byte("\n"))
	return lines[len(lines)-1]
}

func tail(s string) string {
	if len(s) > 4000 {
		return "..." + s[len(s)-4000:]
	}
	return s
}

// snapshot is the tenant tables' rows matching where, as the superuser (no
// RLS), in a stable order.
func snapshot(t *testing.T, c *cluster.Cluster, db, where string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, c.SuperuserDSN(db))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(context.Background())
	var s string
	q := fmt.Sprintf(`SELECT coalesce(jsonb_agg(r ORDER BY r::text), '[]')::text FROM (
  SELECT jsonb_build_object('t', 'orders', 'r', to_jsonb(o)) AS r FROM public.orders o WHERE %[1]s
  UNION ALL SELECT jsonb_build_object('t', 'customers', 'r', to_jsonb(c)) FROM public.customers c WHERE %[1]s
  UNION ALL SELECT jsonb_build_object('t', 'line_items', 'r', to_jsonb(l)) FROM public.line_items l WHERE %[1]s) s`, where)
	if err := conn.QueryRow(ctx, q).Scan(&s); err != nil {
		t.Fatal(err)
	}
	return s
}

// setDiff returns the elements of the JSON arrays a and b that the other lacks.
func setDiff(a, b string) (onlyA, onlyB []string) {
	var xs, ys []json.RawMessage
	_ = json.Unmarshal([]byte(a), &xs)
	_ = json.Unmarshal([]byte(b), &ys)
	in := func(set []json.RawMessage) map[string]bool {
		m := map[string]bool{}
		for _, x := range set {
			m[string(x)] = true
		}
		return m
	}
	inA, inB := in(xs), in(ys)
	for _, x := range xs {
		if !inB[string(x)] {
			onlyA = append(onlyA, string(x))
		}
	}
	for _, y := range ys {
		if !inA[string(y)] {
			onlyB = append(onlyB, string(y))
		}
	}
	return onlyA, onlyB
}

// denial is one statement the proxy denied, attributed to an operation.
type denial struct {
	Op        string
	Statement string
	SQLState  string
	Reason    string
}

// recorder is an in-memory auditor: it follows the markers and keeps the
// denials.
type recorder struct {
	mu   sync.Mutex
	op   string
	deny []denial
}

func (r *recorder) Record(_ context.Context, ev tenancy.Event) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	text := ev.FullStatement
	if text == "" {
		text = ev.Statement
	}
	if i := strings.Index(text, markerStart); i >= 0 && ev.Verdict == tenancy.VerdictAllow {
		name := text[i+len(markerStart):]
		if j := strings.IndexAny(name, "'"); j >= 0 {
			name = name[:j]
		}
		r.op = name
		return nil
	}
	if ev.Verdict == tenancy.VerdictDeny {
		r.deny = append(r.deny, denial{Op: r.op, Statement: text, SQLState: ev.SQLState, Reason: ev.Reason})
	}
	return nil
}

func (r *recorder) denials() []denial {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]denial(nil), r.deny...)
}

// judge applies the mode's rules to a program's report and the proxy's denials.
func judge(t reporter, res *runResult, rep report, denials []denial, mode string) {
	t.Helper()
	byOp := map[string][]denial{}
	for _, d := range denials {
		byOp[d.Op] = append(byOp[d.Op], d)
	}
	seen := map[string]bool{}
	for _, op := range rep.Ops {
		seen[op.Name] = true
		res.ops++
		ds := byOp[op.Name]
		refusable := op.Kind == "cross" || (mode == "deny" && (op.Kind == "unscoped" || op.Kind == "unpinned"))
		switch {
		case refusable && op.Kind != "unpinned":
			res.refusalsExpected++
			if !op.OK && op.SQLState == "42501" && len(ds) > 0 {
				res.refusalsSeen++
			} else {
				res.fail(t, "%s (%s): expected a refusal with 42501, got ok=%v sqlstate=%q %s", op.Name, op.Kind, op.OK, op.SQLState, op.Error)
			}
		case refusable: // unpinned in deny mode: ok, or refused for its missing pin
			var pin, other []denial
			for _, d := range ds {
				if d.Reason == missingPin {
					pin = append(pin, d)
				} else {
					other = append(other, d)
				}
			}
			res.pinRefusals = append(res.pinRefusals, opDenials(op, pin)...)
			if len(other) > 0 {
				res.falseDenies = append(res.falseDenies, opDenials(op, other)...)
				t.Errorf("false deny in %s (%s), not for a missing pin: %s", op.Name, op.Kind, describe(other))
			} else if !op.OK && (op.SQLState != "42501" || len(pin) == 0) {
				res.fail(t, "%s (%s): failed with %s %s", op.Name, op.Kind, op.SQLState, op.Error)
			}
		default:
			if len(ds) > 0 {
				res.falseDenies = append(res.falseDenies, opDenials(op, ds)...)
				t.Errorf("false deny in %s (%s; the client saw ok=%v %s %s): %s", op.Name, op.Kind, op.OK, op.SQLState, oneLine(op.Error), describe(ds))
			} else if !op.OK {
				res.fail(t, "%s (%s): failed with %s %s", op.Name, op.Kind, op.SQLState, op.Error)
				res.errors = append(res.errors, fmt.Sprintf("%s: %s %s", op.Name, op.SQLState, oneLine(op.Error)))
			}
		}
		if mode != "oracle" {
			if bad := foreignTenant(op.Rows); bad != "" {
				res.fail(t, "%s returned another tenant's row: %s", op.Name, bad)
			}
		}
	}
	for op, ds := range byOp {
		if !seen[op] {
			res.falseDenies = append(res.falseDenies, opDenials(opResult{Name: op + "(unreported)", Kind: "app"}, ds)...)
			t.Errorf("denials outside any reported operation (after marker %q): %s", op, describe(ds))
		}
	}
	if len(res.falseDenies) > 0 {
		res.status = "fail"
	}
}

func opDenials(op opResult, ds []denial) []denial {
	out := make([]denial, 0, len(ds))
	for _, d := range ds {
		d.Op = op.Name
		if d.Statement == "" && op.SQL != "" {
			d.Statement = op.SQL + " [text from the client: the audit event has none]"
		}
		out = append(out, d)
	}
	return out
}

// distinct counts the different statements (with SQLSTATE and reason)
// among ds: a pool's reset denied on every release is one false deny.
func distinct(ds []denial) int {
	seen := map[[3]string]bool{}
	for _, d := range ds {
		seen[[3]string{d.Statement, d.SQLState, d.Reason}] = true
	}
	return len(seen)
}

// listDenials renders one line per distinct statement, SQLSTATE and reason,
// with the operations that sent it.
func listDenials(b *strings.Builder, r *runResult, ds []denial, max int) {
	type key struct{ stmt, state, reason string }
	var keys []key
	ops := map[key][]string{}
	for _, d := range ds {
		stmt := strings.Join(strings.Fields(d.Statement), " ")
		if max > 0 && len(stmt) > max {
			stmt = stmt[:max] + "…"
		}
		if stmt == "" {
			stmt = "(no statement text in the audit event)"
		}
		k := key{stmt, d.SQLState, d.Reason}
		if _, ok := ops[k]; !ok {
			keys = append(keys, k)
		}
		if o := ops[k]; len(o) == 0 || o[len(o)-1] != d.Op {
			ops[k] = append(o, d.Op)
		}
	}
	for _, k := range keys {
		fmt.Fprintf(b, "- %s, %s, %s: `%s` → %s (%s)\n", r.client, r.mode, strings.Join(ops[k], ", "),
			strings.ReplaceAll(k.stmt, "|", "\\|"), k.state, k.reason)
	}
}

func describe(ds []denial) string {
	var b strings.Builder
	for _, d := range ds {
		fmt.Fprintf(&b, "\n  %s %s: %s", d.SQLState, d.Reason, oneLine(d.Statement))
	}
	return b.String()
}

func oneLine(s string) string {
	s = strings.Join(strings.Fields(s), " ")
	if len(s) > 300 {
		s = s[:300] + "…"
	}
	return s
}

// foreignTenant finds, anywhere in rows, an account-id key whose value is
// not tenant 42's.
func foreignTenant(rows json.RawMessage) string {
	if len(rows) == 0 {
		return ""
	}
	var v any
	if err := json.Unmarshal(rows, &v); err != nil {
		return ""
	}
	var walk func(any) string
	walk = func(v any) string {
		switch x := v.(type) {
		case map[string]any:
			for k, val := range x {
				if strings.ReplaceAll(strings.ToLower(k), "_", "") == "accountid" {
					if s := fmt.Sprint(val); s != tenant && val != nil {
						b, _ := json.Marshal(x)
						return string(b)
					}
				}
				if s := walk(val); s != "" {
					return s
				}
			}
		case []any:
			for _, e := range x {
				if s := walk(e); s != "" {
					return s
				}
			}
		}
		return ""
	}
	return walk(v)
}

// compareOracle checks operations against the oracle run: the same
// program straight to PostgreSQL with RLS ON as a role pinned to tenant 42.
// In rewrite mode every operation but the cross-tenant ones must return
// exactly what the oracle returned. In deny mode the proxy refuses what the
// oracle runs, after which the two databases differ: it compares the
// operations up to the first whose success differs, so the pinned work an
// application does is still checked against RLS.
func compareOracle(t reporter, res *runResult, rep, orep report) {
	t.Helper()
	oracle := map[string]opResult{}
	for _, op := range orep.Ops {
		oracle[op.Name] = op
	}
	for _, op := range rep.Ops {
		if op.Kind == "cross" {
			continue
		}
		o, ok := oracle[op.Name]
		if !ok {
			res.fail(t, "oracle run has no operation %s", op.Name)
			continue
		}
		if policyOf(res.mode) == "deny" && op.OK != o.OK {
			t.Logf("oracle: compared the operations before %s (ok=%v here, %v with RLS): the databases differ from there", op.Name, op.OK, o.OK)
			return
		}
		if op.OK != o.OK || !jsonEqual(op.Rows, o.Rows) {
			res.oracleDiffs = append(res.oracleDiffs, op.Name)
			res.fail(t, "%s: through pgtenant (%s) ok=%v rows=%s; PostgreSQL with RLS on ok=%v %s rows=%s",
				op.Name, res.mode, op.OK, oneLine(string(op.Rows)), o.OK, o.SQLState, oneLine(string(o.Rows)))
		}
	}
}

func jsonEqual(a, b json.RawMessage) bool {
	var x, y any
	_ = json.Unmarshal(a, &x)
	_ = json.Unmarshal(b, &y)
	return reflect.DeepEqual(x, y)
}

// reporter is the part of testing.TB the judging uses (a fake in the
// judge's own tests).
type reporter interface {
	Helper()
	Error(args ...any)
	Errorf(format string, args ...any)
	Logf(format string, args ...any)
}

// runResult is one client in one mode.
type runResult struct {
	client, lang, mode, version string
	status, note                string // pass | fail | skip | missing
	duration                    time.Duration
	ops                         int
	refusalsExpected            int
	refusalsSeen                int
	falseDenies                 []denial
	pinRefusals                 []denial
	errors                      []string
	failures                    []string
	oracleDiffs                 []string
}

func (r *runResult) fail(t reporter, format string, args ...any) {
	t.Helper()
	msg := fmt.Sprintf(format, args...)
	r.status = "fail"
	r.failures = append(r.failures, oneLine(msg))
	t.Error(msg)
}

// matrix collects the runs for the table.
type matrix struct {
	mu   sync.Mutex
	runs []*runResult
}

func (m *matrix) add(r *runResult) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.runs = append(m.runs, r)
}

const compatHeader = `# Client compatibility

Generated by ` + "`go test ./test/clients -run TestClients -update`" + ` (the client matrix,
test/clients): each client's program runs an application's normal work as tenant 42 through
pgtenant. Modes: ` + "`deny`" + ` and ` + "`rewrite`" + ` (policy.unscoped) run with row-level security OFF, so the
proxy's policy is judged alone; ` + "`deny-rls`" + ` runs deny mode with RLS ON behind the proxy. **pass**
means: no false denies, every refusal of unscoped or cross-tenant access came from the proxy
with 42501, tenant 7's rows were never returned nor changed, and the operations returned what
the same program gets straight from PostgreSQL with RLS ON as tenant 42 (in rewrite mode every
operation and the final rows; in deny modes the operations before the first refusal). "Missing-pin refusals" are ORM default statements (save/delete/load by primary key only)
that deny mode refuses by design; rewrite mode is meant to run them.

`

// markdown renders the results as the compatibility table plus the list of
// false denies with their statements and SQLSTATEs.
func (m *matrix) markdown() string {
	m.mu.Lock()
	runs := append([]*runResult(nil), m.runs...)
	m.mu.Unlock()
	order := map[string]int{}
	for i, cl := range clients {
		order[cl.name] = i
	}
	sort.Slice(runs, func(i, j int) bool {
		if order[runs[i].client] != order[runs[j].client] {
			return order[runs[i].client] < order[runs[j].client]
		}
		return runs[i].mode < runs[j].mode
	})
	var b strings.Builder
	b.WriteString("| client | version | mode | result | ops | false denies (distinct statements) | refusals seen/expected | missing-pin refusals (distinct) | other failures |\n")
	b.WriteString("|---|---|---|---|---|---|---|---|---|\n")
	for _, r := range runs {
		other := strings.Join(r.failures, "; ")
		if r.note != "" {
			other = oneLine(r.note)
		}
		other = strings.ReplaceAll(other, "|", "\\|")
		if len(other) > 200 {
			other = other[:200] + "…"
		}
		fmt.Fprintf(&b, "| %s (%s) | %s | %s | %s | %d | %d | %d/%d | %d | %s |\n", r.client, r.lang, r.version, r.mode,
			r.status, r.ops, distinct(r.falseDenies), r.refusalsSeen, r.refusalsExpected, distinct(r.pinRefusals), other)
	}
	var fd strings.Builder
	for _, r := range runs {
		listDenials(&fd, r, r.falseDenies, 0)
	}
	if fd.Len() > 0 {
		b.WriteString("\n## False denies\n\nClient, mode, operations: the statement as the proxy's audit event recorded it (in full) → SQLSTATE (policy reason).\n\n")
		b.WriteString(fd.String())
	}
	var pr strings.Builder
	for _, r := range runs {
		listDenials(&pr, r, r.pinRefusals, 300)
	}
	if pr.Len() > 0 {
		b.WriteString("\n## Missing-pin refusals (deny mode, by design)\n\n")
		b.WriteString(pr.String())
	}
	return b.String()
}
