package auth

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/MicahParks/jwkset"
	"golang.org/x/time/rate"

	"github.com/pgtenant/pgtenant/config"
)

// Remote key fetching limits.
const (
	// fetchTimeout bounds one discovery or JWKS request.
	fetchTimeout = 10 * time.Second
	// startupFetchWait is how long NewVerifier waits for the first keys; after
	// it the verifier starts anyway and keeps trying in the background.
	startupFetchWait = 5 * time.Second
	// maxRedirects bounds redirects followed while fetching.
	maxRedirects = 3
	// defaultRefresh and defaultRefetch apply when config.Auth leaves them zero.
	defaultRefresh = 15 * time.Minute
	defaultRefetch = 30 * time.Second
)

// errKeysUnavailable means no key set has been fetched yet.
var errKeysUnavailable = errors.New("no key set fetched yet")

// remoteKeys is one JWKS fetched over HTTP, from auth.jwks_url or from the
// jwks_uri of the issuer's OIDC discovery document. jwkset keeps the keys
// in memory, refreshes them every interval and leaves the last good set in
// place when a refresh fails (fail-static); a token naming an unknown kid
// triggers a refetch at most once per refetch interval. remoteKeys are shared
// by every Verifier built with the same source and settings, so a config
// reload keeps the cached keys and starts no second refresh loop.
type remoteKeys struct {
	id      string // registry key
	url     string // the JWKS URL, or "" until discovery finds it
	issuer  string // discover from this issuer when url is ""
	client  *http.Client
	refresh time.Duration
	limiter *rate.Limiter
	ctx     context.Context
	cancel  context.CancelFunc
	refs    int        // guarded by registry.mu
	initMu  sync.Mutex // serialises init

	mu    sync.RWMutex
	local *jwkset.MemoryJWKSet // the cached keys; nil until the JWKS URL is known
	store jwkset.Storage       // refetches on an unknown kid
}

var registry = struct {
	mu  sync.Mutex
	set map[string]*remoteKeys
}{set: map[string]*remoteKeys{}}

// acquireRemote returns the shared remote key set for cfg, creating it (and
// waiting up to startupFetchWait for its first keys) when none exists yet.
// It returns nil when cfg names no remote key source.
func acquireRemote(cfg config.Auth) (*remoteKeys, error) {
	if !cfg.RemoteKeys() {
		return nil, nil
	}
	refresh := cfg.JWKSRefresh
	if refresh <= 0 {
		refresh = defaultRefresh
	}
	refetch := cfg.JWKSRefetchInterval
	if refetch <= 0 {
		refetch = defaultRefetch
	}
	r := &remoteKeys{refresh: refresh}
	if cfg.JWKSURL != "" {
		if err := config.CheckFetchURL(cfg.JWKSURL); err != nil {
			return nil, fmt.Errorf("auth.jwks_url: %w", err)
		}
		r.url = cfg.JWKSURL
	} else {
		if err := config.CheckFetchURL(cfg.Issuer); err != nil {
			return nil, fmt.Errorf("auth.issuer: for OIDC discovery, %w", err)
		}
		r.issuer = cfg.Issuer
	}
	r.id = fmt.Sprintf("%s|%s|%s|%s", r.url, r.issuer, refresh, refetch)

	registry.mu.Lock()
	if existing := registry.set[r.id]; existing != nil {
		existing.refs++
		registry.mu.Unlock()
		return existing, nil
	}
	r.refs = 1
	r.limiter = rate.NewLimiter(rate.Every(refetch), 1)
	r.ctx, r.cancel = context.WithCancel(context.Background())
	r.client = fetchClient()
	registry.set[r.id] = r
	registry.mu.Unlock()

	ctx, cancel := context.WithTimeout(r.ctx, startupFetchWait)
	defer cancel()
	if err := r.init(ctx); err != nil {
		slog.Warn("identity provider keys not fetched yet; retrying in the background", "source", r.source(), "error", err)
		go r.retryInit()
	}
	return r, nil
}

// release drops one reference; the last one stops the refresh loop.
func (r *remoteKeys) release() {
	registry.mu.Lock()
	defer registry.mu.Unlock()
	r.refs--
	if r.refs == 0 {
		r.cancel()
		delete(registry.set, r.id)
	}
}

func (r *remoteKeys) source() string {
	if r.url != "" {
		return r.url
	}
	return r.issuer
}

