package auth_test

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"path/filepath"
	"strings"
	"testing"

	"github.com/golang-jwt/jwt/v5"

	"github.com/pgtenant/pgtenant/auth"
	"github.com/pgtenant/pgtenant/config"
)

// TestJWKSMixedKeyTypes loads a set mixing RSA, EC and OKP keys, with keys
// the verifier must skip (encryption keys, X25519), and verifies with each.
func TestJWKSMixedKeyTypes(t *testing.T) {
	k := mustKeys(t)
	encKey := jwkOf(t, "rsa-enc", k.rsa2)
	encKey["use"] = "enc"
	opsKey := jwkOf(t, "ec-wrap", k.ec2)
	opsKey["key_ops"] = []string{"wrapKey"}
	rsaPinned := jwkOf(t, "rsa-pinned", k.rsa)
	rsaPinned["alg"] = "RS256"
	rsaPinned["use"] = "sig"
	cfg := baseAuth("RS256", "PS256", "ES256", "ES384", "EdDSA")
	cfg.Secret = nil
	cfg.JWKSFile = jwksFile(t,
		rsaPinned,
		jwkOf(t, "rsa-any", k.rsa2),
		encKey,
		opsKey,
		jwkOf(t, "ec-256", k.ec),
		jwkOf(t, "ec-384", k.ec384),
		jwkOf(t, "ed", k.ed),
		map[string]any{"kty": "OKP", "crv": "X25519", "kid": "x", "x": b64(k.x25519)},
		map[string]any{"kty": "RSA", "kid": "oaep", "alg": "RSA-OAEP-256", "n": "AQAB", "e": "AQAB"},
	)
	v := newVerifier(t, cfg)

	accept := []struct {
		name  string
		token string
	}{
		{"RSA pinned to RS256", sign(t, jwt.SigningMethodRS256, k.rsa, "rsa-pinned", claimsNow())},
		{"EC P-256", sign(t, jwt.SigningMethodES256, k.ec, "ec-256", claimsNow())},
		{"EC P-384", sign(t, jwt.SigningMethodES384, k.ec384, "ec-384", claimsNow())},
		{"OKP Ed25519", sign(t, jwt.SigningMethodEdDSA, k.ed, "ed", claimsNow())},
		{"no kid, EC", sign(t, jwt.SigningMethodES256, k.ec, "", claimsNow())},
		{"unpinned RSA key verifies PS256", sign(t, jwt.SigningMethodPS256, k.rsa2, "rsa-any", claimsNow())},
		{"no kid, PS256 tries the unpinned RSA key", sign(t, jwt.SigningMethodPS256, k.rsa2, "", claimsNow())},
	}
	for _, tt := range accept {
		if p, err := v.Authenticate(tt.token); err != nil || p.Account != "42" {
			t.Errorf("%s: %+v, %v", tt.name, p, err)
		}
	}
	reject := []struct {
		name   string
		token  string
		reason string
	}{
		{"encryption key is not loaded", sign(t, jwt.SigningMethodRS256, k.rsa2, "rsa-enc", claimsNow()), auth.ReasonUnknownKid},
		{"RSA kid with ES256", sign(t, jwt.SigningMethodES256, k.ec, "rsa-any", claimsNow()), auth.ReasonAlgNotAllowed},
		{"key_ops without verify is not loaded", sign(t, jwt.SigningMethodES256, k.ec2, "ec-wrap", claimsNow()), auth.ReasonUnknownKid},
		{"X25519 is not a signature key", sign(t, jwt.SigningMethodEdDSA, k.ed, "x", claimsNow()), auth.ReasonUnknownKid},
		{"key pinned to RS256 refuses PS256", sign(t, jwt.SigningMethodPS256, k.rsa, "rsa-pinned", claimsNow()), auth.ReasonAlgNotAllowed},
		{"no kid, PS256 by the RS256-pinned key", sign(t, jwt.SigningMethodPS256, k.rsa, "", claimsNow()), auth.ReasonBadSignature},
		{"RS512 not allowed", sign(t, jwt.SigningMethodRS512, k.rsa2, "rsa-any", claimsNow()), auth.ReasonAlgNotAllowed},
	}
	for _, tt := range reject {
		t.Run(tt.name, func(t *testing.T) {
			_, err := v.Authenticate(tt.token)
			assertRejected(t, tt.token, err, tt.reason)
		})
	}
}

