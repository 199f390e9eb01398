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
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/pgtenant/pgtenant/audit"
	"github.com/pgtenant/pgtenant/cluster"
	"github.com/pgtenant/pgtenant/config"
	"github.com/pgtenant/pgtenant/tenancy"
	"github.com/pgtenant/pgtenant/test/pgtest"
)

// runAuditCmd runs `pgtenant args...` and returns stdout and the exit code.
func runAuditCmd(t *testing.T, args ...string) (string, int) {
	t.Helper()
	root := newRootCmd()
	root.SetArgs(args)
	var out bytes.Buffer
	root.SetOut(&out)
	root.SetErr(io.Discard)
	err := root.Execute()
	if err == nil {
		return out.String(), exitOK
	}
	var ee *exitError
	if errors.As(err, &ee) {
		return out.String() + ee.Error(), ee.code
	}
	return out.String() + err.Error(), exitUsage
}

func writeSealKeys(t *testing.T, dir string) (priv, pub string) {
	t.Helper()
	pk, key, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	der, _ := x509.MarshalPKCS8PrivateKey(key)
	pder, _ := x509.MarshalPKIXPublicKey(pk)
	priv, pub = filepath.Join(dir, "seal.pem"), filepath.Join(dir, "seal.pub")
	if err := os.WriteFile(priv, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(pub, pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: pder}), 0o644); err != nil {
		t.Fatal(err)
	}
	return priv, pub
}

