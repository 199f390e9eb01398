package isolation

import (
	"context"
	"fmt"
	"regexp"
	"slices"
	"strings"

	"github.com/jackc/pgx/v5"

	"github.com/pgtenant/pgtenant/config"
)

// tenantTable is a table to check and the column that holds its tenant.
type tenantTable struct {
	oid     uint32
	name    string // schema-qualified, quoted where needed
	column  string
	missing string // set when a configured table could not be found
}

// tenantTables lists the tables having policy.tenant_column (outside system
// and forbidden schemas) plus the configured policy.tenant_tables.
func tenantTables(ctx context.Context, tx pgx.Tx, p config.Policy) ([]tenantTable, error) {
	excluded := append([]string{AuditSchema, "information_schema"}, p.ForbiddenSchemas...)
	rows, err := tx.Query(ctx, `SELECT c.oid, format('%I.%I', n.nspname, c.relname), a.attname::text
	  FROM pg_catalog.pg_class c
	  JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
	  JOIN pg_catalog.pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
	 WHERE c.relkind IN ('r', 'p') AND a.attname = $1
	   AND n.nspname NOT LIKE 'pg\_%' AND n.nspname <> ALL($2::text[])
	 ORDER BY 2`, tenantColumn(p), excluded)
	if err != nil {
		return nil, fmt.Errorf("list tenant tables: %w", err)
	}
	tables, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (tenantTable, error) {
		var t tenantTable
		return t, row.Scan(&t.oid, &t.name, &t.column)
	})
	if err != nil {
		return nil, fmt.Errorf("list tenant tables: %w", err)
	}
	for _, spec := range p.TenantTables {
		name, column := spec, tenantColumn(p)
		if i := strings.LastIndexByte(spec, ':'); i >= 0 {
			name, column = spec[:i], spec[i+1:]
		}
		t, err := configuredTable(ctx, tx, name, column)
		if err != nil {
			return nil, err
		}
		if t.missing == "" && slices.ContainsFunc(tables, func(o tenantTable) bool { return o.oid == t.oid && o.column == t.column }) {
			continue
		}
		tables = append(tables, t)
	}
	return tables, nil
}

// configuredTable resolves one policy.tenant_tables entry. It uses a
// savepoint so that a name the server rejects does not abort the snapshot.
func configuredTable(ctx context.Context, tx pgx.Tx, name, column string) (tenantTable, error) {
	t := tenantTable{name: name, column: column}
	sp, err := tx.Begin(ctx)
	if err != nil {
		return t, fmt.Errorf("savepoint: %w", err)
	}
	var oid *uint32
	var qualified *string
	var hasColumn bool
	err = sp.QueryRow(ctx, `SELECT c.oid, quote_ident(n.nspname) || '.' || quote_ident(c.relname),
	       EXISTS (SELECT 1 FROM pg_catalog.pg_attribute a WHERE a.attrelid = c.oid AND a.attname = $2 AND a.attnum > 0 AND NOT a.attisdropped)
	  FROM (SELECT to_regclass($1) AS oid) r
	  LEFT JOIN pg_catalog.pg_class c ON c.oid = r.oid
	  LEFT JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace`, name, column).Scan(&oid, &qualified, &hasColumn)
	if err != nil {
		if rbErr := sp.Rollback(ctx); rbErr != nil {
			return t, fmt.Errorf("resolve %s: %w", name, rbErr)
		}
		t.missing = fmt.Sprintf("configured tenant table %s cannot be resolved: %v", name, err)
		return t, nil
	}
	if err := sp.Commit(ctx); err != nil {
		return t, fmt.Errorf("release savepoint: %w", err)
	}
	switch {
	case oid == nil:
		t.missing = fmt.Sprintf("configured tenant table %s does not exist", name)
	case !hasColumn:
		t.oid, t.name = *oid, *qualified
		t.missing = fmt.Sprintf("configured tenant table %s has no column %s", *qualified, column)
	default:
		t.oid, t.name = *oid, *qualified
	}
	return t, nil
}

// policyRow is one pg_policy entry.
type policyRow struct {
	table       uint32
	name        string
	cmd         string // r a w d *
	permissive  bool
	using, with string
	applies     bool // to the service role
}

// tableState is one table's pg_class RLS flags.
type tableState struct {
	enabled, forced, ownedByRole bool
	owner                        string
}

