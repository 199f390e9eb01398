package policy

import (
	"strings"

	"github.com/pgtenant/pgtenant/parser"
)

func setOf(s string) map[string]bool {
	m := map[string]bool{}
	for _, f := range strings.Fields(s) {
		m[f] = true
	}
	return m
}

// statsRels are catalog relations that expose other sessions, other tenants'
// data or table-wide statistics (besides every pg_stat* / pg_statio* view).
var statsRels = setOf(`pg_locks pg_prepared_xacts pg_largeobject pg_largeobject_metadata pg_statistic
pg_statistic_ext_data pg_authid pg_shadow pg_user_mapping pg_user_mappings pg_file_settings pg_hba_file_rules
pg_ident_file_mappings pg_replication_slots pg_replication_origin pg_replication_origin_status
pg_backend_memory_contexts pg_shmem_allocations pg_subscription pg_config pg_db_role_setting pg_stats
pg_stats_ext pg_stats_ext_exprs pg_prepared_statements_all pg_aios pg_wait_events`)

// relStatsViews are the per-relation statistics views with their columns
// (PostgreSQL 15). A tenant may reference them for their identity columns
// only (SPEC, second round): drivers join them to pg_description for column
// comments; their counters describe every tenant's activity.
var relStatsViews = func() map[string][]string {
	out := map[string][]string{}
	tables := "relid schemaname relname seq_scan seq_tup_read idx_scan idx_tup_fetch n_tup_ins n_tup_upd n_tup_del n_tup_hot_upd"
	more := " n_live_tup n_dead_tup n_mod_since_analyze n_ins_since_vacuum last_vacuum last_autovacuum last_analyze last_autoanalyze vacuum_count autovacuum_count analyze_count autoanalyze_count"
	for _, k := range []string{"all", "user", "sys"} {
		out["pg_stat_"+k+"_tables"] = strings.Fields(tables + more)
		out["pg_stat_xact_"+k+"_tables"] = strings.Fields(tables)
		out["pg_stat_"+k+"_indexes"] = strings.Fields("relid indexrelid schemaname relname indexrelname idx_scan idx_tup_read idx_tup_fetch")
		out["pg_statio_"+k+"_tables"] = strings.Fields("relid schemaname relname heap_blks_read heap_blks_hit idx_blks_read idx_blks_hit toast_blks_read toast_blks_hit tidx_blks_read tidx_blks_hit")
		out["pg_statio_"+k+"_indexes"] = strings.Fields("relid indexrelid schemaname relname indexrelname idx_blks_read idx_blks_hit")
		out["pg_statio_"+k+"_sequences"] = strings.Fields("relid schemaname relname blks_read blks_hit")
	}
	return out
}()

// statsIdentity are the columns of relStatsViews a tenant may reference.
var statsIdentity = setOf(`relid indexrelid schemaname relname indexrelname`)

// deniedFuncs are built-in functions tenants may never call.
var deniedFuncs = setOf(`set_config pg_read_file pg_read_binary_file pg_ls_dir pg_stat_file ts_stat
pg_terminate_backend pg_cancel_backend pg_reload_conf pg_rotate_logfile pg_switch_wal pg_logical_emit_message
pg_notify setval pg_promote pg_create_restore_point pg_current_logfile pg_blocking_pids
pg_safe_snapshot_blocking_pids pg_isolation_test_session_is_blocked pg_log_backend_memory_contexts
pg_get_backend_memory_contexts pg_lock_status pg_prepared_xact pg_show_all_file_settings pg_hba_file_rules
pg_ident_file_mappings pg_get_shmem_allocations pg_get_replication_slots pg_show_replication_origin_status
pg_import_system_collations pg_backup_start pg_backup_stop pg_start_backup pg_stop_backup
pg_wal_replay_pause pg_wal_replay_resume pg_drop_replication_slot pg_copy_logical_replication_slot
pg_copy_physical_replication_slot pg_create_logical_replication_slot pg_create_physical_replication_slot
pg_replication_slot_advance pg_sync_replication_slots gin_clean_pending_list brin_summarize_new_values
brin_summarize_range brin_desummarize_range pg_mcv_list_items pg_stat_have_stats pg_nextoid
pg_signal_backend pg_sequence_last_value pg_get_wal_replay_pause_state pg_control_system
pg_control_checkpoint pg_control_recovery pg_control_init pg_walfile_name pg_walfile_name_offset
pg_get_wal_resource_managers pg_split_walfile_name pg_get_process_memory_contexts pg_ls_logdir pg_ls_waldir
pg_ls_tmpdir pg_ls_archive_statusdir pg_ls_logicalsnapdir pg_ls_logicalmapdir pg_ls_replslotdir
pg_ls_summariesdir pg_file_write pg_file_rename pg_file_unlink pg_file_sync pg_logdir_ls pg_get_keywords_x
loread lowrite pg_stat_get_activity pg_settings_get_flags_x
currtid currtid2 currtid_byrelname currtid_byreloid pg_get_multixact_members pg_xact_commit_timestamp
pg_xact_commit_timestamp_origin pg_last_committed_xact pg_xact_status txid_status pg_extension_config_dump
pg_config pg_get_sequence_data`)

