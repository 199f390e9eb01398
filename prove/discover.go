package prove

import (
	"context"
	"fmt"
	"slices"
	"strings"

	"github.com/jackc/pgx/v5"

	"github.com/pgtenant/pgtenant/config"
)

// auditSchema is pgtenant's own schema; its tables are never tenant tables.
const auditSchema = "pgtenant_audit"

// column is one column of a tenant table.
type column struct {
	name      string
	typ       string // format_type, with modifiers
	baseType  string // typ, or the base type of a domain
	notNull   bool
	defaulted bool   // has a default or is an identity column
	generated bool   // GENERATED ALWAYS AS (...) STORED: cannot be written
	enumLabel string // the first label of an enum type
}

// foreignKey is one FOREIGN KEY of a tenant table.
type foreignKey struct {
	columns    []string
	refOID     uint32
	refName    string // schema-qualified, quoted
	refColumns []string
}

// table is one tenant table of a region.
type table struct {
	oid        uint32
	name       string // schema-qualified, quoted where needed (for SQL)
	display    string // schema.table as the catalog spells it (for reports)
	column     string // the tenant column
	columnType string
	columns    []column
	fks        []foreignKey
	rlsEnabled bool
	rlsForced  bool
	missing    string // why a configured tenant table cannot be used
}

// ident quotes the tenant column (or any column) for SQL.
func ident(name string) string { return pgx.Identifier{name}.Sanitize() }

// col returns the column called name.
func (t *table) col(name string) (column, bool) {
	for _, c := range t.columns {
		if c.name == name {
			return c, true
		}
	}
	return column{}, false
}

// discoverTables reads the region's tenant tables through conn (the service
// role): every table having policy.tenant_column outside system, audit and
// forbidden schemas, plus policy.tenant_tables, with their columns, foreign
// keys and RLS flags.
func discoverTables(ctx context.Context, conn *pgx.Conn, p config.Policy) ([]*table, error) {
	excluded := append([]string{auditSchema, "information_schema"}, p.ForbiddenSchemas...)
	rows, err := conn.Query(ctx, `SELECT c.oid, format('%I.%I', n.nspname, c.relname), n.nspname || '.' || c.relname,
	       a.attname::text, pg_catalog.format_type(a.atttypid, a.atttypmod), c.relrowsecurity, c.relforcerowsecurity
	  FROM pg_catalog.pg_class c
	  JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
	  JOIN pg_catalog.pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
	 WHERE c.relkind IN ('r', 'p') AND a.attname = $1
	   AND n.nspname NOT LIKE 'pg\_%' AND n.nspname <> ALL($2::text[])
	 ORDER BY 3`, p.TenantColumn, excluded)
	if err != nil {
		return nil, fmt.Errorf("list tenant tables: %w", err)
	}
	tables, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (*table, error) {
		t := &table{}
		return t, row.Scan(&t.oid, &t.name, &t.display, &t.column, &t.columnType, &t.rlsEnabled, &t.rlsForced)
	})
	if err != nil {
		return nil, fmt.Errorf("list tenant tables: %w", err)
	}
	for _, spec := range p.TenantTables {
		name, colName := spec, p.TenantColumn
		if i := strings.LastIndexByte(spec, ':'); i >= 0 {
			name, colName = spec[:i], spec[i+1:]
		}
		t, err := configuredTable(ctx, conn, name, colName)
		if err != nil {
			return nil, err
		}
		if t.missing == "" && slices.ContainsFunc(tables, func(o *table) bool { return o.oid == t.oid && o.column == t.column }) {
			continue
		}
		tables = append(tables, t)
	}
	if err := readColumns(ctx, conn, tables); err != nil {
		return nil, err
	}
	if err := readForeignKeys(ctx, conn, tables); err != nil {
		return nil, err
	}
	return tables, nil
}

