// Package budget enforces per-tenant statement budgets at the proxy: a rate
// (a token bucket with a burst), a cap on the statements one tenant runs at
// once, and a statement timeout, each with per-tenant overrides.
//
// Budgets are kept per proxy instance by default. When a shared store (a
// Redis URL) is configured, every instance that names it draws from the same
// budget, so a fleet of sidecars enforces one limit per tenant. The rate uses
// GCRA (github.com/go-redis/redis_rate), which needs one round trip and no
// clean-up; concurrency uses a sorted set of leases, so a slot held by a
// proxy that died expires on its own instead of leaking.
//
// Budgets are about fairness, not isolation: when the shared store cannot be
// reached, each instance falls back to its own local budget (logged, and
// counted in Stats) rather than refusing every statement.
package budget
