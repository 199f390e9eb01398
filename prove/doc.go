// Package prove is the cross-tenant isolation gate behind `pgtenant prove`:
// it proves, against the real databases, that one tenant cannot reach
// another tenant's rows, and that each of the two isolation layers holds on
// its own.
//
// For every region it creates two synthetic tenants A and B (ids that own
// no rows), discovers the tenant tables from the catalog, and then:
//
//  1. seeds rows as A through pgtenant, parents before children (foreign
//     keys take the referenced row's values);
//  2. as B through pgtenant, tries every way to reach A's rows: unscoped and
//     A-scoped reads, parameters and prepared statements re-bound to A, IN
//     lists, OR true, subqueries, CTEs, joins, LATERAL, UNION, UPDATE, DELETE,
//     INSERT for A, COPY TO STDOUT, and escapes from the tenant context (SET,
//     set_config, RESET, SET ROLE, SET SESSION AUTHORIZATION, startup
//     options). Each attempt passes only if it errors or touches no row;
//  3. checks as A that A's rows are all still there, unchanged;
//  4. bypasses the parser layer: connects directly as the service role with
//     the tenant setting set to B (and then empty) and checks that row-level
//     security alone hides, protects and refuses A's rows, and that RLS is
//     enabled and forced on every tenant table; then looks for RLS footguns
//     (isolation.Footguns: policies that fail open, definer views, SECURITY
//     DEFINER functions, owned tables, existence oracles, shared sequences,
//     large objects), failing on a leak and warning on the rest;
//  5. deletes A's rows through pgtenant (children first) and verifies with
//     a direct count that nothing of A or B is left.
//
// Writes that an attack makes run inside a transaction that is always rolled
// back, so a broken layer is reported without damaging data. Audit rows the
// run produces stay: the audit table is append-only.
//
// The result is a Report of Results (region, table, check, pass|fail|warn,
// detail), printed as a table or as JSON. A Report with any fail means the
// gate failed; Run returns an error only when the proof cannot run at all.
package prove
