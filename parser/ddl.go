package parser

import (
	"fmt"

	pg "github.com/pganalyze/pg_query_go/v6"
)

// SchemaDef is a table or view defined by a CREATE statement of a schema file.
type SchemaDef struct {
	Schema, Name string
	View         bool
	// Columns are the column names in order; Types their type names (tables only).
	Columns []string
	Types   []string
}

// SchemaDefs extracts CREATE TABLE and CREATE VIEW definitions from a schema
// script such as `pg_dump -s` output. Other statements are ignored. The input
// is an operator's file, not tenant traffic, so no size cap applies.
func SchemaDefs(sql string) ([]SchemaDef, error) {
	tree, err := pg.Parse(sql)
	if err != nil {
		return nil, fmt.Errorf("schema: %w", err)
	}
	var out []SchemaDef
	for _, raw := range tree.Stmts {
		switch x := nodeMsg(raw.Stmt).(type) {
		case *pg.CreateStmt:
			if x.Relation == nil || x.Relation.Relpersistence == "t" {
				continue
			}
			d := SchemaDef{Schema: x.Relation.Schemaname, Name: x.Relation.Relname}
			for _, e := range x.TableElts {
				if cd, ok := nodeMsg(e).(*pg.ColumnDef); ok {
					d.Columns = append(d.Columns, cd.Colname)
					typ := ""
					if cd.TypeName != nil {
						q := qname(cd.TypeName.Names)
						typ = q.Name
					}
					d.Types = append(d.Types, typ)
				}
			}
			if x.Partbound != nil || len(x.InhRelations) > 0 {
				// partitions and children inherit columns we cannot see here
				if len(d.Columns) == 0 {
					d.Columns = nil
				}
			}
			out = append(out, d)
		case *pg.ViewStmt:
			if x.View == nil {
				continue
			}
			d := SchemaDef{Schema: x.View.Schemaname, Name: x.View.Relname, View: true}
			if sel, ok := nodeMsg(x.Query).(*pg.SelectStmt); ok {
				w := &walker{st: &Statement{}}
				_, cols := w.selectStmt(sel, -1, "view")
				d.Columns = overlayCols(strs(x.Aliases), cols)
			}
			out = append(out, d)
		case *pg.CreateTableAsStmt:
			if x.Into != nil && x.Into.Rel != nil {
				out = append(out, SchemaDef{Schema: x.Into.Rel.Schemaname, Name: x.Into.Rel.Relname, View: true})
			}
		}
	}
	return out, nil
}
