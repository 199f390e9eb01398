package auth_test

import (
	"crypto/ed25519"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/golang-jwt/jwt/v5"

	"github.com/pgtenant/pgtenant/auth"
)

// The JWT matrix beyond verifier_test.go and keys_test.go: kid spellings
// that resemble a configured kid, JWKS sets mixing key types with an HMAC
// secret beside them, headers that carry keys or key URLs, oversized and
// deeply nested headers, more duplicate-claim shapes, and account ids that
// differ only in formatting. None may verify with a key the token does not
// name, or yield an account other than the token's own text.

// signRawHeader signs a raw header JSON (which may repeat members) and payload.
func signRawHeader(tb testing.TB, header string, payload []byte, method jwt.SigningMethod, key any) string {
	tb.Helper()
	signing := b64([]byte(header)) + "." + b64(payload)
	sig, err := method.Sign(signing, key)
	if err != nil {
		tb.Fatal(err)
	}
	return signing + "." + b64(sig)
}

// jwksVerifier is RS256/ES256/EdDSA from a JWKS with kids rsa-1, ec-1 and
// ed-1, optionally with HS256 and the test secret beside it.
func jwksVerifier(t *testing.T, withHMAC bool) *auth.Verifier {
	t.Helper()
	k := mustKeys(t)
	algs := []string{"RS256", "ES256", "EdDSA"}
	if withHMAC {
		algs = append(algs, "HS256")
	}
	cfg := baseAuth(algs...)
	if !withHMAC {
		cfg.Secret = nil
	}
	cfg.JWKSFile = jwksFile(t, jwkOf(t, "rsa-1", k.rsa), jwkOf(t, "ec-1", k.ec), jwkOf(t, "ed-1", k.ed))
	return newVerifier(t, cfg)
}

// TestKidLookalikes signs with rsa-1's own key under kid spellings that a
// loose lookup (case folding, trimming, path cleaning, URL decoding,
// Unicode confusables) would map to rsa-1: each must be an unknown kid.
func TestKidLookalikes(t *testing.T) {
	k := mustKeys(t)
	v := jwksVerifier(t, false)
	for _, kid := range []string{
		"RSA-1", "Rsa-1", "rsa-1 ", " rsa-1", "rsa-1\x00", "rsa-1\n", "rsa-1\t",
		"./rsa-1", "rsa-1/", "/rsa-1", "rsa-1/../rsa-1", "../rsa-1", "..%2frsa-1", "%72sa-1", "rsa%2D1",
		"rsa\u20111", "rs\u0430-1", "ｒｓａ-1", "rsa-1\u200b", "rsa-1#", "rsa-1?", "rsa-1,ec-1", "*", "rsa-*",
		"file:///etc/passwd", "http://127.0.0.1/jwks.json#rsa-1", "rsa-10", "rsa-",
	} {
		token := sign(t, jwt.SigningMethodRS256, k.rsa, kid, claimsNow())
		p, err := v.Authenticate(token)
		if err == nil {
			t.Errorf("kid %q verified with rsa-1's key as %+v", kid, p)
			continue
		}
		assertRejected(t, token, err, auth.ReasonUnknownKid)
	}
}

// TestKidJSONEscapes: a kid written with JSON escapes is the same string
// once decoded, so it names the same key and only that key verifies it.
func TestKidJSONEscapes(t *testing.T) {
	k := mustKeys(t)
	v := jwksVerifier(t, false)
	payload := mustJSON(t, claimsNow())
	header := `{"alg":"RS256","kid":"rsa\u002d1"}`
	if p, err := v.Authenticate(signRawHeader(t, header, payload, jwt.SigningMethodRS256, k.rsa)); err != nil || p.Account != "42" {
		t.Errorf("escaped kid of rsa-1 signed by rsa-1: %+v, %v", p, err)
	}
	token := signRawHeader(t, header, payload, jwt.SigningMethodRS256, k.rsa2)
	_, err := v.Authenticate(token)
	assertRejected(t, token, err, auth.ReasonBadSignature)
}

