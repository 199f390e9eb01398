package setup

import (
	"regexp"
	"strings"
	"testing"
)

// Identifiers are quoted exactly when quote_ident would quote them.
func TestIdentQuotesOnlyWhenNeeded(t *testing.T) {
	kw := keywords{"user": true, "order": true}
	for in, want := range map[string]string{
		"orders": "orders", "user": `"user"`, "Orders": `"Orders"`, "a-b": `"a-b"`,
		"order": `"order"`, "_x1": "_x1", "1x": `"1x"`, `we"ird`: `"we""ird"`,
	} {
		if got := kw.ident(in); got != want {
			t.Errorf("ident(%q) = %s, want %s", in, got, want)
		}
	}
	if got := literal("it's"); got != "'it''s'" {
		t.Errorf("literal = %s", got)
	}
}

// The verifier has PostgreSQL's format and a fresh salt each time; a real
// server accepting it is tested by cmd/pgtenant's setup tests.
func TestSCRAMVerifierFormat(t *testing.T) {
	re := regexp.MustCompile(`^SCRAM-SHA-256\$4096:[A-Za-z0-9+/=]{24}\$[A-Za-z0-9+/=]{44}:[A-Za-z0-9+/=]{44}$`)
	a, err := scramVerifier("pw")
	if err != nil {
		t.Fatal(err)
	}
	b, _ := scramVerifier("pw")
	if !re.MatchString(a) || a == b || strings.Contains(a, "pw$") {
		t.Fatalf("verifiers %q %q", a, b)
	}
}
