// Package audit writes and verifies pgtenant's hash-chained, append-only audit
// trail (SPEC.md, Audit).
//
// Every region's backend database holds schema pgtenant_audit with the tables
// events, chain_heads and checkpoints (see schema.go). There is one hash chain
// per (region, tenant): chain_id is the account id, and the reserved chain
// NoTenantChain ("-") holds events with no verified tenant, such as rejected
// logins.
//
// The proxy reports events to a Recorder (recorder.go), which makes them as
// durable as audit.mode promises before Record returns:
//
//	spool   statement events are fsync'd to a local spool (spool.go) with group
//	        commit; a shipper per region moves them to the database in batches.
//	strict  statement events are committed to the regional database (group
//	        commit across connections) before Record returns.
//	async   events go through a bounded in-memory queue; a full queue blocks.
//
// Writers (writer.go, pgstore.go) serialize appends per chain through the
// chain_heads row inside one batch transaction; the content and entry hashes
// are computed in Go over the versioned encoding documented in README.md and
// implemented in encoding.go, so that an auditor can write an independent
// verifier. Verify (verify.go) checks a chain and its signed checkpoints
// (checkpoint.go); Export (export.go) writes a tenant's chain for offline
// verification.
package audit