// init resolves the JWKS URL (by discovery when needed) and starts jwkset's
// storage, which fetches the keys once and then every refresh interval. It
// returns the discovery error, or the first fetch's error; once the URL is
// known the storage is in place either way, and jwkset keeps retrying at
// every interval and on unknown kids.
func (r *remoteKeys) init(ctx context.Context) error {
	r.initMu.Lock()
	defer r.initMu.Unlock()
	r.mu.RLock()
	done := r.store != nil
	r.mu.RUnlock()
	if done {
		return nil
	}
	url := r.url
	if url == "" {
		var err error
		if url, err = discover(ctx, r.client, r.issuer); err != nil {
			return err
		}
	}
	local := jwkset.NewMemoryStorage()
	// The first fetch runs inside NewStorageFromHTTP; its refresh goroutine
	// starts before it and may report too, hence the lock.
	var (
		mu       sync.Mutex
		first    = true
		firstErr error
	)
	st, err := jwkset.NewStorageFromHTTP(url, jwkset.HTTPClientStorageOptions{
		Client:                    r.client,
		Ctx:                       r.ctx,
		HTTPTimeout:               fetchTimeout,
		NoErrorReturnFirstHTTPReq: true,
		RefreshInterval:           r.refresh,
		Storage:                   local,
		RefreshErrorHandler: func(_ context.Context, err error) {
			mu.Lock()
			if first {
				firstErr = err
			}
			mu.Unlock()
			slog.Warn("identity provider keys not refreshed; the last good keys stay in use", "url", url, "error", err)
		},
	})
	mu.Lock()
	first = false
	fetchErr := firstErr
	mu.Unlock()
	if err != nil {
		return fmt.Errorf("jwks %s: %w", url, err)
	}
	store, err := jwkset.NewHTTPClient(jwkset.HTTPClientOptions{
		HTTPURLs: map[string]jwkset.Storage{url: st},
		// remoteKeys rate-limits refetches itself, before calling KeyRead.
		RefreshUnknownKID: rate.NewLimiter(rate.Inf, 1),
	})
	if err != nil {
		return fmt.Errorf("jwks %s: %w", url, err)
	}
	r.mu.Lock()
	r.local, r.store = local, store
	r.mu.Unlock()
	return fetchErr
}

// retryInit keeps trying init until it succeeds or the keys are released.
func (r *remoteKeys) retryInit() {
	wait := time.Second
	for {
		select {
		case <-r.ctx.Done():
			return
		case <-time.After(wait):
		}
		ctx, cancel := context.WithTimeout(r.ctx, fetchTimeout)
		err := r.init(ctx)
		cancel()
		r.mu.RLock()
		started := r.store != nil
		r.mu.RUnlock()
		if err == nil || started {
			return
		}
		wait = min(2*wait, r.refresh)
	}
}

// lookup returns the key with kid, refetching the set (rate-limited) when
// the cached set lacks it.
func (r *remoteKeys) lookup(kid string) (publicKey, error) {
	r.mu.RLock()
	local, store := r.local, r.store
	r.mu.RUnlock()
	ctx, cancel := context.WithTimeout(r.ctx, fetchTimeout)
	defer cancel()
	if local != nil {
		if k, err := local.KeyRead(ctx, kid); err == nil {
			return convertJWK(k)
		}
	}
	if !r.limiter.Allow() {
		return publicKey{}, r.notFound(jwkset.ErrKeyNotFound)
	}
	if store == nil {
		if err := r.init(ctx); err != nil {
			return publicKey{}, fmt.Errorf("%w: %w", errKeysUnavailable, err)
		}
		r.mu.RLock()
		store = r.store
		r.mu.RUnlock()
	}
	k, err := store.KeyRead(ctx, kid)
	if err != nil {
		return publicKey{}, r.notFound(err)
	}
	return convertJWK(k)
}

// notFound is err, or errKeysUnavailable when no key was ever fetched (or
// the provider publishes none): the token is then not at fault.
func (r *remoteKeys) notFound(err error) error {
	if len(r.all()) == 0 {
		return fmt.Errorf("%w: %w", errKeysUnavailable, err)
	}
	return err
}