// rlsLayer reads each table's RLS flags and policies and judges them.
func rlsLayer(ctx context.Context, tx pgx.Tx, tables []tenantTable, p config.Policy, r role) (RLSLayer, error) {
	l := RLSLayer{Status: Active, TenantSetting: tenantSetting(p), Tables: []TableReport{}}
	var oids []uint32
	for _, t := range tables {
		if t.oid != 0 {
			oids = append(oids, t.oid)
		}
	}
	states := map[uint32]tableState{}
	rows, err := tx.Query(ctx, `SELECT c.oid, c.relrowsecurity, c.relforcerowsecurity, pg_catalog.pg_get_userbyid(c.relowner)::text,
	       pg_catalog.pg_has_role(current_user, c.relowner, 'MEMBER')
	  FROM pg_catalog.pg_class c WHERE c.oid = ANY($1::oid[])`, oids)
	if err != nil {
		return l, fmt.Errorf("read table RLS flags: %w", err)
	}
	for rows.Next() {
		var oid uint32
		var s tableState
		if err := rows.Scan(&oid, &s.enabled, &s.forced, &s.owner, &s.ownedByRole); err != nil {
			rows.Close()
			return l, fmt.Errorf("read table RLS flags: %w", err)
		}
		states[oid] = s
	}
	if err := rows.Err(); err != nil {
		return l, fmt.Errorf("read table RLS flags: %w", err)
	}
	rows, err = tx.Query(ctx, `SELECT p.polrelid, p.polname::text, p.polcmd::text, p.polpermissive,
	       coalesce(pg_catalog.pg_get_expr(p.polqual, p.polrelid), ''),
	       coalesce(pg_catalog.pg_get_expr(p.polwithcheck, p.polrelid), ''),
	       EXISTS (SELECT 1 FROM unnest(p.polroles) AS g(role) WHERE g.role = 0 OR pg_catalog.pg_has_role(current_user, g.role, 'MEMBER'))
	  FROM pg_catalog.pg_policy p WHERE p.polrelid = ANY($1::oid[]) ORDER BY p.polname`, oids)
	if err != nil {
		return l, fmt.Errorf("read RLS policies: %w", err)
	}
	policies, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (policyRow, error) {
		var pr policyRow
		return pr, row.Scan(&pr.table, &pr.name, &pr.cmd, &pr.permissive, &pr.using, &pr.with, &pr.applies)
	})
	if err != nil {
		return l, fmt.Errorf("read RLS policies: %w", err)
	}
	for _, t := range tables {
		var own []policyRow
		for _, pr := range policies {
			if pr.table == t.oid && t.oid != 0 {
				own = append(own, pr)
			}
		}
		tr := judgeTable(t, states[t.oid], own, l.TenantSetting, r)
		l.Tables = append(l.Tables, tr)
		l.Status = Worst(l.Status, tr.Status)
	}
	if len(tables) == 0 {
		l.Problems = append(l.Problems, fmt.Sprintf("no tenant tables found (no table has column %s and policy.tenant_tables is empty)", tenantColumn(p)))
	}
	return l, nil
}

// commands are the statement kinds RLS policies govern, with their pg_policy code.
var commands = []struct{ code, name string }{{"r", "SELECT"}, {"a", "INSERT"}, {"w", "UPDATE"}, {"d", "DELETE"}}

// judgeTable decides one table's status from its flags and policies.
func judgeTable(t tenantTable, s tableState, policies []policyRow, setting string, r role) TableReport {
	tr := TableReport{Table: t.name, TenantColumn: t.column, RLSEnabled: s.enabled, RLSForced: s.forced,
		Owner: s.owner, Policies: []string{}, ownedByRole: s.ownedByRole}
	for _, pr := range policies {
		tr.Policies = append(tr.Policies, pr.name)
	}
	if t.missing != "" {
		tr.Status, tr.Problems = Missing, []string{t.missing}
		return tr
	}
	if !s.enabled {
		tr.Problems = append(tr.Problems, "row level security is not enabled (ALTER TABLE "+t.name+" ENABLE ROW LEVEL SECURITY)")
	}
	if !s.forced {
		tr.Problems = append(tr.Problems, "row level security is not forced, so the table owner bypasses it (ALTER TABLE "+t.name+" FORCE ROW LEVEL SECURITY)")
	}
	scoping := false
	for _, c := range commands {
		var open []string
		restricted := false
		for _, pr := range policies {
			if !pr.applies || (pr.cmd != c.code && pr.cmd != "*") {
				continue
			}
			ok := scopes(pr, c.code, t.column, setting)
			if ok {
				scoping = true
			}
			switch {
			case !pr.permissive && ok:
				restricted = true
			case pr.permissive && !ok:
				open = append(open, pr.name)
			}
		}
		if len(open) > 0 && !restricted {
			tr.Problems = append(tr.Problems, fmt.Sprintf("%s: permissive policy %s does not compare %s with current_setting('%s'), so it admits other tenants' rows",
				c.name, strings.Join(open, ", "), t.column, setting))
		}
	}
	if !scoping {
		tr.Problems = append(tr.Problems, fmt.Sprintf("no policy for the service role compares %s with current_setting('%s')", t.column, setting))
	}
	switch {
	case len(tr.Problems) > 0:
		tr.Status = Missing
	case r.superuser || r.bypassRLS:
		tr.Status = DeployedInert
		tr.Problems = append(tr.Problems, "the service role "+r.name+" bypasses row level security (superuser or BYPASSRLS)")
	default:
		tr.Status = Active
	}
	return tr
}

// scopes reports whether policy pr restricts command cmd to the tenant in the setting.
func scopes(pr policyRow, cmd, column, setting string) bool {
	check := pr.with
	if check == "" {
		check = pr.using
	}
	switch cmd {
	case "a":
		return references(check, column, setting)
	case "w":
		return references(pr.using, column, setting) && references(check, column, setting)
	default:
		return references(pr.using, column, setting)
	}
}

// references reports whether a deparsed policy expression mentions both the
// tenant column and current_setting of the tenant setting.
func references(expr, column, setting string) bool {
	if expr == "" {
		return false
	}
	lower := strings.ToLower(expr)
	if !strings.Contains(lower, "current_setting('"+strings.ToLower(setting)+"'") {
		return false
	}
	re := regexp.MustCompile(`(^|[^A-Za-z0-9_$"])(` + regexp.QuoteMeta(column) + `|"` + regexp.QuoteMeta(strings.ReplaceAll(column, `"`, `""`)) + `")([^A-Za-z0-9_$"]|$)`)
	return re.MatchString(expr)
}

func tenantColumn(p config.Policy) string {
	if p.TenantColumn == "" {
		return "account_id"
	}
	return p.TenantColumn
}

func tenantSetting(p config.Policy) string {
	if p.TenantSetting == "" {
		return "app.current_account_id"
	}
	return p.TenantSetting
}
