package config

import (
	"strings"
	"testing"
)

// LoadAdmin needs the admin password but neither the JWT secret nor the
// service password; Load needs all three.
func TestLoadAdminNeedsOnlyTheAdminSecret(t *testing.T) {
	body := `auth:
  hs256_secret_env: UNSET_JWT_SECRET
regions:
  eu-west: { host: h, user: app, password_env: UNSET_SERVICE_PW, admin_user: postgres, admin_password_env: TEST_ADMIN_PW }
`
	path := writeConfig(t, body)
	if _, err := LoadAdmin(path); err == nil || !strings.Contains(err.Error(), "TEST_ADMIN_PW") {
		t.Fatalf("without the admin password: %v", err)
	}
	t.Setenv("TEST_ADMIN_PW", "admin-pw")
	cfg, err := LoadAdmin(path)
	if err != nil {
		t.Fatal(err)
	}
	if r := cfg.Regions["eu-west"]; r.AdminPassword != "admin-pw" || r.Password != "" {
		t.Fatalf("region: %+v", r)
	}
	if _, err := Load(path); err == nil {
		t.Fatal("Load accepted a config whose JWT secret and service password are unset")
	}
	// everything but auth is still validated
	if _, err := LoadAdmin(writeConfig(t, strings.Replace(body, "host: h, ", "", 1))); err == nil || !strings.Contains(err.Error(), "regions.eu-west.host") {
		t.Fatalf("no host: %v", err)
	}
}
