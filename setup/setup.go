package setup

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"regexp"
	"strings"

	"github.com/jackc/pgx/v5"

	"github.com/pgtenant/pgtenant/audit"
	"github.com/pgtenant/pgtenant/config"
	"github.com/pgtenant/pgtenant/regiondb"
)

// PolicyName is the row-level security policy setup creates on each tenant table.
const PolicyName = "pgtenant_tenant_isolation"

// NotifyChannel is the channel the event trigger notifies after DDL; running
// proxies LISTEN on it and re-read the catalog.
const NotifyChannel = "pgtenant_catalog"

// EventTrigger is the name of the event trigger setup installs.
const EventTrigger = "pgtenant_catalog_notify"

// helperSchema holds the event trigger's function, owned by the admin role.
const helperSchema = "pgtenant"

// Step is one change the region needs.
type Step struct {
	// Why says what the step fixes, shown as a comment above the SQL.
	Why string
	// SQL is the statement to run; empty for the audit schema, which the
	// audit package's own init creates or upgrades.
	SQL string
	// audit marks the audit schema step.
	audit bool
}

// Plan is what one region needs.
type Plan struct {
	Region, Database, AuditDatabase string
	// Admin is the role the plan is (to be) applied as.
	Admin string
	// Steps are the pending changes, in the order they must run.
	Steps []Step
	// Notes are findings setup does not change by itself: review them.
	Notes []string
}

// Pending reports whether the region needs any change.
func (p *Plan) Pending() bool { return len(p.Steps) > 0 }

// Write prints the plan as an SQL script for review: comments for the
// findings, one statement per step.
func (p *Plan) Write(w io.Writer) {
	fmt.Fprintf(w, "-- region %s: database %q as role %q\n", p.Region, p.Database, p.Admin)
	if !p.Pending() {
		fmt.Fprintf(w, "-- nothing pending\n")
	}
	for i, s := range p.Steps {
		if i == 0 || p.Steps[i-1].Why != s.Why {
			fmt.Fprintf(w, "-- %s\n", s.Why)
		}
		if s.audit {
			fmt.Fprintf(w, "-- (created by pgtenant's audit init in database %q; `pgtenant setup --apply` runs it)\n", p.AuditDatabase)
			continue
		}
		fmt.Fprintf(w, "%s;\n", s.SQL)
	}
	for _, n := range p.Notes {
		fmt.Fprintf(w, "-- review: %s\n", n)
	}
	fmt.Fprintln(w)
}

// Options are what setup reads besides the region.
type Options struct {
	Policy config.Policy
	// Audit is false when the audit trail is disabled: no audit schema step.
	Audit bool
	// Logger receives the audit init's progress; nil discards it.
	Logger *slog.Logger
}

// Inspect connects to region name as its admin role and returns what it needs.
func Inspect(ctx context.Context, name string, r config.Region, o Options) (*Plan, error) {
	conn, err := regiondb.Connect(ctx, name, r, regiondb.Admin(r, "pgtenant-setup"))
	if err != nil {
		return nil, fmt.Errorf("region %s: connect as %s: %w", name, regiondb.Admin(r, "").User, err)
	}
	defer conn.Close(context.WithoutCancel(ctx))
	return inspect(ctx, conn, name, r, o)
}

// Apply inspects region name, applies the pending steps as its admin role
// (the SQL steps in one transaction, then the audit schema) and inspects
// again: the returned plan is what is still pending (nothing, normally).
func Apply(ctx context.Context, name string, r config.Region, o Options) (applied, remaining *Plan, err error) {
	if r.AdminUser == "" || r.AdminUser == r.User {
		return nil, nil, fmt.Errorf("region %s: set regions.%s.admin_user (and admin_password_env) to a role that may create roles and alter the tenant tables: setup does not apply changes as the service role %q", name, name, r.User)
	}
	conn, err := regiondb.Connect(ctx, name, r, regiondb.Admin(r, "pgtenant-setup"))
	if err != nil {
		return nil, nil, fmt.Errorf("region %s: connect as %s: %w", name, r.AdminUser, err)
	}
	defer conn.Close(context.WithoutCancel(ctx))
	plan, err := inspect(ctx, conn, name, r, o)
	if err != nil {
		return nil, nil, err
	}
	tx, err := conn.Begin(ctx)
	if err != nil {
		return nil, nil, fmt.Errorf("region %s: begin: %w", name, err)
	}
	defer tx.Rollback(context.WithoutCancel(ctx)) //nolint:errcheck // no-op after commit
	auditPending := false
	for _, s := range plan.Steps {
		if s.audit {
			auditPending = true
			continue
		}
		if _, err := tx.Exec(ctx, s.SQL); err != nil {
			return nil, nil, fmt.Errorf("region %s: %s: %w", name, firstLine(s.SQL), err)
		}
	}
	if err := tx.Commit(ctx); err != nil {
		return nil, nil, fmt.Errorf("region %s: commit: %w", name, err)
	}
	if auditPending {
		if err := audit.InitRegion(ctx, name, r, o.Logger); err != nil {
			return nil, nil, err
		}
	}
	remaining, err = inspect(ctx, conn, name, r, o)
	if err != nil {
		return nil, nil, err
	}
	return plan, remaining, nil
}