func writeAuditConfig(t *testing.T, dir string, c *cluster.Cluster, pub string) string {
	t.Helper()
	cfg := fmt.Sprintf(`auth:
  hs256_secret: audit-cli-test-secret-0123456789abcdef
regions:
  eu-west: { host: 127.0.0.1, port: %d, user: %s, password: %s, database: %s, admin_user: %s }
audit:
  mode: strict
  spool_dir: %s
  checkpoint_dir: %s
  seal_public_key: %s
`, c.Port, c.ServiceUser, c.ServicePassword, c.Database, c.Superuser, filepath.Join(dir, "spool"), filepath.Join(dir, "checkpoints"), pub)
	path := filepath.Join(dir, "pgtenant.yaml")
	if err := os.WriteFile(path, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

func TestAuditCommandsEndToEnd(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a PostgreSQL cluster")
	}
	c := pgtest.Start(t, cluster.Config{Name: "auditcli"})
	dir := t.TempDir()
	priv, pub := writeSealKeys(t, dir)
	cfgPath := writeAuditConfig(t, dir, c, pub)

	for range 2 { // idempotent
		if out, code := runAuditCmd(t, "audit", "init", "--config", cfgPath); code != exitOK {
			t.Fatalf("audit init: exit %d: %s", code, out)
		}
	}
	cfg, err := config.Load(cfgPath)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	rec, err := audit.NewRecorder(ctx, cfg.Audit, cfg.Regions, "cli-test", nil)
	if err != nil {
		t.Fatal(err)
	}
	for i := range 10 {
		ev := tenancy.Event{Kind: tenancy.KindStatement, AccountID: "acct-1", Region: "eu-west", Statement: fmt.Sprintf("SELECT %d", i), Verdict: tenancy.VerdictAllow}
		if err := rec.Record(ctx, ev); err != nil {
			t.Fatal(err)
		}
	}
	if err := rec.Close(ctx); err != nil {
		t.Fatal(err)
	}
	if out, code := runAuditCmd(t, "audit", "seal", "--config", cfgPath, "--key", priv); code != exitOK || !strings.Contains(out, "sealed 1 checkpoint") {
		t.Fatalf("audit seal: exit %d: %s", code, out)
	}
	if out, code := runAuditCmd(t, "audit", "verify", "--config", cfgPath); code != exitOK || !strings.Contains(out, "ok:") {
		t.Fatalf("audit verify: exit %d: %s", code, out)
	}
	export, code := runAuditCmd(t, "audit", "export", "--config", cfgPath, "--account", "acct-1")
	if code != exitOK || strings.Count(export, `"type":"event"`) != 10 {
		t.Fatalf("audit export: exit %d: %s", code, export)
	}
	exportPath := filepath.Join(dir, "export.jsonl")
	if err := os.WriteFile(exportPath, []byte(export), 0o600); err != nil {
		t.Fatal(err)
	}
	if out, code := runAuditCmd(t, "audit", "verify", "--file", exportPath, "--public-key", pub); code != exitOK {
		t.Fatalf("offline verify: exit %d: %s", code, out)
	}

	// Tamper as the superuser with the triggers disabled.
	conn, err := pgx.Connect(ctx, c.SuperuserDSN(c.Database))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(context.Background())
	if _, err := conn.Exec(ctx, `BEGIN;
		ALTER TABLE pgtenant_audit.events DISABLE TRIGGER USER;
		UPDATE pgtenant_audit.events SET statement = 'SELECT 0' WHERE chain_id = 'acct-1' AND seq = 4;
		ALTER TABLE pgtenant_audit.events ENABLE ALWAYS TRIGGER events_append_only;
		COMMIT`); err != nil {
		t.Fatal(err)
	}
	out, code := runAuditCmd(t, "audit", "verify", "--config", cfgPath, "--json")
	if code != exitFailed {
		t.Fatalf("verify of a tampered chain: exit %d, want %d: %s", code, exitFailed, out)
	}
	var rep audit.Report
	if err := json.NewDecoder(strings.NewReader(out)).Decode(&rep); err != nil {
		t.Fatalf("--json output: %v: %s", err, out)
	}
	if rep.OK || len(rep.Failures) != 1 || rep.Failures[0].Kind != audit.FailContentMismatch || rep.Failures[0].Seq != 4 {
		t.Fatalf("report: %+v", rep)
	}

	// Cannot verify: database down.
	if err := c.Stop(ctx); err != nil {
		t.Fatal(err)
	}
	if out, code := runAuditCmd(t, "audit", "verify", "--config", cfgPath); code != exitUsage {
		t.Fatalf("verify with the database down: exit %d, want %d: %s", code, exitUsage, out)
	}
	// Usage errors.
	for _, args := range [][]string{
		{"audit", "verify"},
		{"audit", "export", "--config", cfgPath},
		{"audit", "export", "--config", cfgPath, "--account", "a", "--format", "xml"},
		{"audit", "seal", "--config", cfgPath, "--key", filepath.Join(dir, "missing.pem")},
		{"audit", "verify", "--file", exportPath, "--config", cfgPath},
	} {
		if out, code := runAuditCmd(t, args...); code != exitUsage {
			t.Errorf("%v: exit %d, want %d: %s", args, code, exitUsage, out)
		}
	}
}

func TestAuditPurgeEraseAndSinceCheckpointCommands(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a PostgreSQL cluster")
	}
	c := pgtest.Start(t, cluster.Config{Name: "auditcli-retention"})
	dir := t.TempDir()
	priv, pub := writeSealKeys(t, dir)
	cfgPath := writeAuditConfig(t, dir, c, pub)
	extra := "  statement: full\n  retention_overrides: {acct-old: 1}\n"
	if f, err := os.OpenFile(cfgPath, os.O_APPEND|os.O_WRONLY, 0); err != nil {
		t.Fatal(err)
	} else if _, err := f.WriteString(extra); err != nil || f.Close() != nil {
		t.Fatal(err)
	}
	if out, code := runAuditCmd(t, "audit", "init", "--config", cfgPath); code != exitOK {
		t.Fatalf("audit init: exit %d: %s", code, out)
	}
	cfg, err := config.Load(cfgPath)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	rec, err := audit.NewRecorder(ctx, cfg.Audit, cfg.Regions, "cli-test", nil)
	if err != nil {
		t.Fatal(err)
	}
	old := time.Now().Add(-72 * time.Hour)
	for i := range 6 {
		for _, acct := range []string{"acct-old", "acct-2"} {
			ev := tenancy.Event{Kind: tenancy.KindStatement, Time: old, AccountID: acct, Region: "eu-west",
				Statement: "SELECT $1", FullStatement: fmt.Sprintf("SELECT 'personal-%d'", i), Verdict: tenancy.VerdictAllow}
			if err := rec.Record(ctx, ev); err != nil {
				t.Fatal(err)
			}
		}
	}
	if err := rec.Close(ctx); err != nil {
		t.Fatal(err)
	}
	if out, code := runAuditCmd(t, "audit", "seal", "--config", cfgPath, "--key", priv); code != exitOK || !strings.Contains(out, "1 tree checkpoint") {
		t.Fatalf("audit seal: exit %d: %s", code, out)
	}
	notes, err := filepath.Glob(filepath.Join(dir, "checkpoints", "eu-west", "tree-*.note"))
	if err != nil || len(notes) != 1 {
		t.Fatalf("tree checkpoint notes: %v %v", notes, err)
	}
	kept := filepath.Join(dir, "kept.note")
	b, err := os.ReadFile(notes[0])
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(kept, b, 0o600); err != nil {
		t.Fatal(err)
	}
	if out, code := runAuditCmd(t, "audit", "purge", "--config", cfgPath, "--key", priv); code != exitOK || !strings.Contains(out, "purged 6 row(s) in 1 chain(s)") {
		t.Fatalf("audit purge: exit %d: %s", code, out)
	}
	if out, code := runAuditCmd(t, "audit", "erase", "--config", cfgPath, "--account", "acct-2", "--before", time.Now().UTC().Format(time.RFC3339)); code != exitOK || !strings.Contains(out, "erased the statement text of 6 event(s)") {
		t.Fatalf("audit erase: exit %d: %s", code, out)
	}
	out, code := runAuditCmd(t, "audit", "verify", "--config", cfgPath, "--since-checkpoint", kept)
	if code != exitOK || !strings.Contains(out, "ok:") || !strings.Contains(out, "12 tree leaves") {
		t.Fatalf("audit verify --since-checkpoint after purge and erase: exit %d: %s", code, out)
	}
	conn, err := pgx.Connect(ctx, c.SuperuserDSN(c.Database))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(context.Background())
	var left int
	if err := conn.QueryRow(ctx, `SELECT count(*) FROM pgtenant_audit.events WHERE statement LIKE '%personal-%'`).Scan(&left); err != nil || left != 0 {
		t.Fatalf("personal statement text left after purge and erase: %d (%v)", left, err)
	}
	for _, args := range [][]string{
		{"audit", "purge", "--config", cfgPath},
		{"audit", "erase", "--config", cfgPath, "--account", "acct-2"},
		{"audit", "erase", "--config", cfgPath, "--account", "acct-2", "--before", "yesterday"},
		{"audit", "verify", "--config", cfgPath, "--since-checkpoint", filepath.Join(dir, "missing.note")},
	} {
		if out, code := runAuditCmd(t, args...); code != exitUsage {
			t.Errorf("%v: exit %d, want %d: %s", args, code, exitUsage, out)
		}
	}
}
