package main

import (
	"bytes"
	"errors"
	"strings"
	"testing"
)

// runCheckArgs runs `pgtenant check args...` in-process and returns its exit code and output.
func runCheckArgs(t *testing.T, stdin string, args ...string) (int, string) {
	t.Helper()
	root := newRootCmd()
	var out bytes.Buffer
	root.SetOut(&out)
	root.SetErr(&out)
	root.SetIn(strings.NewReader(stdin))
	root.SetArgs(append([]string{"check"}, args...))
	err := root.Execute()
	if err == nil {
		return exitOK, out.String()
	}
	var ee *exitError
	if errors.As(err, &ee) {
		return ee.code, out.String()
	}
	return exitUsage, out.String()
}

const (
	testCfg    = "../../policy/testdata/pgtenant.yaml"
	testSchema = "../../policy/testdata/schema.sql"
	testCorpus = "../../policy/testdata/tenancy.tsv"
)

func TestCheckCorpusAgrees(t *testing.T) {
	code, out := runCheckArgs(t, "", "--config", testCfg, "--account", "42", "--schema", testSchema, "--corpus", testCorpus)
	if code != exitOK || !strings.Contains(out, " 0 disagreements") {
		t.Fatalf("exit %d, output:\n%s", code, out)
	}
}

func TestCheckCorpusDisagreementExits1(t *testing.T) {
	// as account 7 the corpus's allow rows pinned to 42 must disagree
	code, out := runCheckArgs(t, "", "--config", testCfg, "--account", "7", "--schema", testSchema, "--corpus", testCorpus)
	if code != exitFailed || !strings.Contains(out, "want allow, got deny") {
		t.Fatalf("exit %d, output:\n%s", code, out)
	}
}

func TestCheckStatements(t *testing.T) {
	code, out := runCheckArgs(t, "", "--config", testCfg, "--account", "42", "--schema", testSchema,
		"--sql", "SELECT * FROM orders WHERE account_id = 42; SELECT 'a;b' FROM customers WHERE account_id = 42")
	if code != exitOK || strings.Count(out, "allow\t") != 2 {
		t.Fatalf("exit %d, output:\n%s", code, out)
	}
	script := "SELECT * FROM orders WHERE account_id = 42;\n\\echo meta\nSELECT * FROM orders;\n"
	code, out = runCheckArgs(t, script, "--config", testCfg, "--account", "42", "--schema", testSchema, "-f", "-")
	if code != exitDenied || !strings.Contains(out, "deny\tSELECT * FROM orders;") || !strings.Contains(out, "unscoped_table") {
		t.Fatalf("exit %d, output:\n%s", code, out)
	}
	// without the schema, orders is unknown: denied as such
	code, out = runCheckArgs(t, "", "--config", testCfg, "--account", "42", "--sql", "SELECT * FROM orders WHERE account_id = 42")
	if code != exitDenied || !strings.Contains(out, "unknown_table") {
		t.Fatalf("exit %d, output:\n%s", code, out)
	}
}

func TestCheckUsageErrors(t *testing.T) {
	for _, args := range [][]string{
		{"--config", testCfg, "--account", "42"},
		{"--config", testCfg, "--account", "42", "--sql", "SELECT 1", "--corpus", testCorpus},
		{"--config", "/nonexistent.yaml", "--account", "42", "--sql", "SELECT 1"},
		{"--config", testCfg, "--account", "42", "--region", "mars", "--sql", "SELECT 1"},
		{"--config", testCfg, "--account", "42", "--schema", "/nonexistent.sql", "--sql", "SELECT 1"},
		{"--account", "42", "--sql", "SELECT 1"},
	} {
		if code, out := runCheckArgs(t, "", args...); code != exitUsage {
			t.Errorf("%v: exit %d, want 2; output:\n%s", args, code, out)
		}
	}
}

// Under pool.mode: transaction, check refuses what serve refuses: session
// state a pooled backend cannot carry.
func TestCheckTransactionPooling(t *testing.T) {
	const sql = "PREPARE p AS SELECT 1"
	if code, out := runCheckArgs(t, "", "--config", testCfg, "--account", "42", "--sql", sql); code != exitOK {
		t.Fatalf("session mode: exit %d, output:\n%s", code, out)
	}
	t.Setenv("PGTENANT_POOL_MODE", "transaction")
	code, out := runCheckArgs(t, "", "--config", testCfg, "--account", "42", "--sql", sql)
	if code != exitDenied || !strings.Contains(out, "transaction_pooling") || !strings.Contains(out, "pool.mode: session") {
		t.Fatalf("transaction mode: exit %d, output:\n%s", code, out)
	}
}
