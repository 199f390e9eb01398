package auth

import (
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/pgtenant/pgtenant/config"
)

// Limits on the access claims.
const (
	// maxRoles bounds the number of values of the role claim.
	maxRoles = 64
	// maxPurposeBytes bounds the purpose and ticket claims: they are recorded
	// in every audit event of the session.
	maxPurposeBytes = 512
)

// Defaults of the access section (SPEC.md, second round).
var (
	DefaultReadOnlyRoles = []string{"viewer", "auditor"}
	DefaultSupportMaxTTL = 24 * time.Hour
)

// accessRules are the access section of the configuration, resolved.
type accessRules struct {
	readOnly                  map[string]bool
	purposeClaim, ticketClaim string
	maxTTL                    time.Duration
	supportReadOnly           bool
}

// newAccessRules resolves a; a zero Access means the defaults.
func newAccessRules(a config.Access) accessRules {
	if a.ReadOnlyRoles == nil && a.Support == (config.Support{}) {
		a = config.Access{ReadOnlyRoles: DefaultReadOnlyRoles,
			Support: config.Support{PurposeClaim: "purpose", TicketClaim: "ticket", MaxTTL: DefaultSupportMaxTTL, ReadOnly: true}}
	}
	r := accessRules{
		readOnly:        map[string]bool{},
		purposeClaim:    orDefault(a.Support.PurposeClaim, "purpose"),
		ticketClaim:     orDefault(a.Support.TicketClaim, "ticket"),
		maxTTL:          a.Support.MaxTTL,
		supportReadOnly: a.Support.ReadOnly,
	}
	if r.maxTTL <= 0 {
		r.maxTTL = DefaultSupportMaxTTL
	}
	for _, role := range a.ReadOnlyRoles {
		r.readOnly[role] = true
	}
	return r
}

// checkClaimNames refuses configurations in which one claim would be read
// for two meanings (e.g. the role taken from the tenant claim).
func (v *Verifier) checkClaimNames() error {
	names := []struct{ key, name string }{
		{"auth.tenant_claim", v.tenantClaim}, {"auth.region_claim", v.regionClaim},
		{"auth.role_claim", v.roleClaim}, {"auth.actor_claim", v.actorClaim},
		{"access.support.purpose_claim", v.access.purposeClaim}, {"access.support.ticket_claim", v.access.ticketClaim},
	}
	reserved := map[string]bool{"exp": true, "nbf": true, "iat": true, "iss": true, "aud": true, "jti": true}
	seen := map[string]string{}
	for _, n := range names {
		if reserved[n.name] {
			return fmt.Errorf("%s: %q is a registered JWT claim and cannot carry this value", n.key, n.name)
		}
		if other, dup := seen[n.name]; dup {
			return fmt.Errorf("%s: must differ from %s (%s)", n.key, other, n.name)
		}
		seen[n.name] = n.key
	}
	return nil
}

// access reads the role, actor and support claims into p and enforces the
// support-session rules. It runs after the signature and the standard
// claims were verified.
func (c *claims) access(p *Principal) error {
	roles, err := c.roles()
	if err != nil {
		return err
	}
	p.Roles = roles
	actor, err := c.actor()
	if err != nil {
		return err
	}
	rules := c.v.access
	readOnly := len(roles) > 0
	for _, r := range roles {
		// several roles grant their union: read-only only if every one is
		readOnly = readOnly && rules.readOnly[r]
	}
	if actor != "" {
		if err := c.support(p, actor); err != nil {
			return err
		}
		readOnly = readOnly || rules.supportReadOnly
	}
	p.ReadOnly = readOnly
	return nil
}

// roles reads the role claim: absent, null or "" (no role), a string, or an
// array of strings (Entra ID's roles, Cognito's cognito:groups).
func (c *claims) roles() ([]string, error) {
	name := c.v.roleClaim
	raw, ok := c.member(name)
	if !ok {
		return nil, nil
	}
	switch raw[0] {
	case '"':
		role, err := c.text(name, MaxClaimBytes, false)
		if err != nil || role == "" {
			return nil, err
		}
		return []string{role}, nil
	case '[':
		var items []json.RawMessage
		if err := json.Unmarshal(raw, &items); err != nil {
			return nil, claimFail(ReasonBadClaim, name, err)
		}
		if len(items) > maxRoles {
			return nil, claimFail(ReasonBadClaim, name, fmt.Errorf("more than %d roles", maxRoles))
		}
		roles := make([]string, 0, len(items))
		for _, it := range items {
			var s string
			if len(it) == 0 || it[0] != '"' || json.Unmarshal(it, &s) != nil {
				return nil, claimFail(ReasonBadClaim, name, errors.New("a role is not a string"))
			}
			if s == "" {
				return nil, claimFail(ReasonBadClaim, name, errors.New("a role is empty"))
			}
			if err := checkText(s, MaxClaimBytes); err != nil {
				return nil, claimFail(ReasonBadClaim, name, err)
			}
			roles = append(roles, s)
		}
		return roles, nil
	}
	return nil, claimFail(ReasonBadClaim, name, errors.New("neither a string nor an array of strings"))
}

// actor reads the actor claim: an RFC 8693 act object whose sub names the
// acting party (nested act members, a delegation chain, are allowed and not
// read), or the actor's id as a plain string for identity providers that
// emit only flat claims. "" means no actor: not a support session.
func (c *claims) actor() (string, error) {
	name := c.v.actorClaim
	raw, ok := c.member(name)
	if !ok {
		return "", nil
	}
	switch raw[0] {
	case '"':
		s, err := c.text(name, maxSubjectBytes, false)
		if err == nil && s == "" {
			err = claimFail(ReasonBadClaim, name, errors.New("the actor is empty"))
		}
		return s, err
	case '{':
		// the same strict decoding as the payload: no duplicate members
		obj := &claims{v: c.v}
		if err := obj.UnmarshalJSON(raw); err != nil {
			return "", claimFail(ReasonBadClaim, name, err)
		}
		sub, err := obj.optionalString("sub")
		if err != nil || sub == "" {
			return "", claimFail(ReasonBadClaim, name, errors.New("the actor object has no sub string"))
		}
		if err := checkText(sub, maxSubjectBytes); err != nil {
			return "", claimFail(ReasonBadClaim, name, err)
		}
		return sub, nil
	}
	return "", claimFail(ReasonBadClaim, name, errors.New("neither an object nor a string"))
}

// support checks a support session's token: a purpose, an iat, and a
// lifetime (exp - iat) within access.support.max_ttl. The ticket is the
// ticket claim when present, else the purpose (which then must name it).
func (c *claims) support(p *Principal, actor string) error {
	rules := c.v.access
	purpose, err := c.text(rules.purposeClaim, maxPurposeBytes, false)
	if err != nil {
		return err
	}
	if purpose == "" {
		return claimFail(ReasonSupportPurpose, rules.purposeClaim, nil)
	}
	ticket, err := c.text(rules.ticketClaim, maxPurposeBytes, false)
	if err != nil {
		return err
	}
	if ticket == "" {
		ticket = purpose
	}
	iat, err := c.GetIssuedAt()
	if err != nil {
		return err
	}
	if iat == nil {
		return fail(ReasonSupportIssuedAt, nil)
	}
	exp, err := c.GetExpirationTime()
	if err != nil || exp == nil {
		return claimFail(ReasonMissingClaim, "exp", err)
	}
	if exp.Sub(iat.Time) > rules.maxTTL {
		return &Error{Reason: ReasonSupportTTL, Limit: rules.maxTTL}
	}
	p.Actor, p.Purpose, p.Ticket = actor, purpose, ticket
	return nil
}
