package auth_test

import (
	"encoding/json"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/pgtenant/pgtenant/auth"
)

// The proxy consumes a Verifier through this interface (proxy.Authenticator).
var _ interface {
	Authenticate(token string) (auth.Principal, error)
} = (*auth.Verifier)(nil)

// verifiers are the configurations the tables run against.
type verifiers struct {
	hs     *auth.Verifier // HS256 only
	rs     *auth.Verifier // RS256 only, PEM key
	multi  *auth.Verifier // HS256, RS256, PS256, ES256, EdDSA with PEM keys
	jwks   *auth.Verifier // RS256, ES256, ES384, EdDSA from a JWKS file with kids
	strict *auth.Verifier // HS256 with issuer and audience
	names  *auth.Verifier // HS256 with custom claim names
}

func newVerifiers(t testing.TB) verifiers {
	k := mustKeys(t)
	rsPEM := writeFile(t, "rsa.pem", k.rsaPEM)
	ecPEM := writeFile(t, "ec.pem", pemPublic(t, &k.ec.PublicKey))
	edPEM := writeFile(t, "ed.pem", pemPublic(t, k.ed.Public()))

	rs := baseAuth("RS256")
	rs.Secret = nil
	rs.PublicKeys = []string{rsPEM}

	multi := baseAuth("HS256", "RS256", "PS256", "ES256", "EdDSA")
	multi.PublicKeys = []string{rsPEM, ecPEM, edPEM}

	js := baseAuth("RS256", "ES256", "ES384", "EdDSA")
	js.Secret = nil
	js.JWKSFile = jwksFile(t,
		jwkOf(t, "rsa-1", k.rsa),
		jwkOf(t, "rsa-2", k.rsa2),
		jwkOf(t, "ec-1", k.ec),
		jwkOf(t, "ec-384", k.ec384),
		jwkOf(t, "ed-1", k.ed),
	)

	strict := baseAuth("HS256")
	strict.Issuer = "https://idp.example"
	strict.Audience = "pgtenant"

	names := baseAuth("HS256")
	names.TenantClaim, names.RegionClaim, names.SubjectClaim = "tid", "rgn", "user"

	return verifiers{
		hs:     newVerifier(t, baseAuth("HS256")),
		rs:     newVerifier(t, rs),
		multi:  newVerifier(t, multi),
		jwks:   newVerifier(t, js),
		strict: newVerifier(t, strict),
		names:  newVerifier(t, names),
	}
}

