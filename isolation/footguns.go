package isolation

// RLS footguns: ways row-level security is deployed and still leaks. The
// policy check asks PostgreSQL itself: each policy predicate that applies to
// the service role is evaluated on synthetic rows of the table (built with
// json_populate_record, so no table is scanned and no RLS is involved) with
// the tenant setting unset, empty and set to another tenant. The other
// checks read the catalog. Regular expressions are used in one place only:
// to pick literals out of a policy's text as extra probe values, which can
// only add findings, never remove one.

import (
	"context"
	"errors"
	"fmt"
	"math"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/pgtenant/pgtenant/config"
)

// Finding severities.
const (
	// SeverityLeak means another tenant's rows can be read or written: the
	// row-level security layer is reported missing.
	SeverityLeak = "leak"
	// SeverityWarning means facts about other tenants (that a key exists,
	// how many rows they write) can be learned, or a protection holds only
	// by a property the catalog cannot show; it does not change a status.
	SeverityWarning = "warning"
)

// Footgun check names, stable: they are the "check" of a Finding and of
// `pgtenant prove`'s results.
const (
	CheckPolicyFailOpen     = "policy_fail_open"
	CheckPolicyNotEvaluated = "policy_not_evaluated"
	CheckSettingDefault     = "tenant_setting_default"
	CheckTableOwner         = "table_owned_by_service_role"
	CheckViewDefiner        = "view_without_security_invoker"
	CheckMaterializedView   = "materialized_view"
	CheckSecurityDefiner    = "security_definer_function"
	CheckExistenceOracle    = "existence_oracle"
	CheckSharedSequence     = "shared_sequence"
	CheckLargeObjects       = "large_objects"
)

// FootgunChecks lists every footgun check, in report order.
var FootgunChecks = []string{CheckPolicyFailOpen, CheckPolicyNotEvaluated, CheckSettingDefault, CheckTableOwner, CheckViewDefiner, CheckMaterializedView,
	CheckSecurityDefiner, CheckExistenceOracle, CheckSharedSequence, CheckLargeObjects}

// Finding is one RLS footgun found in a region.
type Finding struct {
	// Check is one of the Check* names.
	Check string `json:"check"`
	// Severity is leak or warning.
	Severity string `json:"severity"`
	// Object names what is at fault (policy, view, function, index, sequence).
	Object string `json:"object"`
	// Table is the tenant table whose rows are exposed, when there is one.
	Table string `json:"table,omitempty"`
	// Detail says what was found and how it was established.
	Detail string `json:"detail"`
	// Fix is the statement or change that removes the footgun.
	Fix string `json:"fix"`
}

// Footguns inspects the database conn is connected to (as the service role)
// for RLS footguns, in one read-only transaction. Call it on a connection
// that has not set the tenant setting, so that "unset" can be tried.
func Footguns(ctx context.Context, conn *pgx.Conn, p config.Policy, timeout time.Duration) ([]Finding, error) {
	tx, err := readOnly(ctx, conn, timeout)
	if err != nil {
		return nil, err
	}
	defer tx.Rollback(context.WithoutCancel(ctx)) //nolint:errcheck // read-only
	tables, err := tenantTables(ctx, tx, p)
	if err != nil {
		return nil, err
	}
	return footguns(ctx, tx, tables, p)
}

// addFootguns runs the footgun checks and folds them into the RLS layer:
// every finding is listed, and a leak makes its table (or, when it names no
// table, the layer) missing.
func addFootguns(ctx context.Context, tx pgx.Tx, tables []tenantTable, p config.Policy, l *RLSLayer) error {
	findings, err := footguns(ctx, tx, tables, p)
	if err != nil {
		return err
	}
	l.Findings = findings
	for _, f := range findings {
		if f.Severity != SeverityLeak {
			continue
		}
		problem := f.Object + ": " + f.Detail + " (fix: " + f.Fix + ")"
		i := slices.IndexFunc(l.Tables, func(tr TableReport) bool { return tr.Table == f.Table })
		if f.Table == "" || i < 0 {
			l.Problems = append(l.Problems, problem)
		} else {
			l.Tables[i].Problems = append(l.Tables[i].Problems, problem)
			l.Tables[i].Status = Missing
		}
		l.Status = Missing
	}
	return nil
}

