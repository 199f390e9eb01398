package config

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func writeConfig(t *testing.T, body string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "pgtenant.yaml")
	if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

const minimal = `
auth:
  hs256_secret_env: TEST_JWT_SECRET
regions:
  eu-west: { host: 127.0.0.1, port: 5433, user: app, password_env: TEST_EU_PW }
`

func TestExampleConfigLoads(t *testing.T) {
	t.Setenv("PGTENANT_JWT_SECRET", strings.Repeat("s", 32))
	t.Setenv("EU_PW", "eu")
	t.Setenv("US_PW", "us")
	t.Setenv("EU_ADMIN_PW", "eu-admin")
	t.Setenv("US_ADMIN_PW", "us-admin")
	cfg, err := Load(filepath.Join("..", "examples", "pgtenant.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	if got := cfg.RegionNames(); len(got) != 2 || got[0] != "eu-west" || cfg.Regions["us-east"].Password != "us" {
		t.Errorf("regions = %v (%+v)", got, cfg.Regions)
	}
}

func TestDefaultsSecretsAndEnvOverrides(t *testing.T) {
	t.Setenv("TEST_JWT_SECRET", strings.Repeat("k", 40))
	t.Setenv("TEST_EU_PW", "pw")
	t.Setenv("PGTENANT_LISTEN", "0.0.0.0:7000")
	t.Setenv("PGTENANT_AUDIT_MODE", "strict")
	t.Setenv("PGTENANT_AUTH_LEEWAY", "5s")
	t.Setenv("PGTENANT_POLICY_GLOBAL_TABLES", "public.countries,public.currencies")
	cfg, err := Load(writeConfig(t, minimal))
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Listen != "0.0.0.0:7000" || cfg.Audit.Mode != "strict" || cfg.Auth.Leeway != 5*time.Second {
		t.Errorf("env overrides not applied: listen=%s mode=%s leeway=%s", cfg.Listen, cfg.Audit.Mode, cfg.Auth.Leeway)
	}
	if len(cfg.Policy.GlobalTables) != 2 || cfg.Policy.GlobalTables[1] != "public.currencies" {
		t.Errorf("list override = %v", cfg.Policy.GlobalTables)
	}
	if string(cfg.Auth.Secret) != strings.Repeat("k", 40) || cfg.Regions["eu-west"].Password != "pw" {
		t.Error("secrets not resolved from the environment")
	}
	if cfg.Policy.TenantColumn != "account_id" || cfg.Regions["eu-west"].SSLMode != "disable" || cfg.Policy.MaxStatementBytes != 1<<20 {
		t.Errorf("defaults missing: %+v", cfg.Policy)
	}
}

func TestSecretFromFile(t *testing.T) {
	t.Setenv("TEST_EU_PW", "pw")
	secret := filepath.Join(t.TempDir(), "jwt")
	if err := os.WriteFile(secret, []byte(strings.Repeat("f", 33)+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, err := Load(writeConfig(t, strings.Replace(minimal, "hs256_secret_env: TEST_JWT_SECRET", "hs256_secret_file: "+secret, 1)))
	if err != nil {
		t.Fatal(err)
	}
	if string(cfg.Auth.Secret) != strings.Repeat("f", 33) {
		t.Errorf("secret = %q (trailing newline must be trimmed)", cfg.Auth.Secret)
	}
}

func TestErrorsNameTheKey(t *testing.T) {
	t.Setenv("TEST_JWT_SECRET", strings.Repeat("k", 40))
	t.Setenv("TEST_EU_PW", "pw")
	cases := map[string]struct{ body, key string }{
		"unknown key":         {minimal + "bogus_key: 1\n", "bogus_key"},
		"region without host": {strings.Replace(minimal, "host: 127.0.0.1, ", "", 1), "regions.eu-west.host"},
		"missing secret env":  {strings.Replace(minimal, "TEST_JWT_SECRET", "NOT_SET_ANYWHERE", 1), "NOT_SET_ANYWHERE"},
		"alg none":            {minimal + "  algorithms: [none]\n", ""},
		"bad audit mode":      {minimal + "audit:\n  mode: sometimes\n", "audit.mode"},
		"no regions":          {"auth:\n  hs256_secret_env: TEST_JWT_SECRET\n", "regions"},
		"short secret":        {minimal, "auth.hs256_secret"},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			if name == "short secret" {
				t.Setenv("TEST_JWT_SECRET", "short")
			}
			body := tc.body
			if name == "alg none" {
				body = strings.Replace(minimal, "auth:\n", "auth:\n  algorithms: [none]\n", 1)
				tc.key = "none"
			}
			_, err := Load(writeConfig(t, body))
			if err == nil {
				t.Fatal("loaded; want an error")
			}
			if !strings.Contains(err.Error(), tc.key) || strings.Contains(err.Error(), "\n") {
				t.Errorf("error %q should be one line naming %q", err, tc.key)
			}
		})
	}
}
