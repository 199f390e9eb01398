package main

import (
	"bytes"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/pgtenant/pgtenant/auth"
	"github.com/pgtenant/pgtenant/config"
)

const tokenTestSecret = "token-test-secret-0123456789abcdef"

// runTokenCmd runs `pgtenant token args...` and returns stdout and the exit code.
func runTokenCmd(t *testing.T, args ...string) (string, int, error) {
	t.Helper()
	root := newRootCmd()
	root.SetArgs(append([]string{"token"}, args...))
	var out bytes.Buffer
	root.SetOut(&out)
	root.SetErr(io.Discard)
	err := root.Execute()
	code := exitOK
	if err != nil {
		code = exitUsage
		var ee *exitError
		if errors.As(err, &ee) {
			code = ee.code
		}
	}
	return out.String(), code, err
}

func TestTokenCommandMints(t *testing.T) {
	t.Setenv("PGT_TOKEN_TEST_SECRET", tokenTestSecret)
	before := time.Now().Truncate(time.Second)
	out, code, err := runTokenCmd(t, "--secret-env", "PGT_TOKEN_TEST_SECRET", "--account", "42", "--region", "eu-west", "--sub", "ci", "--ttl", "10m")
	if err != nil || code != exitOK {
		t.Fatalf("exit %d: %v", code, err)
	}
	if !strings.HasSuffix(out, "\n") || strings.Count(out, "\n") != 1 {
		t.Fatalf("output %q is not one line", out)
	}
	v, err := auth.NewVerifier(config.Auth{Algorithms: []string{"HS256"}, Secret: []byte(tokenTestSecret)})
	if err != nil {
		t.Fatal(err)
	}
	p, err := v.Authenticate(strings.TrimSpace(out))
	if err != nil {
		t.Fatalf("minted token rejected: %v", err)
	}
	if p.Account != "42" || p.Region != "eu-west" || p.Subject != "ci" {
		t.Errorf("principal %+v", p)
	}
	if lo, hi := before.Add(10*time.Minute), time.Now().Add(10*time.Minute); p.ExpiresAt.Before(lo) || p.ExpiresAt.After(hi) {
		t.Errorf("ExpiresAt %v not within [%v, %v]", p.ExpiresAt, lo, hi)
	}
}

func TestTokenCommandWithConfig(t *testing.T) {
	t.Setenv("PGT_TOKEN_TEST_CFG_SECRET", tokenTestSecret)
	dir := t.TempDir()
	cfgFile := filepath.Join(dir, "pgtenant.yaml")
	yaml := `auth:
  hs256_secret_env: PGT_TOKEN_TEST_CFG_SECRET
  issuer: https://idp.example
  audience: pgtenant
  tenant_claim: tid
  region_claim: rgn
regions:
  eu-west: { host: 127.0.0.1, port: 5433, user: app }
audit:
  spool_dir: ` + dir + `
`
	if err := os.WriteFile(cfgFile, []byte(yaml), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, err := config.Load(cfgFile)
	if err != nil {
		t.Fatal(err)
	}
	v, err := auth.NewVerifier(cfg.Auth)
	if err != nil {
		t.Fatal(err)
	}
	// The secret, claim names, issuer and audience all come from the config.
	out, code, err := runTokenCmd(t, "--config", cfgFile, "--account", "acme", "--region", "eu-west")
	if err != nil || code != exitOK {
		t.Fatalf("exit %d: %v", code, err)
	}
	p, err := v.Authenticate(strings.TrimSpace(out))
	if err != nil || p.Account != "acme" || p.Region != "eu-west" {
		t.Fatalf("%+v, %v", p, err)
	}
	// A flag overrides the configured audience, which the verifier then refuses.
	out, code, err = runTokenCmd(t, "--config", cfgFile, "--account", "acme", "--region", "eu-west", "--audience", "other")
	if err != nil || code != exitOK {
		t.Fatalf("exit %d: %v", code, err)
	}
	_, err = v.Authenticate(strings.TrimSpace(out))
	var ae *auth.Error
	if !errors.As(err, &ae) || ae.Reason != auth.ReasonWrongAudience {
		t.Errorf("audience override: got %v, want wrong_audience", err)
	}
}

func TestTokenCommandUsageErrors(t *testing.T) {
	t.Setenv("PGT_TOKEN_TEST_SECRET", tokenTestSecret)
	t.Setenv("PGT_TOKEN_TEST_SHORT", "short")
	os.Unsetenv("PGT_TOKEN_TEST_UNSET")
	base := []string{"--secret-env", "PGT_TOKEN_TEST_SECRET", "--account", "42", "--region", "eu-west"}
	tests := []struct {
		name string
		args []string
		want string
	}{
		{"env var not set", []string{"--secret-env", "PGT_TOKEN_TEST_UNSET", "--account", "42", "--region", "eu-west"}, "PGT_TOKEN_TEST_UNSET"},
		{"no secret at all", []string{"--account", "42", "--region", "eu-west"}, "--secret-env is required"},
		{"no account", []string{"--secret-env", "PGT_TOKEN_TEST_SECRET", "--region", "eu-west"}, "--account is required"},
		{"no region", []string{"--secret-env", "PGT_TOKEN_TEST_SECRET", "--account", "42"}, "--region is required"},
		{"short secret", []string{"--secret-env", "PGT_TOKEN_TEST_SHORT", "--account", "42", "--region", "eu-west"}, "at least 32"},
		{"zero ttl", append(base, "--ttl", "0s"), "--ttl"},
		{"bad ttl", append(base, "--ttl", "soon"), "ttl"},
		{"unknown flag", append(base, "--tenant", "1"), "unknown flag"},
		{"stray argument", append(base, "extra"), "extra"},
		{"missing config file", append(base, "--config", filepath.Join(t.TempDir(), "none.yaml")), "none.yaml"},
		{"control character in account", []string{"--secret-env", "PGT_TOKEN_TEST_SECRET", "--account", "4\n2", "--region", "eu-west"}, "control character"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			out, code, err := runTokenCmd(t, tt.args...)
			if code != exitUsage {
				t.Fatalf("exit %d (%v), want %d", code, err, exitUsage)
			}
			if out != "" {
				t.Errorf("printed %q on failure", out)
			}
			if err == nil || !strings.Contains(err.Error(), tt.want) || strings.Contains(err.Error(), "\n") {
				t.Errorf("error %q: want one line mentioning %q", err, tt.want)
			}
			if strings.Contains(err.Error(), tokenTestSecret) {
				t.Errorf("error %q leaks the secret", err)
			}
		})
	}
}

// TestTokenCommandExitCode runs the real entry point for the process exit code.
func TestTokenCommandExitCode(t *testing.T) {
	os.Unsetenv("PGT_TOKEN_TEST_UNSET")
	if code := run([]string{"token", "--secret-env", "PGT_TOKEN_TEST_UNSET", "--account", "1", "--region", "r"}); code != exitUsage {
		t.Errorf("run exit %d, want %d", code, exitUsage)
	}
}
