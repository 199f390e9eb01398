package auth

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"

	"github.com/golang-jwt/jwt/v5"

	"github.com/pgtenant/pgtenant/config"
)

// MaxTokenBytes is the largest token Authenticate parses (16 KiB).
const MaxTokenBytes = 16 << 10

// minHMACSecret is the shortest HMAC secret accepted, as config.Validate requires.
const minHMACSecret = 32

// Default claim names, used when config.Auth leaves them empty.
const (
	DefaultTenantClaim  = "account_id"
	DefaultRegionClaim  = "data_region"
	DefaultSubjectClaim = "sub"
	DefaultRoleClaim    = "role"
	DefaultActorClaim   = "act"
)

// Verifier checks tokens against one immutable set of keys and rules. It is
// safe for concurrent use; to change keys, build a new Verifier.
type Verifier struct {
	parser  *jwt.Parser
	allowed []string
	// byAlg holds, per allowed algorithm, the keys a token without kid is tried against.
	byAlg map[string]jwt.VerificationKeySet
	// byKid holds the JWKS keys that have a kid.
	byKid map[string]publicKey

	issuer, audience                       string
	tenantClaim, regionClaim, subjectClaim string
	roleClaim, actorClaim                  string
	access                                 accessRules
	// remote holds keys fetched from auth.jwks_url or OIDC discovery; nil without.
	remote    *remoteKeys
	closeOnce sync.Once
}

// Option adjusts a Verifier built by NewVerifier.
type Option func(*Verifier)

// WithAccess applies the access section of the configuration: read-only
// roles and the rules for support sessions. Without it, the defaults of
// SPEC.md apply (viewer and auditor read-only; support sessions need a
// purpose, live at most 24h and are read-only).
func WithAccess(a config.Access) Option {
	return func(v *Verifier) { v.access = newAccessRules(a) }
}

// NewVerifier builds a Verifier from cfg, whose Secret holds the resolved
// HMAC secret. It reads the PEM and JWKS files named in cfg and returns an
// error naming the configuration key at fault; it has no other side effects.
//
// With auth.jwks_url or OIDC discovery it also fetches keys over HTTP: it
// waits a few seconds for the first set and otherwise starts anyway
// (tokens are refused until keys arrive). Call Close when the Verifier is
// no longer used, so the shared refresh loop can stop.
func NewVerifier(cfg config.Auth, opts ...Option) (*Verifier, error) {
	v := &Verifier{
		byAlg:        map[string]jwt.VerificationKeySet{},
		byKid:        map[string]publicKey{},
		issuer:       cfg.Issuer,
		audience:     cfg.Audience,
		tenantClaim:  orDefault(cfg.TenantClaim, DefaultTenantClaim),
		regionClaim:  orDefault(cfg.RegionClaim, DefaultRegionClaim),
		subjectClaim: orDefault(cfg.SubjectClaim, DefaultSubjectClaim),
		roleClaim:    orDefault(cfg.RoleClaim, DefaultRoleClaim),
		actorClaim:   orDefault(cfg.ActorClaim, DefaultActorClaim),
		access:       newAccessRules(config.Access{}),
	}
	for _, o := range opts {
		o(v)
	}
	if v.tenantClaim == v.regionClaim {
		return nil, fmt.Errorf("auth.region_claim: must differ from auth.tenant_claim (%s)", v.tenantClaim)
	}
	if err := v.checkClaimNames(); err != nil {
		return nil, err
	}
	if cfg.Leeway < 0 {
		return nil, errors.New("auth.leeway: must not be negative")
	}
	if len(cfg.Algorithms) == 0 {
		return nil, errors.New("auth.algorithms: at least one algorithm is required")
	}
	for _, alg := range cfg.Algorithms {
		if strings.EqualFold(alg, "none") {
			return nil, errors.New("auth.algorithms: 'none' is never allowed")
		}
		if _, ok := algorithms[alg]; !ok {
			return nil, fmt.Errorf("auth.algorithms: unsupported algorithm %q", alg)
		}
		if !slices.Contains(v.allowed, alg) {
			v.allowed = append(v.allowed, alg)
		}
	}

	var keys []publicKey
	for _, path := range cfg.PublicKeys {
		k, err := loadPEMFile(path)
		if err != nil {
			return nil, err
		}
		keys = append(keys, k...)
	}
	if cfg.JWKSFile != "" {
		k, err := loadJWKSFile(cfg.JWKSFile)
		if err != nil {
			return nil, err
		}
		for _, key := range k {
			if key.kid != "" {
				v.byKid[key.kid] = key
			}
		}
		keys = append(keys, k...)
	}

	remote, err := acquireRemote(cfg)
	if err != nil {
		return nil, err
	}
	v.remote = remote
	ok := false
	defer func() {
		if !ok && remote != nil {
			remote.release()
		}
	}()

	for _, alg := range v.allowed {
		var set jwt.VerificationKeySet
		if algorithms[alg].family == familyHMAC {
			if len(cfg.Secret) < minHMACSecret {
				return nil, fmt.Errorf("auth.hs256_secret: %s is allowed but the secret has %d bytes; use at least %d", alg, len(cfg.Secret), minHMACSecret)
			}
			set.Keys = append(set.Keys, slices.Clone(cfg.Secret))
		} else {
			for _, k := range keys {
				if k.usableFor(alg) {
					set.Keys = append(set.Keys, k.key)
				}
			}
		}
		if len(set.Keys) == 0 && remote == nil {
			return nil, fmt.Errorf("auth.algorithms: %s is allowed but no key in auth.public_keys or auth.jwks_file can verify it", alg)
		}
		v.byAlg[alg] = set
	}
	ok = true

	v.parser = jwt.NewParser(
		jwt.WithValidMethods(v.allowed),
		jwt.WithExpirationRequired(),
		jwt.WithIssuedAt(),
		jwt.WithLeeway(cfg.Leeway),
		jwt.WithStrictDecoding(),
	)
	return v, nil
}

