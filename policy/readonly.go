package policy

import (
	"strings"

	"github.com/pgtenant/pgtenant/parser"
)

// Read-only sessions (auth.Principal.ReadOnly: a role in
// access.read_only_roles, or a support session) may only read. The policy
// refuses every statement that writes or that would make the session
// read-write again; independently, the proxy pins the backend session to
// default_transaction_read_only = on, so PostgreSQL refuses writes the
// policy cannot see (e.g. inside an allowed user-defined function).
//
// The write analysis is tenant-independent and cached with the rest of the
// statement's analysis (StmtAnalysis.Writes); only the verdict depends on
// the session.

// writeFuncs are built-in functions with side effects a read-only session
// may not call (most are refused for every tenant anyway; listing them here
// keeps the read-only verdict complete on its own).
var writeFuncs = setOf(`nextval setval txid_current pg_current_xact_id pg_logical_emit_message pg_notify
lo_creat lo_create lo_import lo_export lo_unlink lo_put lo_from_bytea lo_truncate lo_truncate64 lowrite lo_open
pg_advisory_lock pg_advisory_lock_shared pg_advisory_xact_lock pg_advisory_xact_lock_shared
pg_try_advisory_lock pg_try_advisory_lock_shared pg_try_advisory_xact_lock pg_try_advisory_xact_lock_shared
pg_stat_reset pg_stat_reset_shared pg_stat_reset_single_table_counters pg_stat_reset_single_function_counters
pg_stat_reset_slru pg_stat_reset_replication_slot pg_stat_reset_subscription_stats
pg_import_system_collations pg_create_restore_point pg_switch_wal pg_reload_conf pg_rotate_logfile
pg_cancel_backend pg_terminate_backend pg_promote gin_clean_pending_list brin_summarize_new_values
brin_summarize_range brin_desummarize_range dblink_exec pg_replication_origin_create
pg_replication_origin_drop pg_replication_origin_advance pg_replication_origin_session_setup
pg_replication_origin_xact_setup pg_nextoid`)

// readOnlySettings are the settings that decide whether a transaction may write.
var readOnlySettings = setOf(`default_transaction_read_only transaction_read_only`)

// writes returns what makes st a write (or a way back to read-write), for
// the denial message; "" when a read-only session may run it.
func writes(st *parser.Statement) string {
	if st == nil {
		return ""
	}
	switch st.Kind {
	case parser.KindInsert:
		return "INSERT"
	case parser.KindUpdate:
		return "UPDATE"
	case parser.KindDelete:
		return "DELETE"
	case parser.KindMerge:
		return "MERGE"
	case parser.KindCopy:
		if st.Copy == nil || st.Copy.From {
			return "COPY FROM"
		}
	case parser.KindTransaction:
		if st.ReadWrite {
			return "a READ WRITE transaction"
		}
	case parser.KindSet:
		if st.ReadWrite {
			return "SET ... READ WRITE"
		}
		if si := st.Set; si != nil && readOnlySettings[si.Name] && !truthySet(si) {
			return "changing " + si.Name
		}
	case parser.KindDeclareCursor, parser.KindPrepare:
		// the statement they hold runs later, under this name
		if w := writes(st.Inner); w != "" {
			return w
		}
	}
	if st.Locking {
		return "a row-locking clause (FOR UPDATE / FOR SHARE)"
	}
	for _, b := range st.Blocks {
		for _, r := range b.Rels {
			if r.Target {
				return "a data-modifying statement in WITH"
			}
		}
	}
	for _, f := range st.Funcs {
		if f.Schema != "" && f.Schema != "pg_catalog" {
			continue // user-defined: the backend's read-only pin stops its writes
		}
		name := strings.ToLower(f.Name)
		if writeFuncs[name] {
			return name + "()"
		}
		if name == "set_config" && !setConfigReadOnlySafe(f) {
			return "set_config() of a transaction read-only setting"
		}
	}
	return ""
}

// truthySet reports whether a SET of a read-only setting keeps it on.
func truthySet(si *parser.SetInfo) bool {
	if si.Kind != "value" || !si.ArgsOK || len(si.Args) != 1 {
		return false
	}
	return isOn(si.Args[0])
}

// setConfigReadOnlySafe reports whether a set_config call provably leaves
// the read-only settings alone (or sets them on).
func setConfigReadOnlySafe(f parser.Func) bool {
	if len(f.Args) < 2 || f.Args[0].Kind != parser.ValConst {
		return false
	}
	if !readOnlySettings[strings.ToLower(f.Args[0].Text)] {
		return true
	}
	return f.Args[1].Kind == parser.ValConst && isOn(f.Args[1].Text)
}

// readOnlyDenial refuses, in a read-only session, the first statement of an
// that writes.
func (s *Session) readOnlyDenial(an *analysis) *Denial {
	if !s.p.ReadOnly {
		return nil
	}
	for _, st := range an.stmts {
		if st.Writes != "" {
			why := "your role is read-only"
			if s.p.Support() {
				why = "support sessions are read-only"
			}
			d := deny("read_only", "this session is read-only ("+why+"): "+st.Writes+" is not allowed",
				"run only reads in this session; writes need a token whose role is not in access.read_only_roles")
			return d
		}
	}
	return nil
}