// Tuple history and transaction status: currtid* follow another tenant's row
// versions by tid, pg_get_multixact_members names the sessions locking a
// row, the commit-timestamp and xact-status functions date and confirm other
// tenants' transactions; pg_config() describes the server build.

// infoSchemaFuncs are information_schema's helper functions: pure
// computations over type and index metadata the catalog already shows
// (pgjdbc's getPrimaryKeys/getIndexInfo call _pg_expandarray).
var infoSchemaFuncs = setOf(`_pg_expandarray _pg_index_position _pg_truetypid _pg_truetypmod _pg_char_max_length
_pg_char_octet_length _pg_numeric_precision _pg_numeric_precision_radix _pg_numeric_scale _pg_datetime_precision
_pg_interval_type`)

// deniedPrefixes cover function families.
var deniedPrefixes = []string{"lo_", "be_lo_", "dblink", "query_to_xml", "table_to_xml", "cursor_to_xml",
	"schema_to_xml", "database_to_xml", "pg_advisory", "pg_try_advisory", "pg_stat_", "pg_replication_",
	"pg_logical_", "pg_ls_", "pg_read_", "pg_file_", "binary_upgrade_", "pg_wal_", "pg_current_wal",
	"pg_last_wal", "pg_xlog", "pg_create_", "pg_drop_", "pg_import_"}

func funcDenied(name string) bool {
	if name == "pg_advisory_unlock_all" {
		// releases only the calling session's own locks: a no-op for a
		// tenant session, which cannot take any (SPEC, second round)
		return false
	}
	if deniedFuncs[name] {
		return true
	}
	for _, p := range deniedPrefixes {
		if strings.HasPrefix(name, p) {
			return true
		}
	}
	return false
}

func (a *analyzer) checkFuncs() {
	for _, f := range a.st.Funcs {
		if d := a.e.checkFunc(f, a.cat); d != nil {
			a.fail(d)
			return
		}
	}
}

func (e *Engine) checkFunc(f parser.Func, cat *Catalog) *Denial {
	q := f.QName
	full := q.Name
	if q.Schema != "" {
		full = q.Schema + "." + q.Name
	}
	if e.forbidden[q.Schema] {
		return deny("forbidden_schema", "function "+full+" is in a forbidden schema", "")
	}
	if q.Schema == "" || q.Schema == "pg_catalog" {
		switch q.Name {
		case "set_config":
			return e.checkSetConfig(f, cat)
		case "ts_rewrite":
			if len(f.Args) == 2 {
				return deny("function", "ts_rewrite with a query text runs arbitrary SQL", "use the three-argument form")
			}
		}
		if funcDenied(q.Name) {
			return deny("function", "function "+full+" is not allowed for tenant connections",
				"it reaches files, other sessions, large objects, locks or other tenants' data")
		}
		if builtinFuncs[q.Name] {
			return nil
		}
		if q.Schema == "" {
			for _, s := range e.searchPath {
				if e.allowedFuncs[s+"."+q.Name] {
					return nil
				}
			}
			if e.allowedFuncs[q.Name] {
				return nil
			}
		}
		return deny("function", "function "+full+" is not a built-in function on the allowlist",
			"add it to policy.allowed_functions after reviewing it (SECURITY DEFINER functions bypass RLS)")
	}
	if e.allowedFuncs[full] || (q.Schema == "information_schema" && infoSchemaFuncs[q.Name]) {
		return nil
	}
	return deny("function", "function "+full+" is not allowed for tenant connections",
		"add it to policy.allowed_functions after reviewing it (SECURITY DEFINER functions bypass RLS)")
}