// TestDuplicateHeaderMembers: a header repeating kid or alg selects one key
// and one algorithm; a token is never accepted under both readings, and
// "none" never wins.
func TestDuplicateHeaderMembers(t *testing.T) {
	k := mustKeys(t)
	v := jwksVerifier(t, false)
	payload := mustJSON(t, claimsNow())
	accepted := 0
	for _, key := range []any{k.rsa, k.rsa2} {
		token := signRawHeader(t, `{"alg":"RS256","kid":"rsa-2","kid":"rsa-1"}`, payload, jwt.SigningMethodRS256, key)
		if p, err := v.Authenticate(token); err == nil {
			accepted++
			if p.Account != "42" {
				t.Errorf("duplicate kid: account %q", p.Account)
			}
		}
	}
	if accepted > 1 {
		t.Error("a header repeating kid verified under both kids")
	}
	hsv := newVerifier(t, baseAuth("HS256"))
	for _, header := range []string{`{"alg":"HS256","alg":"none"}`, `{"alg":"none","alg":"HS256"}`} {
		signing := b64([]byte(header)) + "." + b64(payload)
		for _, token := range []string{signing + ".", signing + "." + b64([]byte("x"))} {
			if p, err := hsv.Authenticate(token); err == nil {
				t.Errorf("header %s with no valid signature accepted as %+v", header, p)
			}
		}
	}
}

// TestJWKSMixedWithHMAC: with HS256 and a JWKS allowed together, a kid that
// names an asymmetric key never falls back to the HMAC secret, an HS256
// token cannot be verified with public key material as its secret, and a
// key's kid does not verify another key type's algorithm.
func TestJWKSMixedWithHMAC(t *testing.T) {
	k := mustKeys(t)
	v := jwksVerifier(t, true)
	rsaJWK, _ := json.Marshal(jwkOf(t, "rsa-1", k.rsa))
	tests := []struct {
		name   string
		token  string
		reason string
	}{
		{"HS256 by the secret under an RSA kid", sign(t, jwt.SigningMethodHS256, testSecret, "rsa-1", claimsNow()), auth.ReasonAlgNotAllowed},
		{"HS256 by the secret under an EC kid", sign(t, jwt.SigningMethodHS256, testSecret, "ec-1", claimsNow()), auth.ReasonAlgNotAllowed},
		{"HS256 with the RSA JWK as secret, no kid", sign(t, jwt.SigningMethodHS256, rsaJWK, "", claimsNow()), auth.ReasonBadSignature},
		{"HS256 with the RSA PEM as secret, no kid", sign(t, jwt.SigningMethodHS256, k.rsaPEM, "", claimsNow()), auth.ReasonBadSignature},
		{"HS256 with the Ed25519 public key as secret", sign(t, jwt.SigningMethodHS256, []byte(k.ed.Public().(ed25519.PublicKey)), "", claimsNow()), auth.ReasonBadSignature},
		{"EdDSA under the RSA kid", sign(t, jwt.SigningMethodEdDSA, k.ed, "rsa-1", claimsNow()), auth.ReasonAlgNotAllowed},
		{"ES256 under the Ed25519 kid", sign(t, jwt.SigningMethodES256, k.ec, "ed-1", claimsNow()), auth.ReasonAlgNotAllowed},
		{"RS256 under the EC kid", sign(t, jwt.SigningMethodRS256, k.rsa, "ec-1", claimsNow()), auth.ReasonAlgNotAllowed},
		{"ES256 by another EC key under the EC kid", sign(t, jwt.SigningMethodES256, k.ec2, "ec-1", claimsNow()), auth.ReasonBadSignature},
		{"EdDSA by another key, no kid", sign(t, jwt.SigningMethodEdDSA, k.ed2, "", claimsNow()), auth.ReasonBadSignature},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := v.Authenticate(tt.token)
			assertRejected(t, tt.token, err, tt.reason)
		})
	}
	// Each key still verifies its own algorithm, and the secret HS256 without kid.
	for name, token := range map[string]string{
		"RS256": sign(t, jwt.SigningMethodRS256, k.rsa, "rsa-1", claimsNow()),
		"ES256": sign(t, jwt.SigningMethodES256, k.ec, "ec-1", claimsNow()),
		"EdDSA": sign(t, jwt.SigningMethodEdDSA, k.ed, "ed-1", claimsNow()),
		"HS256": hs(t, claimsNow()),
	} {
		if p, err := v.Authenticate(token); err != nil || p.Account != "42" {
			t.Errorf("%s: %+v, %v", name, p, err)
		}
	}
}

