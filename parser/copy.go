package parser

import (
	"fmt"
	"strings"

	pg "github.com/pganalyze/pg_query_go/v6"
)

// CopyFrom describes a `COPY table [(columns)] FROM STDIN [options]` text.
type CopyFrom struct {
	Schema, Table string
	// Columns is the column list (nil when the statement has none).
	Columns []string
	// Format is text, csv or binary.
	Format string
	// Delimiter, Null, Quote and Escape are the options' values, "" when absent.
	Delimiter, Null, Quote, Escape string
	// HasNull is true when a NULL option is given (possibly '').
	HasNull bool
	// Header is "", "true" or "match".
	Header string
	// Unsupported names the first option or clause the checker cannot follow
	// (an ENCODING other than UTF8, FORCE_NULL, DEFAULT, a WHERE clause, ...).
	Unsupported string
}

// CopyFromStdin parses sql as one COPY ... FROM STDIN statement; ok is false
// for anything else (several statements, COPY TO, files, programs, a query).
func (p *Parser) CopyFromStdin(sql string) (c *CopyFrom, ok bool) {
	if _, err := p.Guard(sql); err != nil {
		return nil, false
	}
	p.sem <- struct{}{}
	tree, err := pg.Parse(sql)
	<-p.sem
	if err != nil || len(tree.Stmts) != 1 {
		return nil, false
	}
	cs := tree.Stmts[0].Stmt.GetCopyStmt()
	if cs == nil || !cs.IsFrom || cs.IsProgram || cs.Filename != "" || cs.Relation == nil || cs.Query != nil || cs.Relation.Catalogname != "" {
		return nil, false
	}
	c = &CopyFrom{Schema: cs.Relation.Schemaname, Table: cs.Relation.Relname, Format: "text"}
	if cs.Attlist != nil {
		c.Columns = []string{}
		for _, a := range cs.Attlist {
			c.Columns = append(c.Columns, a.GetString_().GetSval())
		}
	}
	if cs.WhereClause != nil {
		c.Unsupported = "WHERE"
	}
	for _, o := range cs.Options {
		d := o.GetDefElem()
		if d == nil {
			c.Unsupported = "option"
			continue
		}
		val, isStr := defString(d.Arg)
		switch d.Defname {
		case "format":
			c.Format = strings.ToLower(val)
		case "delimiter":
			c.Delimiter = val
		case "null":
			c.Null, c.HasNull = val, true
		case "quote":
			c.Quote = val
		case "escape":
			c.Escape = val
		case "header":
			switch {
			case d.Arg == nil:
				c.Header = "true"
			case strings.EqualFold(val, "match") && isStr:
				c.Header = "match"
			default:
				switch strings.ToLower(val) {
				case "true", "on", "1":
					c.Header = "true"
				case "false", "off", "0":
					c.Header = ""
				default:
					c.Unsupported = "HEADER " + val
				}
			}
		case "encoding":
			if n := strings.ToLower(strings.NewReplacer("-", "", "_", "").Replace(val)); n != "utf8" {
				c.Unsupported = "ENCODING " + val
			}
		default:
			if c.Unsupported == "" {
				c.Unsupported = strings.ToUpper(d.Defname)
			}
		}
	}
	return c, true
}

// defString renders a DefElem argument (string, identifier, number or boolean).
func defString(n *pg.Node) (string, bool) {
	switch {
	case n == nil:
		return "", false
	case n.GetString_() != nil:
		return n.GetString_().GetSval(), true
	case n.GetInteger() != nil:
		return fmt.Sprint(n.GetInteger().GetIval()), false
	case n.GetBoolean() != nil:
		return fmt.Sprint(n.GetBoolean().GetBoolval()), false
	case n.GetAConst() != nil:
		ac := n.GetAConst()
		switch {
		case ac.GetSval() != nil:
			return ac.GetSval().GetSval(), true
		case ac.GetIval() != nil:
			return fmt.Sprint(ac.GetIval().GetIval()), false
		case ac.GetBoolval() != nil:
			return fmt.Sprint(ac.GetBoolval().GetBoolval()), false
		}
	}
	return "?", false
}
