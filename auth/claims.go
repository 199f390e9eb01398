package auth

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"math"
	"regexp"
	"strconv"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/golang-jwt/jwt/v5"
)

// Claim value limits.
const (
	// MaxClaimBytes bounds the tenant and region claim values.
	MaxClaimBytes = 128
	// maxSubjectBytes bounds the subject claim value.
	maxSubjectBytes = 1024
	// maxNumericDate is 9999-12-31T23:59:59Z: exp, nbf and iat beyond it
	// (or before the epoch) are rejected rather than overflowing time.Time.
	maxNumericDate = 253402300799
)

// claims is the jwt.Claims of one Authenticate call. It keeps every payload
// member as raw JSON, so that numbers are never rounded through float64, and
// rejects duplicate members while decoding. Validate, which jwt calls only
// after the signature has been verified, extracts the Principal.
type claims struct {
	v         *Verifier
	members   map[string]json.RawMessage
	decoded   bool
	principal Principal
}

var _ jwt.ClaimsValidator = (*claims)(nil)

// UnmarshalJSON walks the payload object with a json.Decoder token stream and
// records each member's raw value; a repeated member name is an error.
func (c *claims) UnmarshalJSON(b []byte) error {
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	if t, err := dec.Token(); err != nil || t != json.Delim('{') {
		return fail(ReasonMalformed, errors.New("payload is not a JSON object"))
	}
	members := make(map[string]json.RawMessage, 8)
	for dec.More() {
		t, err := dec.Token()
		if err != nil {
			return fail(ReasonMalformed, err)
		}
		name, ok := t.(string)
		if !ok {
			return fail(ReasonMalformed, errors.New("payload member name is not a string"))
		}
		if _, dup := members[name]; dup {
			return fail(ReasonMalformed, errors.New("payload repeats a member name"))
		}
		var raw json.RawMessage
		if err := dec.Decode(&raw); err != nil {
			return fail(ReasonMalformed, err)
		}
		members[name] = raw
	}
	if t, err := dec.Token(); err != nil || t != json.Delim('}') {
		return fail(ReasonMalformed, errors.New("payload object is not closed"))
	}
	if _, err := dec.Token(); err != io.EOF {
		return fail(ReasonMalformed, errors.New("data after the payload object"))
	}
	c.members = members
	c.decoded = true
	return nil
}

// GetExpirationTime implements jwt.Claims.
func (c *claims) GetExpirationTime() (*jwt.NumericDate, error) { return c.numericDate("exp") }

// GetIssuedAt implements jwt.Claims.
func (c *claims) GetIssuedAt() (*jwt.NumericDate, error) { return c.numericDate("iat") }

// GetNotBefore implements jwt.Claims.
func (c *claims) GetNotBefore() (*jwt.NumericDate, error) { return c.numericDate("nbf") }

// GetIssuer implements jwt.Claims.
func (c *claims) GetIssuer() (string, error) { return c.optionalString("iss") }

// GetSubject implements jwt.Claims.
func (c *claims) GetSubject() (string, error) { return c.optionalString("sub") }

// GetAudience implements jwt.Claims.
func (c *claims) GetAudience() (jwt.ClaimStrings, error) {
	raw, ok := c.member("aud")
	if !ok {
		return nil, nil
	}
	var aud jwt.ClaimStrings
	if err := json.Unmarshal(raw, &aud); err != nil {
		return nil, claimFail(ReasonBadClaim, "aud", err)
	}
	return aud, nil
}

// Validate implements jwt.ClaimsValidator: it checks iss and aud when
// configured and extracts the account, region and subject.
func (c *claims) Validate() error {
	if !c.decoded {
		return fail(ReasonMalformed, errors.New("payload is not a JSON object"))
	}
	if want := c.v.issuer; want != "" {
		iss, err := c.GetIssuer()
		if err != nil || iss != want {
			return claimFail(ReasonWrongIssuer, "iss", err)
		}
	}
	if want := c.v.audience; want != "" {
		aud, err := c.GetAudience()
		if err != nil {
			return claimFail(ReasonWrongAudience, "aud", err)
		}
		found := false
		for _, a := range aud {
			found = found || a == want
		}
		if !found {
			return claimFail(ReasonWrongAudience, "aud", nil)
		}
	}
	account, err := c.tenant()
	if err != nil {
		return err
	}
	region, err := c.text(c.v.regionClaim, MaxClaimBytes, true)
	if err != nil {
		return err
	}
	subject, err := c.text(c.v.subjectClaim, maxSubjectBytes, false)
	if err != nil {
		return err
	}
	exp, err := c.GetExpirationTime()
	if err != nil || exp == nil {
		return claimFail(ReasonMissingClaim, "exp", err)
	}
	p := Principal{Account: account, Region: region, Subject: subject, ExpiresAt: exp.Time}
	if err := c.access(&p); err != nil {
		return err
	}
	c.principal = p
	return nil
}

// member returns a present, non-null member.
func (c *claims) member(name string) (json.RawMessage, bool) {
	raw, ok := c.members[name]
	if !ok {
		return nil, false
	}
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 || string(raw) == "null" {
		return nil, false
	}
	return raw, true
}

