// Package audit writes and verifies pgtenant's hash-chained, append-only audit
// trail (SPEC.md, Audit; audit/README.md is the byte-level specification).
//
// Every region's backend database holds schema pgtenant_audit (schema.go).
// There is one hash chain per (region, tenant): chain_id is the account id,
// and the reserved chain NoTenantChain ("-") holds events with no verified
// tenant, such as rejected logins. Every chained event is also a leaf of one
// Merkle tree per region (tree.go).
//
// The proxy reports events (tenancy.Event, a leaf package the proxy shares
// without importing this one) to a Recorder (recorder.go), which makes them
// as durable as audit.mode promises before Record returns:
//
//	spool   statement events are written to a local spool (spool.go) and
//	        fsync'd every audit.spool_fsync_interval or per group; a shipper
//	        per region moves them to the database in batches.
//	strict  statement events are committed to the regional database (group
//	        commit across connections) before Record returns.
//	async   events go through a bounded in-memory queue; a full queue blocks.
//
// In spool and async mode a statement's row waits for its result and carries
// it (merge.go): one row per statement.
//
// Writers (writer.go, ingest.go) take no lock shared with other proxies: each
// batch of unsequenced, content-hashed events is one INSERT of one
// pgtenant_audit.ingest_batches row (the events packed in an array of a
// composite type), so the database pays no heap tuple or index entry per
// appended event. One integrator per region (integrator.go; whichever proxy
// holds the region's advisory lock) assigns each tenant's seq, links its
// chain, numbers the tree leaves, moves the events into events and deletes
// the batches it chained: the queue is its own progress record, and nothing
// is stored twice. That proxy's own writers hand their batches to its
// integrator instead, which writes them into events once; under a backlog
// the integrator plans and starts each round while the one before is still
// checked and committed, on a second connection. Hashes are computed in Go over the
// versioned encoding of README.md (encoding.go), so that an auditor can write
// an independent verifier (audit/verifier holds one in Python). Verify
// (verify.go, verify_db.go) checks chains, per-chain checkpoints, tree
// checkpoints (C2SP signed notes) and purge records; Seal (seal.go) signs
// them with a key the proxy never holds; Purge and Erase (purge.go) enforce
// retention and erase statement text while everything still verifies; Export
// (export.go) writes a tenant's chain with inclusion proofs for offline
// verification.
package audit