func firstLine(s string) string {
	s, _, _ = strings.Cut(s, "\n")
	return s
}

// inspect reads what region name's database holds and plans the rest.
func inspect(ctx context.Context, conn *pgx.Conn, name string, r config.Region, o Options) (*Plan, error) {
	plan := &Plan{Region: name, Database: conn.Config().Database, AuditDatabase: r.AuditDB(), Admin: conn.Config().User}
	kw, err := loadKeywords(ctx, conn)
	if err != nil {
		return nil, fmt.Errorf("region %s: setup: %w", name, err)
	}
	in := &inspector{conn: conn, plan: plan, role: r.User, password: r.Password, o: o, kw: kw}
	for _, f := range []func(context.Context) error{in.serviceRole, in.tenantTables, in.defaultPrivileges, in.eventTrigger} {
		if err := f(ctx); err != nil {
			return nil, fmt.Errorf("region %s: setup: %w", name, err)
		}
	}
	if o.Audit {
		if err := in.auditSchema(ctx, name, r); err != nil {
			return nil, fmt.Errorf("region %s: setup: %w", name, err)
		}
	}
	return plan, nil
}

type inspector struct {
	conn     *pgx.Conn
	plan     *Plan
	role     string
	password string
	o        Options
	kw       keywords
	// roleExists is false when the service role is still to be created:
	// every grant to it is then pending.
	roleExists bool
	admin      struct{ super, createRole bool }
	// schemas are the schemas of the tenant tables.
	schemas []string
}

func (in *inspector) step(why, sql string, args ...any) {
	in.plan.Steps = append(in.plan.Steps, Step{Why: why, SQL: fmt.Sprintf(sql, args...)})
}

// keywords are the server's keywords that need quoting as identifiers
// (every category but unreserved), loaded once per inspection.
type keywords map[string]bool

func loadKeywords(ctx context.Context, conn *pgx.Conn) (keywords, error) {
	rows, err := conn.Query(ctx, `SELECT word FROM pg_catalog.pg_get_keywords() WHERE catcode <> 'U'`)
	if err != nil {
		return nil, fmt.Errorf("read keywords: %w", err)
	}
	words, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return nil, fmt.Errorf("read keywords: %w", err)
	}
	k := keywords{}
	for _, w := range words {
		k[w] = true
	}
	return k, nil
}

// plainIdent matches identifiers that need no quotes (quote_ident's rule).
var plainIdent = regexp.MustCompile(`^[a-z_][a-z0-9_]*$`)

// ident quotes s as quote_ident does: only when needed, so the plan reads
// like hand-written SQL.
func (k keywords) ident(s string) string {
	if plainIdent.MatchString(s) && !k[s] {
		return s
	}
	return pgx.Identifier{s}.Sanitize()
}

// literal quotes s as an SQL string literal (standard_conforming_strings on).
func literal(s string) string { return "'" + strings.ReplaceAll(s, "'", "''") + "'" }

