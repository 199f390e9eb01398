package txpool

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"testing"
	"time"
)

// nodeDir holds the postgres.js client (package.json, package-lock.json,
// pipeline.js); its node_modules is installed on demand, never committed.
const nodeDir = "node"

// ensureNodeModules installs node/'s pinned dependencies if missing, and
// skips the test when Node.js or npm is not installed.
func ensureNodeModules(t *testing.T) (node string) {
	t.Helper()
	npm, err := exec.LookPath("npm")
	if err != nil {
		t.Skip("npm is not installed (test/clients/install.sh installs it): skipping the postgres.js test")
	}
	if node, err = exec.LookPath("node"); err != nil {
		t.Skip("node is not installed (test/clients/install.sh installs it): skipping the postgres.js test")
	}
	if _, err := os.Stat(filepath.Join(nodeDir, "node_modules", "postgres", "package.json")); err == nil {
		return node
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, npm, "ci", "--no-audit", "--no-fund", "--loglevel=error")
	cmd.Dir = nodeDir
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("npm ci in %s: %v\n%s", nodeDir, err, out)
	}
	return node
}

// nodeResult is what node/pipeline.js prints.
type nodeResult struct {
	Committed  map[string]int `json:"committed"`
	Statements int            `json:"statements"`
	Violations []string       `json:"violations"`
	Errors     []string       `json:"errors"`
}

// TestNodePipelines runs postgres.js, which pipelines the queries queued on
// a connection, for ten tenants through a pool of five backends, with named
// prepared statements and with unnamed ones. Many implicit transactions of
// one client connection are in flight at once, mixed with BEGIN blocks.
// Every answer must carry the client's tenant, its reads only its rows;
// in the database every row recorded its tenant's setting and each client's
// committed rows are all there.
func TestNodePipelines(t *testing.T) {
	node := ensureNodeModules(t)
	e := start(t, poolOptions{Size: 5})
	const tenants = 10
	seedTenants(t, e.c, tenants)
	for _, prepare := range []bool{true, false} {
		t.Run("prepare="+strconv.FormatBool(prepare), func(t *testing.T) {
			type tenantArg struct {
				Tenant int64  `json:"tenant"`
				Token  string `json:"token"`
				Client int    `json:"client"`
			}
			var args []tenantArg
			base := 700_000
			if prepare {
				base = 710_000
			}
			for i := range tenants {
				args = append(args, tenantArg{Tenant: tenantID(i), Token: dsnToken(t, tenantID(i)), Client: base + i})
			}
			js, err := json.Marshal(args)
			if err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
			defer cancel()
			cmd := exec.CommandContext(ctx, node, "pipeline.js")
			cmd.Dir = nodeDir
			prep := "0"
			if prepare {
				prep = "1"
			}
			cmd.Env = append(pgEnv(e, ""), "TXPOOL_TENANTS="+string(js), "TXPOOL_ITERATIONS=5", "TXPOOL_PREPARE="+prep)
			var out, errb bytes.Buffer
			cmd.Stdout, cmd.Stderr = &out, &errb
			if err := cmd.Run(); err != nil {
				t.Fatalf("node pipeline.js: %v\nstdout:\n%s\nstderr:\n%s", err, out.String(), errb.String())
			}
			var res nodeResult
			if err := json.Unmarshal(out.Bytes(), &res); err != nil {
				t.Fatalf("node output is not the expected JSON: %v\n%s\n%s", err, out.String(), errb.String())
			}
			for _, v := range res.Violations {
				t.Errorf("isolation: %s", v)
			}
			for _, e := range res.Errors {
				t.Errorf("postgres.js: %s", e)
			}
			if res.Statements == 0 {
				t.Fatalf("postgres.js ran no statement:\n%s", out.String())
			}
			reportViolations(t, e.checkDatabase(ctx, t, false))
			for _, a := range args {
				var got int
				if err := e.su.QueryRow(ctx, `SELECT count(*) FROM public.tx_probe WHERE client = $1`, a.Client).Scan(&got); err != nil {
					t.Fatal(err)
				}
				if want := res.Committed[strconv.Itoa(a.Client)]; got != want && len(res.Errors) == 0 {
					t.Errorf("tenant %d: %d rows in tx_probe, postgres.js committed %d", a.Tenant, got, want)
				}
			}
			t.Logf("%d statements checked", res.Statements)
		})
	}
}