// all returns every cached key, for tokens without a kid.
func (r *remoteKeys) all() []publicKey {
	r.mu.RLock()
	local := r.local
	r.mu.RUnlock()
	if local == nil {
		return nil
	}
	jwks, _ := local.KeyReadAll(r.ctx)
	keys := make([]publicKey, 0, len(jwks))
	for _, j := range jwks {
		if k, err := convertJWK(j); err == nil {
			keys = append(keys, k)
		}
	}
	return keys
}

// convertJWK passes a fetched key through the same checks as a jwks_file
// key: private material, encryption keys, unsupported types and weak or
// oversized keys are refused.
func convertJWK(j jwkset.JWK) (publicKey, error) {
	m := j.Marshal()
	k := jwk{Kty: string(m.KTY), Kid: m.KID, Use: string(m.USE), Alg: string(m.ALG), Crv: string(m.CRV),
		N: m.N, E: m.E, X: m.X, Y: m.Y, D: m.D, K: m.K}
	for _, op := range m.KEYOPS {
		k.KeyOps = append(k.KeyOps, string(op))
	}
	pk, ok, err := k.publicKey()
	if err != nil {
		return publicKey{}, fmt.Errorf("kid %q: %w", m.KID, err)
	}
	if !ok {
		return publicKey{}, fmt.Errorf("kid %q: not a signature verification key", m.KID)
	}
	pk.source = "jwks_url"
	return pk, nil
}

// discover reads the issuer's OpenID Provider metadata and returns its
// jwks_uri. The document must name the same issuer (OpenID Connect
// Discovery 1.0, section 4.3), so a document served elsewhere is refused.
func discover(ctx context.Context, client *http.Client, issuer string) (string, error) {
	wellKnown := strings.TrimSuffix(issuer, "/") + "/.well-known/openid-configuration"
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, wellKnown, nil)
	if err != nil {
		return "", fmt.Errorf("oidc discovery %s: %w", wellKnown, err)
	}
	req.Header.Set("Accept", "application/json")
	resp, err := client.Do(req)
	if err != nil {
		return "", fmt.Errorf("oidc discovery %s: %w", wellKnown, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return "", fmt.Errorf("oidc discovery %s: HTTP status %d", wellKnown, resp.StatusCode)
	}
	var doc struct {
		Issuer  string `json:"issuer"`
		JWKSURI string `json:"jwks_uri"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&doc); err != nil {
		return "", fmt.Errorf("oidc discovery %s: %w", wellKnown, err)
	}
	if doc.Issuer != issuer {
		return "", fmt.Errorf("oidc discovery %s: the document names issuer %q, not %q", wellKnown, doc.Issuer, issuer)
	}
	if doc.JWKSURI == "" {
		return "", fmt.Errorf("oidc discovery %s: no jwks_uri", wellKnown)
	}
	if err := config.CheckFetchURL(doc.JWKSURI); err != nil {
		return "", fmt.Errorf("oidc discovery %s: jwks_uri %w", wellKnown, err)
	}
	return doc.JWKSURI, nil
}

// fetchClient is the HTTP client for discovery and JWKS requests: bounded
// time and size, and redirects only to URLs that CheckFetchURL accepts (an
// https endpoint must not be able to bounce the fetch to plain http).
func fetchClient() *http.Client {
	return &http.Client{
		Timeout:   fetchTimeout,
		Transport: limitedTransport{base: http.DefaultTransport},
		CheckRedirect: func(req *http.Request, via []*http.Request) error {
			if len(via) >= maxRedirects {
				return errors.New("too many redirects")
			}
			return config.CheckFetchURL(req.URL.String())
		},
	}
}

// limitedTransport caps every response body at maxJWKSBytes.
type limitedTransport struct{ base http.RoundTripper }

func (t limitedTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	resp, err := t.base.RoundTrip(req)
	if err != nil {
		return nil, err
	}
	resp.Body = &limitedBody{ReadCloser: resp.Body, left: maxJWKSBytes}
	return resp, nil
}

type limitedBody struct {
	io.ReadCloser
	left int64
}

func (b *limitedBody) Read(p []byte) (int, error) {
	if b.left <= 0 {
		return 0, fmt.Errorf("response larger than %d bytes", maxJWKSBytes)
	}
	if int64(len(p)) > b.left {
		p = p[:b.left]
	}
	n, err := b.ReadCloser.Read(p)
	b.left -= int64(n)
	return n, err
}
