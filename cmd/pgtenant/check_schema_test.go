package main

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/pgtenant/pgtenant/cluster"
	"github.com/pgtenant/pgtenant/test/pgtest"
)

// check --schema reads the real `pg_dump -s` output of a cluster, including
// the \restrict / \unrestrict meta-commands current pg_dump versions write.
func TestCheckSchemaFromRealPgDump(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a PostgreSQL cluster")
	}
	c := pgtest.Start(t, cluster.Config{Name: "check-pgdump"})
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := c.Exec(ctx, c.Database, `CREATE TABLE orders (id bigint, account_id bigint, note text);
		CREATE FUNCTION f() RETURNS text LANGUAGE sql AS $$
SELECT '\not a meta command'
$$;
		COMMENT ON TABLE orders IS E'line\\one';`); err != nil {
		t.Fatal(err)
	}
	out, err := exec.CommandContext(ctx, filepath.Join(c.BinDir, "pg_dump"), "-s", c.SuperuserDSN(c.Database)).Output()
	if err != nil {
		t.Fatalf("pg_dump: %v", err)
	}
	dump := string(out)
	restrict := strings.Contains(dump, "\n\\restrict ")
	t.Logf("pg_dump writes \\restrict: %v", restrict)
	schema := filepath.Join(t.TempDir(), "schema.sql")
	if err := os.WriteFile(schema, out, 0o600); err != nil {
		t.Fatal(err)
	}
	code, res := runCheckArgs(t, "", "--config", testCfg, "--account", "42", "--schema", schema,
		"--sql", "SELECT * FROM orders WHERE account_id = 42; SELECT * FROM orders")
	if code != exitDenied || !strings.Contains(res, "allow\tSELECT * FROM orders WHERE account_id = 42;") ||
		!strings.Contains(res, "unscoped_table") {
		t.Fatalf("exit %d:\n%s", code, res)
	}
	// the same dump with \restrict lines added (older pg_dump versions
	// write none): the meta-commands are skipped either way
	if !restrict {
		withMeta := "\\restrict abc123\n" + dump + "\n\\unrestrict abc123\n"
		if err := os.WriteFile(schema, []byte(withMeta), 0o600); err != nil {
			t.Fatal(err)
		}
		code, res = runCheckArgs(t, "", "--config", testCfg, "--account", "42", "--schema", schema,
			"--sql", "SELECT * FROM orders WHERE account_id = 42")
		if code != exitOK {
			t.Fatalf("exit %d:\n%s", code, res)
		}
	}
}

func TestBlankMetaCommands(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"\\restrict K\nSELECT 1;\n\\unrestrict K\n", "           \nSELECT 1;\n             \n"},
		{"SELECT 1; \\gset\n", "SELECT 1;      \n"},
		{"SELECT '\\x';\n", "SELECT '\\x';\n"},
		{"SELECT E'\\'\\x';\n", "SELECT E'\\'\\x';\n"},
		{"SELECT $f$\n\\x\n$f$;\n", "SELECT $f$\n\\x\n$f$;\n"},
		{"SELECT $1 \\g\n", "SELECT $1   \n"},
		{"-- \\c db\n/* \\x /* \\y */ */\n", "-- \\c db\n/* \\x /* \\y */ */\n"},
		{"SELECT \"a\\\" \\x\n", "SELECT \"a\\\"   \n"},
	} {
		if got := blankMetaCommands(tc.in); got != tc.want {
			t.Errorf("blankMetaCommands(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}

// A schema file the parser cannot read is reported with file and line.
func TestCheckSchemaErrorNamesFileAndLine(t *testing.T) {
	schema := filepath.Join(t.TempDir(), "bad.sql")
	body := "\\restrict k\nCREATE TABLE a (id bigint);\n\nCREATE TABLE b (id bigint,,);\n"
	if err := os.WriteFile(schema, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	code, out := runCheckArgs(t, "", "--config", testCfg, "--account", "42", "--schema", schema, "--sql", "SELECT 1")
	if code != exitUsage {
		t.Fatalf("exit %d:\n%s", code, out)
	}
	err := runCheckErr(t, "--config", testCfg, "--account", "42", "--schema", schema, "--sql", "SELECT 1")
	if !strings.Contains(err, schema+":4:") || !strings.Contains(err, "syntax error") {
		t.Fatalf("error %q does not name %s line 4", err, schema)
	}
}

// runCheckErr returns the error text `pgtenant check args...` prints.
func runCheckErr(t *testing.T, args ...string) string {
	t.Helper()
	root := newRootCmd()
	root.SetOut(&strings.Builder{})
	root.SetErr(&strings.Builder{})
	root.SetArgs(append([]string{"check"}, args...))
	if err := root.Execute(); err != nil {
		return err.Error()
	}
	return ""
}

// Parameterised statements are checked as the extended protocol runs them.
func TestCheckParameterisedStatements(t *testing.T) {
	script := `SELECT * FROM orders WHERE account_id = $1;
SELECT * FROM orders WHERE id = $1 AND account_id = $2;
SELECT * FROM orders WHERE account_id = ANY($1);
SELECT * FROM orders WHERE account_id = $1; -- bind: 42
SELECT * FROM orders WHERE account_id = $1 -- bind: 7
;
SELECT * FROM orders WHERE id = $1;
`
	code, out := runCheckArgs(t, script, "--config", testCfg, "--account", "42", "--schema", testSchema, "-f", "-")
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if code != exitDenied || len(lines) != 6 {
		t.Fatalf("exit %d, %d lines:\n%s", code, len(lines), out)
	}
	for i, want := range []string{
		"allow\tSELECT * FROM orders WHERE account_id = $1;\tallowed if $1 is bound to your account",
		"allow\tSELECT * FROM orders WHERE id = $1 AND account_id = $2;\tallowed if $2 is bound to your account",
		"allow\tSELECT * FROM orders WHERE account_id = ANY($1);\tallowed if $1 (as an array) is bound to your account",
		"allow\tSELECT * FROM orders WHERE account_id = $1 -- bind: 42",
		"deny\tSELECT * FROM orders WHERE account_id = $1 -- bind: 7\t",
		"deny\tSELECT * FROM orders WHERE id = $1;\t",
	} {
		if !strings.HasPrefix(lines[i], want) {
			t.Errorf("line %d = %q, want prefix %q", i+1, lines[i], want)
		}
	}
	if !strings.Contains(lines[4], "wrong_account") || !strings.Contains(lines[5], "unscoped_table") {
		t.Errorf("reasons:\n%s", out)
	}
}

// FuzzBlankMetaCommands: blanking never changes the length or the line
// structure, and never touches text outside meta-commands' lines.
func FuzzBlankMetaCommands(f *testing.F) {
	for _, s := range []string{"\\restrict K\nSELECT 1;\n", "SELECT $f$\\x$f$; \\g", "E'\\'' \\x", "/* /* */ \\x", "$1 \\y\n$$\\$$"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		got := blankMetaCommands(s)
		if len(got) != len(s) || strings.Count(got, "\n") != strings.Count(s, "\n") {
			t.Fatalf("blankMetaCommands(%q) = %q changes length or lines", s, got)
		}
		for i := range s {
			if got[i] != s[i] && (got[i] != ' ' || s[i] == '\n') {
				t.Fatalf("blankMetaCommands(%q) = %q: byte %d changed to %q", s, got, i, got[i])
			}
		}
	})
}