// numericDate reads a NumericDate member: a JSON number of seconds since the
// epoch, in [0, maxNumericDate].
func (c *claims) numericDate(name string) (*jwt.NumericDate, error) {
	raw, ok := c.member(name)
	if !ok {
		return nil, nil
	}
	if raw[0] != '-' && (raw[0] < '0' || raw[0] > '9') {
		return nil, claimFail(ReasonBadClaim, name, errors.New("not a JSON number"))
	}
	f, err := strconv.ParseFloat(string(raw), 64)
	if err != nil || math.IsNaN(f) || f < 0 || f > maxNumericDate {
		return nil, claimFail(ReasonBadClaim, name, errors.New("not a time between 1970 and 9999"))
	}
	sec, frac := math.Modf(f)
	return &jwt.NumericDate{Time: time.Unix(int64(sec), int64(frac*1e9))}, nil
}

// optionalString reads a member that must be a string when present.
func (c *claims) optionalString(name string) (string, error) {
	raw, ok := c.member(name)
	if !ok {
		return "", nil
	}
	var s string
	if raw[0] != '"' || json.Unmarshal(raw, &s) != nil {
		return "", claimFail(ReasonBadClaim, name, errors.New("not a JSON string"))
	}
	return s, nil
}

// text reads a string claim and checks its length and characters.
func (c *claims) text(name string, limit int, required bool) (string, error) {
	s, err := c.optionalString(name)
	if err != nil {
		return "", err
	}
	if s == "" {
		if required {
			return "", claimFail(ReasonMissingClaim, name, nil)
		}
		return "", nil
	}
	if err := checkText(s, limit); err != nil {
		return "", claimFail(ReasonBadClaim, name, err)
	}
	return s, nil
}

// ReservedAccount is the audit's chain for events with no verified tenant
// (audit.NoTenantChain); no token may claim it.
const ReservedAccount = "-"

// tenant reads the tenant claim: a JSON string, or a non-negative JSON
// integer kept as its exact decimal text.
func (c *claims) tenant() (string, error) {
	name := c.v.tenantClaim
	raw, ok := c.member(name)
	if !ok {
		return "", claimFail(ReasonMissingClaim, name, nil)
	}
	switch {
	case raw[0] == '"':
		account, err := c.text(name, MaxClaimBytes, true)
		switch {
		case err != nil:
			return "", err
		case account == ReservedAccount:
			return "", claimFail(ReasonBadClaim, name, errors.New("the account id is reserved"))
		case nonCanonicalNumber(account):
			return "", claimFail(ReasonBadClaim, name, errors.New("the account id spells a number non-canonically"))
		}
		return account, nil
	case raw[0] == '-' || (raw[0] >= '0' && raw[0] <= '9'):
		if !isDecimalInteger(raw) {
			return "", claimFail(ReasonBadClaim, name, errors.New("number is not a non-negative integer"))
		}
		if len(raw) > MaxClaimBytes {
			return "", claimFail(ReasonBadClaim, name, errors.New("number is too long"))
		}
		return string(raw), nil
	}
	return "", claimFail(ReasonBadClaim, name, errors.New("neither a string nor an integer"))
}

// isDecimalInteger reports whether b is 0 or digits without a leading zero.
func isDecimalInteger(b []byte) bool {
	if len(b) == 0 || (b[0] == '0' && len(b) > 1) {
		return false
	}
	for _, ch := range b {
		if ch < '0' || ch > '9' {
			return false
		}
	}
	return true
}

// checkText rejects values over limit bytes, invalid UTF-8, and control or
// format characters (NUL, newlines, bidirectional overrides, ...), which
// have no place in an identifier that ends up in logs and the audit trail.
func checkText(s string, limit int) error {
	if len(s) > limit {
		return errors.New("value is too long")
	}
	if !utf8.ValidString(s) {
		return errors.New("value is not valid UTF-8")
	}
	for _, r := range s {
		if unicode.IsControl(r) || unicode.Is(unicode.Cf, r) {
			return errors.New("value contains a control character")
		}
	}
	return nil
}

// numberLike matches texts that PostgreSQL's numeric input could read as a
// number: surrounding white space, a sign, digits (with PostgreSQL 16's
// underscores and 0x/0o/0b prefixes), a fraction, an exponent.
var numberLike = regexp.MustCompile(`^\s*[+-]?(0[xXoObB][0-9a-fA-F_]+|[\d_]+\.?[\d_]*|\.[\d_]+)([eE][+-]?\d+)?\s*$`)

// nonCanonicalNumber reports whether s reads as a number but is not its
// canonical decimal ("042", "+42", " 42", "42.0", "4.2e1"). An integer tenant
// column would see all of them as the same tenant while the audit chains,
// per-tenant limits and exports key on the text, so one tenant could appear
// under several ids. Canonical integers and non-numeric ids (names, UUIDs)
// are unaffected.
func nonCanonicalNumber(s string) bool {
	return numberLike.MatchString(s) && !isDecimalInteger([]byte(s))
}