func TestPEMFormats(t *testing.T) {
	k := mustKeys(t)
	rsaPKCS1 := pem.EncodeToMemory(&pem.Block{Type: "RSA PUBLIC KEY", Bytes: x509.MarshalPKCS1PublicKey(&k.rsa.PublicKey)})
	tests := []struct {
		name  string
		pem   []byte
		alg   string
		token string
	}{
		{"RSA PKIX", k.rsaPEM, "RS256", sign(t, jwt.SigningMethodRS256, k.rsa, "", claimsNow())},
		{"RSA PKCS#1", rsaPKCS1, "RS256", sign(t, jwt.SigningMethodRS256, k.rsa, "", claimsNow())},
		{"RSA certificate", certPEM(t, &k.rsa.PublicKey, k.rsa), "RS256", sign(t, jwt.SigningMethodRS256, k.rsa, "", claimsNow())},
		{"EC certificate", certPEM(t, &k.ec.PublicKey, k.ec), "ES256", sign(t, jwt.SigningMethodES256, k.ec, "", claimsNow())},
		{"Ed25519 certificate", certPEM(t, k.ed.Public(), k.ed), "EdDSA", sign(t, jwt.SigningMethodEdDSA, k.ed, "", claimsNow())},
		{"two keys in one file, second signs", append(pemPublic(t, &k.ec2.PublicKey), pemPublic(t, &k.ec.PublicKey)...), "ES256", sign(t, jwt.SigningMethodES256, k.ec, "", claimsNow())},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := baseAuth(tt.alg)
			cfg.Secret = nil
			cfg.PublicKeys = []string{writeFile(t, "key.pem", tt.pem)}
			v := newVerifier(t, cfg)
			if p, err := v.Authenticate(tt.token); err != nil || p.Account != "42" {
				t.Errorf("%+v, %v", p, err)
			}
		})
	}
}

