package tenancy

// Decision is the verdict on one client message (a simple Query, a Parse or a Bind).
type Decision struct {
	// Allow is true when the message may be forwarded to PostgreSQL.
	Allow bool
	// SQLState is the error code sent with a denial: 42501 for policy
	// violations, 54001 for statements too long or too deeply nested.
	SQLState string
	// Message is the client-facing error text; it starts with "pgtenant: " and
	// names the table or construct at fault.
	Message string
	// Hint shows the fix (e.g. "add WHERE account_id = $1").
	Hint string
	// Reason is a short stable code for metrics and the audit
	// (e.g. "unscoped_table", "ddl", "forbidden_schema"); empty when allowed.
	Reason string
	// Tables are the relations the statement touches, schema-qualified.
	Tables []string
	// Statement is the text recorded in the audit: literals replaced by $n
	// placeholders. For a Bind, the statement the server binds.
	Statement string
	// Text is the text of the statement the decision is about as the server
	// runs it (for a Bind, the prepared statement the server holds), for the
	// audit's full statement.
	Text string
	// Changes are the changes to the server's prepared statements the
	// message makes once the server confirms them (see Change, Resolve).
	Changes []Change
	// Wait means the decision depends on earlier messages whose outcome the
	// server has not reported yet: forward nothing, wait for the server's
	// replies, Resolve them and check the message again.
	Wait bool
	// Rewritten, when not empty, is the text to forward instead of the
	// client's (policy.unscoped: rewrite added pins); Statement then
	// normalizes it. Parameter numbering is the client's. For a Bind it is
	// the rewritten text of the statement bound: nothing to forward, the
	// audit flags the execution as rewritten.
	Rewritten string
	// Copy, when not nil, is the row check of an allowed COPY ... FROM
	// STDIN (rewrite mode): the proxy runs the client's CopyData through it.
	Copy CopyCheck
	// Sets are the session-level SETs of allowed settings the message runs
	// (transaction pooling only; see SessionSet): the proxy tracks each once
	// its statement's command tag confirms it.
	Sets []SessionSet
}

// CopyCheck is the per-row check of an allowed COPY ... FROM STDIN.
type CopyCheck interface {
	// Stream starts checking one COPY's data.
	Stream() CopyStream
}

// CopyStream checks the rows of one COPY ... FROM STDIN as they arrive.
type CopyStream interface {
	// Write consumes the payload of CopyData messages; it returns the
	// denial of the first row that is not the caller's (and keeps
	// returning it).
	Write(p []byte) *Decision
	// Close checks what remains at CopyDone (a last row without a newline).
	Close() *Decision
}

// ReservedPrefix starts the statement and portal names pgtenant keeps for
// itself: clients may not create them.
const ReservedPrefix = "pgtenant"

// SessionSet is a session-level SET or RESET of an allowed setting, which
// the proxy tracks under transaction pooling: once the server confirms it
// (and its transaction commits), the proxy sets it transaction-locally at
// the start of each of the client's transactions, on whichever backend.
type SessionSet struct {
	// Stmt is the index of the statement in a simple Query (0 otherwise).
	Stmt int
	// Name is the setting, lower-cased.
	Name string
	// Value is the value as PostgreSQL flattens a SET's arguments (joined
	// with ", "); empty for a reset.
	Value string
	// Reset marks RESET name and SET name TO DEFAULT.
	Reset bool
	// All marks RESET ALL (Name is empty): every tracked SET is dropped.
	All bool
}
