package auth

import (
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// MintOptions describes a development token.
type MintOptions struct {
	// Secret is the HMAC key; at least 32 bytes, as the verifier requires.
	Secret []byte
	// Account is the tenant id; emitted as a JSON integer when it is a
	// canonical decimal integer (no leading zero), else as a string.
	Account string
	// Region is the data region claim value.
	Region string
	// Subject is the sub claim; omitted when empty.
	Subject string
	// TTL is how long the token is valid from now; must be positive.
	TTL time.Duration
	// Issuer is the iss claim; omitted when empty.
	Issuer string
	// Audience is the aud claim; omitted when empty.
	Audience string
	// TenantClaim names the account claim. Default account_id.
	TenantClaim string
	// RegionClaim names the region claim. Default data_region.
	RegionClaim string
	// Role is the role claim's value; omitted when empty.
	Role string
	// Actor makes a support token: the actor claim is {"sub": Actor}. With
	// it, Purpose (required) and Ticket (optional) are emitted too.
	Actor, Purpose, Ticket string
	// RoleClaim, ActorClaim, PurposeClaim and TicketClaim name those claims.
	// Defaults role, act, purpose and ticket.
	RoleClaim, ActorClaim, PurposeClaim, TicketClaim string
}

// Mint signs an HS256 token for tests and the demo, with iat and nbf set to
// now and exp to now + TTL.
func Mint(o MintOptions) (string, error) {
	if len(o.Secret) < minHMACSecret {
		return "", fmt.Errorf("mint: the secret has %d bytes; use at least %d", len(o.Secret), minHMACSecret)
	}
	if o.Account == "" {
		return "", errors.New("mint: account is required")
	}
	if o.Account == ReservedAccount || nonCanonicalNumber(o.Account) {
		return "", fmt.Errorf("mint: account %q is reserved or spells a number non-canonically (write 42, not 042 or +42)", o.Account)
	}
	if o.Region == "" {
		return "", errors.New("mint: region is required")
	}
	if o.TTL <= 0 {
		return "", fmt.Errorf("mint: ttl %s must be positive", o.TTL)
	}
	tenantClaim := orDefault(o.TenantClaim, DefaultTenantClaim)
	regionClaim := orDefault(o.RegionClaim, DefaultRegionClaim)
	if tenantClaim == regionClaim {
		return "", errors.New("mint: tenant and region claims must differ")
	}
	for _, name := range []string{tenantClaim, regionClaim} {
		if name == "exp" || name == "nbf" || name == "iat" {
			return "", fmt.Errorf("mint: claim name %s is reserved", name)
		}
	}
	if err := checkText(o.Account, MaxClaimBytes); err != nil {
		return "", fmt.Errorf("mint: account: %w", err)
	}
	if err := checkText(o.Region, MaxClaimBytes); err != nil {
		return "", fmt.Errorf("mint: region: %w", err)
	}
	if err := checkText(o.Subject, maxSubjectBytes); err != nil {
		return "", fmt.Errorf("mint: subject: %w", err)
	}

	issued := time.Now()
	c := jwt.MapClaims{
		"iat": jwt.NewNumericDate(issued),
		"nbf": jwt.NewNumericDate(issued),
		"exp": jwt.NewNumericDate(issued.Add(o.TTL)),
	}
	if isDecimalInteger([]byte(o.Account)) {
		c[tenantClaim] = json.Number(o.Account)
	} else {
		c[tenantClaim] = o.Account
	}
	c[regionClaim] = o.Region
	for name, val := range map[string]string{"sub": o.Subject, "iss": o.Issuer, "aud": o.Audience} {
		if val == "" {
			continue
		}
		if _, taken := c[name]; taken {
			return "", fmt.Errorf("mint: claim %s is used twice", name)
		}
		c[name] = val
	}
	if err := o.addAccess(c); err != nil {
		return "", err
	}
	tok, err := jwt.NewWithClaims(jwt.SigningMethodHS256, c).SignedString(o.Secret)
	if err != nil {
		return "", fmt.Errorf("mint: %w", err)
	}
	return tok, nil
}

// addAccess adds the role and support claims.
func (o MintOptions) addAccess(c jwt.MapClaims) error {
	if o.Actor == "" && (o.Purpose != "" || o.Ticket != "") {
		return errors.New("mint: purpose and ticket belong to a support token; set the actor too")
	}
	if o.Actor != "" && o.Purpose == "" {
		return errors.New("mint: a support token (actor) needs a purpose")
	}
	add := func(name, def string, val any) error {
		name = orDefault(name, def)
		if _, taken := c[name]; taken {
			return fmt.Errorf("mint: claim %s is used twice", name)
		}
		c[name] = val
		return nil
	}
	for _, kv := range []struct {
		name, def, val string
		limit          int
	}{
		{o.RoleClaim, DefaultRoleClaim, o.Role, MaxClaimBytes},
		{o.ActorClaim, DefaultActorClaim, o.Actor, maxSubjectBytes},
		{o.PurposeClaim, "purpose", o.Purpose, maxPurposeBytes},
		{o.TicketClaim, "ticket", o.Ticket, maxPurposeBytes},
	} {
		if kv.val == "" {
			continue
		}
		if err := checkText(kv.val, kv.limit); err != nil {
			return fmt.Errorf("mint: %s: %w", orDefault(kv.name, kv.def), err)
		}
		var val any = kv.val
		if kv.def == DefaultActorClaim {
			val = map[string]any{"sub": kv.val}
		}
		if err := add(kv.name, kv.def, val); err != nil {
			return err
		}
	}
	return nil
}
