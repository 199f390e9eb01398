// Package policy decides whether a tenant's statement may reach PostgreSQL.
//
// The Engine holds the configuration, one relation Catalog per region and a
// bounded cache of tenant-independent analyses. An analysis is either a
// denial or a set of requirements: formulas over "slots" (a literal of the
// text, or a $n parameter) that must equal the caller's account. The values
// are checked on every execution (Query, Bind, EXECUTE), so a cached analysis
// can never let `IN (42, 7)` ride on an allowed `IN (42)`. The cache key is
// the statement's shape (parser.Scan abstracts integer and string literals)
// plus the text of every literal the analysis did not read as a slot, so a
// verdict that depends on any other literal (a file name, a setting or
// function name, a regclass text) is never shared (FuzzCacheKey).
//
// Names are resolved as PostgreSQL's parse analysis resolves them: a LATERAL
// item or a function in FROM sees the earlier FROM items only, JOIN ON (and
// its subqueries) the join's two sides, JOIN ... USING ... AS names the merged
// columns, EXCLUDED makes unqualified names in ON CONFLICT ambiguous. The
// differential tests (tripwire_test.go, FuzzTripwire) run every allowed
// statement on a real server with RLS off and check that no other tenant's
// row is returned or changed.
//
// The rules are POLICY.md's: every tenant-table occurrence in every query
// block (subqueries, CTEs, set-operation arms, LATERAL, RETURNING, ON
// CONFLICT, MERGE) must be pinned by a WHERE/ON conjunct `account_id = <own
// account>` (=, IN, = ANY, IS NOT DISTINCT FROM, or equality with an already
// pinned relation's tenant column); INSERT must set the tenant column on every
// row; escapes (DDL, settings, dangerous functions, forbidden schemas,
// statistics views, COPY FROM/files) are denied; anything not understood is denied.
//
// A Session implements proxy.StatementChecker for one client connection; its
// Decisions and Changes are package tenancy's, which the proxy imports instead
// of this cgo package. It mirrors the server's prepared statements, and the
// mirror changes only on the server's word: a check returns the Changes its
// message would make, and the proxy applies each one with Resolve once the
// server's replies confirm or refuse it (mirror.go). Where pgtenant cannot
// know what the server holds under a name, its use is denied.
package policy