func TestAuthenticateAccepts(t *testing.T) {
	k := mustKeys(t)
	vs := newVerifiers(t)
	minted, err := auth.Mint(auth.MintOptions{Secret: testSecret, Account: "42", Region: "eu-west", Subject: "alice", TTL: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	huge := "123456789012345678901234567890123456789"
	tests := []struct {
		name    string
		v       *auth.Verifier
		token   string
		account string
		region  string
		subject string
	}{
		{"HS256 minted", vs.hs, minted, "42", "eu-west", "alice"},
		{"HS256 in multi", vs.multi, hs(t, claimsNow()), "42", "eu-west", "alice"},
		{"RS256 PEM", vs.rs, sign(t, jwt.SigningMethodRS256, k.rsa, "", claimsNow()), "42", "eu-west", "alice"},
		{"RS256 in multi", vs.multi, sign(t, jwt.SigningMethodRS256, k.rsa, "", claimsNow()), "42", "eu-west", "alice"},
		{"PS256 with RSA key", vs.multi, sign(t, jwt.SigningMethodPS256, k.rsa, "", claimsNow()), "42", "eu-west", "alice"},
		{"ES256 PEM", vs.multi, sign(t, jwt.SigningMethodES256, k.ec, "", claimsNow()), "42", "eu-west", "alice"},
		{"EdDSA PEM", vs.multi, sign(t, jwt.SigningMethodEdDSA, k.ed, "", claimsNow()), "42", "eu-west", "alice"},
		{"JWKS RS256 kid", vs.jwks, sign(t, jwt.SigningMethodRS256, k.rsa, "rsa-1", claimsNow()), "42", "eu-west", "alice"},
		{"JWKS second RSA kid", vs.jwks, sign(t, jwt.SigningMethodRS256, k.rsa2, "rsa-2", claimsNow()), "42", "eu-west", "alice"},
		{"JWKS RSA without kid tries each RSA key", vs.jwks, sign(t, jwt.SigningMethodRS256, k.rsa2, "", claimsNow()), "42", "eu-west", "alice"},
		{"JWKS ES256 kid", vs.jwks, sign(t, jwt.SigningMethodES256, k.ec, "ec-1", claimsNow()), "42", "eu-west", "alice"},
		{"JWKS ES384 kid", vs.jwks, sign(t, jwt.SigningMethodES384, k.ec384, "ec-384", claimsNow()), "42", "eu-west", "alice"},
		{"JWKS EdDSA kid", vs.jwks, sign(t, jwt.SigningMethodEdDSA, k.ed, "ed-1", claimsNow()), "42", "eu-west", "alice"},
		{"text account kept verbatim", vs.hs, hs(t, with(map[string]any{"account_id": "acme-042"})), "acme-042", "eu-west", "alice"},
		{"string account", vs.hs, hs(t, with(map[string]any{"account_id": "acme-corp"})), "acme-corp", "eu-west", "alice"},
		{"integer zero", vs.hs, hs(t, with(map[string]any{"account_id": json.Number("0")})), "0", "eu-west", "alice"},
		{"integer beyond int64 kept exactly", vs.hs, hs(t, with(map[string]any{"account_id": json.Number(huge)})), huge, "eu-west", "alice"},
		{"128-digit integer", vs.hs, hs(t, with(map[string]any{"account_id": json.Number("1" + strings.Repeat("0", 127))})), "1" + strings.Repeat("0", 127), "eu-west", "alice"},
		{"no subject", vs.hs, hs(t, with(map[string]any{"sub": nil})), "42", "eu-west", ""},
		{"no nbf and no iat", vs.hs, hs(t, with(map[string]any{"nbf": nil, "iat": nil})), "42", "eu-west", "alice"},
		{"expired within leeway", vs.hs, hs(t, with(map[string]any{"exp": time.Now().Add(-10 * time.Second).Unix()})), "42", "eu-west", "alice"},
		{"nbf within leeway", vs.hs, hs(t, with(map[string]any{"nbf": time.Now().Add(10 * time.Second).Unix()})), "42", "eu-west", "alice"},
		{"fractional exp", vs.hs, hs(t, with(map[string]any{"exp": json.Number("4102444800.5")})), "42", "eu-west", "alice"},
		{"issuer and audience string", vs.strict, hs(t, with(map[string]any{"iss": "https://idp.example", "aud": "pgtenant"})), "42", "eu-west", "alice"},
		{"audience array", vs.strict, hs(t, with(map[string]any{"iss": "https://idp.example", "aud": []string{"other", "pgtenant"}})), "42", "eu-west", "alice"},
		{"custom claim names", vs.names, hs(t, with(map[string]any{"account_id": nil, "data_region": nil, "sub": nil, "tid": json.Number("7"), "rgn": "us-east", "user": "bob"})), "7", "us-east", "bob"},
		{"unknown extra claims ignored", vs.hs, hs(t, with(map[string]any{"roles": []string{"a"}, "nested": map[string]any{"account_id": 9}})), "42", "eu-west", "alice"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p, err := tt.v.Authenticate(tt.token)
			if err != nil {
				t.Fatalf("rejected: %v (%v)", err, causeOf(err))
			}
			if p.Account != tt.account || p.Region != tt.region || p.Subject != tt.subject {
				t.Errorf("principal %+v, want account %q region %q subject %q", p, tt.account, tt.region, tt.subject)
			}
			if p.ExpiresAt.IsZero() || p.ExpiresAt.Before(time.Now().Add(-time.Minute)) {
				t.Errorf("ExpiresAt %v not taken from exp", p.ExpiresAt)
			}
		})
	}
}

func causeOf(err error) error {
	if ae, ok := err.(*auth.Error); ok {
		return ae.Err
	}
	return nil
}

func TestAuthenticateExpiresAtIsExp(t *testing.T) {
	vs := newVerifiers(t)
	exp := time.Now().Add(90 * time.Minute).Truncate(time.Second)
	p, err := vs.hs.Authenticate(hs(t, with(map[string]any{"exp": exp.Unix()})))
	if err != nil {
		t.Fatal(err)
	}
	if !p.ExpiresAt.Equal(exp) {
		t.Errorf("ExpiresAt %v, want %v", p.ExpiresAt, exp)
	}
}

func TestAuthenticateRejects(t *testing.T) {
	k := mustKeys(t)
	vs := newVerifiers(t)
	now := time.Now()
	valid := hs(t, claimsNow())
	validParts := strings.Split(valid, ".")
	otherPayload := strings.Split(hs(t, with(map[string]any{"account_id": json.Number("43")})), ".")[1]

	raw := func(payload string) string {
		return signRaw(t, map[string]any{"alg": "HS256", "typ": "JWT"}, []byte(payload), jwt.SigningMethodHS256, testSecret)
	}
	rawExp := now.Add(time.Hour).Unix()
	payloadWith := func(members string) string {
		return raw(`{"data_region":"eu-west","exp":` + jsonInt(rawExp) + `,` + members + `}`)
	}
	noneToken := func(alg string) string {
		payload, _ := json.Marshal(claimsNow())
		return signRaw(t, map[string]any{"alg": alg, "typ": "JWT"}, payload, nil, nil)
	}
	longKid := strings.Repeat("k", 5000)

	tests := []struct {
		name   string
		v      *auth.Verifier
		token  string
		reason string
		leaked []string // token values that must not appear in the message
	}{
		// Size and shape.
		{"empty", vs.hs, "", auth.ReasonMissingToken, nil},
		{"100 KB token", vs.hs, strings.Repeat("a", 100<<10), auth.ReasonTooLarge, nil},
		{"just over 16 KiB", vs.hs, validParts[0] + "." + b64([]byte(strings.Repeat("x", 12<<10))) + "." + validParts[2], auth.ReasonTooLarge, nil},
		{"garbage", vs.hs, "not a token at all", auth.ReasonMalformed, nil},
		{"two segments", vs.hs, validParts[0] + "." + validParts[1], auth.ReasonMalformed, nil},
		{"four segments", vs.hs, valid + ".x", auth.ReasonMalformed, nil},
		{"dots only", vs.hs, "..", auth.ReasonMalformed, nil},
		{"header not base64", vs.hs, "!!!." + validParts[1] + "." + validParts[2], auth.ReasonMalformed, nil},
		{"header not JSON", vs.hs, b64([]byte("hello")) + "." + validParts[1] + "." + validParts[2], auth.ReasonMalformed, nil},
		{"payload not JSON", vs.hs, raw("{not json"), auth.ReasonMalformed, nil},
		{"payload is an array", vs.hs, raw(`[1,2]`), auth.ReasonMalformed, nil},
		{"payload is null", vs.hs, raw(`null`), auth.ReasonMalformed, nil},
		{"payload is a string", vs.hs, raw(`"x"`), auth.ReasonMalformed, nil},
		{"signature not base64", vs.hs, validParts[0] + "." + validParts[1] + ".***", auth.ReasonMalformed, nil},
		{"duplicated account_id", vs.hs, payloadWith(`"account_id":42,"account_id":7`), auth.ReasonMalformed, nil},
		{"duplicated account_id, string then number", vs.hs, payloadWith(`"account_id":"7","account_id":42`), auth.ReasonMalformed, nil},
		{"duplicated account_id via escape", vs.hs, payloadWith(`"account_id":42,"account\u005fid":7`), auth.ReasonMalformed, nil},
		{"duplicated data_region", vs.hs, raw(`{"account_id":42,"data_region":"eu-west","data_region":"us-east","exp":` + jsonInt(rawExp) + `}`), auth.ReasonMalformed, nil},
		{"duplicated sub", vs.hs, payloadWith(`"account_id":42,"sub":"a","sub":"b"`), auth.ReasonMalformed, nil},
		{"duplicated exp", vs.hs, payloadWith(`"account_id":42,"exp":1`), auth.ReasonMalformed, nil},
		{"crit header", vs.hs, signRaw(t, map[string]any{"alg": "HS256", "crit": []string{"b64"}, "b64": false}, mustJSON(t, claimsNow()), jwt.SigningMethodHS256, testSecret), auth.ReasonMalformed, nil},

		// Algorithms and keys.
		{"alg none", vs.hs, noneToken("none"), auth.ReasonAlgNotAllowed, nil},
		{"alg None", vs.hs, noneToken("None"), auth.ReasonAlgNotAllowed, nil},
		{"alg NONE", vs.multi, noneToken("NONE"), auth.ReasonAlgNotAllowed, nil},
		{"alg none with HS signature", vs.hs, signRaw(t, map[string]any{"alg": "none"}, mustJSON(t, claimsNow()), jwt.SigningMethodHS256, testSecret), auth.ReasonAlgNotAllowed, nil},
		{"alg missing", vs.hs, signRaw(t, map[string]any{"typ": "JWT"}, mustJSON(t, claimsNow()), jwt.SigningMethodHS256, testSecret), auth.ReasonMalformed, nil},
		{"alg not a string", vs.hs, signRaw(t, map[string]any{"alg": 256}, mustJSON(t, claimsNow()), jwt.SigningMethodHS256, testSecret), auth.ReasonMalformed, nil},
		{"alg lower-case hs256", vs.hs, signRaw(t, map[string]any{"alg": "hs256"}, mustJSON(t, claimsNow()), jwt.SigningMethodHS256, testSecret), auth.ReasonAlgNotAllowed, nil},
		{"HS256 when only RS256 allowed", vs.rs, hs(t, claimsNow()), auth.ReasonAlgNotAllowed, nil},
		{"RS256 public key PEM as HS256 secret (RS-only)", vs.rs, sign(t, jwt.SigningMethodHS256, k.rsaPEM, "", claimsNow()), auth.ReasonAlgNotAllowed, nil},
		{"RS256 public key PEM as HS256 secret (HS and RS allowed)", vs.multi, sign(t, jwt.SigningMethodHS256, k.rsaPEM, "", claimsNow()), auth.ReasonBadSignature, nil},
		{"RS512 not allowed", vs.multi, sign(t, jwt.SigningMethodRS512, k.rsa, "", claimsNow()), auth.ReasonAlgNotAllowed, nil},
		{"ES384 not allowed", vs.multi, sign(t, jwt.SigningMethodES384, k.ec384, "", claimsNow()), auth.ReasonAlgNotAllowed, nil},
		{"HS256 with wrong secret", vs.hs, sign(t, jwt.SigningMethodHS256, []byte("another-secret-another-secret-32"), "", claimsNow()), auth.ReasonBadSignature, nil},
		{"RS256 by an unknown key", vs.rs, sign(t, jwt.SigningMethodRS256, k.rsa2, "", claimsNow()), auth.ReasonBadSignature, nil},
		{"ES256 by an unknown key", vs.multi, sign(t, jwt.SigningMethodES256, k.ec2, "", claimsNow()), auth.ReasonBadSignature, nil},
		{"EdDSA by an unknown key", vs.multi, sign(t, jwt.SigningMethodEdDSA, k.ed2, "", claimsNow()), auth.ReasonBadSignature, nil},
		{"tampered payload, valid header", vs.hs, validParts[0] + "." + otherPayload + "." + validParts[2], auth.ReasonBadSignature, nil},
		{"signature stripped", vs.hs, validParts[0] + "." + validParts[1] + ".", auth.ReasonBadSignature, nil},
		{"RS256 signature under ES256 header", vs.multi, swapAlg(t, sign(t, jwt.SigningMethodRS256, k.rsa, "", claimsNow()), "ES256"), auth.ReasonBadSignature, nil},

		// Key ids.
		{"wrong kid", vs.jwks, sign(t, jwt.SigningMethodRS256, k.rsa, "rsa-9", claimsNow()), auth.ReasonUnknownKid, []string{"rsa-9"}},
		{"kid path traversal", vs.jwks, sign(t, jwt.SigningMethodRS256, k.rsa, "../../etc/passwd", claimsNow()), auth.ReasonUnknownKid, []string{"../../etc/passwd"}},
		// An explicit empty kid names no key: unknown, not "try every key".
		{"empty kid", vs.jwks, signRaw(t, map[string]any{"alg": "RS256", "kid": ""}, mustJSON(t, claimsNow()), jwt.SigningMethodRS256, k.rsa), auth.ReasonUnknownKid, nil},
		{"very long kid", vs.jwks, sign(t, jwt.SigningMethodRS256, k.rsa, longKid, claimsNow()), auth.ReasonUnknownKid, []string{longKid[:32]}},
		{"kid on an HMAC-only verifier", vs.hs, sign(t, jwt.SigningMethodHS256, testSecret, "hs-1", claimsNow()), auth.ReasonUnknownKid, nil},
		{"kid of other key signs", vs.jwks, sign(t, jwt.SigningMethodRS256, k.rsa2, "rsa-1", claimsNow()), auth.ReasonBadSignature, nil},
		{"RSA kid with ES256", vs.jwks, sign(t, jwt.SigningMethodES256, k.ec, "rsa-1", claimsNow()), auth.ReasonAlgNotAllowed, nil},
		{"EC kid with HS256 using its JWK as secret", vs.jwks, sign(t, jwt.SigningMethodHS256, []byte(mustJSON(t, jwkOf(t, "ec-1", k.ec))), "ec-1", claimsNow()), auth.ReasonAlgNotAllowed, nil},
		{"P-384 kid with ES256", vs.jwks, sign(t, jwt.SigningMethodES256, k.ec, "ec-384", claimsNow()), auth.ReasonAlgNotAllowed, nil},
		{"kid not a string", vs.jwks, signRaw(t, map[string]any{"alg": "RS256", "kid": 1}, mustJSON(t, claimsNow()), jwt.SigningMethodRS256, k.rsa), auth.ReasonMalformed, nil},

		// Time.
		{"expired beyond leeway", vs.hs, hs(t, with(map[string]any{"exp": now.Add(-2 * time.Minute).Unix()})), auth.ReasonExpired, nil},
		{"expired long ago", vs.hs, hs(t, with(map[string]any{"exp": 1})), auth.ReasonExpired, nil},
		{"nbf in the future", vs.hs, hs(t, with(map[string]any{"nbf": now.Add(10 * time.Minute).Unix()})), auth.ReasonNotYetValid, nil},
		{"iat in the future", vs.hs, hs(t, with(map[string]any{"iat": now.Add(10 * time.Minute).Unix()})), auth.ReasonNotYetValid, nil},
		{"exp missing", vs.hs, hs(t, with(map[string]any{"exp": nil})), auth.ReasonMissingClaim, nil},
		{"exp null", vs.hs, hs(t, with(map[string]any{"exp": json.RawMessage("null")})), auth.ReasonMissingClaim, nil},
		{"exp a string", vs.hs, hs(t, with(map[string]any{"exp": "4102444800"})), auth.ReasonBadClaim, nil},
		{"exp 1e400", vs.hs, hs(t, with(map[string]any{"exp": json.Number("1e400")})), auth.ReasonBadClaim, nil},
		{"exp beyond year 9999", vs.hs, hs(t, with(map[string]any{"exp": json.Number("1e19")})), auth.ReasonBadClaim, nil},
		{"exp negative", vs.hs, hs(t, with(map[string]any{"exp": -5})), auth.ReasonBadClaim, nil},
		{"nbf an object", vs.hs, hs(t, with(map[string]any{"nbf": map[string]any{}})), auth.ReasonBadClaim, nil},

		// Issuer and audience.
		{"wrong issuer", vs.strict, hs(t, with(map[string]any{"iss": "https://evil.example", "aud": "pgtenant"})), auth.ReasonWrongIssuer, []string{"evil.example"}},
		{"missing issuer", vs.strict, hs(t, with(map[string]any{"aud": "pgtenant"})), auth.ReasonWrongIssuer, nil},
		{"issuer not a string", vs.strict, hs(t, with(map[string]any{"iss": []string{"https://idp.example"}, "aud": "pgtenant"})), auth.ReasonWrongIssuer, nil},
		{"wrong audience", vs.strict, hs(t, with(map[string]any{"iss": "https://idp.example", "aud": "other"})), auth.ReasonWrongAudience, nil},
		{"audience array without ours", vs.strict, hs(t, with(map[string]any{"iss": "https://idp.example", "aud": []string{"a", "b"}})), auth.ReasonWrongAudience, nil},
		{"missing audience", vs.strict, hs(t, with(map[string]any{"iss": "https://idp.example"})), auth.ReasonWrongAudience, nil},
		{"audience with a number", vs.strict, hs(t, with(map[string]any{"iss": "https://idp.example", "aud": []any{"pgtenant", 1}})), auth.ReasonWrongAudience, nil},

		// Tenant claim.
		{"missing tenant", vs.hs, hs(t, with(map[string]any{"account_id": nil})), auth.ReasonMissingClaim, nil},
		{"empty tenant", vs.hs, hs(t, with(map[string]any{"account_id": ""})), auth.ReasonMissingClaim, nil},
		{"null tenant", vs.hs, hs(t, with(map[string]any{"account_id": json.RawMessage("null")})), auth.ReasonMissingClaim, nil},
		{"tenant 42.0", vs.hs, hs(t, with(map[string]any{"account_id": json.Number("42.0")})), auth.ReasonBadClaim, nil},
		{"tenant 4.2e1", vs.hs, hs(t, with(map[string]any{"account_id": json.Number("4.2e1")})), auth.ReasonBadClaim, nil},
		{"tenant 42e0", vs.hs, hs(t, with(map[string]any{"account_id": json.Number("42e0")})), auth.ReasonBadClaim, nil},
		{"tenant 1e400", vs.hs, hs(t, with(map[string]any{"account_id": json.Number("1e400")})), auth.ReasonBadClaim, nil},
		{"tenant -1", vs.hs, hs(t, with(map[string]any{"account_id": json.Number("-1")})), auth.ReasonBadClaim, nil},
		{"tenant -0", vs.hs, hs(t, with(map[string]any{"account_id": json.Number("-0")})), auth.ReasonBadClaim, nil},
		{"tenant 129 digits", vs.hs, hs(t, with(map[string]any{"account_id": json.Number("1" + strings.Repeat("0", 128))})), auth.ReasonBadClaim, nil},
		{"tenant string over 128 bytes", vs.hs, hs(t, with(map[string]any{"account_id": strings.Repeat("a", 129)})), auth.ReasonBadClaim, nil},
		{"tenant with NUL", vs.hs, hs(t, with(map[string]any{"account_id": "42\x00"})), auth.ReasonBadClaim, nil},
		{"tenant with newline", vs.hs, hs(t, with(map[string]any{"account_id": "42\n43"})), auth.ReasonBadClaim, nil},
		{"tenant with bidi override", vs.hs, hs(t, with(map[string]any{"account_id": "42\u202e"})), auth.ReasonBadClaim, nil},
		{"tenant true", vs.hs, hs(t, with(map[string]any{"account_id": true})), auth.ReasonBadClaim, nil},
		{"tenant array", vs.hs, hs(t, with(map[string]any{"account_id": []int{42}})), auth.ReasonBadClaim, nil},
		{"tenant object", vs.hs, hs(t, with(map[string]any{"account_id": map[string]int{"id": 42}})), auth.ReasonBadClaim, nil},
		{"tenant under another case", vs.hs, hs(t, with(map[string]any{"account_id": nil, "Account_ID": json.Number("42")})), auth.ReasonMissingClaim, nil},
		{"default names on custom verifier", vs.names, hs(t, claimsNow()), auth.ReasonMissingClaim, nil},

		// Region and subject.
		{"missing region", vs.hs, hs(t, with(map[string]any{"data_region": nil})), auth.ReasonMissingClaim, nil},
		{"empty region", vs.hs, hs(t, with(map[string]any{"data_region": ""})), auth.ReasonMissingClaim, nil},
		{"region a number", vs.hs, hs(t, with(map[string]any{"data_region": 1})), auth.ReasonBadClaim, nil},
		{"region with control character", vs.hs, hs(t, with(map[string]any{"data_region": "eu-west\r"})), auth.ReasonBadClaim, nil},
		{"region over 128 bytes", vs.hs, hs(t, with(map[string]any{"data_region": strings.Repeat("r", 129)})), auth.ReasonBadClaim, nil},
		{"subject a number", vs.hs, hs(t, with(map[string]any{"sub": 5})), auth.ReasonBadClaim, nil},
		{"subject with NUL", vs.hs, hs(t, with(map[string]any{"sub": "a\x00"})), auth.ReasonBadClaim, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p, err := tt.v.Authenticate(tt.token)
			if err == nil {
				t.Fatalf("accepted as %+v; want %s", p, tt.reason)
			}
			if !reflect.DeepEqual(p, auth.Principal{}) {
				t.Errorf("rejection returned a principal %+v", p)
			}
			assertRejected(t, tt.token, err, tt.reason, tt.leaked...)
		})
	}
}

