package auth_test

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/pgtenant/pgtenant/auth"
)

func benchmarkAuthenticate(b *testing.B, v *auth.Verifier, token string) {
	b.Helper()
	if _, err := v.Authenticate(token); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		if _, err := v.Authenticate(token); err != nil {
			b.Fatal(err)
		}
	}
}

func longLived() map[string]any {
	c := claimsNow()
	c["exp"] = time.Now().Add(time.Hour).Unix()
	return c
}

func BenchmarkAuthenticateHS256(b *testing.B) {
	benchmarkAuthenticate(b, newVerifier(b, baseAuth("HS256")), hs(b, longLived()))
}

func BenchmarkAuthenticateRS256(b *testing.B) {
	k := mustKeys(b)
	cfg := baseAuth("RS256")
	cfg.PublicKeys = []string{writeFile(b, "rsa.pem", k.rsaPEM)}
	benchmarkAuthenticate(b, newVerifier(b, cfg), sign(b, jwt.SigningMethodRS256, k.rsa, "", longLived()))
}

func BenchmarkAuthenticateES256(b *testing.B) {
	k := mustKeys(b)
	cfg := baseAuth("ES256")
	cfg.PublicKeys = []string{writeFile(b, "ec.pem", pemPublic(b, &k.ec.PublicKey))}
	benchmarkAuthenticate(b, newVerifier(b, cfg), sign(b, jwt.SigningMethodES256, k.ec, "", longLived()))
}

func BenchmarkAuthenticateEdDSA(b *testing.B) {
	k := mustKeys(b)
	cfg := baseAuth("EdDSA")
	cfg.JWKSFile = jwksFile(b, jwkOf(b, "ed-1", k.ed))
	benchmarkAuthenticate(b, newVerifier(b, cfg), sign(b, jwt.SigningMethodEdDSA, k.ed, "ed-1", longLived()))
}

// BenchmarkRejectGarbage measures the cost an unauthenticated client can
// impose with a maximal-size junk token.
func BenchmarkRejectGarbage(b *testing.B) {
	v := newVerifier(b, baseAuth("HS256"))
	junk := make([]byte, auth.MaxTokenBytes)
	for i := range junk {
		junk[i] = 'a'
	}
	token := string(junk)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := v.Authenticate(token); err == nil {
			b.Fatal("accepted junk")
		}
	}
}

// BenchmarkAuthenticateRS256JWKSURL: the key comes from a fetched JWKS (by kid).
func BenchmarkAuthenticateRS256JWKSURL(b *testing.B) {
	k := mustKeys(b)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		_ = json.NewEncoder(w).Encode(map[string]any{"keys": []any{jwkOf(b, "k1", k.rsa)}})
	}))
	defer srv.Close()
	cfg := baseAuth("RS256")
	cfg.JWKSURL = srv.URL
	v := newVerifier(b, cfg)
	defer v.Close()
	benchmarkAuthenticate(b, v, sign(b, jwt.SigningMethodRS256, k.rsa, "k1", longLived()))
}
