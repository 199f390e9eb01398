package auth_test

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/pgtenant/pgtenant/auth"
	"github.com/pgtenant/pgtenant/config"
)

// jwksServer serves a JWKS document that the test can replace, break or
// stop, and counts the fetches. It also serves OIDC discovery metadata.
type jwksServer struct {
	*httptest.Server
	mu      sync.Mutex
	keys    []map[string]any
	status  int
	issuer  string // in the discovery document; the server's URL when ""
	jwksURI string // in the discovery document; /jwks when ""
	fetches atomic.Int64
}

func newJWKSServer(t *testing.T, keys ...map[string]any) *jwksServer {
	s := &jwksServer{keys: keys, status: http.StatusOK}
	s.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.mu.Lock()
		defer s.mu.Unlock()
		switch r.URL.Path {
		case "/.well-known/openid-configuration":
			iss, uri := s.issuer, s.jwksURI
			if iss == "" {
				iss = s.URL
			}
			if uri == "" {
				uri = s.URL + "/jwks"
			}
			_ = json.NewEncoder(w).Encode(map[string]any{"issuer": iss, "jwks_uri": uri})
		case "/jwks":
			s.fetches.Add(1)
			if s.status != http.StatusOK {
				w.WriteHeader(s.status)
				return
			}
			_ = json.NewEncoder(w).Encode(map[string]any{"keys": s.keys})
		default:
			http.NotFound(w, r)
		}
	}))
	t.Cleanup(s.Close)
	return s
}

func (s *jwksServer) set(status int, keys ...map[string]any) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.status, s.keys = status, keys
}

// remoteAuth is an RS256 config fetching keys from url (or discovering them
// from issuer), with intervals short enough for tests.
func remoteAuth(url, issuer string) config.Auth {
	a := baseAuth("RS256")
	a.JWKSURL, a.Issuer = url, issuer
	a.JWKSRefresh, a.JWKSRefetchInterval = time.Hour, 200*time.Millisecond
	return a
}

