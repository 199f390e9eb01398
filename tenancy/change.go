package tenancy

// Change is a change of the server's prepared statements that a checked
// message makes if the server runs it. The proxy reports the server's answer
// with the checker's Resolve(ID, ...), exactly once per change (package
// policy describes the mirror).
type Change struct {
	// ID names the change in Resolve.
	ID uint64
	// Stmt is, for a Query, the index of the statement that makes the
	// change: its CommandComplete is the Stmt-th (from 0) the Query produces.
	Stmt int
	// Tag is the CommandComplete tag that confirms the change ("PREPARE",
	// "DEALLOCATE", "DEALLOCATE ALL"), or empty when a protocol reply does
	// (ParseComplete, CloseComplete, ParameterDescription).
	Tag string
	// Portal is true for a change a Bind makes: it is confirmed by an Execute
	// of the portal the Bind created.
	Portal bool
}

// Outcome is the server's answer to a message that makes a Change.
type Outcome uint8

const (
	// Skipped: the server did not run the message (it failed, or an earlier
	// error made the server skip it, or its portal was dropped unexecuted).
	Skipped Outcome = iota
	// Confirmed: the server ran it (ParseComplete, CloseComplete, the
	// ParameterDescription of a Describe, or the expected command tag).
	Confirmed
	// Unknown: the server's reply does not tell whether the change happened.
	Unknown
)

// IsStatementTag reports whether a CommandComplete tag is one of a statement
// that changes prepared statements: a proxy that sees one where no Change
// was expected calls Resolve(0, Unknown, nil).
func IsStatementTag(tag string) bool {
	switch tag {
	case "PREPARE", "DEALLOCATE", "DEALLOCATE ALL":
		return true
	}
	return false
}
