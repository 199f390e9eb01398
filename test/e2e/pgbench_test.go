package e2e

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"testing"
	"time"

	"github.com/pgtenant/pgtenant/test/proxytest"
)

// pgbenchScript reads one of tenant 42's orders 1, 5 or 9 (demo/seed.sql)
// and fails the transaction (division by zero aborts the client) unless
// exactly that row is visible: a wrong tenant context would see none.
const pgbenchScript = `\set aid random(1, 3) * 4 - 3
SELECT count(*) AS n FROM orders WHERE account_id = 42 AND id = :aid \gset
SELECT 1 / (:n)::int AS one;
`

var (
	pgbenchFailed    = regexp.MustCompile(`(?m)^number of failed transactions: (\d+)`)
	pgbenchProcessed = regexp.MustCompile(`(?m)^number of transactions actually processed: (\d+)/(\d+)$`)
	pgbenchTPS       = regexp.MustCompile(`(?m)^tps = ([0-9.]+)`)
)

func TestPgbenchThroughProxy(t *testing.T) {
	if testing.Short() {
		t.Skip("pgbench runs 2400 transactions; skipped with -short")
	}
	runPgbenchModes(t, proxytest.Start(t, proxytest.Options{}), 4, 200)
}

// runPgbenchModes runs pgbenchScript as tenant 42 through env in every
// protocol mode, with clients clients of txns transactions each, and fails
// unless every transaction succeeded.
func runPgbenchModes(t *testing.T, env *proxytest.Env, clients, txns int) {
	t.Helper()
	bin := pgBinary(t, "pgbench")
	tok := proxytest.Token(t, "42", "eu-west", 0)
	script := filepath.Join(t.TempDir(), "tenant42.sql")
	if err := os.WriteFile(script, []byte(pgbenchScript), 0o600); err != nil {
		t.Fatal(err)
	}
	want := strconv.Itoa(clients * txns)
	for _, mode := range []string{"simple", "extended", "prepared"} {
		t.Run(mode, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
			defer cancel()
			cmd := exec.CommandContext(ctx, bin, "-n", "-f", script, "-M", mode,
				"-t", strconv.Itoa(txns), "-c", strconv.Itoa(clients))
			cmd.Env = clientEnv(env, tok)
			var out, errb bytes.Buffer
			cmd.Stdout, cmd.Stderr = &out, &errb
			if err := cmd.Run(); err != nil {
				t.Fatalf("pgbench -M %s: %v\nstdout:\n%s\nstderr:\n%s", mode, err, out.String(), errb.String())
			}
			failed := pgbenchFailed.FindStringSubmatch(out.String())
			processed := pgbenchProcessed.FindStringSubmatch(out.String())
			if failed == nil || processed == nil {
				t.Fatalf("unexpected pgbench output:\n%s\nstderr:\n%s", out.String(), errb.String())
			}
			if failed[1] != "0" {
				t.Errorf("pgbench -M %s: %s failed transactions\n%s", mode, failed[1], errb.String())
			}
			if processed[1] != want || processed[2] != want {
				t.Errorf("pgbench -M %s processed %s/%s transactions, want %s/%s\n%s", mode, processed[1], processed[2], want, want, errb.String())
			}
			if tps := pgbenchTPS.FindStringSubmatch(out.String()); tps != nil {
				t.Logf("pgbench -M %s -c %d through the proxy: tps = %s", mode, clients, tps[1])
			}
		})
	}
}
