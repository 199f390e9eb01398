package config

import (
	"strings"
	"testing"
	"time"
)

func TestAuditAdminCredentialsAndLimits(t *testing.T) {
	t.Setenv("TEST_JWT_SECRET", strings.Repeat("k", 40))
	t.Setenv("TEST_EU_PW", "pw")
	t.Setenv("TEST_EU_ADMIN_PW", "admin-pw")
	body := strings.Replace(minimal, "password_env: TEST_EU_PW }",
		"password_env: TEST_EU_PW, admin_user: auditor, admin_password_env: TEST_EU_ADMIN_PW, audit_database: auditdb }", 1)
	cfg, err := Load(writeConfig(t, body))
	if err != nil {
		t.Fatal(err)
	}
	r := cfg.Regions["eu-west"]
	if r.AdminUser != "auditor" || r.AdminPassword != "admin-pw" || r.AuditDB() != "auditdb" {
		t.Errorf("region = %+v", r)
	}
	if cfg.Audit.OutageTimeout != 10*time.Second {
		t.Errorf("audit.outage_timeout default = %v", cfg.Audit.OutageTimeout)
	}
	if got := (Region{Database: "app"}).AuditDB(); got != "app" {
		t.Errorf("AuditDB falls back to %q, want the region database", got)
	}
	if got := (Region{}).AuditDB(); got != "postgres" {
		t.Errorf("AuditDB without any database = %q, want postgres", got)
	}
	for key, extra := range map[string]string{
		"audit.outage_timeout":           "audit:\n  outage_timeout: -1s\n",
		"audit.spool_max_bytes":          "audit:\n  spool_max_bytes: 0\n",
		"regions.eu-west.admin_password": strings.Replace(body, "admin_password_env: TEST_EU_ADMIN_PW", "admin_password_env: NOT_SET_ANYWHERE", 1),
	} {
		b := minimal + extra
		if strings.HasPrefix(extra, "\n") || strings.Contains(extra, "regions:") {
			b = extra
		}
		if _, err := Load(writeConfig(t, b)); err == nil || !strings.Contains(err.Error(), key) {
			t.Errorf("%s: got %v, want an error naming it", key, err)
		}
	}
}
