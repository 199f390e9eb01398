package auth

import "time"

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
}