// checkSetConfig treats set_config('name', 'value', is_local) as SET name = value.
func (e *Engine) checkSetConfig(f parser.Func, cat *Catalog) *Denial {
	bad := deny("setting", "set_config of this setting is not allowed",
		"only settings on the allowlist may be changed, with a literal name")
	if len(f.Args) != 3 || f.Args[0].Kind != parser.ValConst || f.Args[0].ConstKind != "string" || len(f.Args[0].Casts) > 0 {
		return bad
	}
	si := &parser.SetInfo{Kind: "value", Name: strings.ToLower(f.Args[0].Text), ArgsOK: true, Func: true}
	v := f.Args[1]
	if v.Kind == parser.ValConst && len(v.Casts) == 0 {
		si.Args = []string{v.Text}
	} else {
		si.ArgsOK = false
	}
	if d := e.checkSet(si, cat); d != nil {
		return d
	}
	if e.txPooling && !constTrue(f.Args[2]) {
		return pooledDenial("set_config(..., false)", "a session-level setting", "pass true as is_local: set_config(name, value, true)")
	}
	return nil
}

// Settings are decided by class (SPEC, second round; the README's table):
//   - sessionSettings: presentation and timeouts of this session only;
//   - txnDefaults: transaction characteristics, as SET SESSION CHARACTERISTICS;
//   - tuningSettings: commit durability and planner settings, which change how
//     a statement runs but never which rows it may see;
//   - search_path: only to a literal list resolving to the pinned path;
//   - standard_conforming_strings: only SET to on, the value pgtenant pins;
//   - everything else (identity, visibility, lexing, other sessions, unknown
//     names) is refused unless listed in policy.allowed_settings, which can
//     never open up neverSettable.
var sessionSettings = setOf(`application_name timezone datestyle intervalstyle extra_float_digits statement_timeout
lock_timeout idle_in_transaction_session_timeout idle_session_timeout transaction_timeout client_min_messages
client_encoding search_path`)

// txnDefaults are transaction characteristics; SET TRANSACTION and SET
// SESSION CHARACTERISTICS change the same values.
var txnDefaults = setOf(`default_transaction_isolation default_transaction_read_only default_transaction_deferrable
transaction_isolation transaction_read_only transaction_deferrable`)

// tuningSettings change cost, memory, JIT and commit behaviour only.
var tuningSettings = setOf(`synchronous_commit work_mem hash_mem_multiplier maintenance_work_mem temp_buffers
jit jit_above_cost jit_inline_above_cost jit_optimize_above_cost plan_cache_mode
random_page_cost seq_page_cost cpu_tuple_cost cpu_index_tuple_cost cpu_operator_cost parallel_setup_cost
parallel_tuple_cost effective_cache_size effective_io_concurrency from_collapse_limit join_collapse_limit
geqo geqo_threshold geqo_effort constraint_exclusion cursor_tuple_fraction max_parallel_workers_per_gather
parallel_leader_participation min_parallel_table_scan_size min_parallel_index_scan_size default_statistics_target`)

// settingClass names the class of a setting ("" when it is in none).
func settingClass(name string) string {
	switch {
	case sessionSettings[name]:
		return "session"
	case txnDefaults[name]:
		return "transaction"
	case tuningSettings[name], strings.HasPrefix(name, "enable_") && !strings.Contains(name, "."):
		return "tuning"
	}
	return ""
}

// neverSettable are settings policy.allowed_settings cannot open up: they
// would change the session's identity, bypass RLS or triggers, or make the
// server lex strings differently from pg_query. standard_conforming_strings
// may only be SET to on, the value the proxy pins (Rails and Sequel send it at
// connect).
var neverSettable = setOf(`role session_authorization session_replication_role row_security
standard_conforming_strings app.current_subject`)

// isOn reports whether a boolean setting value means on, as PostgreSQL's
// parse_bool reads it (unambiguous prefixes of true/yes, on, 1).
func isOn(s string) bool {
	switch strings.ToLower(strings.TrimSpace(s)) {
	case "on", "true", "tru", "tr", "t", "yes", "ye", "y", "1":
		return true
	}
	return false
}

