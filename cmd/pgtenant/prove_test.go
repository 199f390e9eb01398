package main

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/pgtenant/pgtenant/auth"
	"github.com/pgtenant/pgtenant/cluster"
	"github.com/pgtenant/pgtenant/config"
	"github.com/pgtenant/pgtenant/demo"
	"github.com/pgtenant/pgtenant/prove"
	"github.com/pgtenant/pgtenant/test/pgtest"
)

const proveSecret = "prove-cli-test-secret-0123456789abcdef"

// runProveArgs runs `pgtenant prove args...` in-process: stdout, stderr and the exit code.
func runProveArgs(t *testing.T, args ...string) (string, string, int) {
	t.Helper()
	root := newRootCmd()
	var out, errOut bytes.Buffer
	root.SetOut(&out)
	root.SetErr(&errOut)
	root.SetArgs(append([]string{"prove"}, args...))
	err := root.Execute()
	if err == nil {
		return out.String(), errOut.String(), exitOK
	}
	var ee *exitError
	if errors.As(err, &ee) {
		return out.String(), errOut.String() + ee.Error(), ee.code
	}
	return out.String(), errOut.String() + err.Error(), exitUsage
}

// writeProveConfig writes a config for the clusters (audit on, spool mode,
// as in production) plus authSection; it returns its path.
func writeProveConfig(t *testing.T, dir string, clusters map[string]*cluster.Cluster, authSection string) string {
	t.Helper()
	var b strings.Builder
	b.WriteString(authSection + "\nregions:\n")
	for name, c := range clusters {
		fmt.Fprintf(&b, "  %s: { host: 127.0.0.1, port: %d, user: %s, password: %s, database: %s, admin_user: %s }\n",
			name, c.Port, c.ServiceUser, c.ServicePassword, c.Database, c.Superuser)
	}
	fmt.Fprintf(&b, "policy:\n  global_tables: [public.countries]\naudit:\n  mode: spool\n  spool_dir: %s\nlog:\n  format: text\n", filepath.Join(dir, "spool"))
	path := filepath.Join(dir, strings.ReplaceAll(t.Name(), "/", "_")+fmt.Sprint(time.Now().UnixNano())+".yaml")
	if err := os.WriteFile(path, []byte(b.String()), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// superCount counts rows as the superuser (no RLS).
func superCount(t *testing.T, c *cluster.Cluster, sql string, args ...any) int64 {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var n int64
	if err := pgtest.Conn(t, c.SuperuserDSN(c.Database)).QueryRow(ctx, sql, args...).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

func TestProveCommand(t *testing.T) {
	if testing.Short() {
		t.Skip("starts PostgreSQL clusters")
	}
	clusters := map[string]*cluster.Cluster{}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	for _, name := range []string{"prove-eu", "prove-us"} {
		c := pgtest.Start(t, cluster.Config{Name: name})
		if err := demo.Install(ctx, c); err != nil {
			t.Fatal(err)
		}
		clusters[name] = c
	}
	dir := t.TempDir()
	cfgPath := writeProveConfig(t, dir, clusters, "auth:\n  hs256_secret: "+proveSecret)

	// The demo schema passes in every region (human table).
	out, errOut, code := runProveArgs(t, "--config", cfgPath)
	if code != exitOK || !strings.Contains(out, "PASS:") || !strings.Contains(out, "prove-eu") || !strings.Contains(out, "prove-us") {
		t.Fatalf("prove: exit %d\n%s\n%s", code, out, errOut)
	}

	// --json parses, one region; nothing of A or B is left; the attacks were audited.
	out, errOut, code = runProveArgs(t, "--config", cfgPath, "--json", "--region", "prove-eu")
	var rep prove.Report
	if err := json.Unmarshal([]byte(out), &rep); err != nil || code != exitOK {
		t.Fatalf("prove --json: exit %d, %v\n%s\n%s", code, err, out, errOut)
	}
	if !rep.OK || rep.Failed != 0 || len(rep.Regions) != 1 || rep.Regions[0] != "prove-eu" || rep.Passed < 90 {
		t.Fatalf("report: ok=%t failed=%d regions=%v passed=%d", rep.OK, rep.Failed, rep.Regions, rep.Passed)
	}
	eu := clusters["prove-eu"]
	for _, tbl := range demo.TenantTables {
		if n := superCount(t, eu, "SELECT count(*) FROM public."+tbl+" WHERE account_id::text = ANY($1)", []string{rep.TenantA, rep.TenantB}); n != 0 {
			t.Errorf("%s: %d rows of the synthetic tenants left", tbl, n)
		}
	}
	if n := superCount(t, eu, "SELECT count(*) FROM pgtenant_audit.events WHERE account_id = $1 AND verdict = 'deny'", rep.TenantB); n < 20 {
		t.Errorf("only %d denied statements of tenant B in the audit", n)
	}

	// Tokens instead of a secret: the tokens' claims pick the tenants and the region.
	mint := func(account string) string {
		tok, err := auth.Mint(auth.MintOptions{Secret: []byte(proveSecret), Account: account, Region: "prove-us", TTL: time.Hour})
		if err != nil {
			t.Fatal(err)
		}
		return tok
	}
	out, errOut, code = runProveArgs(t, "--config", cfgPath, "--json", "--token-a", mint("9200000000000001"), "--token-b", mint("9200000000000002"))
	rep = prove.Report{}
	if err := json.Unmarshal([]byte(out), &rep); err != nil || code != exitOK || rep.TenantA != "9200000000000001" || len(rep.Regions) != 1 || rep.Regions[0] != "prove-us" {
		t.Fatalf("prove with tokens: exit %d, %v: %+v\n%s", code, err, rep, errOut)
	}

	// --addr: a pgtenant that is already running; --keep leaves A's rows,
	// and a later run refuses that tenant.
	cfg, err := config.Load(cfgPath)
	if err != nil {
		t.Fatal(err)
	}
	addr, stopApp, err := startProveApp(ctx, cfg, slog.New(slog.DiscardHandler), new(slog.LevelVar))
	if err != nil {
		t.Fatal(err)
	}
	out, errOut, code = runProveArgs(t, "--config", cfgPath, "--addr", addr, "--region", "prove-eu", "--keep", "--json")
	stopApp()
	rep = prove.Report{}
	if err := json.Unmarshal([]byte(out), &rep); err != nil || code != exitOK || warnedBesidesFootguns(rep) != 1 {
		t.Fatalf("prove --addr --keep: exit %d, %v, %d warnings\n%s", code, err, warnedBesidesFootguns(rep), errOut)
	}
	if n := superCount(t, eu, "SELECT count(*) FROM public.orders WHERE account_id::text = $1", rep.TenantA); n != 1 {
		t.Errorf("--keep: %d orders of tenant A left, want 1", n)
	}
	if _, errOut, code := runProveArgs(t, "--config", cfgPath, "--region", "prove-eu", "--tenant-a", rep.TenantA, "--tenant-b", rep.TenantB); code != exitUsage || !strings.Contains(errOut, "already has rows") {
		t.Errorf("a tenant with rows: exit %d: %s", code, errOut)
	}
	if err := eu.Exec(ctx, eu.Database, "DELETE FROM public.orders WHERE account_id = "+rep.TenantA+"; DELETE FROM public.customers WHERE account_id = "+rep.TenantA); err != nil {
		t.Fatal(err)
	}

	// Weaken RLS on orders in one region: the RLS step fails, naming the table; exit 1.
	us := clusters["prove-us"]
	if err := us.Exec(ctx, us.Database, "ALTER TABLE public.orders NO FORCE ROW LEVEL SECURITY; ALTER TABLE public.orders OWNER TO app"); err != nil {
		t.Fatal(err)
	}
	out, errOut, code = runProveArgs(t, "--config", cfgPath, "--json")
	rep = prove.Report{}
	if err := json.Unmarshal([]byte(out), &rep); err != nil || code != exitFailed || rep.OK {
		t.Fatalf("prove with RLS weakened: exit %d, %v\n%s\n%s", code, err, out, errOut)
	}
	if !strings.Contains(errOut, "isolation proof failed") {
		t.Errorf("stderr: %q", errOut)
	}
	for _, f := range rep.Failures() {
		if f.Region != "prove-us" || f.Table != "public.orders" || f.Layer != prove.LayerRLS {
			t.Errorf("unexpected failure %+v", f)
		}
	}
	if len(rep.Failures()) < 5 {
		t.Errorf("failures: %+v", rep.Failures())
	}
	out, _, code = runProveArgs(t, "--config", cfgPath)
	if code != exitFailed || !strings.Contains(out, "FAIL:") || !strings.Contains(out, "rls_select_a") {
		t.Errorf("table output with RLS weakened: exit %d\n%s", code, out)
	}
}

func TestProveCannotRun(t *testing.T) {
	dir := t.TempDir()
	// A port nothing listens on.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	deadPort := ln.Addr().(*net.TCPAddr).Port
	ln.Close()
	dead := fmt.Sprintf("auth:\n  hs256_secret: %s\nregions:\n  eu: { host: 127.0.0.1, port: %d, user: app, password: pw, connect_timeout: 2s }\n", proveSecret, deadPort)
	deadCfg := filepath.Join(dir, "dead.yaml")
	if err := os.WriteFile(deadCfg, []byte(dead), 0o600); err != nil {
		t.Fatal(err)
	}
	pub, _, _ := ed25519.GenerateKey(rand.Reader)
	der, _ := x509.MarshalPKIXPublicKey(pub)
	keyPath := filepath.Join(dir, "key.pem")
	if err := os.WriteFile(keyPath, pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	noSecret := fmt.Sprintf("auth:\n  algorithms: [EdDSA]\n  public_keys: [%s]\nregions:\n  eu: { host: 127.0.0.1, port: %d, user: app, password: pw }\n", keyPath, deadPort)
	noSecretCfg := filepath.Join(dir, "nosecret.yaml")
	if err := os.WriteFile(noSecretCfg, []byte(noSecret), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{}, "config"},
		{[]string{"--config", filepath.Join(dir, "missing.yaml")}, "missing.yaml"},
		{[]string{"--config", noSecretCfg}, "--token-a"},
		{[]string{"--config", noSecretCfg, "--token-a", "x.y.z"}, "go together"},
		{[]string{"--config", noSecretCfg, "--token-a", "not-a-jwt", "--token-b", "x"}, "not a JWT"},
		{[]string{"--config", deadCfg, "--region", "nowhere"}, "nowhere"},
		{[]string{"--config", deadCfg, "--addr", "127.0.0.1:1"}, "connect"},
		{[]string{"--config", deadCfg, "--step-timeout", "0s"}, "step-timeout"},
	} {
		out, errOut, code := runProveArgs(t, tc.args...)
		if code != exitUsage || !strings.Contains(errOut, tc.want) || strings.Contains(errOut, "goroutine") {
			t.Errorf("%v: exit %d, stderr %q, stdout %q; want exit 2 mentioning %q", tc.args, code, errOut, out, tc.want)
		}
	}
}