// footguns runs every check on the resolved tenant tables.
func footguns(ctx context.Context, tx pgx.Tx, tables []tenantTable, p config.Policy) ([]Finding, error) {
	var ok []tenantTable
	for _, t := range tables {
		if t.missing == "" && t.oid != 0 {
			ok = append(ok, t)
		}
	}
	out := []Finding{}
	for _, check := range []func(context.Context, pgx.Tx, []tenantTable, config.Policy) ([]Finding, error){
		policyFailOpen, ownedTables, definerViews, definerFunctions, existenceOracles, sharedSequences, largeObjects,
	} {
		f, err := check(ctx, tx, ok, p)
		if err != nil {
			return nil, err
		}
		out = append(out, f...)
	}
	return out, nil
}

// oids returns the tables' oids.
func oids(tables []tenantTable) []uint32 {
	out := make([]uint32, 0, len(tables))
	for _, t := range tables {
		out = append(out, t.oid)
	}
	return out
}

// --- policies that fail open ---

// evalTable is a tenant table prepared for policy evaluation.
type evalTable struct {
	tenantTable
	relname string // unqualified, for the alias policies' column references resolve against
	typ     string
	notNull bool
	preds   []predicate
}

// predicate is the combined policy expression PostgreSQL applies to one
// command (and part) for the service role.
type predicate struct {
	command  string // e.g. "SELECT", "UPDATE (WITH CHECK)"
	sql      string
	policies []string
}

// tenant values for the scenarios: "own" is the setting, "other" a row of another tenant.
func tenantValues(typ string) (own, other string) {
	if strings.Contains(typ, "uuid") {
		return "00000000-0000-4000-8000-000000000007", "00000000-0000-4000-8000-000000000042"
	}
	return "7", "42"
}

// literalRE picks quoted strings and numbers out of a deparsed expression.
var literalRE = regexp.MustCompile(`'((?:[^']|'')*)'|\b(-?\d+)\b`)

// probes are the tenant values of the synthetic rows tried for t: both
// tenants, common defaults, every literal in the predicates, NULL when the
// column is nullable.
func (t *evalTable) probes(setting string) []*string {
	own, other := tenantValues(t.typ)
	// own with a digit before and after catches prefix and pattern matches
	// (LIKE current_setting(...) || '%').
	vals := []string{own, other, "0", "1", "-1", "", own + "0", "1" + own}
	for _, pr := range t.preds {
		for _, m := range literalRE.FindAllStringSubmatch(pr.sql, 40) {
			if !strings.HasPrefix(m[0], "'") {
				// A number: it and its neighbours, for comparisons such as account_id > 100.
				if n, err := strconv.ParseInt(m[2], 10, 64); err == nil && n > math.MinInt64 && n < math.MaxInt64 {
					vals = append(vals, m[2], strconv.FormatInt(n-1, 10), strconv.FormatInt(n+1, 10))
				} else {
					vals = append(vals, m[2])
				}
				continue
			}
			if v := strings.ReplaceAll(m[1], "''", "'"); v != setting {
				vals = append(vals, v)
			}
		}
	}
	var out []*string
	seen := map[string]bool{}
	for _, v := range vals {
		if !seen[v] {
			seen[v] = true
			out = append(out, &v)
		}
	}
	if !t.notNull {
		out = append(out, nil)
	}
	return out
}

// buildPredicates combines policies the way PostgreSQL does for each
// command: permissive ones OR'ed, restrictive ones AND'ed onto them, no
// permissive policy means no row. A policy without WITH CHECK uses its USING.
func buildPredicates(policies []policyRow) []predicate {
	parts := []struct {
		command, code string
		check         bool
	}{{"SELECT", "r", false}, {"INSERT (WITH CHECK)", "a", true}, {"UPDATE (USING)", "w", false},
		{"UPDATE (WITH CHECK)", "w", true}, {"DELETE", "d", false}}
	var out []predicate
	for _, part := range parts {
		var perm, restr, names []string
		for _, pr := range policies {
			if pr.cmd != part.code && pr.cmd != "*" {
				continue
			}
			expr := pr.using
			if part.check && pr.with != "" {
				expr = pr.with
			}
			if expr == "" {
				continue
			}
			names = append(names, pr.name)
			if pr.permissive {
				perm = append(perm, "("+expr+")")
			} else {
				restr = append(restr, "("+expr+")")
			}
		}
		if len(perm) == 0 {
			continue // default deny
		}
		sql := "(" + strings.Join(perm, " OR ") + ")"
		if len(restr) > 0 {
			sql += " AND " + strings.Join(restr, " AND ")
		}
		out = append(out, predicate{command: part.command, sql: sql, policies: names})
	}
	return out
}

