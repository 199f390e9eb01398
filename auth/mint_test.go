package auth_test

import (
	"encoding/base64"
	"strings"
	"testing"
	"time"

	"github.com/pgtenant/pgtenant/auth"
)

// payloadOf returns a token's decoded payload text.
func payloadOf(t *testing.T, token string) string {
	t.Helper()
	parts := strings.Split(token, ".")
	if len(parts) != 3 {
		t.Fatalf("token has %d segments", len(parts))
	}
	b, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func TestMintAccountEncoding(t *testing.T) {
	v := newVerifier(t, baseAuth("HS256"))
	tests := []struct {
		account string
		json    string // how the account appears in the payload
	}{
		{"42", `"account_id":42`},
		{"0", `"account_id":0`},
		{"123456789012345678901234567890", `"account_id":123456789012345678901234567890`},
		{"acme", `"account_id":"acme"`},
		{"acme-042", `"account_id":"acme-042"`},
	}
	for _, bad := range []string{"042", "-1", "4.2e1", " 42"} {
		if _, err := auth.Mint(auth.MintOptions{Secret: testSecret, Account: bad, Region: "us-east", TTL: time.Minute}); err == nil {
			t.Errorf("Mint(%q): minted a token the verifier refuses", bad)
		}
	}
	for _, tt := range tests {
		t.Run(tt.account, func(t *testing.T) {
			tok, err := auth.Mint(auth.MintOptions{Secret: testSecret, Account: tt.account, Region: "us-east", TTL: time.Minute})
			if err != nil {
				t.Fatal(err)
			}
			if payload := payloadOf(t, tok); !strings.Contains(payload, tt.json) {
				t.Errorf("payload %s lacks %s", payload, tt.json)
			}
			p, err := v.Authenticate(tok)
			if err != nil {
				t.Fatalf("minted token rejected: %v", err)
			}
			if p.Account != tt.account || p.Region != "us-east" || p.Subject != "" {
				t.Errorf("principal %+v", p)
			}
		})
	}
}

func TestMintClaims(t *testing.T) {
	cfg := baseAuth("HS256")
	cfg.Issuer, cfg.Audience = "dev", "pgtenant"
	cfg.TenantClaim, cfg.RegionClaim = "tid", "rgn"
	v := newVerifier(t, cfg)
	before := time.Now().Truncate(time.Second)
	tok, err := auth.Mint(auth.MintOptions{
		Secret: testSecret, Account: "7", Region: "eu-west", Subject: "ci", TTL: 2 * time.Hour,
		Issuer: "dev", Audience: "pgtenant", TenantClaim: "tid", RegionClaim: "rgn",
	})
	if err != nil {
		t.Fatal(err)
	}
	payload := payloadOf(t, tok)
	for _, want := range []string{`"iat":`, `"nbf":`, `"exp":`, `"iss":"dev"`, `"aud":"pgtenant"`, `"sub":"ci"`, `"tid":7`, `"rgn":"eu-west"`} {
		if !strings.Contains(payload, want) {
			t.Errorf("payload %s lacks %s", payload, want)
		}
	}
	p, err := v.Authenticate(tok)
	if err != nil {
		t.Fatal(err)
	}
	if p.Account != "7" || p.Region != "eu-west" || p.Subject != "ci" {
		t.Errorf("principal %+v", p)
	}
	if lo, hi := before.Add(2*time.Hour), time.Now().Add(2*time.Hour); p.ExpiresAt.Before(lo) || p.ExpiresAt.After(hi) {
		t.Errorf("ExpiresAt %v not within [%v, %v]", p.ExpiresAt, lo, hi)
	}
	// The default-named verifier does not find the custom claims.
	_, err = newVerifier(t, baseAuth("HS256")).Authenticate(tok)
	assertRejected(t, tok, err, auth.ReasonMissingClaim)
}

func TestMintErrors(t *testing.T) {
	ok := auth.MintOptions{Secret: testSecret, Account: "1", Region: "eu-west", TTL: time.Hour}
	tests := []struct {
		name string
		edit func(*auth.MintOptions)
		want string
	}{
		{"short secret", func(o *auth.MintOptions) { o.Secret = []byte("short") }, "at least 32"},
		{"no account", func(o *auth.MintOptions) { o.Account = "" }, "account is required"},
		{"no region", func(o *auth.MintOptions) { o.Region = "" }, "region is required"},
		{"zero ttl", func(o *auth.MintOptions) { o.TTL = 0 }, "must be positive"},
		{"negative ttl", func(o *auth.MintOptions) { o.TTL = -time.Second }, "must be positive"},
		{"account with NUL", func(o *auth.MintOptions) { o.Account = "a\x00" }, "control character"},
		{"account too long", func(o *auth.MintOptions) { o.Account = strings.Repeat("9", 129) }, "too long"},
		{"same claim names", func(o *auth.MintOptions) { o.RegionClaim = "account_id" }, "must differ"},
		{"reserved claim name", func(o *auth.MintOptions) { o.TenantClaim = "exp" }, "reserved"},
		{"tenant claim collides with sub", func(o *auth.MintOptions) { o.TenantClaim = "sub"; o.Subject = "x" }, "used twice"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			o := ok
			tt.edit(&o)
			tok, err := auth.Mint(o)
			if err == nil {
				t.Fatalf("minted %q", tok)
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Errorf("error %q does not mention %q", err, tt.want)
			}
		})
	}
}

// Minted role and support tokens verify into the principal they describe;
// inconsistent support options are refused.
func TestMintAccessClaims(t *testing.T) {
	v := newVerifier(t, baseAuth("HS256"))
	tok, err := auth.Mint(auth.MintOptions{Secret: testSecret, Account: "42", Region: "eu-west", TTL: time.Hour, Role: "viewer"})
	if err != nil {
		t.Fatal(err)
	}
	if p, err := v.Authenticate(tok); err != nil || !p.ReadOnly || p.Role() != "viewer" {
		t.Errorf("viewer token: %+v, %v", p, err)
	}
	tok, err = auth.Mint(auth.MintOptions{Secret: testSecret, Account: "42", Region: "eu-west", TTL: time.Hour,
		Actor: "agent@support", Purpose: "invoice totals", Ticket: "SUP-1"})
	if err != nil {
		t.Fatal(err)
	}
	if p, err := v.Authenticate(tok); err != nil || !p.ReadOnly || p.Actor != "agent@support" || p.Purpose != "invoice totals" || p.Ticket != "SUP-1" {
		t.Errorf("support token: %+v, %v", p, err)
	}
	for _, o := range []auth.MintOptions{
		{Actor: "agent"}, // no purpose
		{Purpose: "why"}, // purpose without actor
		{Role: "viewer", RoleClaim: "sub", Subject: "s"}, // claim used twice
		{Role: "bad\nrole"},
	} {
		o.Secret, o.Account, o.Region, o.TTL = testSecret, "42", "eu-west", time.Hour
		if _, err := auth.Mint(o); err == nil {
			t.Errorf("Mint(%+v) succeeded", o)
		}
	}
}
