package proxy

import (
	"context"
	"time"

	"github.com/pgtenant/pgtenant/auth"
	"github.com/pgtenant/pgtenant/tenancy"
)

// Authenticator verifies a client's token and returns its principal.
type Authenticator interface {
	Authenticate(token string) (auth.Principal, error)
}

// StatementChecker decides one session's statements before they are
// forwarded and mirrors the prepared statements the server session holds.
// The mirror changes only on the server's word: a check returns the Changes
// its message makes (Decision.Changes), and the proxy reports the server's
// answer to each with Resolve, in the order the server gives them. It is
// used by one goroutine at a time.
type StatementChecker interface {
	// CheckQuery decides a simple-protocol Query message (possibly several
	// statements); its Changes carry the index of the statement making them.
	CheckQuery(sql string) tenancy.Decision
	// CheckParse decides a Parse message; an allowed one stores the
	// statement under name once the server answers ParseComplete.
	CheckParse(name, sql string, paramOIDs []uint32) tenancy.Decision
	// CheckBind decides a Bind of statement with the given parameter format
	// codes and values (nil = NULL), as PostgreSQL will read them.
	CheckBind(statement string, formats []int16, values [][]byte) tenancy.Decision
	// CloseStatement returns the Change a Close of a statement makes.
	CloseStatement(name string) tenancy.Change
	// DescribeStatement returns the Change a Describe of a statement makes
	// (its ParameterDescription reports the parameters' types).
	DescribeStatement(name string) tenancy.Change
	// Sent tells that a message the checker did not check was forwarded:
	// 'S' Sync, 'Q' a Query (after its check, allowed or denied), 'E'
	// Execute, 'D' a Describe or 'C' a Close of a portal (or of neither kind).
	Sent(kind byte)
	// Resolve reports the server's answer to a Change (see tenancy.Outcome).
	Resolve(id uint64, o tenancy.Outcome, paramOIDs []uint32)
}

// CheckerFactory returns a new StatementChecker for an authenticated session.
type CheckerFactory func(p auth.Principal) StatementChecker

// Auditor records audit events. For KindStatement it returns only once the
// event is as durable as the audit mode promises; an error then means the
// statement must be refused (SQLSTATE 57P03). Other kinds may be queued.
type Auditor interface {
	Record(ctx context.Context, ev tenancy.Event) error
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

// nopMetrics discards measurements.
type nopMetrics struct{}

func (nopMetrics) ClientAccepted()                                    {}
func (nopMetrics) ClientRejected(string)                              {}
func (nopMetrics) ClientClosed()                                      {}
func (nopMetrics) BackendDialed(string, error)                        {}
func (nopMetrics) StatementDecided(string, string)                    {}
func (nopMetrics) StatementDone(string, time.Duration, time.Duration) {}