// serviceRole plans the service role: it must exist, log in, and be neither
// superuser nor BYPASSRLS (both make row-level security inert).
func (in *inspector) serviceRole(ctx context.Context) error {
	if err := in.conn.QueryRow(ctx, `SELECT rolsuper, rolcreaterole FROM pg_catalog.pg_roles WHERE rolname = current_user`).
		Scan(&in.admin.super, &in.admin.createRole); err != nil {
		return fmt.Errorf("read the admin role: %w", err)
	}
	var super, bypass, login bool
	err := in.conn.QueryRow(ctx, `SELECT rolsuper, rolbypassrls, rolcanlogin FROM pg_catalog.pg_roles WHERE rolname = $1`, in.role).
		Scan(&super, &bypass, &login)
	switch {
	case errors.Is(err, pgx.ErrNoRows):
		sql := fmt.Sprintf("CREATE ROLE %s LOGIN NOSUPERUSER NOBYPASSRLS NOCREATEDB NOCREATEROLE NOREPLICATION", in.kw.ident(in.role))
		why := fmt.Sprintf("service role %q does not exist: create it", in.role)
		if in.password != "" {
			v, err := scramVerifier(in.password)
			if err != nil {
				return err
			}
			sql += " PASSWORD " + literal(v)
			why += " with the configured password (stored as its SCRAM verifier)"
		} else {
			in.plan.Notes = append(in.plan.Notes, fmt.Sprintf("service role %q gets no password: set one (\\password %s) and configure it as password_env or password_file", in.role, in.role))
		}
		in.plan.Steps = append(in.plan.Steps, Step{Why: why, SQL: sql})
		in.step(fmt.Sprintf("service role %q must be able to connect to database %q", in.role, in.plan.Database),
			"GRANT CONNECT ON DATABASE %s TO %s", in.kw.ident(in.plan.Database), in.kw.ident(in.role))
		return nil
	case err != nil:
		return fmt.Errorf("read service role %q: %w", in.role, err)
	}
	in.roleExists = true
	if super || bypass {
		in.step(fmt.Sprintf("service role %q is superuser or BYPASSRLS: row-level security would not apply to it", in.role),
			"ALTER ROLE %s NOSUPERUSER NOBYPASSRLS", in.kw.ident(in.role))
	}
	if !login {
		in.step(fmt.Sprintf("service role %q cannot log in", in.role), "ALTER ROLE %s LOGIN", in.kw.ident(in.role))
	}
	var connect bool
	if err := in.conn.QueryRow(ctx, `SELECT has_database_privilege($1, current_database(), 'CONNECT')`, in.role).Scan(&connect); err != nil {
		return fmt.Errorf("read database privileges: %w", err)
	}
	if !connect {
		in.step(fmt.Sprintf("service role %q must be able to connect to database %q", in.role, in.plan.Database),
			"GRANT CONNECT ON DATABASE %s TO %s", in.kw.ident(in.plan.Database), in.kw.ident(in.role))
	}
	return nil
}

// table is one tenant table as the catalog describes it.
type table struct {
	oid                    uint32
	schema, name, column   string
	colType, owner         string
	rlsEnabled, rlsForced  bool
	qualified              string
	missingColumn, missing bool
}

// excludedSchemas are never tenant tables' schemas.
func (in *inspector) excludedSchemas() []string {
	return append([]string{"information_schema", "pgtenant_audit", helperSchema}, in.o.Policy.ForbiddenSchemas...)
}

// tenantSQL lists the tables (ordinary and partitioned, not partitions,
// which are reached through their parent) having the tenant column.
const tenantSQL = `
SELECT c.oid, n.nspname, c.relname, a.attname, pg_catalog.format_type(a.atttypid, a.atttypmod),
       pg_catalog.pg_get_userbyid(c.relowner), c.relrowsecurity, c.relforcerowsecurity
  FROM pg_catalog.pg_class c
  JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
  JOIN pg_catalog.pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
 WHERE c.relkind IN ('r', 'p') AND NOT c.relispartition AND a.attname = $1
   AND n.nspname NOT LIKE 'pg\_%' AND n.nspname <> ALL($2::text[])
 ORDER BY n.nspname, c.relname`

// configuredSQL resolves one policy.tenant_tables entry.
const configuredSQL = `
SELECT c.oid, n.nspname, c.relname, coalesce(a.attname, ''), coalesce(pg_catalog.format_type(a.atttypid, a.atttypmod), ''),
       pg_catalog.pg_get_userbyid(c.relowner), c.relrowsecurity, c.relforcerowsecurity
  FROM pg_catalog.pg_class c
  JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
  LEFT JOIN pg_catalog.pg_attribute a ON a.attrelid = c.oid AND a.attname = $2 AND a.attnum > 0 AND NOT a.attisdropped
 WHERE c.oid = pg_catalog.to_regclass($1)`

