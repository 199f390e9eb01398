package proxy

import (
	"context"
	"time"

	"github.com/pgtenant/pgtenant/audit"
	"github.com/pgtenant/pgtenant/auth"
	"github.com/pgtenant/pgtenant/policy"
)

// Authenticator verifies a client's token and returns its principal.
type Authenticator interface {
	Authenticate(token string) (auth.Principal, error)
}

// StatementChecker decides one session's statements before they are
// forwarded. It keeps per-session state (prepared statement analyses) and is
// used by one goroutine at a time.
type StatementChecker interface {
	// CheckQuery decides a simple-protocol Query message (possibly several statements).
	CheckQuery(sql string) policy.Decision
	// CheckParse decides a Parse message; when allowed, the analysis is
	// remembered under name (replacing the unnamed one) for later Binds.
	CheckParse(name, sql string, paramOIDs []uint32) policy.Decision
	// CheckBind decides a Bind of statement with the given parameter format
	// codes and values (nil = NULL), as PostgreSQL will read them.
	CheckBind(statement string, formats []int16, values [][]byte) policy.Decision
	// CloseStatement forgets a prepared statement the client closed.
	CloseStatement(name string)
}

// CheckerFactory returns a new StatementChecker for an authenticated session.
type CheckerFactory func(p auth.Principal) StatementChecker

// Auditor records audit events. For KindStatement it returns only once the
// event is as durable as the audit mode promises; an error then means the
// statement must be refused (SQLSTATE 57P03). Other kinds may be queued.
type Auditor interface {
	Record(ctx context.Context, ev audit.Event) error
}

// Metrics receives the proxy's measurements; see package metrics for the
// Prometheus implementation.
type Metrics interface {
	ClientAccepted()
	ClientRejected(reason string)
	ClientClosed()
	BackendDialed(region string, err error)
	StatementDecided(verdict, reason string)
	StatementDone(region string, overhead, total time.Duration)
}

// allowAll is the checker used when no policy is configured.
type allowAll struct{}

func (allowAll) CheckQuery(string) policy.Decision { return policy.Decision{Allow: true} }
func (allowAll) CheckParse(string, string, []uint32) policy.Decision {
	return policy.Decision{Allow: true}
}
func (allowAll) CheckBind(string, []int16, [][]byte) policy.Decision {
	return policy.Decision{Allow: true}
}
func (allowAll) CloseStatement(string) {}

// nopMetrics discards measurements.
type nopMetrics struct{}

func (nopMetrics) ClientAccepted()                                    {}
func (nopMetrics) ClientRejected(string)                              {}
func (nopMetrics) ClientClosed()                                      {}
func (nopMetrics) BackendDialed(string, error)                        {}
func (nopMetrics) StatementDecided(string, string)                    {}
func (nopMetrics) StatementDone(string, time.Duration, time.Duration) {}
