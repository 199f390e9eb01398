package config

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestLoadPolicyWithoutSecrets(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "c.yaml")
	yaml := `auth:
  hs256_secret_env: PGTENANT_TEST_UNSET_SECRET_VAR
regions:
  eu-west: { host: 127.0.0.1, user: app, password_env: PGTENANT_TEST_UNSET_PW_VAR }
policy:
  global_tables: [public.countries]
`
	if err := os.WriteFile(path, []byte(yaml), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := Load(path); err == nil {
		t.Fatal("Load accepted a config with unresolvable secrets")
	}
	cfg, err := LoadPolicy(path)
	if err != nil {
		t.Fatal(err)
	}
	if len(cfg.Policy.GlobalTables) != 1 || cfg.Regions["eu-west"].Password != "" || cfg.Policy.TenantColumn != "account_id" {
		t.Errorf("%+v", cfg.Policy)
	}
	bad := filepath.Join(dir, "bad.yaml")
	if err := os.WriteFile(bad, []byte("policy:\n  unknown_tables: maybe\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := LoadPolicy(bad); err == nil || !strings.Contains(err.Error(), "policy.unknown_tables") {
		t.Errorf("bad policy: %v", err)
	}
	typo := filepath.Join(dir, "typo.yaml")
	if err := os.WriteFile(typo, []byte("policy:\n  tenant_colum: x\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := LoadPolicy(typo); err == nil {
		t.Error("unknown key accepted")
	}
}