func (in *inspector) readTables(ctx context.Context) ([]*table, error) {
	col := in.o.Policy.TenantColumn
	rows, err := in.conn.Query(ctx, tenantSQL, col, in.excludedSchemas())
	if err != nil {
		return nil, fmt.Errorf("list tenant tables: %w", err)
	}
	tables, err := pgx.CollectRows(rows, scanTable)
	if err != nil {
		return nil, fmt.Errorf("list tenant tables: %w", err)
	}
	seen := map[uint32]bool{}
	for _, t := range tables {
		seen[t.oid] = true
	}
	defer func() {
		for _, t := range tables {
			t.qualified = in.kw.ident(t.schema) + "." + in.kw.ident(t.name)
		}
	}()
	for _, spec := range in.o.Policy.TenantTables {
		name, column := spec, col
		if i := strings.LastIndexByte(spec, ':'); i >= 0 {
			name, column = spec[:i], spec[i+1:]
		}
		rows, err := in.conn.Query(ctx, configuredSQL, name, column)
		if err != nil {
			return nil, fmt.Errorf("resolve policy.tenant_tables %s: %w", name, err)
		}
		found, err := pgx.CollectRows(rows, scanTable)
		if err != nil {
			return nil, fmt.Errorf("resolve policy.tenant_tables %s: %w", name, err)
		}
		switch {
		case len(found) == 0:
			in.plan.Notes = append(in.plan.Notes, fmt.Sprintf("policy.tenant_tables names %s, which does not exist in database %q", name, in.plan.Database))
		case found[0].column == "":
			in.plan.Notes = append(in.plan.Notes, fmt.Sprintf("policy.tenant_tables names %s, which has no column %q", name, column))
		case !seen[found[0].oid]:
			seen[found[0].oid] = true
			tables = append(tables, found[0])
		}
	}
	return tables, nil
}

func scanTable(row pgx.CollectableRow) (*table, error) {
	t := &table{}
	if err := row.Scan(&t.oid, &t.schema, &t.name, &t.column, &t.colType, &t.owner, &t.rlsEnabled, &t.rlsForced); err != nil {
		return nil, err
	}
	return t, nil
}

// policyExpr is the fail-closed tenant predicate: an unset or empty
// setting is NULL, which matches no row.
func (in *inspector) policyExpr(t *table) string {
	return fmt.Sprintf("%s = NULLIF(pg_catalog.current_setting(%s, true), '')::%s",
		in.kw.ident(t.column), literal(in.o.Policy.TenantSetting), t.colType)
}

// tenantTables plans grants, row-level security and the policy of every tenant table.
func (in *inspector) tenantTables(ctx context.Context) error {
	tables, err := in.readTables(ctx)
	if err != nil {
		return err
	}
	if len(tables) == 0 {
		in.plan.Notes = append(in.plan.Notes, fmt.Sprintf("no tenant tables: no table in database %q has column %q (policy.tenant_column) and policy.tenant_tables names none", in.plan.Database, in.o.Policy.TenantColumn))
	}
	admin := in.plan.Admin
	schemaDone := map[string]bool{}
	for _, t := range tables {
		if !schemaDone[t.schema] {
			schemaDone[t.schema] = true
			in.schemas = append(in.schemas, t.schema)
			if !in.hasPrivilege(ctx, `SELECT has_schema_privilege($1, $2, 'USAGE')`, t.schema) {
				in.step(fmt.Sprintf("service role %q needs USAGE on schema %s", in.role, t.schema),
					"GRANT USAGE ON SCHEMA %s TO %s", in.kw.ident(t.schema), in.kw.ident(in.role))
			}
		}
		if t.owner == in.role {
			in.step(fmt.Sprintf("%s is owned by the service role, which could disable its row-level security: give it to %q", t.qualified, admin),
				"ALTER TABLE %s OWNER TO %s", t.qualified, in.kw.ident(admin))
		}
		var missing []string
		for _, priv := range []string{"SELECT", "INSERT", "UPDATE", "DELETE"} {
			if t.owner == in.role || !in.hasPrivilege(ctx, `SELECT has_table_privilege($1, $2::oid, '`+priv+`')`, t.oid) {
				missing = append(missing, priv)
			}
		}
		if len(missing) > 0 {
			in.step(fmt.Sprintf("service role %q lacks %s on tenant table %s", in.role, strings.Join(missing, ", "), t.qualified),
				"GRANT %s ON TABLE %s TO %s", strings.Join(missing, ", "), t.qualified, in.kw.ident(in.role))
		}
		if err := in.sequences(ctx, t); err != nil {
			return err
		}
		if !t.rlsEnabled {
			in.step(fmt.Sprintf("row-level security is not enabled on tenant table %s", t.qualified),
				"ALTER TABLE %s ENABLE ROW LEVEL SECURITY", t.qualified)
		}
		if !t.rlsForced {
			in.step(fmt.Sprintf("row-level security is not forced on %s: its owner would bypass it", t.qualified),
				"ALTER TABLE %s FORCE ROW LEVEL SECURITY", t.qualified)
		}
		if err := in.policy(ctx, t); err != nil {
			return err
		}
	}
	return nil
}