// checkSet decides SET / RESET / set_config.
func (e *Engine) checkSet(si *parser.SetInfo, cat *Catalog) *Denial {
	if si == nil {
		return deny("setting", "unsupported SET", "")
	}
	name := si.Name
	switch si.Kind {
	case "reset_all":
		// Honoured (SPEC, second round): the tenant setting and the pins are
		// startup parameters of the backend session, so RESET ALL resets
		// them to exactly those values, atomically, and every allowlisted
		// setting to its default.
		return nil
	case "multi":
		switch name {
		case "transaction", "session characteristics", "transaction snapshot":
			return nil
		}
		return deny("setting", "SET "+name+" is not allowed", "")
	case "current":
		return deny("setting", "SET ... FROM CURRENT is not allowed", "")
	}
	if name == strings.ToLower(e.cfg.TenantSetting) {
		return deny("tenant_setting", "the tenant setting "+e.cfg.TenantSetting+" is owned by pgtenant and cannot be changed",
			"pgtenant sets it from your token")
	}
	if name == "standard_conforming_strings" {
		if si.Kind == "value" && !si.Func && si.ArgsOK && len(si.Args) == 1 && isOn(si.Args[0]) {
			return nil // the pinned value: a no-op
		}
		return deny("setting", "standard_conforming_strings is pinned to on",
			"pgtenant reads statements as PostgreSQL does with standard_conforming_strings = on; only SET standard_conforming_strings = on is accepted")
	}
	if neverSettable[name] {
		return deny("setting", "SET "+name+" is never allowed for tenant connections",
			"it would change who the session is, what it may see, or how PostgreSQL reads statements")
	}
	if settingClass(name) == "" && !e.allowedSettings[name] {
		return deny("setting", "SET "+name+" is not allowed for tenant connections",
			"allowed: session settings (application_name, TimeZone, statement_timeout, ...), transaction defaults, planner and commit settings, and policy.allowed_settings")
	}
	switch name {
	case "client_encoding":
		if si.Kind != "value" || !si.ArgsOK || len(si.Args) != 1 || !isUTF8(si.Args[0]) {
			return deny("setting", "client_encoding can only be UTF8", "pgtenant parses statements as UTF8")
		}
	case "search_path":
		if si.Kind != "value" || !si.ArgsOK || !e.samePath(si.Args, cat) {
			return deny("search_path", "search_path is pinned to "+strings.Join(e.searchPath, ", "),
				"qualify names instead of changing search_path")
		}
	}
	return nil
}

func isUTF8(s string) bool {
	s = strings.ToUpper(strings.NewReplacer("-", "", "_", "", " ", "").Replace(s))
	return s == "UTF8" || s == "UNICODE"
}

// samePath reports whether a search_path value resolves to the pinned path.
// "$user" names a schema after the session's role: it resolves to nothing
// (and may be dropped) only when discovery proved that no such schema exists.
func (e *Engine) samePath(args []string, cat *Catalog) bool {
	var got []string
	for _, a := range args {
		got = append(got, ParseSearchPath(a)...)
	}
	pinned := e.searchPath
	i := 0
	for _, g := range got {
		if g == "$user" {
			if cat == nil || !cat.NoRoleSchema {
				return false
			}
			continue
		}
		if i >= len(pinned) || g != pinned[i] {
			return false
		}
		i++
	}
	return i == len(pinned)
}

func (a *analyzer) checkOps() {
	for _, o := range a.st.Ops {
		if o.Schema != "" && o.Schema != "pg_catalog" {
			a.fail(deny("operator", "operator "+o.Schema+"."+o.Name+" is outside pg_catalog", "use the built-in operator"))
			return
		}
	}
}

func (a *analyzer) checkTypes() {
	for _, t := range a.st.Types {
		s := t.Schema
		if s == "" || s == "pg_catalog" || s == "information_schema" {
			continue
		}
		if a.e.forbidden[s] {
			a.fail(deny("forbidden_schema", "type "+s+"."+t.Name+" is in a forbidden schema", ""))
			return
		}
		ok := false
		for _, p := range a.cat.SearchPath {
			if p == s {
				ok = true
			}
		}
		if !ok {
			for _, tb := range a.cat.Tables {
				if tb.Schema == s {
					ok = true
					break
				}
			}
		}
		if !ok {
			a.fail(deny("type", "type "+s+"."+t.Name+" is in an unknown schema", ""))
			return
		}
	}
}