// policyFailOpen evaluates, for every tenant table, the predicate of each
// command with the setting unset, ” and another tenant's id against rows of
// many tenant values. A predicate that is true there admits rows that are
// not the session's tenant.
func policyFailOpen(ctx context.Context, tx pgx.Tx, tables []tenantTable, p config.Policy) ([]Finding, error) {
	setting := tenantSetting(p)
	ets, err := loadEvalTables(ctx, tx, tables)
	if err != nil {
		return nil, err
	}
	var baseline *string
	if err := tx.QueryRow(ctx, "SELECT pg_catalog.current_setting($1, true)", setting).Scan(&baseline); err != nil {
		return nil, fmt.Errorf("read %s: %w", setting, err)
	}
	// The scenarios set the tenant setting locally inside a savepoint rolled
	// back at the end, so the rest of the inspection runs as it started.
	sp, err := tx.Begin(ctx)
	if err != nil {
		return nil, fmt.Errorf("savepoint: %w", err)
	}
	defer sp.Rollback(context.WithoutCancel(ctx)) //nolint:errcheck // read-only; the outer transaction ends it otherwise
	type key struct{ table, pred int }
	admitted := map[key]string{} // first scenario admitting a foreign row
	evalErr := map[key]string{}  // error evaluating the own-tenant row
	scenarios := []struct {
		name  string
		value *string
	}{{"unset", nil}, {"set to ''", ptr("")}, {"set to another tenant", nil}}
	var out []Finding
	if baseline != nil && *baseline != "" {
		var who, db string
		if err := sp.QueryRow(ctx, "SELECT current_user::text, current_database()::text").Scan(&who, &db); err != nil {
			return nil, fmt.Errorf("read service role: %w", err)
		}
		out = append(out, Finding{Check: CheckSettingDefault, Severity: SeverityLeak, Object: "setting " + setting,
			Detail: fmt.Sprintf("sessions of the service role start with %s = %q (a role or database default, or PGOPTIONS): a session pgtenant has not scoped yet, or one that runs RESET, acts as that tenant", setting, *baseline),
			Fix:    fmt.Sprintf("ALTER ROLE %s RESET %s; ALTER ROLE %s IN DATABASE %s RESET %s; ALTER DATABASE %s RESET %s (see pg_db_role_setting)", pgx.Identifier{who}.Sanitize(), setting, pgx.Identifier{who}.Sanitize(), pgx.Identifier{db}.Sanitize(), setting, pgx.Identifier{db}.Sanitize(), setting)})
	}
	for si, sc := range scenarios {
		if si == 0 && baseline != nil {
			continue // sessions start with a value, never unset: reported above when it names a tenant
		}
		for ti := range ets {
			et := &ets[ti]
			own, _ := tenantValues(et.typ)
			value := sc.value
			if si == 2 {
				value = &own
			}
			if value != nil {
				if _, err := sp.Exec(ctx, "SELECT pg_catalog.set_config($1, $2, true)", setting, *value); err != nil {
					return nil, fmt.Errorf("set %s: %w", setting, err)
				}
			}
			type outcome struct {
				res *bool
				err error
			}
			memo := map[string]outcome{} // predicates of several commands are often the same text
			for pi, pr := range et.preds {
				k := key{ti, pi}
				for _, probe := range et.probes(setting) {
					mk := show(probe) + "\x00" + pr.sql
					o, seen := memo[mk]
					if !seen {
						o.res, o.err = evalPredicate(ctx, sp, et, pr.sql, probe)
						memo[mk] = o
					}
					res, err := o.res, o.err
					if err != nil {
						if !isPgError(err) {
							return nil, fmt.Errorf("evaluate policies of %s: %w", et.name, err)
						}
						if si == 2 && probe != nil && *probe == own {
							evalErr[k] = describe(err)
						}
						continue // an error refuses the row: fails closed
					}
					if si == 2 && probe != nil && *probe == own {
						continue // the session's own tenant: admitting it is the point
					}
					if res != nil && *res {
						if _, done := admitted[k]; !done {
							admitted[k] = fmt.Sprintf("with %s %s, a row whose %s is %s is admitted", setting, sc.name, et.column, show(probe))
						}
					}
				}
			}
		}
	}
	// One finding per table, check and set of policies, naming every command affected.
	for ti, et := range ets {
		type group struct {
			f     Finding
			cases []string
		}
		groups := map[string]*group{}
		var order []string
		for pi, pr := range et.preds {
			k := key{ti, pi}
			object := "policy " + strings.Join(uniq(pr.policies), ", ") + " on " + et.name
			var f Finding
			var c string
			switch {
			case evalErr[k] != "":
				c = pr.command + ": " + evalErr[k]
				f = Finding{Check: CheckPolicyNotEvaluated, Severity: SeverityWarning, Object: object, Table: et.name,
					Fix: "make the policy a plain comparison of " + et.column + " with the setting so it can be checked, e.g. USING (" + scopedExpr(et.column, setting, et.typ) + ")"}
			case admitted[k] != "":
				c = pr.command + ": " + admitted[k]
				f = Finding{Check: CheckPolicyFailOpen, Severity: SeverityLeak, Object: object, Table: et.name,
					Fix: "every permissive policy for the service role must compare " + et.column + " with the setting and match nothing when it is unset or empty, e.g. USING (" +
						scopedExpr(et.column, setting, et.typ) + ") WITH CHECK (same); drop or restrict unscoped policies (AS RESTRICTIVE, or TO a role other than the service role and PUBLIC)"}
			default:
				continue
			}
			id := f.Check + "\x00" + object
			if groups[id] == nil {
				groups[id] = &group{f: f}
				order = append(order, id)
			}
			groups[id].cases = append(groups[id].cases, c)
		}
		for _, id := range order {
			g := groups[id]
			if g.f.Check == CheckPolicyFailOpen {
				g.f.Detail = "fails open (evaluated by PostgreSQL on synthetic rows; permissive policies are OR'ed): " + strings.Join(g.cases, "; ")
			} else {
				g.f.Detail = "could not be evaluated on a synthetic row of the session's own tenant, so its behaviour with the setting unset, empty or another tenant's is not shown: " + strings.Join(g.cases, "; ")
			}
			out = append(out, g.f)
		}
	}
	return out, nil
}