// Close releases the verifier's share of fetched keys; with no other
// Verifier using them, their refresh loop stops. Authenticate keeps working
// with the keys already cached. Close is idempotent.
func (v *Verifier) Close() {
	v.closeOnce.Do(func() {
		if v.remote != nil {
			v.remote.release()
		}
	})
}

func orDefault(s, def string) string {
	if s == "" {
		return def
	}
	return s
}

// Authenticate verifies token and returns its principal. Every failure is an
// *Error with a client-safe message.
func (v *Verifier) Authenticate(token string) (Principal, error) {
	if token == "" {
		return Principal{}, fail(ReasonMissingToken, nil)
	}
	if len(token) > MaxTokenBytes {
		return Principal{}, fail(ReasonTooLarge, nil)
	}
	c := &claims{v: v}
	tok, err := v.parser.ParseWithClaims(token, c, v.keyFunc)
	if err != nil {
		return Principal{}, v.classify(err, tok)
	}
	return c.principal, nil
}

// keyFunc picks the verification keys for a parsed (not yet verified) token
// whose algorithm jwt has already checked against the allow-list.
func (v *Verifier) keyFunc(t *jwt.Token) (any, error) {
	if _, ok := t.Header["crit"]; ok {
		return nil, fail(ReasonMalformed, errors.New("crit header parameters are not supported"))
	}
	alg := t.Method.Alg()
	if raw, ok := t.Header["kid"]; ok {
		kid, ok := raw.(string)
		if !ok {
			return nil, fail(ReasonMalformed, errors.New("kid header is not a string"))
		}
		k, ok := v.byKid[kid]
		if !ok && v.remote != nil {
			var err error
			if k, err = v.remote.lookup(kid); err != nil {
				if errors.Is(err, errKeysUnavailable) {
					return nil, fail(ReasonKeysUnavailable, err)
				}
				return nil, fail(ReasonUnknownKid, err)
			}
			ok = true
		}
		if !ok {
			return nil, fail(ReasonUnknownKid, nil)
		}
		if !k.usableFor(alg) {
			return nil, fail(ReasonAlgNotAllowed, errors.New("the kid's key does not fit the token's algorithm"))
		}
		return k.key, nil
	}
	set, ok := v.byAlg[alg]
	if !ok {
		return nil, fail(ReasonAlgNotAllowed, nil)
	}
	if v.remote != nil {
		set.Keys = slices.Clone(set.Keys)
		remote := v.remote.all()
		if len(remote) == 0 {
			// nothing fetched yet: a refetch (rate-limited) may bring the set
			_, _ = v.remote.lookup("")
			remote = v.remote.all()
		}
		for _, k := range remote {
			if k.usableFor(alg) {
				set.Keys = append(set.Keys, k.key)
			}
		}
	}
	if len(set.Keys) == 0 {
		return nil, fail(ReasonKeysUnavailable, nil)
	}
	if len(set.Keys) == 1 {
		return set.Keys[0], nil
	}
	return set, nil
}

// classify turns a jwt error into an *Error.
func (v *Verifier) classify(err error, tok *jwt.Token) *Error {
	if errors.Is(err, jwt.ErrTokenInvalidClaims) {
		// Signature verified; report the most telling claim failure.
		switch {
		case errors.Is(err, jwt.ErrTokenExpired):
			return fail(ReasonExpired, err)
		case errors.Is(err, jwt.ErrTokenNotValidYet), errors.Is(err, jwt.ErrTokenUsedBeforeIssued):
			return fail(ReasonNotYetValid, err)
		}
		var ae *Error
		if errors.As(err, &ae) {
			return ae
		}
		if errors.Is(err, jwt.ErrTokenRequiredClaimMissing) {
			return claimFail(ReasonMissingClaim, "exp", err)
		}
		return fail(ReasonBadClaim, err)
	}
	var ae *Error
	if errors.As(err, &ae) {
		return ae // from claims decoding or keyFunc
	}
	if errors.Is(err, jwt.ErrTokenMalformed) || tok == nil {
		return fail(ReasonMalformed, err)
	}
	alg, ok := tok.Header["alg"].(string)
	if !ok {
		return fail(ReasonMalformed, err)
	}
	if !slices.Contains(v.allowed, alg) {
		return fail(ReasonAlgNotAllowed, err)
	}
	return fail(ReasonBadSignature, err)
}
