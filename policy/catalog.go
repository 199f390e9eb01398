package policy

import (
	"fmt"
	"sort"
	"strings"

	"github.com/pgtenant/pgtenant/config"
	"github.com/pgtenant/pgtenant/parser"
)

// Class is how the policy treats a relation.
type Class int

// Relation classes.
const (
	ClassUnknown   Class = iota // neither tenant nor global: policy.unknown_tables
	ClassTenant                 // rows belong to tenants: every access must be pinned
	ClassGlobal                 // shared reference data: read unscoped, never written
	ClassCatalog                // pg_catalog / information_schema metadata: read only
	ClassStats                  // catalog views exposing other sessions or table-wide statistics
	ClassForbidden              // in a forbidden schema
)

// Table is one relation the catalog knows.
type Table struct {
	Schema, Name string
	Class        Class
	// TenantColumn is the tenant column of a tenant table.
	TenantColumn string
	// TenantType is the tenant column's type: bigint, integer, smallint, text or uuid.
	TenantType string
	// Columns are all column names in order (nil: unknown); Types their
	// type names when known (parallel to Columns).
	Columns []string
	Types   []string
	// View marks views (and materialized views).
	View bool
}

// QualifiedName is schema.name.
func (t *Table) QualifiedName() string { return t.Schema + "." + t.Name }

func (t *Table) hasColumn(c string) tri {
	if t.Class == ClassTenant && c == t.TenantColumn {
		return yes
	}
	if t.Columns == nil {
		return unknown
	}
	for _, x := range t.Columns {
		if x == c {
			return yes
		}
	}
	return no
}

// Catalog is the relation registry of one region.
type Catalog struct {
	// SearchPath is the pinned search_path, in order.
	SearchPath []string
	// Tables maps "schema.name" to the relation.
	Tables map[string]*Table
	// Database is the database the catalog describes (current_database() at
	// discovery; "" when unknown): a three-part name is resolved only when
	// its catalog part equals it.
	Database string
	// NoRoleSchema is true when discovery proved that no schema is named
	// after the service role, so that "$user" in a search_path resolves to
	// nothing.
	NoRoleSchema bool
}

// NewCatalog returns an empty catalog with the given pinned search path.
func NewCatalog(searchPath []string) *Catalog {
	return &Catalog{SearchPath: searchPath, Tables: map[string]*Table{}}
}

// Add registers t, merging with an existing entry: a configured class wins over
// discovered metadata, and known columns fill unknown ones.
func (c *Catalog) Add(t *Table) {
	key := t.Schema + "." + t.Name
	old, ok := c.Tables[key]
	if !ok {
		t.fillTenantType()
		c.Tables[key] = t
		return
	}
	if old.Class == ClassUnknown {
		old.Class, old.TenantColumn, old.TenantType = t.Class, t.TenantColumn, t.TenantType
	}
	if old.Columns == nil {
		old.Columns, old.Types = t.Columns, t.Types
	}
	if old.TenantType == "" && old.TenantColumn == t.TenantColumn {
		old.TenantType = t.TenantType
	}
	old.fillTenantType()
	old.View = old.View || t.View
}

// fillTenantType derives the tenant column's type from the column types.
func (t *Table) fillTenantType() {
	if t.TenantType != "" || t.TenantColumn == "" {
		return
	}
	for i, c := range t.Columns {
		if c == t.TenantColumn && i < len(t.Types) && t.Types[i] != "" {
			t.TenantType = normType(t.Types[i])
		}
	}
}

// Clone returns a deep copy.
func (c *Catalog) Clone() *Catalog {
	n := NewCatalog(append([]string(nil), c.SearchPath...))
	n.Database, n.NoRoleSchema = c.Database, c.NoRoleSchema
	for k, t := range c.Tables {
		cp := *t
		if t.Columns != nil {
			cp.Columns = append([]string(nil), t.Columns...)
		}
		if t.Types != nil {
			cp.Types = append([]string(nil), t.Types...)
		}
		n.Tables[k] = &cp
	}
	return n
}