// TestRejectionMessagesNameTheClaim checks the client sees which claim is at fault.
func TestRejectionMessagesNameTheClaim(t *testing.T) {
	vs := newVerifiers(t)
	tests := []struct {
		v     *auth.Verifier
		token string
		want  string
	}{
		{vs.hs, hs(t, with(map[string]any{"account_id": nil})), "pgtenant: token lacks the account_id claim"},
		{vs.hs, hs(t, with(map[string]any{"data_region": nil})), "pgtenant: token lacks the data_region claim"},
		{vs.hs, hs(t, with(map[string]any{"account_id": json.Number("4.2e1")})), "pgtenant: token claim account_id is invalid"},
		{vs.names, hs(t, claimsNow()), "pgtenant: token lacks the tid claim"},
		{vs.hs, hs(t, with(map[string]any{"exp": nil})), "pgtenant: token lacks the exp claim"},
		{vs.hs, hs(t, with(map[string]any{"exp": 1})), "pgtenant: token has expired"},
	}
	for _, tt := range tests {
		_, err := tt.v.Authenticate(tt.token)
		if err == nil || err.Error() != tt.want {
			t.Errorf("got %v, want %q", err, tt.want)
		}
	}
}

func TestLeewayFromConfig(t *testing.T) {
	cfg := baseAuth("HS256")
	cfg.Leeway = 5 * time.Minute
	v := newVerifier(t, cfg)
	tok := hs(t, with(map[string]any{"exp": time.Now().Add(-2 * time.Minute).Unix()}))
	if _, err := v.Authenticate(tok); err != nil {
		t.Errorf("5m leeway rejected a token expired 2m ago: %v", err)
	}
	cfg.Leeway = 0
	v = newVerifier(t, cfg)
	_, err := v.Authenticate(hs(t, with(map[string]any{"exp": time.Now().Add(-2 * time.Second).Unix()})))
	assertRejected(t, tok, err, auth.ReasonExpired)
}

