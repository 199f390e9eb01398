package budget

import (
	"context"
	"fmt"
	"log/slog"
	"math"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pgtenant/pgtenant/config"
)

// Limits is one tenant's budget. A zero field means "no limit" for that field.
type Limits struct {
	// StatementsPerSecond is the sustained rate of statements the tenant may start.
	StatementsPerSecond float64
	// Burst is how many statements may start at once above the rate; 0 means the rate rounded up.
	Burst int
	// ConcurrentStatements caps the tenant's statements running at the same time.
	ConcurrentStatements int
	// StatementTimeout cancels a statement of the tenant that runs longer.
	StatementTimeout time.Duration
}

// burst returns the bucket size: Burst, or the rate rounded up (at least 1).
func (l Limits) burst() int {
	if l.Burst > 0 {
		return l.Burst
	}
	return max(1, int(math.Ceil(l.StatementsPerSecond)))
}

// Config is what New needs.
type Config struct {
	// Default applies to every tenant without an override.
	Default Limits
	// Overrides replaces Default for the accounts it names.
	Overrides map[string]Limits
	// SharedStore is a Redis URL (redis:// or rediss://); empty keeps budgets per instance.
	SharedStore string
	// Logger receives warnings about the shared store; nil discards them.
	Logger *slog.Logger
	// StoreTimeout bounds one call to the shared store before the local
	// budget decides instead; 0 means DefaultStoreTimeout.
	StoreTimeout time.Duration
}

// Enabled reports whether any budget is configured at all.
func (c Config) Enabled() bool {
	if c.Default != (Limits{}) {
		return true
	}
	for _, l := range c.Overrides {
		if l != (Limits{}) {
			return true
		}
	}
	return false
}

// Exceeded is the error returned when a statement would exceed its tenant's
// budget. It carries the SQLSTATE and the hint the client is sent.
type Exceeded struct {
	// Limit names the budget: "statements_per_second" or "concurrent_statements".
	Limit string
	// Account is the tenant whose budget is spent.
	Account string
	// Value is the configured limit.
	Value float64
	// RetryAfter is when a retry can succeed, for the rate; 0 when unknown.
	RetryAfter time.Duration
}

func (e *Exceeded) Error() string {
	switch e.Limit {
	case LimitRate:
		return fmt.Sprintf("pgtenant: account %s exceeded its budget of %g statements per second", e.Account, e.Value)
	default:
		return fmt.Sprintf("pgtenant: account %s already runs %g statements at once, its budget", e.Account, e.Value)
	}
}

// SQLState is the code sent to the client: class 53, one code per limit.
func (e *Exceeded) SQLState() string {
	if e.Limit == LimitRate {
		return codeConfigurationLimitExceeded
	}
	return codeInsufficientResources
}

// Hint says how to proceed.
func (e *Exceeded) Hint() string {
	if e.Limit == LimitRate {
		wait := max(e.RetryAfter, time.Millisecond).Round(time.Millisecond)
		return fmt.Sprintf("retry after %s, or ask the operator to raise limits.tenant.statements_per_second for this account", wait)
	}
	return "wait for the account's other statements to finish, or ask the operator to raise limits.tenant.concurrent_statements"
}

// SQLSTATEs of class 53 (insufficient resources), one per budget.
const (
	codeConfigurationLimitExceeded = "53400"
	codeInsufficientResources      = "53000"
)

// Budget names, as in the configuration.
const (
	LimitRate        = "statements_per_second"
	LimitConcurrency = "concurrent_statements"
)

// store is where budgets are counted: in this process or in Redis.
type store interface {
	// take spends one statement of account's rate; it returns how long until a retry can succeed when none is left.
	take(ctx context.Context, account string, l Limits) (ok bool, retry time.Duration, err error)
	// acquire takes one of account's concurrency slots; lease bounds how long a lost slot is held.
	acquire(ctx context.Context, account string, l Limits, lease time.Duration) (token string, ok bool, err error)
	// release returns a slot acquire gave.
	release(ctx context.Context, account, token string) error
	close() error
}