// configuredTable resolves one policy.tenant_tables entry.
func configuredTable(ctx context.Context, conn *pgx.Conn, name, colName string) (*table, error) {
	t := &table{name: name, display: name, column: colName}
	var oid *uint32
	var qualified, display, typ *string
	var enabled, forced *bool
	err := conn.QueryRow(ctx, `SELECT c.oid, format('%I.%I', n.nspname, c.relname), n.nspname || '.' || c.relname,
	       c.relrowsecurity, c.relforcerowsecurity,
	       (SELECT pg_catalog.format_type(a.atttypid, a.atttypmod) FROM pg_catalog.pg_attribute a
	         WHERE a.attrelid = c.oid AND a.attname = $2 AND a.attnum > 0 AND NOT a.attisdropped)
	  FROM (SELECT pg_catalog.to_regclass($1) AS oid) r
	  LEFT JOIN pg_catalog.pg_class c ON c.oid = r.oid
	  LEFT JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace`, name, colName).
		Scan(&oid, &qualified, &display, &enabled, &forced, &typ)
	switch {
	case err != nil:
		t.missing = fmt.Sprintf("configured tenant table %s cannot be resolved: %v", name, err)
	case oid == nil:
		t.missing = fmt.Sprintf("configured tenant table %s does not exist", name)
	case typ == nil:
		t.oid, t.name, t.display = *oid, *qualified, *display
		t.missing = fmt.Sprintf("configured tenant table %s has no column %s", *display, colName)
	default:
		t.oid, t.name, t.display, t.columnType = *oid, *qualified, *display, *typ
		t.rlsEnabled, t.rlsForced = *enabled, *forced
	}
	return t, nil
}

// oids lists the resolved tables' oids.
func oids(tables []*table) []uint32 {
	var out []uint32
	for _, t := range tables {
		if t.missing == "" {
			out = append(out, t.oid)
		}
	}
	return out
}

// byOID finds a resolved table.
func byOID(tables []*table, oid uint32) *table {
	for _, t := range tables {
		if t.oid == oid && t.missing == "" {
			return t
		}
	}
	return nil
}

// readColumns fills each table's columns, in column order.
func readColumns(ctx context.Context, conn *pgx.Conn, tables []*table) error {
	rows, err := conn.Query(ctx, `SELECT a.attrelid, a.attname::text, pg_catalog.format_type(a.atttypid, a.atttypmod),
	       CASE WHEN t.typtype = 'd' THEN pg_catalog.format_type(t.typbasetype, t.typtypmod)
	            ELSE pg_catalog.format_type(a.atttypid, a.atttypmod) END,
	       a.attnotnull, a.atthasdef OR a.attidentity <> '', a.attgenerated <> '',
	       coalesce((SELECT e.enumlabel::text FROM pg_catalog.pg_enum e WHERE e.enumtypid = a.atttypid
	                  ORDER BY e.enumsortorder LIMIT 1), '')
	  FROM pg_catalog.pg_attribute a
	  JOIN pg_catalog.pg_type t ON t.oid = a.atttypid
	 WHERE a.attrelid = ANY($1::oid[]) AND a.attnum > 0 AND NOT a.attisdropped
	 ORDER BY a.attrelid, a.attnum`, oids(tables))
	if err != nil {
		return fmt.Errorf("read columns: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var rel uint32
		var c column
		if err := rows.Scan(&rel, &c.name, &c.typ, &c.baseType, &c.notNull, &c.defaulted, &c.generated, &c.enumLabel); err != nil {
			return fmt.Errorf("read columns: %w", err)
		}
		for _, t := range tables {
			if t.oid == rel && t.missing == "" {
				t.columns = append(t.columns, c)
			}
		}
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("read columns: %w", err)
	}
	return nil
}

// readForeignKeys fills each table's foreign keys.
func readForeignKeys(ctx context.Context, conn *pgx.Conn, tables []*table) error {
	rows, err := conn.Query(ctx, `SELECT con.conrelid, con.confrelid, format('%I.%I', n.nspname, c.relname),
	       ARRAY(SELECT a.attname::text FROM unnest(con.conkey) WITH ORDINALITY k(num, i)
	              JOIN pg_catalog.pg_attribute a ON a.attrelid = con.conrelid AND a.attnum = k.num ORDER BY k.i),
	       ARRAY(SELECT a.attname::text FROM unnest(con.confkey) WITH ORDINALITY k(num, i)
	              JOIN pg_catalog.pg_attribute a ON a.attrelid = con.confrelid AND a.attnum = k.num ORDER BY k.i)
	  FROM pg_catalog.pg_constraint con
	  JOIN pg_catalog.pg_class c ON c.oid = con.confrelid
	  JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
	 WHERE con.contype = 'f' AND con.conrelid = ANY($1::oid[])
	 ORDER BY con.conrelid, con.conname`, oids(tables))
	if err != nil {
		return fmt.Errorf("read foreign keys: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var rel uint32
		var fk foreignKey
		if err := rows.Scan(&rel, &fk.refOID, &fk.refName, &fk.columns, &fk.refColumns); err != nil {
			return fmt.Errorf("read foreign keys: %w", err)
		}
		if t := byOID(tables, rel); t != nil {
			t.fks = append(t.fks, fk)
		}
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("read foreign keys: %w", err)
	}
	return nil
}
