package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/pgtenant/pgtenant/test/proxytest"
)

// nodeDir holds the node-postgres client (package.json, package-lock.json,
// query.js); its node_modules is installed on demand and never committed.
const nodeDir = "node"

// nodeResult is what node/query.js prints.
type nodeResult struct {
	Orders []struct {
		ID   string  `json:"id"`
		Note *string `json:"note"`
	} `json:"orders"`
	Account         string `json:"account"`
	ApplicationName string `json:"application_name"`
	ErrorCode       string `json:"error_code"`
	Prepared        []int  `json:"prepared"`
}

// ensureNodeModules installs node/'s pinned dependencies if missing.
func ensureNodeModules(t *testing.T) (node string) {
	t.Helper()
	npm, err := exec.LookPath("npm")
	if err != nil {
		t.Skip("npm is not installed: skipping the node-postgres test")
	}
	if node, err = exec.LookPath("node"); err != nil {
		t.Skip("node is not installed: skipping the node-postgres test")
	}
	if _, err := os.Stat(filepath.Join(nodeDir, "node_modules", "pg", "package.json")); err == nil {
		return node
	}
	args := []string{"ci", "--no-audit", "--no-fund"}
	if _, err := os.Stat(filepath.Join(nodeDir, "package-lock.json")); err != nil {
		args[0] = "install"
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, npm, args...)
	cmd.Dir = nodeDir
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("npm %s in %s: %v\n%s", args[0], nodeDir, err, out)
	}
	return node
}

func TestNodePostgres(t *testing.T) {
	node := ensureNodeModules(t)
	env := proxytest.Start(t, proxytest.Options{})
	tok := proxytest.Token(t, "42", "eu-west", 0)

	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, node, "query.js")
	cmd.Dir = nodeDir
	cmd.Env = clientEnv(env, tok)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Run(); err != nil {
		t.Fatalf("node query.js: %v\nstdout:\n%s\nstderr:\n%s", err, out.String(), errb.String())
	}
	var got nodeResult
	if err := json.Unmarshal(out.Bytes(), &got); err != nil {
		t.Fatalf("node output is not the expected JSON: %v\n%s", err, out.String())
	}
	ids := make([]string, 0, len(got.Orders))
	for _, o := range got.Orders {
		ids = append(ids, o.ID)
	}
	if !slices.Equal(ids, []string{"1", "1001"}) {
		t.Errorf("parameterized query returned orders %v, want tenant 42's [1 1001] (not 7's 2001)", ids)
	}
	if len(got.Orders) == 2 && (got.Orders[1].Note == nil || *got.Orders[1].Note != "first big order") {
		t.Errorf("order 1001 note = %v", got.Orders[1].Note)
	}
	if got.Account != "42" {
		t.Errorf("tenant context = %q, want 42", got.Account)
	}
	if got.ApplicationName != "pgtenant-e2e-node" {
		t.Errorf("application_name = %q, want the client's pgtenant-e2e-node", got.ApplicationName)
	}
	if got.ErrorCode != "42P01" {
		t.Errorf("error code = %q, want 42P01", got.ErrorCode)
	}
	if !slices.Equal(got.Prepared, []int{42, 100}) {
		t.Errorf("named prepared statement results = %v, want [42 100]", got.Prepared)
	}
}
