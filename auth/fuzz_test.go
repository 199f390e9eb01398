package auth_test

import (
	"encoding/json"
	"errors"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/pgtenant/pgtenant/auth"
)

// FuzzAuthenticate checks that no input panics, that every rejection is an
// *auth.Error whose message depends only on its reason and a configured or
// registered claim name (so it cannot echo the token), and that every
// accepted token yields a non-empty account and region.
func FuzzAuthenticate(f *testing.F) {
	k := mustKeys(f)
	cfg := baseAuth("HS256", "RS256", "ES256", "EdDSA")
	cfg.PublicKeys = []string{writeFile(f, "rsa.pem", k.rsaPEM), writeFile(f, "ec.pem", pemPublic(f, &k.ec.PublicKey))}
	cfg.JWKSFile = jwksFile(f, jwkOf(f, "ed-1", k.ed))
	v := newVerifier(f, cfg)
	// Long-lived seeds, so that they stay valid while the fuzzer runs.
	valid := func(changes map[string]any) map[string]any {
		c := with(changes)
		c["exp"] = time.Now().Add(24 * time.Hour).Unix()
		return c
	}
	seeds := []string{
		"", "a", "a.b.c", "..", "eyJhbGciOiJub25lIn0.e30.",
		hs(f, valid(nil)),
		hs(f, valid(map[string]any{"account_id": "042"})),
		hs(f, valid(map[string]any{"account_id": json.Number("4.2e1")})),
		hs(f, valid(map[string]any{"account_id": json.Number("123456789012345678901234567890")})),
		hs(f, valid(map[string]any{"data_region": nil})),
		hs(f, valid(map[string]any{"exp": 1})),
		sign(f, jwt.SigningMethodRS256, k.rsa, "", valid(nil)),
		sign(f, jwt.SigningMethodES256, k.ec, "", valid(nil)),
		sign(f, jwt.SigningMethodEdDSA, k.ed, "ed-1", valid(nil)),
		sign(f, jwt.SigningMethodEdDSA, k.ed, "../../etc/passwd", valid(nil)),
		sign(f, jwt.SigningMethodHS256, k.rsaPEM, "", valid(nil)),
		signRaw(f, map[string]any{"alg": "HS256"}, []byte(`{"account_id":1,"account_id":2,"data_region":"x","exp":4102444800}`), jwt.SigningMethodHS256, testSecret),
		signRaw(f, map[string]any{"alg": "none"}, mustJSON(f, valid(nil)), nil, nil),
		hs(f, valid(map[string]any{"role": []any{"viewer", "auditor"}})),
		hs(f, valid(map[string]any{"act": map[string]any{"sub": "agent@support"}, "purpose": "SUP-1", "iat": time.Now().Unix()})),
		hs(f, valid(map[string]any{"act": map[string]any{"sub": "agent@support", "act": map[string]any{"sub": "x"}}})),
	}
	for _, s := range seeds {
		f.Add(s)
	}
	names := map[string]bool{"": true, "account_id": true, "data_region": true, "sub": true, "exp": true, "nbf": true, "iat": true, "iss": true, "aud": true,
		"role": true, "act": true, "purpose": true, "ticket": true}
	f.Fuzz(func(t *testing.T, token string) {
		p, err := v.Authenticate(token)
		if err == nil {
			if p.Account == "" || p.Region == "" {
				t.Fatalf("accepted with empty account or region: %+v", p)
			}
			return
		}
		var ae *auth.Error
		if !errors.As(err, &ae) {
			t.Fatalf("error %T is not *auth.Error", err)
		}
		if !reflect.DeepEqual(p, auth.Principal{}) {
			t.Fatalf("rejection returned principal %+v", p)
		}
		if !names[ae.Claim] {
			t.Fatalf("error names claim %q, not a configured or registered one", ae.Claim)
		}
		if msg := err.Error(); msg != (&auth.Error{Reason: ae.Reason, Claim: ae.Claim, Limit: ae.Limit}).Error() || !strings.HasPrefix(msg, "pgtenant: ") {
			t.Fatalf("message %q depends on more than reason and claim", msg)
		}
	})
}