// scopedExpr is the recommended fail-closed policy expression.
func scopedExpr(column, setting, typ string) string {
	cast := "bigint"
	if strings.Contains(typ, "uuid") {
		cast = "uuid"
	} else if strings.Contains(typ, "text") || strings.Contains(typ, "char") {
		cast = "text"
	}
	return fmt.Sprintf("%s = NULLIF(current_setting('%s', true), '')::%s", pgx.Identifier{column}.Sanitize(), setting, cast)
}

func ptr(s string) *string { return &s }

func show(v *string) string {
	if v == nil {
		return "NULL"
	}
	return "'" + *v + "'"
}

func uniq(s []string) []string {
	out := slices.Clone(s)
	slices.Sort(out)
	return slices.Compact(out)
}

func isPgError(err error) bool {
	var pe *pgconn.PgError
	return errors.As(err, &pe)
}

func describe(err error) string {
	var pe *pgconn.PgError
	if errors.As(err, &pe) {
		return pe.Code + " " + pe.Message
	}
	return err.Error()
}

// loadEvalTables reads each table's tenant column type and the policies that
// apply to the service role (has_privs_of_role, as RLS itself decides).
func loadEvalTables(ctx context.Context, tx pgx.Tx, tables []tenantTable) ([]evalTable, error) {
	var ets []evalTable
	for _, t := range tables {
		et := evalTable{tenantTable: t}
		err := tx.QueryRow(ctx, `SELECT c.relname::text, pg_catalog.format_type(a.atttypid, a.atttypmod), a.attnotnull
		  FROM pg_catalog.pg_class c JOIN pg_catalog.pg_attribute a ON a.attrelid = c.oid AND a.attname = $2
		 WHERE c.oid = $1`, t.oid, t.column).Scan(&et.relname, &et.typ, &et.notNull)
		if err != nil {
			return nil, fmt.Errorf("read tenant column of %s: %w", t.name, err)
		}
		ets = append(ets, et)
	}
	rows, err := tx.Query(ctx, `SELECT p.polrelid, p.polname::text, p.polcmd::text, p.polpermissive,
	       coalesce(pg_catalog.pg_get_expr(p.polqual, p.polrelid), ''),
	       coalesce(pg_catalog.pg_get_expr(p.polwithcheck, p.polrelid), '')
	  FROM pg_catalog.pg_policy p
	 WHERE p.polrelid = ANY($1::oid[])
	   AND EXISTS (SELECT 1 FROM unnest(p.polroles) AS g(role) WHERE g.role = 0 OR pg_catalog.pg_has_role(current_user, g.role, 'USAGE'))
	 ORDER BY p.polname`, oids(tables))
	if err != nil {
		return nil, fmt.Errorf("read RLS policies: %w", err)
	}
	policies, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (policyRow, error) {
		var pr policyRow
		return pr, row.Scan(&pr.table, &pr.name, &pr.cmd, &pr.permissive, &pr.using, &pr.with)
	})
	if err != nil {
		return nil, fmt.Errorf("read RLS policies: %w", err)
	}
	for i := range ets {
		var own []policyRow
		for _, pr := range policies {
			if pr.table == ets[i].oid {
				own = append(own, pr)
			}
		}
		ets[i].preds = buildPredicates(own)
	}
	return ets, nil
}

