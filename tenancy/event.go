package tenancy

import "time"

// Event kinds (SPEC.md, Audit).
const (
	// KindConnect is a session that passed authentication.
	KindConnect = "connect"
	// KindReject is a connection refused before a session started.
	KindReject = "reject"
	// KindStatement is a statement the checker decided.
	KindStatement = "statement"
	// KindResult is the completion of an allowed statement (rows, duration).
	KindResult = "result"
	// KindDisconnect is the end of a session.
	KindDisconnect = "disconnect"
	// KindConfig is a configuration reload.
	KindConfig = "config"
	// KindAPI is a tenant API read.
	KindAPI = "api"
	// KindPurge records a retention purge.
	KindPurge = "purge"
)

// Verdicts.
const (
	// VerdictAllow: the statement, connection or request was let through.
	VerdictAllow = "allow"
	// VerdictDeny: it was refused.
	VerdictDeny = "deny"
)

// Event is one audit record as the proxy reports it. Package audit's
// Recorder assigns chain_id, seq, event_id, proxy_instance and the hashes.
type Event struct {
	Kind       string
	Time       time.Time
	AccountID  string // empty when no tenant was verified (e.g. a rejected login)
	Subject    string
	ClientUser string // the user name the client sent (recorded, never used to log in)
	ClientAddr string // IP address without port; empty for Unix sockets
	Region     string // empty when no region is known (bad token): recorded in every region
	SessionID  string
	Statement  string // the policy's normalized text (literals replaced by $n); empty for non-statement kinds
	// FullStatement is the statement as the client sent it; recorded instead
	// of Statement only when audit.statement is full. Optional.
	FullStatement string
	Tables        []string // relations the statement touches
	Verdict       string   // allow | deny, for statement, connect and reject events
	Reason        string
	SQLState      string
	Rows          int64 // result events; -1 when unknown
	DurationUS    int64 // result events
	// Role is the caller's role claim (auth.role_claim; several roles
	// comma-separated); empty when the token has none.
	Role string
	// Actor, Purpose and Ticket are set for support sessions: the acting
	// person (the actor claim's sub), the stated purpose and the ticket.
	Actor, Purpose, Ticket string
	// Rewritten marks a statement pgtenant rewrote (policy.unscoped:
	// rewrite): Statement and FullStatement are the rewrite the server ran.
	// It is stored in the rewritten column (hash version 3); the proxy also
	// sets Reason to ReasonRewritten, as rows before schema version 6 did.
	Rewritten bool
	// Ref pairs a statement event with its result within a session
	// (SessionID, Ref): in spool and async mode the result is merged into
	// the statement's row before it is shipped. 0 = unpaired.
	Ref uint64
}

// ReasonRewritten is the Reason of an allowed statement pgtenant rewrote.
const ReasonRewritten = "rewritten"