// TestJWKSKeyTypeMismatchRefusedAtLoad: a JWKS key pinned to an algorithm of
// another key type is a configuration error, not a key silently used for it.
func TestJWKSKeyTypeMismatchRefusedAtLoad(t *testing.T) {
	k := mustKeys(t)
	for name, jwk := range map[string]map[string]any{
		"RSA key pinned to ES256":   with2(jwkOf(t, "r", k.rsa), "alg", "ES256"),
		"EC key pinned to RS256":    with2(jwkOf(t, "e", k.ec), "alg", "RS256"),
		"OKP key pinned to ES256":   with2(jwkOf(t, "o", k.ed), "alg", "ES256"),
		"P-256 key pinned to ES384": with2(jwkOf(t, "p", k.ec), "alg", "ES384"),
		"EC key claiming P-384":     with2(jwkOf(t, "c", k.ec), "crv", "P-384"),
	} {
		cfg := baseAuth("RS256", "ES256", "ES384", "EdDSA")
		cfg.Secret = nil
		cfg.JWKSFile = jwksFile(t, jwk, jwkOf(t, "good", k.rsa2))
		if _, err := auth.NewVerifier(cfg); err == nil || !strings.Contains(err.Error(), "auth.jwks_file") {
			t.Errorf("%s: NewVerifier error %v, want an auth.jwks_file error", name, err)
		}
	}
}

func with2(m map[string]any, k string, v any) map[string]any {
	m[k] = v
	return m
}

// TestHeaderKeysAndKeyURLsIgnored: keys or key locations carried in the
// token's header (jwk, jku, x5u, x5c) are never trusted or fetched.
func TestHeaderKeysAndKeyURLsIgnored(t *testing.T) {
	k := mustKeys(t)
	var fetched atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fetched.Add(1)
		data, _ := json.Marshal(map[string]any{"keys": []any{jwkOf(t, "attacker", k.rsa2)}})
		_, _ = w.Write(data)
	}))
	defer srv.Close()
	cfg := baseAuth("RS256")
	cfg.Secret = nil
	cfg.PublicKeys = []string{writeFile(t, "rsa.pem", k.rsaPEM)}
	v := newVerifier(t, cfg)
	payload := mustJSON(t, with(map[string]any{"account_id": "7"}))
	attackerJWK := jwkOf(t, "", k.rsa2)
	for name, header := range map[string]map[string]any{
		"embedded jwk":      {"alg": "RS256", "jwk": attackerJWK},
		"jku":               {"alg": "RS256", "jku": srv.URL + "/jwks.json"},
		"jku with its kid":  {"alg": "RS256", "jku": srv.URL + "/jwks.json", "kid": "attacker"},
		"x5u":               {"alg": "RS256", "x5u": srv.URL + "/cert.pem"},
		"x5c junk":          {"alg": "RS256", "x5c": []string{b64([]byte("not a certificate"))}},
		"embedded jwk, kid": {"alg": "RS256", "jwk": with2(jwkOf(t, "", k.rsa2), "kid", "attacker"), "kid": "attacker"},
	} {
		token := signRaw(t, header, payload, jwt.SigningMethodRS256, k.rsa2)
		if p, err := v.Authenticate(token); err == nil {
			t.Errorf("%s: a token signed by the key in its own header was accepted as %+v", name, p)
		}
	}
	if n := fetched.Load(); n != 0 {
		t.Errorf("the verifier fetched a key URL from a token header %d times", n)
	}
}