// hasPrivilege runs a has_*_privilege query for the service role; a role
// still to be created has none.
func (in *inspector) hasPrivilege(ctx context.Context, sql string, obj any) bool {
	if !in.roleExists {
		return false
	}
	var ok bool
	if err := in.conn.QueryRow(ctx, sql, in.role, obj).Scan(&ok); err != nil {
		return false
	}
	return ok
}

// sequences plans USAGE on the sequences a tenant table's serial or
// identity columns draw from, so the service role can insert.
func (in *inspector) sequences(ctx context.Context, t *table) error {
	rows, err := in.conn.Query(ctx, `SELECT DISTINCT s.oid, n.nspname, s.relname
	  FROM pg_catalog.pg_depend d
	  JOIN pg_catalog.pg_class s ON s.oid = d.objid AND s.relkind = 'S'
	  JOIN pg_catalog.pg_namespace n ON n.oid = s.relnamespace
	 WHERE d.classid = 'pg_catalog.pg_class'::regclass AND d.refobjid = $1 AND d.deptype IN ('a', 'i')
	 ORDER BY 2, 3`, t.oid)
	if err != nil {
		return fmt.Errorf("sequences of %s: %w", t.qualified, err)
	}
	type seq struct {
		oid  uint32
		name string
	}
	seqs, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (seq, error) {
		var s seq
		var schema, name string
		err := row.Scan(&s.oid, &schema, &name)
		s.name = in.kw.ident(schema) + "." + in.kw.ident(name)
		return s, err
	})
	if err != nil {
		return fmt.Errorf("sequences of %s: %w", t.qualified, err)
	}
	for _, s := range seqs {
		// the service role's privileges as owner go with the ownership
		if t.owner == in.role || !in.hasPrivilege(ctx, `SELECT has_sequence_privilege($1, $2::oid, 'USAGE')`, s.oid) {
			in.step(fmt.Sprintf("service role %q needs USAGE on sequence %s to insert into %s", in.role, s.name, t.qualified),
				"GRANT USAGE ON SEQUENCE %s TO %s", s.name, in.kw.ident(in.role))
		}
	}
	return nil
}

