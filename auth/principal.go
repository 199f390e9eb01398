package auth

import (
	"strings"
	"time"
)

// Principal is the verified caller of one client connection.
type Principal struct {
	// Account is the tenant id exactly as the token carried it: the decimal
	// digits of a JSON number (never rounded through float64) or a JSON string.
	Account string
	// Region is the data_region claim: the only region this caller's traffic may reach.
	Region string
	// Subject is the sub claim (or the configured subject claim); may be empty.
	Subject string
	// ExpiresAt is the token's exp; the session ends at the first statement after it.
	ExpiresAt time.Time
	// Roles are the values of the role claim (auth.role_claim), in token
	// order; empty when the token has none, which keeps full access.
	Roles []string
	// Actor identifies the person acting in a support session (the actor
	// claim's sub); empty for a tenant's own users.
	Actor string
	// Purpose is a support session's stated purpose (access.support.purpose_claim).
	Purpose string
	// Ticket is a support session's ticket reference: the ticket claim
	// (access.support.ticket_claim), or the purpose when the token has none.
	Ticket string
	// ReadOnly marks a session that must not write: its role is in
	// access.read_only_roles (every role, when there are several), or it is a
	// support session and access.support.read_only is on.
	ReadOnly bool
}

// Role returns the roles as one comma-separated text, for logs and the audit.
func (p Principal) Role() string { return strings.Join(p.Roles, ",") }

// Support reports whether this is a support (break-glass) session.
func (p Principal) Support() bool { return p.Actor != "" }

// HasRole reports whether role is among the principal's roles.
func (p Principal) HasRole(role string) bool {
	for _, r := range p.Roles {
		if r == role {
			return true
		}
	}
	return false
}