// TestOversizedAndNestedHeaders: a header may not smuggle claims, and
// oversized or deeply nested headers are refused (or ignored) without a
// panic, never yielding another account.
func TestOversizedAndNestedHeaders(t *testing.T) {
	v := newVerifier(t, baseAuth("HS256"))
	payload := mustJSON(t, claimsNow())

	// Claims in the header are not claims.
	token := signRaw(t, map[string]any{"alg": "HS256", "account_id": "7", "data_region": "us-east"}, payload, jwt.SigningMethodHS256, testSecret)
	if p, err := v.Authenticate(token); err != nil || p.Account != "42" || p.Region != "eu-west" {
		t.Errorf("header claims: %+v, %v; want account 42 in eu-west from the payload", p, err)
	}
	// A header alone larger than the token limit.
	big := signRaw(t, map[string]any{"alg": "HS256", "pad": strings.Repeat("a", auth.MaxTokenBytes)}, payload, jwt.SigningMethodHS256, testSecret)
	_, err := v.Authenticate(big)
	assertRejected(t, big, err, auth.ReasonTooLarge)
	// A header just under the limit with a junk member verifies; only the payload counts.
	pad := auth.MaxTokenBytes*3/4 - 600
	near := signRaw(t, map[string]any{"alg": "HS256", "pad": strings.Repeat("b", pad)}, payload, jwt.SigningMethodHS256, testSecret)
	if len(near) > auth.MaxTokenBytes {
		t.Fatalf("test token is %d bytes, over the limit", len(near))
	}
	if p, err := v.Authenticate(near); err != nil || p.Account != "42" {
		t.Errorf("large header: %+v, %v", p, err)
	}
	// Deep nesting in the header and in an unused payload member.
	for _, depth := range []int{100, 5000} {
		nested := strings.Repeat("[", depth) + strings.Repeat("]", depth)
		tok := signRawHeader(t, `{"alg":"HS256","x":`+nested+`}`, payload, jwt.SigningMethodHS256, testSecret)
		if len(tok) <= auth.MaxTokenBytes {
			if p, err := v.Authenticate(tok); err == nil && p.Account != "42" {
				t.Errorf("nested header depth %d: account %q", depth, p.Account)
			}
		}
		body := strings.TrimSuffix(string(payload), "}") + `,"x":` + nested + `}`
		tok = signRawHeader(t, `{"alg":"HS256"}`, []byte(body), jwt.SigningMethodHS256, testSecret)
		if len(tok) <= auth.MaxTokenBytes {
			if p, err := v.Authenticate(tok); err == nil && p.Account != "42" {
				t.Errorf("nested payload depth %d: account %q", depth, p.Account)
			}
		}
	}
}

