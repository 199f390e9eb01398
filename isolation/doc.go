// Package isolation inspects a region's PostgreSQL catalog and reports, layer
// by layer, whether tenant isolation is actually in force there: row-level
// security enabled and forced on every tenant table with a policy that reads
// the tenant setting, a service role that cannot bypass it, and append-only
// protections on the audit table. Package admin serves the Report as
// /isolation-proof; `serve` calls CheckRLS to refuse to start when
// policy.require_rls is set and RLS is not active.
//
// Each layer carries one of three status words, meant to be read as is by a
// security team:
//
//	active          the protection is present and enforcing
//	deployed_inert  the protection is present but something makes it ineffective
//	                (e.g. RLS policies on a table while the service role is a
//	                superuser or has BYPASSRLS; audit triggers that are not
//	                ENABLE ALWAYS and so do not fire under replication)
//	missing         the protection is absent or incomplete
//
// plus "unknown" when the region could not be inspected (the error says why).
// A region's overall status is the worst of its layers.
//
// The RLS layer also lists Findings: RLS footguns, ways row-level security
// is deployed and still leaks (footguns.go): policies that fail open,
// evaluated by PostgreSQL on synthetic rows with the tenant setting unset,
// empty and another tenant's; a default for the tenant setting; tenant tables
// the service role owns; definer views and materialized views over tenant
// tables; SECURITY DEFINER functions of privileged owners; existence oracles
// (unique keys and foreign keys without the tenant column); shared sequences;
// large objects. A leak makes its table, or the layer, missing; a warning
// changes no status. `pgtenant prove` runs the same checks (Footguns).
//
// Inspection connects with the region's own service credentials (the role
// the proxy logs in as), so it sees exactly what tenant sessions are subject
// to. It only reads: the catalog, and policy predicates evaluated on rows it
// makes up, in a read-only transaction.
package isolation