// policy plans the fail-closed tenant policy of t and notes other
// permissive policies, which PostgreSQL ORs with it.
func (in *inspector) policy(ctx context.Context, t *table) error {
	rows, err := in.conn.Query(ctx, `SELECT polname, coalesce(pg_catalog.pg_get_expr(polqual, polrelid), ''),
	       coalesce(pg_catalog.pg_get_expr(polwithcheck, polrelid), ''), polpermissive
	  FROM pg_catalog.pg_policy WHERE polrelid = $1 ORDER BY polname`, t.oid)
	if err != nil {
		return fmt.Errorf("policies of %s: %w", t.qualified, err)
	}
	type pol struct {
		name, qual, check string
		permissive        bool
	}
	pols, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (pol, error) {
		var p pol
		return p, row.Scan(&p.name, &p.qual, &p.check, &p.permissive)
	})
	if err != nil {
		return fmt.Errorf("policies of %s: %w", t.qualified, err)
	}
	expr := in.policyExpr(t)
	have := false
	for _, p := range pols {
		if p.name == PolicyName {
			have = true
			if !in.scoped(p.qual, t) || (p.check != "" && !in.scoped(p.check, t)) {
				in.step(fmt.Sprintf("policy %s on %s does not compare %s with the tenant setting %s", PolicyName, t.qualified, t.column, in.o.Policy.TenantSetting),
					"ALTER POLICY %s ON %s USING (%s) WITH CHECK (%s)", in.kw.ident(PolicyName), t.qualified, expr, expr)
			}
			continue
		}
		if p.permissive && !in.scoped(p.qual, t) {
			in.plan.Notes = append(in.plan.Notes, fmt.Sprintf("permissive policy %q on %s does not read %s: PostgreSQL ORs it with %s, so it may let rows of other tenants through (make it RESTRICTIVE or drop it)",
				p.name, t.qualified, in.o.Policy.TenantSetting, PolicyName))
		}
	}
	if !have {
		in.step(fmt.Sprintf("tenant table %s has no policy on the tenant setting %s (an unset or empty setting matches no row)", t.qualified, in.o.Policy.TenantSetting),
			"CREATE POLICY %s ON %s USING (%s) WITH CHECK (%s)", in.kw.ident(PolicyName), t.qualified, expr, expr)
	}
	return nil
}

// scoped reports whether a policy expression compares the tenant column with the tenant setting.
func (in *inspector) scoped(expr string, t *table) bool {
	return strings.Contains(expr, in.o.Policy.TenantSetting) && (strings.Contains(expr, t.column) || strings.Contains(expr, in.kw.ident(t.column)))
}