// TestDuplicateClaimShapes: more ways to say a member twice are refused;
// names that only look alike are different members.
func TestDuplicateClaimShapes(t *testing.T) {
	v := newVerifier(t, baseAuth("HS256"))
	names := baseAuth("HS256")
	names.TenantClaim = "tid"
	vt := newVerifier(t, names)
	exp := jsonInt(claimsNow()["exp"].(int64))
	raw := func(members string) string {
		return signRawHeader(t, `{"alg":"HS256"}`, []byte(`{"data_region":"eu-west","exp":`+exp+`,`+members+`}`), jwt.SigningMethodHS256, testSecret)
	}
	for name, members := range map[string]string{
		"null then value":         `"account_id":null,"account_id":42`,
		"same value twice":        `"account_id":42,"account_id":42`,
		"escaped first letter":    `"\u0061ccount_id":7,"account_id":42`,
		"fully escaped":           `"account_id":42,"\u0061\u0063\u0063\u006f\u0075\u006e\u0074\u005f\u0069\u0064":"7"`,
		"string and number twice": `"account_id":"42","account_id":"42"`,
	} {
		t.Run(name, func(t *testing.T) {
			token := raw(members)
			_, err := v.Authenticate(token)
			assertRejected(t, token, err, auth.ReasonMalformed)
		})
	}
	for name, tc := range map[string]struct {
		v       *auth.Verifier
		members string
		account string
	}{
		"trailing space is another name":   {v, `"account_id ":7,"account_id":42`, "42"},
		"case differs":                     {v, `"Account_id":7,"ACCOUNT_ID":8,"account_id":42`, "42"},
		"nested object is not the claim":   {v, `"ext":{"account_id":7},"account_id":42`, "42"},
		"nested duplicates are not claims": {v, `"ext":{"a":1,"a":2},"account_id":42`, "42"},
		"configured name wins":             {vt, `"account_id":42,"tid":"7"`, "7"},
	} {
		p, err := tc.v.Authenticate(raw(tc.members))
		if err != nil || p.Account != tc.account {
			t.Errorf("%s: %+v, %v; want account %q", name, p, err, tc.account)
		}
	}
	// Without the configured claim, the default-named one is not used.
	token := raw(`"account_id":42`)
	_, err := vt.Authenticate(token)
	assertRejected(t, token, err, auth.ReasonMissingClaim)
}

// TestAccountFormattingIsVerbatim: an account id is the token's own text. A
// string is kept exactly (no trimming, sign or zero stripping, no Unicode
// digit folding); a JSON number only in its canonical integer form.
func TestAccountFormattingIsVerbatim(t *testing.T) {
	v := newVerifier(t, baseAuth("HS256"))
	exp := jsonInt(claimsNow()["exp"].(int64))
	raw := func(value string) string {
		return signRawHeader(t, `{"alg":"HS256"}`, []byte(`{"data_region":"eu-west","exp":`+exp+`,"account_id":`+value+`}`), jwt.SigningMethodHS256, testSecret)
	}
	accepted := map[string]string{
		`42`:             "42",
		`"42"`:           "42",
		`"\u0034\u0032"`: "42", // the same text, escaped
		`"٤٢"`:           "٤٢", // not digits to PostgreSQL's integer input
		`"４２"`:           "４２",
		`"acme-42"`:      "acme-42",
	}
	// Strings PostgreSQL's integer input reads as a number but that are not
	// its canonical text: one tenant would have several ids.
	for _, value := range []string{`"042"`, `"0042"`, `"+42"`, `" 42"`, `"42 "`, `"42.0"`, `"4.2e1"`, `"0x2a"`, `"-42"`, `"4_2"`} {
		if p, err := v.Authenticate(raw(value)); err == nil {
			t.Errorf("account_id %s accepted as %q", value, p.Account)
		}
	}
	for value, want := range accepted {
		p, err := v.Authenticate(raw(value))
		if err != nil || p.Account != want {
			t.Errorf("account_id %s: %+v, %v; want account %q", value, p, err, want)
		}
	}
	for _, value := range []string{`042`, `42.0`, `4.2e1`, `0.42e2`, `420e-1`, `42E0`, `4.20e+1`, `-0`, `-42`, `+42`, `0x2a`, `42.`, `.42e2`, `1e2`} {
		token := raw(value)
		p, err := v.Authenticate(token)
		if err == nil {
			t.Errorf("account_id %s accepted as %q", value, p.Account)
			continue
		}
		if !auth.IsAuthError(err) {
			t.Errorf("account_id %s: %v is not an auth error", value, err)
		}
	}
	// Distinct accepted texts stay distinct principals: digits PostgreSQL's
	// integer input does not read are not folded into 42.
	a, errA := v.Authenticate(raw(`42`))
	b, errB := v.Authenticate(raw(`"٤٢"`))
	if errA != nil || errB != nil {
		t.Fatalf("accepted forms refused: %v, %v", errA, errB)
	}
	if a.Account == b.Account {
		t.Errorf("42 and \"٤٢\" yield the same account %q", a.Account)
	}
}
