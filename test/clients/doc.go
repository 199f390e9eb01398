// Package clients is pgtenant's client matrix: one small, realistic program
// per PostgreSQL client library or ORM (Python, Java, Ruby, PHP, Node.js and
// Go) that runs an application's normal work as tenant 42 through the proxy,
// and a Go test that judges what the proxy did to it.
//
// Each program (python/, java/, ruby/, php/, node/, go/) reads its connection
// and mode from PGT_* environment variables, runs named operations and
// prints one JSON report (see report.md for the protocol). Before each
// operation it runs the marker statement SELECT 'pgtenant-op:<name>', so the
// test can attribute every statement the proxy denied, with its text and
// SQLSTATE, to the operation that sent it.
//
// The test runs every program in two modes against fresh copies of the
// demo-like schema with row-level security OFF, so that the proxy's policy
// is judged alone:
//
//   - deny (the default policy): no false denies, refusals of unscoped and
//     cross-tenant access (42501), tenant 7's rows never returned nor changed.
//   - rewrite (policy.unscoped: rewrite): no denies except of cross-tenant
//     access, and the RLS-equivalence oracle: every operation returns, and
//     leaves behind, exactly what the same program gets connecting straight
//     to PostgreSQL with RLS ON as a role pinned to tenant 42. Skipped while
//     the configuration has no policy.unscoped key.
//
// test/clients/install.sh installs the runtimes; `make test-clients` runs
// the matrix, and `go test ./test/clients -update` rewrites docs/compat.md.
package clients