// Budgets enforces Config. It is safe for concurrent use.
type Budgets struct {
	cfg    Config
	local  *localStore
	shared store // nil without a shared store
	log    *slog.Logger

	mu      sync.Mutex
	tenants map[string]*counters

	fallbacks     atomic.Int64
	lastWarnNanos atomic.Int64
}

// counters are one tenant's figures for the admin console.
type counters struct {
	admitted, refusedRate, refusedConcurrency, timedOut atomic.Int64
	running                                             atomic.Int64
}

// TenantStats is one tenant's budget use, for the admin console (not for
// Prometheus: a label per account would be unbounded).
type TenantStats struct {
	Account                string
	Admitted               int64
	RefusedRate            int64
	RefusedConcurrency     int64
	TimedOut               int64
	Running                int64
	Limits                 Limits
	SharedStoreUnreachable bool
}

// DefaultStoreTimeout bounds one call to the shared store, so an
// unreachable Redis costs a statement at most this much before the local
// budget decides.
const DefaultStoreTimeout = 250 * time.Millisecond

// New builds Budgets; with a shared store it connects and pings it, and an
// unreachable store is an error naming limits.shared_store.
func New(ctx context.Context, cfg Config) (*Budgets, error) {
	b := &Budgets{cfg: cfg, local: newLocalStore(), log: cfg.Logger, tenants: map[string]*counters{}}
	if b.log == nil {
		b.log = slog.New(slog.DiscardHandler)
	}
	if b.cfg.StoreTimeout <= 0 {
		b.cfg.StoreTimeout = DefaultStoreTimeout
	}
	if cfg.SharedStore != "" {
		rs, err := newRedisStore(ctx, cfg.SharedStore)
		if err != nil {
			return nil, fmt.Errorf("limits.shared_store: %w", err)
		}
		b.shared = rs
	}
	return b, nil
}

// Close releases the shared store's connections.
func (b *Budgets) Close() error {
	if b.shared != nil {
		return b.shared.close()
	}
	return nil
}

// For returns account's limits: its override, else the default.
func (b *Budgets) For(account string) Limits {
	if l, ok := b.cfg.Overrides[account]; ok {
		return l
	}
	return b.cfg.Default
}

// Admit decides whether account may start one more statement now. On
// success it returns a release function that must be called once when the
// statement (or the batch it started) ends; on refusal it returns *Exceeded.
func (b *Budgets) Admit(ctx context.Context, account string) (func(), error) {
	l := b.For(account)
	c := b.counters(account)
	// The slot first: a statement refused for concurrency spends no rate.
	free := func() {}
	if l.ConcurrentStatements > 0 {
		var ok bool
		if free, ok = b.acquire(ctx, account, l); !ok {
			c.refusedConcurrency.Add(1)
			return nil, &Exceeded{Limit: LimitConcurrency, Account: account, Value: float64(l.ConcurrentStatements)}
		}
	}
	if l.StatementsPerSecond > 0 {
		if ok, retry := b.take(ctx, account, l); !ok {
			free()
			c.refusedRate.Add(1)
			return nil, &Exceeded{Limit: LimitRate, Account: account, Value: l.StatementsPerSecond, RetryAfter: retry}
		}
	}
	c.admitted.Add(1)
	c.running.Add(1)
	var once sync.Once
	return func() {
		once.Do(func() {
			c.running.Add(-1)
			free()
		})
	}, nil
}

// TimedOut counts a statement of account cancelled by its statement timeout.
func (b *Budgets) TimedOut(account string) { b.counters(account).timedOut.Add(1) }

