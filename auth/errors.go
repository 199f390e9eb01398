package auth

import (
	"errors"
	"fmt"
	"time"
)

// Reason codes carried by Error.Reason. They are stable: metrics and tests use them.
const (
	ReasonMissingToken  = "missing_token"
	ReasonMalformed     = "malformed"
	ReasonBadSignature  = "bad_signature"
	ReasonAlgNotAllowed = "alg_not_allowed"
	ReasonExpired       = "expired"
	ReasonNotYetValid   = "not_yet_valid"
	ReasonWrongIssuer   = "wrong_issuer"
	ReasonWrongAudience = "wrong_audience"
	ReasonMissingClaim  = "missing_claim"
	ReasonBadClaim      = "bad_claim"
	ReasonUnknownKid    = "unknown_kid"
	ReasonTooLarge      = "too_large"
	// ReasonKeysUnavailable: the identity provider's keys were never fetched.
	ReasonKeysUnavailable = "keys_unavailable"
	// ReasonSupportPurpose: a support token (one with the actor claim) lacks the purpose claim.
	ReasonSupportPurpose = "support_no_purpose"
	// ReasonSupportIssuedAt: a support token lacks iat, so its lifetime is unknown.
	ReasonSupportIssuedAt = "support_no_iat"
	// ReasonSupportTTL: a support token's exp - iat exceeds access.support.max_ttl.
	ReasonSupportTTL = "support_ttl"
)

// Error is every authentication failure Authenticate returns; the proxy maps
// it to SQLSTATE 28000. Its message is safe to send to the client: it starts
// with "pgtenant: " and never contains the token or any part of it.
type Error struct {
	// Reason is one of the Reason* codes.
	Reason string
	// Claim names the configured claim at fault for missing_claim and
	// bad_claim (a configuration value, never a token value).
	Claim string
	// Limit is the configured maximum a support_ttl failure exceeded.
	Limit time.Duration
	// Err is the underlying cause, for errors.Is/As. Its text may quote
	// bytes of the token: do not send it to clients or write it to logs.
	Err error
}

// Error returns the client-safe message.
func (e *Error) Error() string {
	switch e.Reason {
	case ReasonMissingToken:
		return "pgtenant: no token given (pass it as the jwt startup parameter, in options as -c jwt=..., or as the password)"
	case ReasonMalformed:
		return "pgtenant: token is malformed"
	case ReasonBadSignature:
		return "pgtenant: token signature is invalid"
	case ReasonAlgNotAllowed:
		return "pgtenant: token signing algorithm is not allowed"
	case ReasonExpired:
		return "pgtenant: token has expired"
	case ReasonNotYetValid:
		return "pgtenant: token is not valid yet"
	case ReasonWrongIssuer:
		return "pgtenant: token issuer is not accepted"
	case ReasonWrongAudience:
		return "pgtenant: token audience is not accepted"
	case ReasonMissingClaim:
		return fmt.Sprintf("pgtenant: token lacks the %s claim", e.claimName())
	case ReasonBadClaim:
		return fmt.Sprintf("pgtenant: token claim %s is invalid", e.claimName())
	case ReasonUnknownKid:
		return "pgtenant: token key id (kid) is unknown"
	case ReasonTooLarge:
		return fmt.Sprintf("pgtenant: token is larger than %d bytes", MaxTokenBytes)
	case ReasonKeysUnavailable:
		return "pgtenant: the identity provider's signing keys are not available yet; retry shortly"
	case ReasonSupportPurpose:
		return fmt.Sprintf("pgtenant: support session token (it has an actor claim) lacks the %s claim stating its purpose", e.claimName())
	case ReasonSupportIssuedAt:
		return "pgtenant: support session token lacks the iat claim, so its lifetime cannot be checked"
	case ReasonSupportTTL:
		return fmt.Sprintf("pgtenant: support session token lives longer (exp - iat) than access.support.max_ttl allows (%s); request a shorter-lived token", e.Limit)
	}
	return "pgtenant: token rejected"
}

func (e *Error) claimName() string {
	if e.Claim == "" {
		return "required"
	}
	return e.Claim
}

// Unwrap returns the underlying cause.
func (e *Error) Unwrap() error { return e.Err }

// IsAuthError reports whether err is (or wraps) an authentication failure.
func IsAuthError(err error) bool {
	var ae *Error
	return errors.As(err, &ae)
}

func fail(reason string, err error) *Error { return &Error{Reason: reason, Err: err} }

func claimFail(reason, claim string, err error) *Error {
	return &Error{Reason: reason, Claim: claim, Err: err}
}