// evalPredicate evaluates pred on a synthetic row of et whose tenant column
// is value (other columns NULL), in a savepoint so an error does not abort
// the transaction. A nil result is SQL NULL (the row is refused).
func evalPredicate(ctx context.Context, tx pgx.Tx, et *evalTable, pred string, value *string) (*bool, error) {
	sp, err := tx.Begin(ctx)
	if err != nil {
		return nil, fmt.Errorf("savepoint: %w", err)
	}
	var res *bool
	err = sp.QueryRow(ctx, "SELECT ("+pred+")::boolean FROM pg_catalog.json_populate_record(NULL::"+et.name+
		", pg_catalog.json_build_object($1::text, $2::text)) AS "+pgx.Identifier{et.relname}.Sanitize(), et.column, value).Scan(&res)
	if rbErr := sp.Rollback(ctx); rbErr != nil && err == nil {
		err = rbErr
	}
	return res, err
}

// --- views and materialized views ---

// definerViews reports views over tenant tables (directly or through other
// views) that the service role can read and that run as their owner: a view
// without security_invoker checks RLS as its owner, so an owner that bypasses
// RLS exposes every tenant. A materialized view stores every tenant's rows
// and has no RLS at all.
func definerViews(ctx context.Context, tx pgx.Tx, tables []tenantTable, _ config.Policy) ([]Finding, error) {
	rows, err := tx.Query(ctx, `SELECT v.oid, format('%I.%I', n.nspname, v.relname), v.relkind::text,
	       coalesce(v.reloptions, '{}'::text[]), pg_catalog.pg_get_userbyid(v.relowner)::text,
	       pg_catalog.has_table_privilege(current_user, v.oid, 'SELECT'), d.refobjid
	  FROM pg_catalog.pg_class v
	  JOIN pg_catalog.pg_namespace n ON n.oid = v.relnamespace
	  JOIN pg_catalog.pg_rewrite rw ON rw.ev_class = v.oid
	  JOIN pg_catalog.pg_depend d ON d.classid = 'pg_catalog.pg_rewrite'::regclass AND d.objid = rw.oid
	       AND d.refclassid = 'pg_catalog.pg_class'::regclass AND d.refobjid <> v.oid
	 WHERE v.relkind IN ('v', 'm') AND n.nspname NOT IN ('pg_catalog', 'information_schema')
	 GROUP BY 1, 2, 3, 4, 5, 6, 7 ORDER BY 2`)
	if err != nil {
		return nil, fmt.Errorf("list views: %w", err)
	}
	type view struct {
		name, kind, owner string
		options           []string
		readable          bool
	}
	views := map[uint32]*view{}
	refs := map[uint32][]uint32{}
	var order []uint32
	for rows.Next() {
		var oid, ref uint32
		var v view
		if err := rows.Scan(&oid, &v.name, &v.kind, &v.options, &v.owner, &v.readable, &ref); err != nil {
			rows.Close()
			return nil, fmt.Errorf("list views: %w", err)
		}
		if views[oid] == nil {
			views[oid] = &v
			order = append(order, oid)
		}
		refs[oid] = append(refs[oid], ref)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("list views: %w", err)
	}
	tenant := map[uint32]string{}
	for _, t := range tables {
		tenant[t.oid] = t.name
	}
	// A view is reachable when the service role can read it or a reachable view reads it.
	for changed := true; changed; {
		changed = false
		for _, oid := range order {
			if !views[oid].readable {
				continue
			}
			for _, ref := range refs[oid] {
				if w := views[ref]; w != nil && !w.readable {
					w.readable, changed = true, true
				}
			}
		}
	}
	var out []Finding
	for _, oid := range order {
		v := views[oid]
		if !v.readable {
			continue
		}
		for _, toid := range tenantTablesUnder(oid, refs, tenant) {
			tname := tenant[toid]
			if v.kind == "m" {
				out = append(out, Finding{Check: CheckMaterializedView, Severity: SeverityLeak, Object: "materialized view " + v.name, Table: tname,
					Detail: fmt.Sprintf("materialized view over tenant table %s is readable by the service role: its rows are stored without row-level security, for every tenant", tname),
					Fix:    fmt.Sprintf("REVOKE SELECT ON %s FROM the service role (and PUBLIC), or replace it by a view WITH (security_invoker = true)", v.name)})
				continue
			}
			if securityInvoker(v.options) {
				continue
			}
			var super, bypass, owns, forced, enabled bool
			err := tx.QueryRow(ctx, `SELECT r.rolsuper, r.rolbypassrls, pg_catalog.pg_has_role(r.oid, t.relowner, 'USAGE'),
			       t.relforcerowsecurity, t.relrowsecurity
			  FROM pg_catalog.pg_roles r, pg_catalog.pg_class t WHERE r.rolname = $1 AND t.oid = $2`, v.owner, toid).Scan(&super, &bypass, &owns, &forced, &enabled)
			if err != nil {
				return nil, fmt.Errorf("read owner of view %s: %w", v.name, err)
			}
			fix := fmt.Sprintf("ALTER VIEW %s SET (security_invoker = true)", v.name)
			switch {
			case super || bypass || !enabled || (owns && !forced):
				why := "owns it without FORCE ROW LEVEL SECURITY"
				switch {
				case super:
					why = "is a superuser"
				case bypass:
					why = "has BYPASSRLS"
				case !enabled:
					why = "reads it with row level security disabled"
				}
				out = append(out, Finding{Check: CheckViewDefiner, Severity: SeverityLeak, Object: "view " + v.name, Table: tname,
					Detail: fmt.Sprintf("view over tenant table %s runs as its owner %s, who %s: every tenant's rows are visible through it", tname, v.owner, why),
					Fix:    fix})
			default:
				out = append(out, Finding{Check: CheckViewDefiner, Severity: SeverityWarning, Object: "view " + v.name, Table: tname,
					Detail: fmt.Sprintf("view over tenant table %s runs as its owner %s: the owner is subject to row-level security, but the policies applied are the owner's, not the caller's", tname, v.owner),
					Fix:    fix})
			}
		}
	}
	return out, nil
}

// tenantTablesUnder returns the tenant tables a view reads, through nested views.
func tenantTablesUnder(root uint32, refs map[uint32][]uint32, tenant map[uint32]string) []uint32 {
	var out []uint32
	seen := map[uint32]bool{root: true}
	stack := []uint32{root}
	for len(stack) > 0 {
		cur := stack[len(stack)-1]
		stack = stack[:len(stack)-1]
		for _, ref := range refs[cur] {
			if seen[ref] {
				continue
			}
			seen[ref] = true
			if _, ok := tenant[ref]; ok {
				out = append(out, ref)
			}
			if _, ok := refs[ref]; ok {
				stack = append(stack, ref)
			}
		}
	}
	slices.Sort(out)
	return out
}

// securityInvoker reports whether reloptions set security_invoker on.
func securityInvoker(options []string) bool {
	for _, o := range options {
		k, v, _ := strings.Cut(strings.ToLower(o), "=")
		if k == "security_invoker" && slices.Contains([]string{"true", "on", "yes", "1", "t", "y"}, v) {
			return true
		}
	}
	return false
}