// TestNewVerifierErrors checks that bad configuration is refused with an
// error naming the key at fault.
func TestNewVerifierErrors(t *testing.T) {
	k := mustKeys(t)
	small, err := rsa.GenerateKey(rand.Reader, 1024)
	if err != nil {
		t.Fatal(err)
	}
	p224, err := ecdsa.GenerateKey(elliptic.P224(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	privDER, err := x509.MarshalPKCS8PrivateKey(k.ec)
	if err != nil {
		t.Fatal(err)
	}
	privPEM := pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: privDER})
	ecPEM := writeFile(t, "ec.pem", pemPublic(t, &k.ec.PublicKey))
	offCurve := jwkOf(t, "bad", k.ec)
	offCurve["y"] = offCurve["x"]
	withD := jwkOf(t, "priv", k.ec)
	withD["d"] = "AAAA"
	mismatch := jwkOf(t, "mm", k.ec)
	mismatch["alg"] = "RS256"

	tests := []struct {
		name string
		edit func(*config.Auth)
		want string
	}{
		{"no algorithms", func(a *config.Auth) { a.Algorithms = nil }, "auth.algorithms"},
		{"none", func(a *config.Auth) { a.Algorithms = []string{"HS256", "none"} }, "'none' is never allowed"},
		{"NoNe", func(a *config.Auth) { a.Algorithms = []string{"NoNe"} }, "'none' is never allowed"},
		{"unknown algorithm", func(a *config.Auth) { a.Algorithms = []string{"HS1"} }, "auth.algorithms: unsupported algorithm"},
		{"HMAC without secret", func(a *config.Auth) { a.Secret = nil }, "auth.hs256_secret"},
		{"short HMAC secret", func(a *config.Auth) { a.Secret = []byte("short") }, "auth.hs256_secret"},
		{"RS256 without RSA key", func(a *config.Auth) { a.Algorithms = []string{"RS256"}; a.PublicKeys = []string{ecPEM} }, "auth.algorithms: RS256 is allowed but no key"},
		{"ES384 with only a P-256 key", func(a *config.Auth) { a.Algorithms = []string{"ES384"}; a.PublicKeys = []string{ecPEM} }, "ES384 is allowed but no key"},
		{"negative leeway", func(a *config.Auth) { a.Leeway = -1 }, "auth.leeway"},
		{"tenant and region claim equal", func(a *config.Auth) { a.RegionClaim = a.TenantClaim }, "auth.region_claim"},
		{"missing PEM file", func(a *config.Auth) { a.PublicKeys = []string{filepath.Join(t.TempDir(), "nope.pem")} }, "auth.public_keys"},
		{"empty PEM file", func(a *config.Auth) { a.PublicKeys = []string{writeFile(t, "e.pem", nil)} }, "no PEM public key"},
		{"PEM private key", func(a *config.Auth) { a.PublicKeys = []string{writeFile(t, "p.pem", privPEM)} }, "private key"},
		{"PEM garbage", func(a *config.Auth) {
			a.PublicKeys = []string{writeFile(t, "g.pem", pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: []byte("junk")}))}
		}, "PEM block 1"},
		{"PEM 1024-bit RSA", func(a *config.Auth) { a.PublicKeys = []string{writeFile(t, "s.pem", pemPublic(t, &small.PublicKey))} }, "1024 bits"},
		{"PEM P-224", func(a *config.Auth) { a.PublicKeys = []string{writeFile(t, "c.pem", pemPublic(t, &p224.PublicKey))} }, "auth.public_keys"},
		{"missing JWKS file", func(a *config.Auth) { a.JWKSFile = filepath.Join(t.TempDir(), "nope.json") }, "auth.jwks_file"},
		{"JWKS not JSON", func(a *config.Auth) { a.JWKSFile = writeFile(t, "j.json", []byte("{")) }, "not a JWKS document"},
		{"JWKS empty", func(a *config.Auth) { a.JWKSFile = writeFile(t, "j.json", []byte(`{"keys":[]}`)) }, "no signature verification key"},
		{"JWKS duplicate kid", func(a *config.Auth) { a.JWKSFile = jwksFile(t, jwkOf(t, "a", k.ec), jwkOf(t, "a", k.ec2)) }, "duplicate kid"},
		{"JWKS private key", func(a *config.Auth) { a.JWKSFile = jwksFile(t, withD) }, "private key material"},
		{"JWKS symmetric key", func(a *config.Auth) {
			a.JWKSFile = jwksFile(t, map[string]any{"kty": "oct", "kid": "s", "k": b64(testSecret)})
		}, "symmetric (oct)"},
		{"JWKS point off the curve", func(a *config.Auth) { a.JWKSFile = jwksFile(t, offCurve) }, "invalid EC point"},
		{"JWKS alg does not fit key", func(a *config.Auth) { a.JWKSFile = jwksFile(t, mismatch) }, "does not fit"},
		{"JWKS 1024-bit RSA", func(a *config.Auth) { a.JWKSFile = jwksFile(t, jwkOf(t, "s", small)) }, "1024 bits"},
		{"JWKS RSA without n", func(a *config.Auth) { a.JWKSFile = jwksFile(t, map[string]any{"kty": "RSA", "e": "AQAB"}) }, "member n is missing"},
		{"JWKS bad base64", func(a *config.Auth) {
			a.JWKSFile = jwksFile(t, map[string]any{"kty": "OKP", "crv": "Ed25519", "x": "***"})
		}, "not base64url"},
		{"JWKS short Ed25519", func(a *config.Auth) {
			a.JWKSFile = jwksFile(t, map[string]any{"kty": "OKP", "crv": "Ed25519", "x": b64([]byte("short"))})
		}, "Ed25519 key has 5 bytes"},
		{"JWKS huge", func(a *config.Auth) { a.JWKSFile = writeFile(t, "j.json", []byte(strings.Repeat(" ", 2<<20))) }, "larger than"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := baseAuth("HS256", "ES256")
			cfg.PublicKeys = []string{ecPEM}
			tt.edit(&cfg)
			v, err := auth.NewVerifier(cfg)
			if err == nil {
				t.Fatalf("NewVerifier accepted the configuration (%v)", v)
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Errorf("error %q does not mention %q", err, tt.want)
			}
			if strings.Contains(err.Error(), string(testSecret)) {
				t.Errorf("error %q leaks the secret", err)
			}
		})
	}
}

// TestDefaultsFromZeroConfig checks NewVerifier fills empty claim names.
func TestDefaultsFromZeroConfig(t *testing.T) {
	v := newVerifier(t, config.Auth{Algorithms: []string{"HS256"}, Secret: testSecret})
	p, err := v.Authenticate(hs(t, claimsNow()))
	if err != nil || p.Account != "42" || p.Region != "eu-west" || p.Subject != "alice" {
		t.Fatalf("%+v, %v", p, err)
	}
}

// TestSecretIsCopied checks that later changes to the config's secret slice
// do not reach a built verifier (key material is immutable per Verifier).
func TestSecretIsCopied(t *testing.T) {
	secret := append([]byte(nil), testSecret...)
	v := newVerifier(t, config.Auth{Algorithms: []string{"HS256"}, Secret: secret})
	secret[0] ^= 0xff
	if _, err := v.Authenticate(hs(t, claimsNow())); err != nil {
		t.Fatalf("verifier saw the caller's later change to the secret: %v", err)
	}
}
