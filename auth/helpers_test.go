package auth_test

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"math/big"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/pgtenant/pgtenant/auth"
	"github.com/pgtenant/pgtenant/config"
)

// testSecret is the HMAC secret of the test verifiers (32 bytes).
var testSecret = []byte("0123456789abcdef0123456789abcdef")

// testKeys are generated once per test binary: real keys, real signatures.
type testKeys struct {
	rsa, rsa2  *rsa.PrivateKey
	ec, ec2    *ecdsa.PrivateKey
	ec384      *ecdsa.PrivateKey
	ed, ed2    ed25519.PrivateKey
	x25519     []byte
	rsaPEM     []byte // PKIX PEM of rsa's public key
	generation error
}

var (
	keysOnce sync.Once
	keys     testKeys
)

func mustKeys(tb testing.TB) *testKeys {
	tb.Helper()
	keysOnce.Do(func() {
		var err error
		set := func(e error) {
			if err == nil {
				err = e
			}
		}
		keys.rsa, err = rsa.GenerateKey(rand.Reader, 2048)
		k2, e := rsa.GenerateKey(rand.Reader, 2048)
		set(e)
		keys.rsa2 = k2
		keys.ec, e = ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		set(e)
		keys.ec2, e = ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		set(e)
		keys.ec384, e = ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
		set(e)
		_, keys.ed, e = ed25519.GenerateKey(rand.Reader)
		set(e)
		_, keys.ed2, e = ed25519.GenerateKey(rand.Reader)
		set(e)
		keys.x25519 = make([]byte, 32)
		_, e = rand.Read(keys.x25519)
		set(e)
		if err == nil {
			keys.rsaPEM = pemPublic(tb, &keys.rsa.PublicKey)
		}
		keys.generation = err
	})
	if keys.generation != nil {
		tb.Fatalf("generate keys: %v", keys.generation)
	}
	return &keys
}

// pemPublic encodes pub as a PKIX "PUBLIC KEY" PEM block.
func pemPublic(tb testing.TB, pub crypto.PublicKey) []byte {
	tb.Helper()
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		tb.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der})
}

// certPEM wraps pub in a self-signed certificate signed by signer.
func certPEM(tb testing.TB, pub crypto.PublicKey, signer crypto.Signer) []byte {
	tb.Helper()
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1),
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, pub, signer)
	if err != nil {
		tb.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
}

// writeFile writes data into a fresh temporary directory and returns the path.
func writeFile(tb testing.TB, name string, data []byte) string {
	tb.Helper()
	p := filepath.Join(tb.TempDir(), name)
	if err := os.WriteFile(p, data, 0o600); err != nil {
		tb.Fatal(err)
	}
	return p
}

func b64(b []byte) string { return base64.RawURLEncoding.EncodeToString(b) }

// jwkOf returns the public JWK of a private key.
func jwkOf(tb testing.TB, kid string, priv crypto.Signer) map[string]any {
	tb.Helper()
	m := map[string]any{}
	if kid != "" {
		m["kid"] = kid
	}
	switch k := priv.Public().(type) {
	case *rsa.PublicKey:
		m["kty"], m["n"], m["e"] = "RSA", b64(k.N.Bytes()), b64(big.NewInt(int64(k.E)).Bytes())
	case *ecdsa.PublicKey:
		size := (k.Curve.Params().BitSize + 7) / 8
		raw, err := k.Bytes()
		if err != nil {
			tb.Fatal(err)
		}
		m["kty"], m["crv"] = "EC", k.Curve.Params().Name
		m["x"], m["y"] = b64(raw[1:1+size]), b64(raw[1+size:])
	case ed25519.PublicKey:
		m["kty"], m["crv"], m["x"] = "OKP", "Ed25519", b64(k)
	default:
		tb.Fatalf("jwkOf: %T", k)
	}
	return m
}

// jwksFile writes a JWKS document of the given keys.
func jwksFile(tb testing.TB, jwks ...map[string]any) string {
	tb.Helper()
	data, err := json.Marshal(map[string]any{"keys": jwks})
	if err != nil {
		tb.Fatal(err)
	}
	return writeFile(tb, "jwks.json", data)
}