// Names lists the registered relations with their class, sorted (for diagnostics).
func (c *Catalog) Names() []string {
	var out []string
	for k, t := range c.Tables {
		out = append(out, fmt.Sprintf("%s(%s)", k, className(t.Class)))
	}
	sort.Strings(out)
	return out
}

func className(c Class) string {
	return [...]string{"unknown", "tenant", "global", "catalog", "stats", "forbidden"}[c]
}

// ParseSearchPath splits a search_path setting value into schema names.
func ParseSearchPath(v string) []string {
	var out []string
	for _, p := range strings.Split(v, ",") {
		p = strings.TrimSpace(p)
		if strings.HasPrefix(p, `"`) && strings.HasSuffix(p, `"`) && len(p) >= 2 {
			p = strings.ReplaceAll(p[1:len(p)-1], `""`, `"`)
		} else {
			p = strings.ToLower(p)
		}
		if p != "" {
			out = append(out, p)
		}
	}
	return out
}

// configCatalog builds the catalog entries the configuration declares.
func configCatalog(cfg config.Policy) (*Catalog, error) {
	sp := ParseSearchPath(cfg.SearchPath)
	if len(sp) == 0 {
		sp = []string{"public"}
	}
	c := NewCatalog(sp)
	for _, s := range cfg.TenantTables {
		name, col, _ := strings.Cut(s, ":")
		schema, table, err := splitQualified(name, sp[0])
		if err != nil {
			return nil, fmt.Errorf("policy.tenant_tables: %w", err)
		}
		if col == "" {
			col = cfg.TenantColumn
		}
		c.Add(&Table{Schema: schema, Name: table, Class: ClassTenant, TenantColumn: col})
	}
	for _, s := range cfg.GlobalTables {
		schema, table, err := splitQualified(s, sp[0])
		if err != nil {
			return nil, fmt.Errorf("policy.global_tables: %w", err)
		}
		c.Add(&Table{Schema: schema, Name: table, Class: ClassGlobal})
	}
	return c, nil
}

func splitQualified(s, defSchema string) (string, string, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return "", "", fmt.Errorf("empty table name")
	}
	parts := strings.Split(s, ".")
	switch len(parts) {
	case 1:
		return defSchema, parts[0], nil
	case 2:
		if parts[0] == "" || parts[1] == "" {
			return "", "", fmt.Errorf("bad table name %q", s)
		}
		return parts[0], parts[1], nil
	}
	return "", "", fmt.Errorf("bad table name %q (want schema.table)", s)
}

// AddSchemaSQL registers the tables and views defined by CREATE TABLE / CREATE
// VIEW statements in sql (e.g. `pg_dump -s` output). A table having
// tenantColumn becomes a tenant table unless configured otherwise.
func (c *Catalog) AddSchemaSQL(sql, tenantColumn string) error {
	defs, err := parser.SchemaDefs(sql)
	if err != nil {
		return err
	}
	for _, d := range defs {
		schema := d.Schema
		if schema == "" {
			schema = c.SearchPath[0]
		}
		t := &Table{Schema: schema, Name: d.Name, View: d.View, Columns: d.Columns, Types: d.Types}
		if !d.View {
			for i, col := range d.Columns {
				if col == tenantColumn {
					t.Class, t.TenantColumn, t.TenantType = ClassTenant, col, normType(d.Types[i])
				}
			}
		}
		c.Add(t)
	}
	return nil
}

// normType maps a column type to the tenant comparison class.
func normType(t string) string {
	t = strings.ToLower(strings.TrimSpace(t))
	t = strings.TrimPrefix(t, "pg_catalog.")
	switch t {
	case "int8", "bigint", "bigserial", "serial8":
		return "bigint"
	case "int4", "integer", "int", "serial", "serial4":
		return "integer"
	case "int2", "smallint", "smallserial", "serial2":
		return "smallint"
	case "uuid":
		return "uuid"
	case "numeric", "decimal":
		return "numeric"
	}
	if strings.HasPrefix(t, "text") || strings.HasPrefix(t, "varchar") || strings.HasPrefix(t, "character varying") || t == "citext" {
		return "text"
	}
	if strings.HasPrefix(t, "numeric") {
		return "numeric"
	}
	return t
}
