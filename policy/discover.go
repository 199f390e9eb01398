package policy

import (
	"context"
	"fmt"

	"github.com/jackc/pgx/v5"
)

// discoverSQL lists every column of every user table, partition, view,
// materialized view and foreign table, in column order.
const discoverSQL = `
SELECT n.nspname, c.relname, c.relkind::text, c.relispartition, a.attname, pg_catalog.format_type(a.atttypid, NULL)
FROM pg_catalog.pg_class c
JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
JOIN pg_catalog.pg_attribute a ON a.attrelid = c.oid
WHERE c.relkind IN ('r', 'p', 'v', 'm', 'f')
  AND a.attnum > 0 AND NOT a.attisdropped
  AND n.nspname NOT IN ('pg_catalog', 'information_schema')
  AND n.nspname NOT LIKE 'pg\_toast%' AND n.nspname NOT LIKE 'pg\_temp\_%'
ORDER BY n.nspname, c.relname, a.attnum`

// discoverSessionSQL reads the database's name and whether no schema is
// named after the role discovery logs in as (the service role).
const discoverSessionSQL = `
SELECT pg_catalog.current_database()::text,
       NOT EXISTS (SELECT 1 FROM pg_catalog.pg_namespace WHERE nspname = current_user)`

// Discover reads the region's catalog through conn: every ordinary or
// partitioned table having the tenant column becomes a tenant table, and all
// relations' column lists and types are recorded (quoted identifiers keep
// their case). Views, partitions and foreign tables stay unknown (denied)
// unless policy.tenant_tables or policy.global_tables registers them
// (POLICY.md: a view may not be security_invoker; a partition is reached
// through its parent). The result, merged with the configuration, is
// installed for region.
func (e *Engine) Discover(ctx context.Context, region string, conn *pgx.Conn) error {
	rows, err := conn.Query(ctx, discoverSQL)
	if err != nil {
		return fmt.Errorf("policy: discover %s: %w", region, err)
	}
	defer rows.Close()
	cat := NewCatalog(e.searchPath)
	var cur *Table
	for rows.Next() {
		var schema, name, kind, col, typ string
		var partition bool
		if err := rows.Scan(&schema, &name, &kind, &partition, &col, &typ); err != nil {
			return fmt.Errorf("policy: discover %s: %w", region, err)
		}
		if cur == nil || cur.Schema != schema || cur.Name != name {
			cur = &Table{Schema: schema, Name: name, View: kind == "v" || kind == "m", Columns: []string{}}
			cat.Tables[schema+"."+name] = cur
		}
		cur.Columns = append(cur.Columns, col)
		cur.Types = append(cur.Types, typ)
		if col == e.cfg.TenantColumn && (kind == "r" || kind == "p") && !partition {
			cur.Class, cur.TenantColumn, cur.TenantType = ClassTenant, col, normType(typ)
		}
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("policy: discover %s: %w", region, err)
	}
	rows.Close()
	// the database three-part names must name, and whether "$user" in a
	// search_path can resolve to a schema of the service role
	if err := conn.QueryRow(ctx, discoverSessionSQL).Scan(&cat.Database, &cat.NoRoleSchema); err != nil {
		return fmt.Errorf("policy: discover %s: %w", region, err)
	}
	if !e.cfg.Discover {
		for _, t := range cat.Tables {
			t.Class, t.TenantColumn = ClassUnknown, ""
		}
	}
	e.SetCatalog(region, cat)
	return nil
}

// RefreshCatalog switches the session to its region's current catalog (the
// one the last Discover or SetCatalog installed), so that a long-lived
// session sees the tables a migration created. Statements the session
// already prepared keep the analysis they were allowed with. It reports
// whether the catalog changed.
func (s *Session) RefreshCatalog() bool {
	cur := s.e.catalog(s.p.Region)
	if cur == s.cat {
		return false
	}
	s.cat = cur
	return true
}
