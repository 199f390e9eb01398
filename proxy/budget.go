package proxy

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"
	"time"

	"github.com/jackc/pgerrcode"
	"github.com/jackc/pgx/v5/pgproto3"

	"github.com/pgtenant/pgtenant/budget"
	"github.com/pgtenant/pgtenant/tenancy"
)

// Budgets admits each tenant statement against its budget (package budget).
type Budgets interface {
	// Admit returns a release function to call once when the statement ends,
	// or a *budget.Exceeded refusal.
	Admit(ctx context.Context, account string) (func(), error)
	// For returns the account's limits (for its statement timeout).
	For(account string) budget.Limits
	// TimedOut counts a statement cancelled by the account's timeout.
	TimedOut(account string)
}

// ticket is one admitted statement's hold on its tenant's budget, carried by
// its pending entry: it is released exactly once, when the statement ends
// (completes, fails, is skipped, or its session ends), and it arms the
// statement timeout.
type ticket struct {
	release  func()
	done     atomic.Bool
	timedOut atomic.Bool
	timer    *time.Timer
	timeout  time.Duration
}

// end releases the budget and stops the timer; later calls do nothing.
func (t *ticket) end() {
	if t == nil || !t.done.CompareAndSwap(false, true) {
		return
	}
	if t.timer != nil {
		t.timer.Stop()
	}
	t.release()
}

// admit takes one statement of the session's tenant from its budget. A nil
// ticket and a zero Decision mean no budgets are configured.
func (s *session) admit() (*ticket, *tenancy.Decision) {
	b := s.srv.opts.Budgets
	if b == nil {
		return nil, nil
	}
	release, err := b.Admit(s.ctx, s.principal.Account)
	if err != nil {
		var ex *budget.Exceeded
		if !errors.As(err, &ex) {
			// Admit only refuses with *Exceeded; anything else is a bug: deny.
			ex = &budget.Exceeded{Limit: budget.LimitConcurrency, Account: s.principal.Account}
		}
		reason := "budget_rate"
		if ex.Limit == budget.LimitConcurrency {
			reason = "budget_concurrency"
		}
		d := tenancy.Decision{SQLState: ex.SQLState(), Reason: reason, Message: ex.Error(), Hint: ex.Hint()}
		return nil, &d
	}
	return &ticket{release: release, timeout: b.For(s.principal.Account).StatementTimeout}, nil
}

// armTimeout starts t's statement timeout once the statement is forwarded:
// when it fires before the statement ends, the proxy cancels the backend's
// running statement and swaps the server's 57014 for its own message.
func (s *session) armTimeout(t *ticket) {
	if t == nil || t.timeout <= 0 {
		return
	}
	t.timer = time.AfterFunc(t.timeout, func() {
		if t.done.Load() || !t.timedOut.CompareAndSwap(false, true) {
			return
		}
		s.srv.opts.Budgets.TimedOut(s.principal.Account)
		if err := s.sendCancel(s.ctx); err != nil {
			s.logger().Warn("statement timeout: cancel not delivered", "error", err)
		}
	})
}

// timeoutError is what the client gets for a statement the tenant's
// statement timeout cancelled: PostgreSQL's query_canceled code, which
// drivers map to their timeout errors, with pgtenant's reason.
func timeoutError(t *ticket) *pgproto3.ErrorResponse {
	return &pgproto3.ErrorResponse{Severity: "ERROR", SeverityUnlocalized: "ERROR", Code: pgerrcode.QueryCanceled,
		Message: fmt.Sprintf("pgtenant: statement cancelled: it ran longer than the account's statement timeout (%s)", t.timeout),
		Hint:    "make the statement faster, or ask the operator to raise limits.tenant.statement_timeout for this account"}
}