func remoteVerifier(t *testing.T, cfg config.Auth) *auth.Verifier {
	t.Helper()
	v, err := auth.NewVerifier(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(v.Close)
	return v
}

func rs(t *testing.T, kid string, key any, claims map[string]any) string {
	return sign(t, jwt.SigningMethodRS256, key, kid, claims)
}

// Keys come from jwks_url; a rotation (a token naming a kid the cache lacks)
// refetches the set, at most once per refetch interval; the rotated-out key
// is no longer accepted.
func TestJWKSURLRotation(t *testing.T) {
	k := mustKeys(t)
	srv := newJWKSServer(t, jwkOf(t, "k1", k.rsa))
	// An interval longer than the test: the count of fetches below depends
	// on the limiter only, not on how fast a loaded machine runs the burst.
	cfg := remoteAuth(srv.URL+"/jwks", "")
	cfg.JWKSRefetchInterval = time.Minute
	v := remoteVerifier(t, cfg)
	if _, err := v.Authenticate(rs(t, "k1", k.rsa, claimsNow())); err != nil {
		t.Fatalf("k1: %v", err)
	}
	if _, err := v.Authenticate(rs(t, "", k.rsa, claimsNow())); err != nil {
		t.Fatalf("token without kid: %v", err)
	}
	if n := srv.fetches.Load(); n != 1 {
		t.Errorf("%d fetches for cached keys, want 1", n)
	}

	srv.set(http.StatusOK, jwkOf(t, "k2", k.rsa2))
	if _, err := v.Authenticate(rs(t, "k2", k.rsa2, claimsNow())); err != nil {
		t.Fatalf("rotated key k2: %v", err)
	}
	if n := srv.fetches.Load(); n != 2 {
		t.Errorf("%d fetches after one unknown kid, want 2", n)
	}
	tok := rs(t, "k1", k.rsa, claimsNow())
	_, err := v.Authenticate(tok)
	assertRejected(t, tok, err, auth.ReasonUnknownKid)

	// unknown kids within the interval do not reach the provider
	for i := 0; i < 20; i++ {
		tok := rs(t, "nope", k.rsa, claimsNow())
		_, err := v.Authenticate(tok)
		assertRejected(t, tok, err, auth.ReasonUnknownKid)
	}
	if n := srv.fetches.Load(); n != 2 {
		t.Errorf("%d fetches after a burst of unknown kids, want still 2 (rate-limited)", n)
	}
}

// When the provider fails, the last good keys stay in use (fail-static),
// through failed background refreshes and failed refetches.
func TestJWKSFailStatic(t *testing.T) {
	k := mustKeys(t)
	srv := newJWKSServer(t, jwkOf(t, "k1", k.rsa))
	cfg := remoteAuth(srv.URL+"/jwks", "")
	cfg.JWKSRefresh = 50 * time.Millisecond
	v := remoteVerifier(t, cfg)
	srv.set(http.StatusInternalServerError)
	before := srv.fetches.Load()
	deadline := time.Now().Add(5 * time.Second)
	for srv.fetches.Load() < before+3 && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	if srv.fetches.Load() < before+3 {
		t.Fatal("no background refresh happened")
	}
	// an unknown kid forces a refetch, which fails too
	tok := rs(t, "k9", k.rsa2, claimsNow())
	_, err := v.Authenticate(tok)
	assertRejected(t, tok, err, auth.ReasonUnknownKid)
	srv.Close() // the provider is gone
	time.Sleep(120 * time.Millisecond)
	if _, err := v.Authenticate(rs(t, "k1", k.rsa, claimsNow())); err != nil {
		t.Fatalf("the last good key was dropped during the outage: %v", err)
	}
}

// OIDC discovery: the JWKS URL comes from the issuer's metadata, which must
// name the same issuer and a fetchable jwks_uri.
func TestOIDCDiscovery(t *testing.T) {
	k := mustKeys(t)
	srv := newJWKSServer(t, jwkOf(t, "k1", k.rsa))
	v := remoteVerifier(t, remoteAuth("", srv.URL))
	claims := with(map[string]any{"iss": srv.URL})
	if _, err := v.Authenticate(rs(t, "k1", k.rsa, claims)); err != nil {
		t.Fatalf("discovered key: %v", err)
	}

	for name, edit := range map[string]func(s *jwksServer){
		"issuer mismatch":       func(s *jwksServer) { s.issuer = "https://evil.example" },
		"plain http jwks_uri":   func(s *jwksServer) { s.jwksURI = "http://keys.example.com/jwks" },
		"jwks_uri not absolute": func(s *jwksServer) { s.jwksURI = "/jwks" },
	} {
		t.Run(name, func(t *testing.T) {
			bad := newJWKSServer(t, jwkOf(t, "k1", k.rsa))
			edit(bad)
			v := remoteVerifier(t, remoteAuth("", bad.URL))
			tok := rs(t, "k1", k.rsa, with(map[string]any{"iss": bad.URL}))
			_, err := v.Authenticate(tok)
			assertRejected(t, tok, err, auth.ReasonKeysUnavailable)
			if bad.fetches.Load() != 0 {
				t.Error("keys fetched despite bad discovery metadata")
			}
		})
	}
}

// A provider that is down at start does not stop the verifier: tokens are
// refused until the keys arrive, then accepted.
func TestJWKSProviderDownAtStart(t *testing.T) {
	k := mustKeys(t)
	srv := newJWKSServer(t, jwkOf(t, "k1", k.rsa))
	srv.set(http.StatusServiceUnavailable)
	v := remoteVerifier(t, remoteAuth(srv.URL+"/jwks", ""))
	tok := rs(t, "k1", k.rsa, claimsNow())
	if _, err := v.Authenticate(tok); !auth.IsAuthError(err) {
		t.Fatalf("accepted with no keys: %v", err)
	}
	noKid := rs(t, "", k.rsa, claimsNow())
	if _, err := v.Authenticate(noKid); !auth.IsAuthError(err) {
		t.Fatalf("accepted with no keys: %v", err)
	}
	srv.set(http.StatusOK, jwkOf(t, "k1", k.rsa))
	time.Sleep(250 * time.Millisecond) // the refetch interval
	if _, err := v.Authenticate(noKid); err != nil {
		t.Fatalf("keys not picked up by a token without kid after the provider came back: %v", err)
	}
	if _, err := v.Authenticate(tok); err != nil {
		t.Fatalf("keys not picked up after the provider came back: %v", err)
	}
}

// Fetched keys get the jwks_file checks: private material, symmetric keys
// and weak keys are not used; a huge document is refused.
func TestJWKSFetchedKeysChecked(t *testing.T) {
	k := mustKeys(t)
	withD := jwkOf(t, "priv", k.rsa) // the whole private key, as a misconfigured provider might publish it
	withD["d"], withD["p"], withD["q"] = b64(k.rsa.D.Bytes()), b64(k.rsa.Primes[0].Bytes()), b64(k.rsa.Primes[1].Bytes())
	withD["dp"], withD["dq"], withD["qi"] = b64(k.rsa.Precomputed.Dp.Bytes()), b64(k.rsa.Precomputed.Dq.Bytes()), b64(k.rsa.Precomputed.Qinv.Bytes())
	oct := map[string]any{"kty": "oct", "kid": "oct", "k": b64(testSecret)}
	srv := newJWKSServer(t, withD, oct, jwkOf(t, "ok", k.rsa2))
	v := remoteVerifier(t, remoteAuth(srv.URL+"/jwks", ""))
	if _, err := v.Authenticate(rs(t, "ok", k.rsa2, claimsNow())); err != nil {
		t.Fatalf("good key: %v", err)
	}
	tok := rs(t, "priv", k.rsa, claimsNow())
	if _, err := v.Authenticate(tok); err == nil {
		t.Error("a key published with private material was used")
	}
	tok = sign(t, jwt.SigningMethodHS256, testSecret, "oct", claimsNow())
	if _, err := v.Authenticate(tok); err == nil {
		t.Error("a symmetric key from the JWKS was used")
	}

	big := newJWKSServer(t)
	pad := map[string]any{"kty": "RSA", "kid": "pad", "n": strings.Repeat("A", 2<<20), "e": "AQAB"}
	big.set(http.StatusOK, pad)
	v = remoteVerifier(t, remoteAuth(big.URL+"/jwks", ""))
	tok = rs(t, "pad", k.rsa, claimsNow())
	_, err := v.Authenticate(tok)
	assertRejected(t, tok, err, auth.ReasonKeysUnavailable)
}

// jwks_url and the discovery issuer must be https, or http on loopback.
func TestFetchURLs(t *testing.T) {
	for raw, ok := range map[string]bool{
		"https://idp.example.com/jwks": true, "http://127.0.0.1:5556/keys": true, "http://localhost/keys": true,
		"http://[::1]:80/k": true, "http://idp.example.com/jwks": false, "ftp://x/y": false, "/jwks": false,
		"https://user:pw@idp.example.com/jwks": false, "http://127.0.0.1.example.com/": false, "": false,
	} {
		if err := config.CheckFetchURL(raw); (err == nil) != ok {
			t.Errorf("CheckFetchURL(%q) = %v, want ok=%v", raw, err, ok)
		}
		cfg := remoteAuth(raw, "")
		if !ok && raw != "" {
			if _, err := auth.NewVerifier(cfg); err == nil || !strings.Contains(err.Error(), "auth.jwks_url") {
				t.Errorf("NewVerifier with jwks_url %q: %v", raw, err)
			}
		}
	}
}
