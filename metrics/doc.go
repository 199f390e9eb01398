// Package metrics is the Prometheus implementation of proxy.Metrics plus the
// collectors for values other packages own (audit queue and chains, policy
// cache), all on one private prometheus.Registry served by package admin at
// /metrics.
//
// Names follow Prometheus conventions: a pgtenant_ prefix, base units
// (seconds, bytes), _total for counters. Every label has a bounded set of
// values: regions come from the configuration, verdicts are allow|deny, deny
// and reject reasons are short stable codes from an allowlist (plus a small,
// capped number of well-formed codes learnt at run time); anything else is
// reported as "other". No label ever carries an account, a statement or a
// client address.
//
// Values owned by other packages are read at scrape time through function
// hooks in Options (AuditStats, CacheStats), so cmd can wire them without
// import cycles; this package imports nothing from the rest of pgtenant.
//
// Connection accounting: ClientAccepted is called for every accepted client
// connection and ClientClosed when any accepted connection ends (rejected ones
// included), so pgtenant_client_connections is the number currently open.
package metrics
