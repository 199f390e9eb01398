// Package setup plans, and applies as a region's admin role, what the
// region's database needs for pgtenant's three layers: a service role that
// is neither superuser, BYPASSRLS nor owner of a tenant table; grants on
// every tenant table (and its schema and sequences); row-level security
// enabled and forced with a fail-closed policy on the tenant setting; the
// audit schema; and an event trigger that tells running proxies about
// migrations. The plan is SQL to review first (`pgtenant setup`); applying
// it (`pgtenant setup --apply`) is idempotent: a second run finds nothing
// pending.
package setup
