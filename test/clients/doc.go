// Package clients is pgtenant's client matrix: one small, realistic program
// per PostgreSQL client library or ORM (Python, Java, Ruby, PHP, Node.js and
// Go) that runs an application's normal work as tenant 42 through the proxy,
// and a Go test that judges what the proxy did to it.
//
// Each program (python/, java/, ruby/, php/, node/, go/) reads its connection
// and mode from PGT_* environment variables, runs named operations and
// prints one JSON report (see README.md for the protocol). Before each
// operation it runs the marker statement SELECT 'pgtenant-op:<name>', so the
// test can attribute every statement the proxy denied, with its text and
// SQLSTATE, to the operation that sent it.
//
// The test runs every program three times, each against a fresh copy of
// the demo-like schema:
//
//   - deny (the default policy, RLS OFF so the policy is judged alone): no
//     false denies, refusals of unscoped and cross-tenant access (42501)
//     from the proxy, tenant 7's rows never returned nor changed, and the
//     operations before the first refusal return what the oracle returns.
//   - deny-rls (deny with RLS ON behind the proxy, as deployed): the same,
//     which also checks that the tenant setting the proxy pins reaches every
//     pooled and reset session (RLS filters by it).
//   - rewrite (policy.unscoped: rewrite, RLS OFF): no denies except of
//     cross-tenant access, and the RLS-equivalence oracle: every operation
//     returns, and leaves behind, exactly what the same program gets
//     connecting straight to PostgreSQL with RLS ON as a role pinned to
//     tenant 42. Skipped while the configuration has no policy.unscoped key.
//
// test/clients/install.sh installs the runtimes; `make test-clients` runs
// the matrix, and `go test ./test/clients -update` rewrites docs/compat.md.
package clients