func TestIsAuthError(t *testing.T) {
	vs := newVerifiers(t)
	_, err := vs.hs.Authenticate("x")
	if !auth.IsAuthError(err) || !auth.IsAuthError(wrap{err}) {
		t.Errorf("IsAuthError(%v) = false", err)
	}
	if auth.IsAuthError(nil) || auth.IsAuthError(errString("other")) {
		t.Error("IsAuthError true for a non-auth error")
	}
}

type wrap struct{ error }

func (w wrap) Unwrap() error { return w.error }

type errString string

func (e errString) Error() string { return string(e) }

func TestVerifierConcurrentUse(t *testing.T) {
	k := mustKeys(t)
	vs := newVerifiers(t)
	tokens := []string{
		sign(t, jwt.SigningMethodRS256, k.rsa, "rsa-1", claimsNow()),
		sign(t, jwt.SigningMethodEdDSA, k.ed, "ed-1", with(map[string]any{"account_id": "b"})),
	}
	want := []string{"42", "b"}
	done := make(chan error)
	for g := 0; g < 8; g++ {
		go func() {
			var err error
			for i := 0; i < 50 && err == nil; i++ {
				var p auth.Principal
				p, err = vs.jwks.Authenticate(tokens[i%2])
				if err == nil && p.Account != want[i%2] {
					err = errString("wrong account " + p.Account)
				}
			}
			done <- err
		}()
	}
	for g := 0; g < 8; g++ {
		if err := <-done; err != nil {
			t.Error(err)
		}
	}
}

func jsonInt(n int64) string { return string(mustJSONValue(n)) }

func mustJSONValue(v any) []byte {
	b, err := json.Marshal(v)
	if err != nil {
		panic(err)
	}
	return b
}

func mustJSON(tb testing.TB, v any) []byte {
	tb.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		tb.Fatal(err)
	}
	return b
}

// swapAlg rewrites a token's header alg, keeping payload and signature.
func swapAlg(tb testing.TB, token, alg string) string {
	tb.Helper()
	parts := strings.Split(token, ".")
	return b64(mustJSON(tb, map[string]any{"alg": alg})) + "." + parts[1] + "." + parts[2]
}