// claimsNow returns a valid claim set for account 42 in eu-west.
func claimsNow() map[string]any {
	now := time.Now()
	return map[string]any{
		"account_id":  json.Number("42"),
		"data_region": "eu-west",
		"sub":         "alice",
		"iat":         now.Unix(),
		"nbf":         now.Unix(),
		"exp":         now.Add(time.Hour).Unix(),
	}
}

// with returns a copy of claimsNow with changes applied (a nil value deletes).
func with(changes map[string]any) map[string]any {
	c := claimsNow()
	for k, v := range changes {
		if v == nil {
			delete(c, k)
		} else {
			c[k] = v
		}
	}
	return c
}

// signRaw builds a token from a header and a raw payload, signed with method
// and key (a nil method leaves the signature empty).
func signRaw(tb testing.TB, header map[string]any, payload []byte, method jwt.SigningMethod, key any) string {
	tb.Helper()
	h, err := json.Marshal(header)
	if err != nil {
		tb.Fatal(err)
	}
	signing := b64(h) + "." + b64(payload)
	if method == nil {
		return signing + "."
	}
	sig, err := method.Sign(signing, key)
	if err != nil {
		tb.Fatal(err)
	}
	return signing + "." + b64(sig)
}

// sign signs claims with method and key; kid is set in the header when non-empty.
func sign(tb testing.TB, method jwt.SigningMethod, key any, kid string, claims map[string]any) string {
	tb.Helper()
	payload, err := json.Marshal(claims)
	if err != nil {
		tb.Fatal(err)
	}
	header := map[string]any{"alg": method.Alg(), "typ": "JWT"}
	if kid != "" {
		header["kid"] = kid
	}
	return signRaw(tb, header, payload, method, key)
}

// hs signs claims with the test secret.
func hs(tb testing.TB, claims map[string]any) string {
	tb.Helper()
	return sign(tb, jwt.SigningMethodHS256, testSecret, "", claims)
}

// newVerifier builds a verifier or fails the test.
func newVerifier(tb testing.TB, cfg config.Auth) *auth.Verifier {
	tb.Helper()
	v, err := auth.NewVerifier(cfg)
	if err != nil {
		tb.Fatalf("NewVerifier: %v", err)
	}
	return v
}

// baseAuth is config.Auth with the defaults of config.Default.
func baseAuth(algs ...string) config.Auth {
	a := config.Default().Auth
	a.Algorithms = algs
	a.Secret = testSecret
	return a
}

// assertRejected checks that err is an *auth.Error with the reason and a
// client-safe message that does not echo the token or any segment of it.
func assertRejected(tb testing.TB, token string, err error, reason string, secrets ...string) {
	tb.Helper()
	if err == nil {
		tb.Fatalf("accepted; want rejection %q", reason)
	}
	if !auth.IsAuthError(err) {
		tb.Fatalf("error %v (%T) is not an auth error", err, err)
	}
	ae, _ := err.(*auth.Error)
	if ae == nil {
		tb.Fatalf("error %T is not *auth.Error", err)
	}
	if ae.Reason != reason {
		tb.Errorf("reason %q, want %q (err: %v; cause: %v)", ae.Reason, reason, err, ae.Err)
	}
	msg := err.Error()
	if !strings.HasPrefix(msg, "pgtenant: ") {
		tb.Errorf("message %q does not start with pgtenant:", msg)
	}
	if token != "" && strings.Contains(msg, token) {
		tb.Errorf("message %q contains the token", msg)
	}
	for _, part := range strings.Split(token, ".") {
		if len(part) >= 6 && strings.Contains(msg, part) {
			tb.Errorf("message %q contains token segment %q", msg, part)
		}
	}
	for _, s := range secrets {
		if strings.Contains(msg, s) {
			tb.Errorf("message %q contains %q from the token", msg, s)
		}
	}
}
