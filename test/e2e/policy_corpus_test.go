package e2e

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/pgtenant/pgtenant/cluster"
	"github.com/pgtenant/pgtenant/config"
	"github.com/pgtenant/pgtenant/demo"
	"github.com/pgtenant/pgtenant/test/pgtest"
	"github.com/pgtenant/pgtenant/test/proxytest"
)

// Tests of the real policy engine through the live proxy: every row of the
// tenancy corpus, replayed with the real psql binary (simple protocol) or pgx
// (rows with `-- bind:`, extended protocol).

// The project's copy of the public tenancy corpus and its hostile corpus
// (same format and schema).
const (
	tenancyCorpusPath = "../../policy/testdata/tenancy.tsv"
	hostileCorpusPath = "../../policy/testdata/hostile.tsv"
)

// corpusPaths are the corpora the replays run.
var corpusPaths = []string{tenancyCorpusPath, hostileCorpusPath}

// policyClusterName is the shared cluster the policy tests run against: the
// demo schema plus the corpus extras (schema audit, report_all_orders, ...),
// kept apart from the regions' clusters so that the corpus objects and the
// rows these tests write never meet other tests.
const policyClusterName = "policy"

var corpusExtras sync.Map // cluster name -> *sync.Once

// policyEnv starts a proxy enforcing the real policy (catalog discovered, as
// serve does) with region eu-west served by the policy cluster, configured as
// the corpus expects: countries is global, audit is a forbidden schema.
func policyEnv(t *testing.T, configure ...func(*config.Config)) (*proxytest.Env, *cluster.Cluster) {
	t.Helper()
	c := policyCluster(t)
	env := proxytest.Start(t, proxytest.Options{Regions: []string{"eu-west"}, Policy: true, Configure: func(cfg *config.Config) {
		r := cfg.Regions["eu-west"]
		r.Port, r.User, r.Password, r.Database = c.Port, c.ServiceUser, c.ServicePassword, c.Database
		cfg.Regions["eu-west"] = r
		cfg.Policy.GlobalTables = []string{"public.countries"}
		cfg.Policy.ForbiddenSchemas = []string{"audit", "pgtenant_audit"}
		for _, f := range configure {
			f(cfg)
		}
	}})
	return env, c
}

// policyCluster returns the shared policy cluster with the demo schema and
// the corpus extras installed (once per test binary).
func policyCluster(t *testing.T) *cluster.Cluster {
	t.Helper()
	c := pgtest.Shared(t, policyClusterName)
	proxytest.InstallDemo(t, c)
	once, _ := corpusExtras.LoadOrStore(c.Name, &sync.Once{})
	var err error
	once.(*sync.Once).Do(func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		err = demo.InstallCorpusExtra(ctx, c)
	})
	if err != nil {
		t.Fatalf("corpus extras: %v", err)
	}
	return c
}

// corpusRow is one statement of the tenancy corpora: id numbers the rows
// of all of them, file and line say where it comes from.
type corpusRow struct {
	id                int
	file              string
	line              int
	verdict, category string
	sql               string
	binds             []*string // non-nil: Parse + Bind with these text values
}

// readTenancyCorpus reads every row of the corpora (corpusPaths).
func readTenancyCorpus(t *testing.T) []corpusRow {
	t.Helper()
	var rows []corpusRow
	for _, path := range corpusPaths {
		rows = readCorpusFile(t, path, rows)
	}
	return rows
}

