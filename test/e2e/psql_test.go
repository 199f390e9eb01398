package e2e

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/pgtenant/pgtenant/cluster"
	"github.com/pgtenant/pgtenant/test/proxytest"
)

// Tests of the real psql binary through the proxy.

// pgBinary returns the path of a PostgreSQL client program from the same
// installation as the test clusters, skipping t when there is none.
func pgBinary(t *testing.T, name string) string {
	t.Helper()
	dir, err := cluster.BinDir()
	if err != nil {
		t.Skipf("no PostgreSQL binaries: %v", err)
	}
	p := filepath.Join(dir, name)
	if _, err := os.Stat(p); err != nil {
		t.Skipf("%s is not installed: %v", name, err)
	}
	return p
}

// clientEnv is the environment for a libpq program connecting through the
// proxy with token as the password; nothing is inherited from the user's PG* variables.
func clientEnv(env *proxytest.Env, token string) []string {
	var out []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "PG") {
			out = append(out, kv)
		}
	}
	return append(out, "PGHOST="+env.Host(), "PGPORT="+env.Port(), "PGUSER=tester", "PGDATABASE=app",
		"PGPASSWORD="+token, "PGSSLMODE=disable", "PGCONNECT_TIMEOUT=10", "PGCLIENTENCODING=UTF8")
}

// runPsql runs psql without a psqlrc and with ON_ERROR_STOP off, with args.
func runPsql(t *testing.T, env *proxytest.Env, token string, args ...string) (stdout, stderr string, err error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, pgBinary(t, "psql"), append([]string{"-X", "-v", "ON_ERROR_STOP=0"}, args...)...)
	cmd.Env = clientEnv(env, token)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err = cmd.Run()
	return out.String(), errb.String(), err
}

func TestPsqlDescribeTable(t *testing.T) {
	env := proxytest.Start(t, proxytest.Options{})
	tok := proxytest.Token(t, "42", "eu-west", 0)
	out, errOut, err := runPsql(t, env, tok, "-c", `\d orders`)
	if err != nil {
		t.Fatalf("psql \\d orders: %v\n%s", err, errOut)
	}
	for _, want := range []string{`Table "public.orders"`, "account_id", "bigint", "orders_pkey", "tenant_isolation"} {
		if !strings.Contains(out, want) {
			t.Errorf("\\d orders output lacks %q:\n%s", want, out)
		}
	}
}

func TestPsqlCopyToStdout(t *testing.T) {
	env := proxytest.Start(t, proxytest.Options{})
	tok := proxytest.Token(t, "42", "eu-west", 0)

	out, errOut, err := runPsql(t, env, tok, "-At", "-c", `\copy (SELECT id, note FROM orders ORDER BY id) TO STDOUT`)
	if err != nil {
		t.Fatalf("\\copy (query): %v\n%s", err, errOut)
	}
	if want := "1\tDE\n5\ta@example.com\n9\t\\N\n1001\tfirst big order\n"; out != want {
		t.Errorf("\\copy (query) TO STDOUT = %q, want %q", out, want)
	}

	out, errOut, err = runPsql(t, env, tok, "-At", "-c", `\copy orders (id, account_id) TO STDOUT`)
	if err != nil {
		t.Fatalf("\\copy orders: %v\n%s", err, errOut)
	}
	lines := strings.Split(strings.TrimRight(out, "\n"), "\n")
	if len(lines) != 4 {
		t.Fatalf("\\copy orders TO STDOUT gave %d rows, want tenant 42's 4: %q", len(lines), out)
	}
	for _, l := range lines {
		if !strings.HasSuffix(l, "\t42") {
			t.Errorf("\\copy orders TO STDOUT row %q is not tenant 42's", l)
		}
	}
}

func TestPsqlRefusedCopyFromKeepsSession(t *testing.T) {
	env := proxytest.Start(t, proxytest.Options{})
	tok := proxytest.Token(t, "42", "eu-west", 0)
	// Orders have forced RLS, so the server refuses COPY FROM before any
	// data flows; the "\." then ends the copy if it had been accepted.
	script := `SELECT 'before:' || count(*) FROM orders;
\copy orders (id, account_id, total) FROM STDIN
\.
SELECT 'after:' || count(*) || ':' || current_setting('app.current_account_id') FROM orders;
`
	path := filepath.Join(t.TempDir(), "copy_from.sql")
	if err := os.WriteFile(path, []byte(script), 0o600); err != nil {
		t.Fatal(err)
	}
	out, errOut, err := runPsql(t, env, tok, "-At", "-f", path)
	t.Logf("psql exit: %v\nstdout:\n%sstderr:\n%s", err, out, errOut)
	if !strings.Contains(errOut, "ERROR") || !strings.Contains(errOut, "COPY FROM not supported with row-level security") {
		t.Errorf("psql did not report the refused COPY FROM; stderr:\n%s", errOut)
	}
	if !strings.Contains(out, "before:4\n") || !strings.Contains(out, "after:4:42\n") {
		t.Errorf("the session did not keep working around the refused COPY; stdout:\n%s", out)
	}
	if strings.Contains(errOut, "FATAL") || strings.Contains(errOut, "connection to server") {
		t.Errorf("the refused COPY ended the connection; stderr:\n%s", errOut)
	}
}