// Stats returns every tenant's figures, sorted by account.
func (b *Budgets) Stats() []TenantStats {
	b.mu.Lock()
	out := make([]TenantStats, 0, len(b.tenants))
	for acc, c := range b.tenants {
		out = append(out, TenantStats{
			Account: acc, Admitted: c.admitted.Load(), RefusedRate: c.refusedRate.Load(),
			RefusedConcurrency: c.refusedConcurrency.Load(), TimedOut: c.timedOut.Load(),
			Running: c.running.Load(), Limits: b.For(acc),
		})
	}
	b.mu.Unlock()
	sort.Slice(out, func(i, j int) bool { return out[i].Account < out[j].Account })
	return out
}

// Fallbacks counts decisions taken by the local budget because the shared store failed.
func (b *Budgets) Fallbacks() int64 { return b.fallbacks.Load() }

func (b *Budgets) counters(account string) *counters {
	b.mu.Lock()
	defer b.mu.Unlock()
	c, ok := b.tenants[account]
	if !ok {
		c = &counters{}
		b.tenants[account] = c
	}
	return c
}

func (b *Budgets) take(ctx context.Context, account string, l Limits) (bool, time.Duration) {
	if b.shared != nil {
		ctx, cancel := context.WithTimeout(ctx, b.cfg.StoreTimeout)
		ok, retry, err := b.shared.take(ctx, account, l)
		cancel()
		if err == nil {
			return ok, retry
		}
		b.fellBack(err)
	}
	ok, retry, _ := b.local.take(ctx, account, l)
	return ok, retry
}

func (b *Budgets) acquire(ctx context.Context, account string, l Limits) (func(), bool) {
	if b.shared != nil {
		lease := l.StatementTimeout
		if lease <= 0 {
			lease = defaultLease
		}
		opCtx, cancel := context.WithTimeout(ctx, b.cfg.StoreTimeout)
		token, ok, err := b.shared.acquire(opCtx, account, l, lease+leaseSlack)
		cancel()
		if err == nil {
			if !ok {
				return nil, false
			}
			return func() {
				// Release on a fresh context: the statement's may be done.
				rctx, cancel := context.WithTimeout(context.Background(), b.cfg.StoreTimeout)
				defer cancel()
				if err := b.shared.release(rctx, account, token); err != nil {
					b.fellBack(err) // the lease expires on its own
				}
			}, true
		}
		b.fellBack(err)
	}
	token, ok, _ := b.local.acquire(ctx, account, l, 0)
	if !ok {
		return nil, false
	}
	return func() { _ = b.local.release(ctx, account, token) }, true
}

// defaultLease bounds how long a concurrency slot held in the shared store
// outlives a proxy that died holding it, when no statement timeout is set.
const (
	defaultLease = 5 * time.Minute
	leaseSlack   = 10 * time.Second
)

// fellBack counts a shared-store failure and warns at most once a minute.
func (b *Budgets) fellBack(err error) {
	b.fallbacks.Add(1)
	now := time.Now().UnixNano()
	last := b.lastWarnNanos.Load()
	if now-last < int64(time.Minute) || !b.lastWarnNanos.CompareAndSwap(last, now) {
		return
	}
	b.log.Warn("budget shared store unreachable: using this instance's budgets", "error", err)
}

// FromConfig turns the limits section into a Config.
func FromConfig(l config.Limits, log *slog.Logger) Config {
	conv := func(b config.BudgetLimits) Limits {
		return Limits{StatementsPerSecond: b.StatementsPerSecond, Burst: b.Burst,
			ConcurrentStatements: b.ConcurrentStatements, StatementTimeout: b.StatementTimeout}
	}
	c := Config{Default: conv(l.Tenant.BudgetLimits), SharedStore: l.SharedStore, Logger: log}
	if len(l.Tenant.Overrides) > 0 {
		c.Overrides = make(map[string]Limits, len(l.Tenant.Overrides))
		for acc, b := range l.Tenant.Overrides {
			c.Overrides[acc] = conv(b)
		}
	}
	return c
}