// defaultPrivileges plans grants on tables and sequences the admin role
// creates later (migrations), in the tenant tables' schemas and the pinned
// search path, so a new table is usable right after its migration commits.
func (in *inspector) defaultPrivileges(ctx context.Context) error {
	schemas := append([]string(nil), in.schemas...)
	for _, s := range strings.Split(in.o.Policy.SearchPath, ",") {
		s = strings.Trim(strings.TrimSpace(s), `"`)
		if s != "" && s != "$user" && !contains(schemas, s) {
			var exists bool
			if err := in.conn.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM pg_catalog.pg_namespace WHERE nspname = $1)`, s).Scan(&exists); err != nil {
				return fmt.Errorf("read schema %s: %w", s, err)
			}
			if exists {
				schemas = append(schemas, s)
			}
		}
	}
	for _, s := range schemas {
		for _, o := range []struct{ objtype, kind, privs string }{{"r", "TABLES", "SELECT, INSERT, UPDATE, DELETE"}, {"S", "SEQUENCES", "USAGE"}} {
			var n int
			err := in.conn.QueryRow(ctx, `SELECT count(DISTINCT x.privilege_type)
			  FROM pg_catalog.pg_default_acl d
			  JOIN pg_catalog.pg_namespace n ON n.oid = d.defaclnamespace
			  CROSS JOIN LATERAL pg_catalog.aclexplode(d.defaclacl) x
			 WHERE d.defaclrole = (SELECT oid FROM pg_catalog.pg_roles WHERE rolname = current_user)
			   AND n.nspname = $1 AND d.defaclobjtype = $2
			   AND x.grantee = (SELECT oid FROM pg_catalog.pg_roles WHERE rolname = $3)
			   AND x.privilege_type = ANY($4::text[])`, s, o.objtype, in.role, strings.Split(strings.ReplaceAll(o.privs, " ", ""), ",")).Scan(&n)
			if err != nil {
				return fmt.Errorf("read default privileges: %w", err)
			}
			if n < len(strings.Split(o.privs, ",")) {
				in.step(fmt.Sprintf("%s that %q creates later in schema %s (migrations) must be usable by %q at once", strings.ToLower(o.kind), in.plan.Admin, s, in.role),
					"ALTER DEFAULT PRIVILEGES FOR ROLE %s IN SCHEMA %s GRANT %s ON %s TO %s", in.kw.ident(in.plan.Admin), in.kw.ident(s), o.privs, o.kind, in.kw.ident(in.role))
			}
		}
	}
	return nil
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// notifyFunction is the event trigger's function: after DDL it notifies
// the proxies, which re-read the catalog (NOTIFY is delivered at commit).
var notifyFunction = `CREATE OR REPLACE FUNCTION ` + helperSchema + `.notify_catalog() RETURNS event_trigger
LANGUAGE plpgsql SET search_path = pg_catalog AS $fn$
BEGIN
  PERFORM pg_catalog.pg_notify('` + NotifyChannel + `', tg_tag);
END
$fn$`

// eventTrigger plans the DDL event trigger (it needs a superuser).
func (in *inspector) eventTrigger(ctx context.Context) error {
	var enabled string
	err := in.conn.QueryRow(ctx, `SELECT evtenabled::text FROM pg_catalog.pg_event_trigger WHERE evtname = $1`, EventTrigger).Scan(&enabled)
	switch {
	case errors.Is(err, pgx.ErrNoRows):
	case err != nil:
		return fmt.Errorf("read event triggers: %w", err)
	case enabled == "D":
		if in.admin.super {
			in.step("event trigger "+EventTrigger+" is disabled", "ALTER EVENT TRIGGER %s ENABLE ALWAYS", EventTrigger)
		}
		return nil
	default:
		return nil
	}
	if !in.admin.super {
		in.plan.Notes = append(in.plan.Notes, fmt.Sprintf("event trigger %s needs a superuser admin role: without it proxies find a table a migration creates when it is first used (rediscovery) instead of at commit", EventTrigger))
		return nil
	}
	why := "proxies learn about tables created or altered by migrations when they commit"
	in.step(why, "CREATE SCHEMA IF NOT EXISTS %s", helperSchema)
	in.step(why, "REVOKE ALL ON SCHEMA %s FROM PUBLIC", helperSchema)
	in.step(why, "%s", notifyFunction)
	in.step(why, `CREATE EVENT TRIGGER %s ON ddl_command_end
  WHEN TAG IN ('CREATE TABLE', 'CREATE TABLE AS', 'SELECT INTO', 'ALTER TABLE', 'DROP TABLE',
    'CREATE VIEW', 'ALTER VIEW', 'DROP VIEW', 'CREATE MATERIALIZED VIEW', 'ALTER MATERIALIZED VIEW',
    'DROP MATERIALIZED VIEW', 'CREATE FOREIGN TABLE', 'ALTER FOREIGN TABLE', 'DROP FOREIGN TABLE',
    'CREATE SCHEMA', 'ALTER SCHEMA', 'DROP SCHEMA', 'CREATE POLICY', 'ALTER POLICY', 'DROP POLICY')
  EXECUTE FUNCTION %s.notify_catalog()`, EventTrigger, helperSchema)
	return nil
}

// auditSchema plans the audit schema: missing or older than this build.
func (in *inspector) auditSchema(ctx context.Context, name string, r config.Region) error {
	conn := in.conn
	if r.AuditDB() != in.plan.Database {
		l := regiondb.Admin(r, "pgtenant-setup")
		l.Database = r.AuditDB()
		c, err := regiondb.Connect(ctx, name, r, l)
		if err != nil {
			return fmt.Errorf("connect to the audit database %q as %s: %w", r.AuditDB(), l.User, err)
		}
		defer c.Close(context.WithoutCancel(ctx))
		conn = c
	}
	var v int
	var exists bool
	if err := conn.QueryRow(ctx, `SELECT pg_catalog.to_regproc('pgtenant_audit.schema_version') IS NOT NULL`).Scan(&exists); err != nil {
		return fmt.Errorf("read the audit schema: %w", err)
	}
	if exists {
		if err := conn.QueryRow(ctx, `SELECT pgtenant_audit.schema_version()`).Scan(&v); err != nil {
			return fmt.Errorf("read the audit schema version: %w", err)
		}
	}
	if v >= audit.SchemaVersion {
		return nil
	}
	why := fmt.Sprintf("audit schema pgtenant_audit is missing (this build writes version %d)", audit.SchemaVersion)
	if v > 0 {
		why = fmt.Sprintf("audit schema pgtenant_audit is at version %d; this build writes version %d", v, audit.SchemaVersion)
	}
	if !in.admin.super && !in.admin.createRole {
		in.plan.Notes = append(in.plan.Notes, fmt.Sprintf("the audit schema needs an admin role with CREATEROLE (or a superuser); %q has neither", in.plan.Admin))
	}
	in.plan.Steps = append(in.plan.Steps, Step{Why: why, audit: true})
	return nil
}
