// Package demo holds the small schema shared by `pgtenant demo`, the
// end-to-end tests and the documentation: tenant tables orders, customers and
// line_items (account_id bigint, composite keys and foreign keys that include
// account_id), the global table countries, row-level security enabled and
// forced with a fail-closed policy on app.current_account_id, and grants for
// the service role (POLICY.md section D). Seed data holds tenants 42 and 7.
//
// The SQL files are embedded: schema.sql, seed.sql, and corpus_extra.sql
// (the `audit` schema and functions the tenancy corpus names, for corpus
// tests only). The proxy's own audit schema, pgtenant_audit, is not created
// here; package audit owns it.
//
// Install grants to the cluster's service role. To install by hand, run the
// files as the superuser in one session, naming the role first (default
// "app"):
//
//	psql -v ON_ERROR_STOP=1 -U postgres -d app \
//	  -c "SET pgtenant.service_role = 'app'" -f schema.sql -f seed.sql
package demo
