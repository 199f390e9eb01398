package config

import (
	"strings"
	"testing"
	"time"
)

func TestTenantBudgetsLoad(t *testing.T) {
	t.Setenv("TEST_JWT_SECRET", strings.Repeat("k", 40))
	t.Setenv("TEST_EU_PW", "pw")
	t.Setenv("PGTENANT_LIMITS_TENANT_CONCURRENT_STATEMENTS", "4")
	cfg, err := Load(writeConfig(t, minimal+`
limits:
  shared_store: redis://127.0.0.1:6379/0
  tenant:
    statements_per_second: 100
    burst: 200
    statement_timeout: 30s
    overrides:
      "42": { statements_per_second: 1000, concurrent_statements: 16 }
`))
	if err != nil {
		t.Fatal(err)
	}
	tb := cfg.Limits.Tenant
	if tb.StatementsPerSecond != 100 || tb.Burst != 200 || tb.StatementTimeout != 30*time.Second || tb.ConcurrentStatements != 4 {
		t.Errorf("default budget = %+v", tb.BudgetLimits)
	}
	if o := tb.Overrides["42"]; o.StatementsPerSecond != 1000 || o.ConcurrentStatements != 16 {
		t.Errorf("override for 42 = %+v", o)
	}
	if cfg.Limits.SharedStore != "redis://127.0.0.1:6379/0" {
		t.Errorf("shared_store = %q", cfg.Limits.SharedStore)
	}
}

func TestTenantBudgetErrorsNameTheKey(t *testing.T) {
	t.Setenv("TEST_JWT_SECRET", strings.Repeat("k", 40))
	t.Setenv("TEST_EU_PW", "pw")
	cases := map[string]string{
		"limits:\n  tenant:\n    statements_per_second: -1\n":                              "limits.tenant.statements_per_second",
		"limits:\n  tenant:\n    burst: 5\n":                                               "limits.tenant.burst",
		"limits:\n  tenant:\n    overrides:\n      \"7\": { concurrent_statements: -2 }\n": "limits.tenant.overrides.7.concurrent_statements",
		"limits:\n  shared_store: http://cache:6379\n":                                     "limits.shared_store",
		"limits:\n  tenant:\n    rate: 5\n":                                                "rate",
	}
	for body, key := range cases {
		_, err := Load(writeConfig(t, minimal+body))
		if err == nil || !strings.Contains(err.Error(), key) {
			t.Errorf("%q: error %v, want one naming %s", body, err, key)
		}
	}
}
