package auth

import (
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/pgtenant/pgtenant/audit"
	"github.com/pgtenant/pgtenant/config"
)

func TestReservedAccountIsTheAuditsNoTenantChain(t *testing.T) {
	if ReservedAccount != audit.NoTenantChain {
		t.Fatalf("auth reserves %q but the audit's no-tenant chain is %q", ReservedAccount, audit.NoTenantChain)
	}
}

func TestReservedAccountIsRefused(t *testing.T) {
	secret := []byte("reserved-account-test-secret-0123456789")
	v, err := NewVerifier(config.Auth{Secret: secret, Algorithms: []string{"HS256"}, Leeway: time.Second,
		TenantClaim: "account_id", RegionClaim: "data_region", SubjectClaim: "sub"})
	if err != nil {
		t.Fatal(err)
	}
	tok, err := jwt.NewWithClaims(jwt.SigningMethodHS256, jwt.MapClaims{
		"account_id": ReservedAccount, "data_region": "eu-west", "exp": time.Now().Add(time.Hour).Unix(),
	}).SignedString(secret)
	if err != nil {
		t.Fatal(err)
	}
	_, err = v.Authenticate(tok)
	ae, ok := err.(*Error)
	if !ok || ae.Reason != ReasonBadClaim {
		t.Fatalf("account %q: got %v, want a bad_claim rejection", ReservedAccount, err)
	}
}

func TestNonCanonicalNumericAccountsAreRefused(t *testing.T) {
	for _, s := range []string{"042", "0042", "+42", " 42", "42 ", "42.0", "4.2e1", "-0", "00", ".5", "7.", "+7"} {
		if !nonCanonicalNumber(s) {
			t.Errorf("%q: accepted; PostgreSQL may read it as a tenant spelled otherwise", s)
		}
	}
	for _, s := range []string{"42", "0", "7", "acme", "a42", "42a", "6f1c1a2e-6a1b-4c4b-9e2a-2d0c8f7b9a10", "-"} {
		if nonCanonicalNumber(s) {
			t.Errorf("%q: refused, but it is canonical or not a number", s)
		}
	}
}
