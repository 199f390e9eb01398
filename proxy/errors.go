package proxy

import (
	"errors"
	"fmt"

	"github.com/jackc/pgerrcode"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgproto3"

	"github.com/pgtenant/pgtenant/auth"
)

// The SQLSTATEs pgtenant raises are pgerrcode's named constants: one table
// for the proxy, the policy and the audit.

// clientError is an error reported to the client as an ErrorResponse.
// Message always starts with "pgtenant: ".
type clientError struct {
	Code    string
	Message string
	Hint    string
	Reason  string // short stable code for logs and metrics
	Err     error  // internal cause; logged, never sent
}

func (e *clientError) Error() string {
	if e.Err != nil {
		return e.Message + ": " + e.Err.Error()
	}
	return e.Message
}

func (e *clientError) Unwrap() error { return e.Err }

func newClientError(code, reason, format string, args ...any) *clientError {
	return &clientError{Code: code, Reason: reason, Message: "pgtenant: " + fmt.Sprintf(format, args...)}
}

// toClientError maps any error from the connection setup to what the client
// is told. Unknown errors become an internal error that reveals nothing.
func toClientError(err error) *clientError {
	var ce *clientError
	if errors.As(err, &ce) {
		return ce
	}
	var ae *auth.Error
	if errors.As(err, &ae) {
		return &clientError{Code: pgerrcode.InvalidAuthorizationSpecification, Reason: "auth_" + ae.Reason, Message: ae.Error(), Err: err}
	}
	var pe *pgconn.PgError
	if errors.As(err, &pe) {
		return &clientError{Code: pe.Code, Reason: "backend_error", Message: pe.Message, Hint: pe.Hint, Err: err}
	}
	return &clientError{Code: pgerrcode.InternalError, Reason: "internal", Message: "pgtenant: internal error", Err: err}
}

// errorResponse builds the wire message for e with the given severity.
func (e *clientError) errorResponse(severity string) *pgproto3.ErrorResponse {
	return &pgproto3.ErrorResponse{
		Severity:            severity,
		SeverityUnlocalized: severity,
		Code:                e.Code,
		Message:             e.Message,
		Hint:                e.Hint,
	}
}
