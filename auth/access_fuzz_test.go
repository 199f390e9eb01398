package auth_test

import (
	"testing"

	"github.com/golang-jwt/jwt/v5"

	"github.com/pgtenant/pgtenant/auth"
)

// FuzzAccessClaims signs arbitrary payloads (so that the claim checks, not
// the signature, are exercised) and checks the access invariants: a
// support principal always has a purpose and a ticket and is read-only
// (the default), a principal is read-only exactly when it is a support
// session or all its roles are read-only, and every rejection is an
// *auth.Error.
func FuzzAccessClaims(f *testing.F) {
	v := newVerifier(f, baseAuth("HS256"))
	for _, seed := range []string{
		`{"account_id":42,"data_region":"eu-west","exp":4102444800,"role":"viewer"}`,
		`{"account_id":42,"data_region":"eu-west","exp":4102444800,"role":["viewer","owner"]}`,
		`{"account_id":42,"data_region":"eu-west","exp":4102444800,"iat":4102441200,"act":{"sub":"a"},"purpose":"p"}`,
		`{"account_id":42,"data_region":"eu-west","exp":4102444800,"iat":4102441200,"act":{"sub":"a","sub":"b"},"purpose":"p"}`,
		`{"account_id":42,"data_region":"eu-west","exp":4102444800,"iat":4102441200,"act":"a","purpose":"p","ticket":"T-1"}`,
		`{"account_id":42,"data_region":"eu-west","exp":4102444800,"act":{"sub":"a"},"purpose":"p"}`,
		`{"account_id":42,"data_region":"eu-west","exp":4102444800,"iat":1,"act":{"sub":"a"},"purpose":"p"}`,
		`{"account_id":42,"data_region":"eu-west","exp":4102444800,"act":null,"role":null}`,
	} {
		f.Add([]byte(seed))
	}
	readOnly := map[string]bool{"viewer": true, "auditor": true}
	f.Fuzz(func(t *testing.T, payload []byte) {
		tok := signRaw(t, map[string]any{"alg": "HS256"}, payload, jwt.SigningMethodHS256, testSecret)
		p, err := v.Authenticate(tok)
		if err != nil {
			if !auth.IsAuthError(err) {
				t.Fatalf("rejection %T is not an auth error", err)
			}
			return
		}
		if p.Support() && (p.Purpose == "" || p.Ticket == "" || !p.ReadOnly) {
			t.Fatalf("support principal without purpose, ticket or read-only: %+v", p)
		}
		if !p.Support() && (p.Purpose != "" || p.Ticket != "") {
			t.Fatalf("purpose recorded without an actor: %+v", p)
		}
		all := len(p.Roles) > 0
		for _, r := range p.Roles {
			all = all && readOnly[r]
		}
		if p.ReadOnly != (all || p.Support()) {
			t.Fatalf("ReadOnly %v for roles %q, actor %q", p.ReadOnly, p.Roles, p.Actor)
		}
	})
}
