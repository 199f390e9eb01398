package config

import (
	"strings"
	"testing"
	"time"
)

// The second-round auth and access keys: defaults, environment overrides
// and every validation error.
func TestAccessAndRemoteKeyConfig(t *testing.T) {
	t.Setenv("TEST_JWT_SECRET", strings.Repeat("k", 40))
	t.Setenv("TEST_EU_PW", "pw")
	cfg, err := Load(writeConfig(t, minimal))
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Auth.RoleClaim != "role" || cfg.Auth.ActorClaim != "act" || cfg.Auth.JWKSRefresh != 15*time.Minute ||
		cfg.Auth.JWKSRefetchInterval != 30*time.Second || cfg.Auth.RemoteKeys() {
		t.Errorf("auth defaults: %+v", cfg.Auth)
	}
	a := cfg.Access
	if strings.Join(a.ReadOnlyRoles, ",") != "viewer,auditor" || a.Support.PurposeClaim != "purpose" ||
		a.Support.TicketClaim != "ticket" || a.Support.MaxTTL != 24*time.Hour || !a.Support.ReadOnly {
		t.Errorf("access defaults: %+v", a)
	}

	for _, tc := range []struct{ yaml, want string }{
		{"auth:\n  jwks_url: http://idp.example.com/jwks\n", "auth.jwks_url"},
		{"auth:\n  jwks_url: ftp://idp.example.com/jwks\n", "auth.jwks_url"},
		{"auth:\n  algorithms: [RS256]\n  issuer: http://idp.example.com\n", "auth.issuer"},
		{"auth:\n  oidc_discovery: true\n", "auth.oidc_discovery"},
		{"auth:\n  oidc_discovery: true\n  issuer: https://idp.example.com\n  jwks_url: https://idp.example.com/k\n", "not both"},
		{"auth:\n  jwks_url: https://idp.example.com/jwks\n  jwks_refresh: 1s\n", "auth.jwks_refresh"},
		{"auth:\n  jwks_url: https://idp.example.com/jwks\n  jwks_refetch_interval: 1ms\n", "auth.jwks_refetch_interval"},
		{"auth:\n  role_claim: \"\"\n", "auth.role_claim"},
		{"access:\n  support: { max_ttl: 0s }\n", "access.support.max_ttl"},
		{"access:\n  support: { purpose_claim: \"\" }\n", "access.support.purpose_claim"},
		{"access:\n  read_only_roles: [\"\"]\n", "access.read_only_roles"},
		{"access:\n  bogus: 1\n", "unknown key"},
	} {
		body := strings.Replace(minimal, "auth:\n  hs256_secret_env: TEST_JWT_SECRET\n", "", 1)
		if strings.HasPrefix(tc.yaml, "auth:") {
			body += strings.Replace(tc.yaml, "auth:\n", "auth:\n  hs256_secret_env: TEST_JWT_SECRET\n", 1)
		} else {
			body += "auth:\n  hs256_secret_env: TEST_JWT_SECRET\n" + tc.yaml
		}
		_, err := Load(writeConfig(t, body))
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%q: err = %v; want it to name %s", tc.yaml, err, tc.want)
		}
	}

	// keys by discovery alone, on loopback over http
	cfg, err = Load(writeConfig(t, minimal+"access: {}\n"))
	if err != nil {
		t.Fatal(err)
	}
	cfg.Auth.Algorithms, cfg.Auth.Issuer = []string{"RS256"}, "http://localhost:5556/dex"
	if err := cfg.Validate(); err != nil || !cfg.Auth.DiscoveryEnabled() {
		t.Errorf("discovery-only config: %v (discovery %v)", err, cfg.Auth.DiscoveryEnabled())
	}

	t.Setenv("PGTENANT_ACCESS_SUPPORT_MAX_TTL", "2h")
	t.Setenv("PGTENANT_ACCESS_READ_ONLY_ROLES", "reader,guest")
	cfg, err = Load(writeConfig(t, minimal+`
access:
  support: { read_only: false }
`))
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Access.Support.MaxTTL != 2*time.Hour || cfg.Access.Support.ReadOnly || strings.Join(cfg.Access.ReadOnlyRoles, ",") != "reader,guest" {
		t.Errorf("overrides: %+v", cfg.Access)
	}
}
