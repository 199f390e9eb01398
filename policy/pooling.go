package policy

import (
	"strings"

	"github.com/jackc/pgerrcode"

	"github.com/pgtenant/pgtenant/parser"
	"github.com/pgtenant/pgtenant/tenancy"
)

// Transaction pooling (pool.mode: transaction) gives a client a backend
// connection for one transaction at a time: whatever a statement leaves in
// the server session after COMMIT stays with that backend, which the next
// transaction of another client (or tenant) gets, while the client's own next
// transaction may run on another backend that lacks it. Statements that
// create such state are refused with 0A000 naming pool.mode: session, where
// they work. Settings are not state that must move: the proxy replays a
// client's startup settings in every transaction, and SET LOCAL and
// set_config(..., true) end with the transaction.

// TransactionPooling makes the engine refuse session state that cannot
// follow a client from one pooled backend to the next.
func TransactionPooling() EngineOption { return func(e *Engine) { e.txPooling = true } }

// pooledSessionState returns the denial of a statement that would leave
// state in a pooled server session, or nil.
func pooledSessionState(st *parser.Statement) *Denial {
	switch st.Kind {
	case parser.KindPrepare:
		return pooledDenial("PREPARE", "a prepared statement in the server session",
			"use the protocol's Parse/Bind (every driver's prepared statements), which pgtenant moves between backends")
	case parser.KindDeallocate:
		return pooledDenial("DEALLOCATE", "the server session's prepared statements",
			"close prepared statements with the protocol's Close message (the driver's deallocate)")
	case parser.KindDeclareCursor:
		if st.Hold {
			return pooledDenial("DECLARE ... WITH HOLD", "a cursor that outlives its transaction",
				"declare the cursor WITHOUT HOLD and fetch inside the transaction")
		}
	case parser.KindListen:
		return pooledDenial("LISTEN", "a subscription of the server session", "")
	case parser.KindSet:
		si := st.Set
		if si == nil || si.Local {
			return nil
		}
		switch {
		case si.Kind == "multi" && (si.Name == "transaction" || si.Name == "transaction snapshot"):
			return nil // SET TRANSACTION applies to the current transaction only
		case si.Kind == "multi":
			return pooledDenial("SET "+strings.ToUpper(si.Name), "a session-level setting",
				"use SET TRANSACTION inside each transaction")
		case txnDefaults[si.Name]:
			// replayed inside a transaction that already began, a default
			// for new transactions would come too late to apply to it
			return pooledDenial("SET "+si.Name, "a default for the session's transactions",
				"use BEGIN ISOLATION LEVEL ... / READ ONLY, or SET TRANSACTION, in each transaction")
		case sessionSetOf(si) != nil:
			return nil // tracked by the proxy and replayed in each transaction
		}
		return pooledDenial("SET "+si.Name, "a session-level setting",
			"use SET LOCAL "+si.Name+" inside a transaction, or pass it as a startup parameter (pgtenant sets those in every transaction)")
	}
	return nil
}

// sessionSetOf returns the tracked form of a session-level SET, or nil when
// it cannot be replayed (a value that is not plain constants).
func sessionSetOf(si *parser.SetInfo) *tenancy.SessionSet {
	if si == nil || si.Local || si.Func {
		return nil
	}
	switch si.Kind {
	case "value":
		if !si.ArgsOK || len(si.Args) == 0 {
			return nil
		}
		return &tenancy.SessionSet{Name: si.Name, Value: strings.Join(si.Args, ", ")}
	case "default", "reset":
		return &tenancy.SessionSet{Name: si.Name, Reset: true}
	case "reset_all":
		// the rest of its transaction runs without the tenant setting too
		// (RESET ALL resets it to the pooled backend's none): fail closed
		return &tenancy.SessionSet{Reset: true, All: true}
	}
	return nil
}

// pooledDenial refuses what, which would leave state in a pooled backend.
func pooledDenial(what, state, hint string) *Denial {
	h := "connect to a pgtenant with pool.mode: session for this"
	if hint != "" {
		h = hint + "; or " + h
	}
	return &Denial{Reason: "transaction_pooling", SQLState: pgerrcode.FeatureNotSupported,
		Message: "pgtenant: " + what + " keeps " + state + " after the transaction, which pool.mode: transaction cannot carry to the client's next transaction (it works with pool.mode: session)",
		Hint:    h}
}

// constTrue reports whether v is the boolean constant true as PostgreSQL
// reads it (isOn: 'true', 't', 'on', 'yes', '1', ...).
func constTrue(v parser.Value) bool {
	return v.Kind == parser.ValConst && len(v.Casts) == 0 && isOn(v.Text)
}
