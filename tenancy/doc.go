// Package tenancy holds the value types the proxy shares with the statement
// checker (package policy) and the audit (package audit):
//
//   - Decision, the checker's verdict on one client message, with the COPY
//     row check (CopyCheck, CopyStream) of an allowed COPY ... FROM STDIN;
//   - Change and Outcome, a message's change to the mirror of the server's
//     prepared statements and the server's answer to it (IsStatementTag,
//     ReservedPrefix);
//   - Event, one audit record, with its kinds and verdicts.
//
// It is a leaf: it imports only the standard library. Package proxy depends
// on it instead of on policy (cgo, through parser and pg_query_go) and audit
// (pgxpool), so the proxy builds and is tested without either; cmd/pgtenant
// injects policy's Session and audit's Recorder through the proxy's
// StatementChecker and Auditor interfaces.
package tenancy