// readCorpusFile appends the rows of the corpus at path to rows.
func readCorpusFile(t *testing.T, path string, rows []corpusRow) []corpusRow {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	file, first := filepath.Base(path), len(rows)
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for n := 1; sc.Scan(); n++ {
		line := sc.Text()
		if strings.TrimSpace(line) == "" || strings.HasPrefix(line, "#") {
			continue
		}
		parts := strings.SplitN(line, "\t", 3)
		if len(parts) != 3 || (parts[0] != "allow" && parts[0] != "deny") {
			t.Fatalf("%s:%d: want allow|deny<TAB>category<TAB>sql", file, n)
		}
		r := corpusRow{id: len(rows), file: file, line: n, verdict: parts[0], category: parts[1], sql: parts[2]}
		if i := strings.LastIndex(r.sql, "-- bind:"); i >= 0 {
			for _, v := range strings.Split(r.sql[i+len("-- bind:"):], "|") {
				v = strings.TrimSpace(v)
				if v == "NULL" {
					r.binds = append(r.binds, nil)
				} else {
					r.binds = append(r.binds, &v)
				}
			}
			r.sql = strings.TrimSpace(r.sql[:i])
		}
		rows = append(rows, r)
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	if len(rows)-first < 200 {
		t.Fatalf("read only %d rows of %s", len(rows)-first, file)
	}
	return rows
}

// where names the row's file and line.
func (r corpusRow) where() string { return fmt.Sprintf("%s:%d", r.file, r.line) }

// unwrapped reports whether an allowed row runs outside BEGIN ... ROLLBACK:
// transaction control itself, and cursors and prepared statements that a
// later row uses (none of them writes).
func (r corpusRow) unwrapped() bool {
	return r.verdict == "deny" || strings.HasPrefix(r.category, "txn") ||
		strings.HasPrefix(r.category, "cursor") || strings.HasPrefix(r.category, "prepare")
}

// psqlError is one ERROR psql printed (VERBOSITY verbose: with its SQLSTATE).
type psqlError struct{ code, message string }

func (e psqlError) pgtenant() bool { return strings.HasPrefix(e.message, "pgtenant:") }

var (
	psqlErrorRE  = regexp.MustCompile(`ERROR:\s+([0-9A-Z]{5}): (.*)$`)
	psqlMarkerRE = regexp.MustCompile(`^@@ROW (\d+)$`)
	// copyFromStdinRE matches COPY ... FROM STDIN statements.
	copyFromStdinRE = regexp.MustCompile(`(?is)^\s*COPY\b.*\bFROM\s+STDIN\b`)
)

// psqlErrors extracts the ERROR lines of psql's stderr.
func psqlErrors(stderr string) []psqlError {
	var out []psqlError
	for _, l := range strings.Split(stderr, "\n") {
		if m := psqlErrorRE.FindStringSubmatch(l); m != nil {
			out = append(out, psqlError{code: m[1], message: m[2]})
		}
	}
	return out
}

// checkCorpusVerdict compares what a client saw for r with r's verdict:
// deny is a 42501 error from pgtenant; allow is no pgtenant error at all
// (PostgreSQL's own errors are fine: the policy let the statement through).
func checkCorpusVerdict(t *testing.T, r corpusRow, errs []psqlError) {
	t.Helper()
	var ours *psqlError
	for i := range errs {
		if errs[i].pgtenant() {
			ours = &errs[i]
			break
		}
	}
	switch {
	case r.verdict == "deny" && ours == nil:
		t.Errorf("%s [%s] want deny, the proxy let it through (errors: %v): %s", r.where(), r.category, errs, r.sql)
	case r.verdict == "deny" && ours.code != "42501":
		t.Errorf("%s [%s] denied with SQLSTATE %s, want 42501 (%s): %s", r.where(), r.category, ours.code, ours.message, r.sql)
	case r.verdict == "allow" && ours != nil:
		t.Errorf("%s [%s] want allow, got %s %s: %s", r.where(), r.category, ours.code, ours.message, r.sql)
	case r.verdict == "allow" && len(errs) > 0:
		t.Logf("%s [%s] allowed; PostgreSQL said %s %s", r.where(), r.category, errs[0].code, errs[0].message)
	}
}

// corpusFingerprint digests the policy database as the superuser sees it
// (RLS does not apply): every row of the demo and corpus tables, and the
// relations, their RLS flags, ACLs and comments, extensions, foreign servers
// and prepared transactions. Sequences are left out (nextval is allowed and
// not transactional).
func corpusFingerprint(t *testing.T, c *cluster.Cluster) string {
	t.Helper()
	conn := pgtest.Conn(t, c.SuperuserDSN(c.Database))
	var fp string
	err := conn.QueryRow(ctxT(t), `SELECT md5(string_agg(x, '|' ORDER BY x)) FROM (
		SELECT 'o' || o::text AS x FROM public.orders o
		UNION ALL SELECT 'c' || c::text FROM public.customers c
		UNION ALL SELECT 'l' || l::text FROM public.line_items l
		UNION ALL SELECT 'k' || k::text FROM public.countries k
		UNION ALL SELECT 'a' || a::text FROM audit.log a
		UNION ALL SELECT 'r' || n.nspname || '.' || c.relname || ':' || c.relkind::text || ':' || c.relrowsecurity::text
			|| c.relforcerowsecurity::text || ':' || coalesce(c.relacl::text, '') || ':' || coalesce(obj_description(c.oid, 'pg_class'), '')
			FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
			WHERE n.nspname NOT IN ('pg_catalog', 'information_schema', 'pg_toast') AND c.relkind <> 'S'
		UNION ALL SELECT 'n' || nspname || ':' || coalesce(nspacl::text, '') FROM pg_namespace
		UNION ALL SELECT 'e' || extname FROM pg_extension
		UNION ALL SELECT 's' || srvname FROM pg_foreign_server
		UNION ALL SELECT 'x' || gid FROM pg_prepared_xacts) t`).Scan(&fp)
	if err != nil {
		t.Fatalf("fingerprint: %v", err)
	}
	return fp
}

// TestPolicyCorpusThroughPsql replays every simple-protocol corpus row
// through the proxy with the real psql, as tenant 42 in eu-west. Rows without
// a semicolon go in one script (one long session, as an application's);
// rows with one are sent each as a single Query message with psql -c, so a
// multi-statement row reaches the proxy whole, as the corpus means it.
// Allowed rows (but transaction control, cursors and prepared statements)
// run inside BEGIN ... ROLLBACK; denied rows run in autocommit, and a
// superuser fingerprint of the database taken before and after shows that
// none of them executed.
func TestPolicyCorpusThroughPsql(t *testing.T) {
	env, c := policyEnv(t)
	tok := proxytest.Token(t, "42", "eu-west", 0)
	rows := readTenancyCorpus(t)
	before := corpusFingerprint(t, c)

	var script strings.Builder
	var batched, single []corpusRow
	for _, r := range rows {
		switch {
		case r.binds != nil:
			continue // TestPolicyCorpusBindRows
		case strings.Contains(r.sql, ";") || copyFromStdinRE.MatchString(r.sql):
			// psql -f stops reading the script after a failed COPY FROM STDIN.
			single = append(single, r)
			continue
		}
		batched = append(batched, r)
		fmt.Fprintf(&script, "\\warn @@ROW %d\n", r.id)
		if !r.unwrapped() {
			script.WriteString("BEGIN\n\\g\n")
		}
		// The statement ends on a line of its own: a row may end in a comment.
		fmt.Fprintf(&script, "%s\n\\g\n", r.sql)
		if !r.unwrapped() {
			script.WriteString("ROLLBACK\n\\g\n")
		}
	}
	script.WriteString("\\warn @@END\n")
	path := filepath.Join(t.TempDir(), "corpus.sql")
	if err := os.WriteFile(path, []byte(script.String()), 0o600); err != nil {
		t.Fatal(err)
	}
	_, stderr, err := runPsql(t, env, tok, "-q", "-v", "VERBOSITY=verbose", "-f", path)
	if err != nil {
		t.Fatalf("psql -f: %v (the session must survive every row)\n%s", err, tail(stderr, 2000))
	}
	if !strings.Contains(stderr, "@@END") {
		t.Fatalf("psql did not reach the end of the script:\n%s", tail(stderr, 2000))
	}
	perRow := map[int][]psqlError{}
	seen := map[int]bool{}
	cur := -1
	for _, l := range strings.Split(stderr, "\n") {
		if m := psqlMarkerRE.FindStringSubmatch(l); m != nil {
			cur, _ = strconv.Atoi(m[1])
			seen[cur] = true
			continue
		}
		if m := psqlErrorRE.FindStringSubmatch(l); m != nil {
			perRow[cur] = append(perRow[cur], psqlError{code: m[1], message: m[2]})
		}
	}
	if errs := perRow[-1]; len(errs) > 0 {
		t.Errorf("errors before the first row: %v", errs)
	}
	for _, r := range batched {
		if !seen[r.id] {
			t.Errorf("%s: psql never reached this row", r.where())
			continue
		}
		checkCorpusVerdict(t, r, perRow[r.id])
	}

	for _, r := range single {
		args := []string{"-q", "-v", "VERBOSITY=verbose"}
		if !r.unwrapped() {
			args = append(args, "-c", "BEGIN")
		}
		args = append(args, "-c", r.sql)
		if !r.unwrapped() {
			args = append(args, "-c", "ROLLBACK")
		}
		_, stderr, err := runPsql(t, env, tok, args...)
		var exit *exec.ExitError
		if err != nil && !(errors.As(err, &exit) && exit.ExitCode() == 1) { // 1: the last -c failed
			t.Errorf("%s: psql -c: %v\n%s", r.where(), err, stderr)
			continue
		}
		checkCorpusVerdict(t, r, psqlErrors(stderr))
	}

	if after := corpusFingerprint(t, c); after != before {
		t.Errorf("the database changed: a denied statement ran, or an allowed one escaped its ROLLBACK")
	}
	if len(batched)+len(single) < 200 {
		t.Errorf("replayed only %d rows through psql", len(batched)+len(single))
	}
}

// TestPolicyCorpusBindRows sends the corpus rows with `-- bind:` through the
// proxy with pgx's extended protocol: Parse, then Bind with the row's text
// values (NULL as a null), on one connection. Allowed rows run inside
// BEGIN ... ROLLBACK.
func TestPolicyCorpusBindRows(t *testing.T) {
	env, c := policyEnv(t)
	before := corpusFingerprint(t, c)
	conn := connect(t, env.DSN(t, "42", "eu-west"))
	ctx := ctxT(t)
	n := 0
	for _, r := range readTenancyCorpus(t) {
		if r.binds == nil {
			continue
		}
		n++
		values := make([][]byte, len(r.binds))
		for i, v := range r.binds {
			if v != nil {
				values[i] = []byte(*v)
			}
		}
		if !r.unwrapped() {
			if _, err := conn.Exec(ctx, "BEGIN"); err != nil {
				t.Fatal(err)
			}
		}
		res := conn.PgConn().ExecParams(ctx, r.sql, values, nil, nil, nil).Read()
		var errs []psqlError
		if pe, ok := res.Err.(*pgconn.PgError); ok {
			errs = append(errs, psqlError{code: pe.Code, message: pe.Message})
		} else if res.Err != nil {
			t.Fatalf("%s: %v", r.where(), res.Err)
		}
		checkCorpusVerdict(t, r, errs)
		if !r.unwrapped() {
			if _, err := conn.Exec(ctx, "ROLLBACK"); err != nil {
				t.Fatal(err)
			}
		}
	}
	if n < 10 {
		t.Errorf("only %d bind rows", n)
	}
	if err := conn.Ping(ctx); err != nil {
		t.Fatalf("connection unusable after the bind rows: %v", err)
	}
	if after := corpusFingerprint(t, c); after != before {
		t.Errorf("the database changed: a denied statement ran, or an allowed one escaped its ROLLBACK")
	}
}

// tail returns the last n bytes of s.
func tail(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return "..." + s[len(s)-n:]
}
