package policy

import (
	"github.com/pgtenant/pgtenant/parser"
)

// dmlRules applies the INSERT/UPDATE/MERGE rules of POLICY.md 4.8 to block bi.
func (a *analyzer) dmlRules(bi int) {
	b := a.st.Blocks[bi]
	d := b.DML
	ref := relRef{bi, 0}
	if a.class[ref] != ClassTenant {
		return // non-tenant targets were judged already
	}
	t := a.tables[ref]
	name := a.displayName(ref)
	col := t.TenantColumn
	setRule := func(sets []parser.SetTarget) {
		for _, s := range sets {
			if s.Col != col {
				continue
			}
			if s.Indirect {
				a.fail(deny("tenant_column_write", "assignment to part of "+col+" of "+name, ""))
				continue
			}
			if d.Kind == parser.KindInsert && a.isExcludedTenant(bi, s.Val, col) {
				// EXCLUDED.account_id is the proposed row's value, which the
				// INSERT rules already pin to the caller's account
				continue
			}
			if a.isOwnTenantColumn(bi, s.Val) {
				// SET account_id = account_id (ORMs write every column back):
				// the row keeps its value, and the row is pinned already
				continue
			}
			f := a.exprFormula(s.Val, t.TenantType)
			if f == nil {
				a.fail(deny("tenant_column_write", "SET "+col+" of "+name+" must be your own account id",
					"do not change "+col+"; rows cannot move between tenants"))
				continue
			}
			a.res.Reqs = append(a.res.Reqs, Req{Table: name, F: f})
		}
	}
	switch d.Kind {
	case parser.KindInsert:
		pos := a.insertPos(d.Cols, d.Indirect, col, name, d.DefaultValues)
		if pos < 0 {
			return
		}
		if d.SourceOther || len(d.Arms) == 0 {
			a.fail(deny("insert_source", "INSERT source of "+name+" not understood", ""))
			return
		}
		for _, arm := range d.Arms {
			ab := a.st.Blocks[arm]
			if ab.Values != nil {
				for _, row := range ab.Values {
					if pos >= len(row) {
						a.fail(deny("insert_tenant", "INSERT into "+name+" without a value for "+col, ""))
						return
					}
					f := a.exprFormula(row[pos], t.TenantType)
					if f == nil {
						a.insertValueDenial(name, col)
						return
					}
					a.res.Reqs = append(a.res.Reqs, Req{Table: name, F: f})
				}
				continue
			}
			if ab.Star || pos >= len(ab.Targets) {
				a.fail(deny("insert_tenant", "INSERT ... SELECT * into "+name+" maps "+col+" by position",
					"list the columns and select "+col+" explicitly"))
				return
			}
			e := ab.Targets[pos]
			var f *formula
			if e.Kind == "column" {
				rels, c, ok := a.resolve(arm, nil, e.Col)
				if ok && len(rels) == 1 && rels[0].b == arm && a.class[rels[0]] == ClassTenant && a.tenantCol(rels[0]) == c {
					f = a.pinned[rels[0]]
				}
			} else {
				f = a.exprFormula(e, t.TenantType)
			}
			if f == nil {
				a.insertValueDenial(name, col)
				return
			}
			a.res.Reqs = append(a.res.Reqs, Req{Table: name, F: f})
		}
		if c := d.Conflict; c != nil && c.Update {
			inferred := false
			for _, x := range c.Infer {
				if x == col {
					inferred = true
				}
			}
			if !inferred {
				f := a.conflictPin(bi)
				if f == nil {
					a.fail(deny("upsert_unscoped", "ON CONFLICT DO UPDATE on "+name+" may update another tenant's row",
						"use ON CONFLICT ("+col+", ...) or add WHERE "+t.Name+"."+col+" = <your account> to the DO UPDATE"))
					return
				}
				a.res.Reqs = append(a.res.Reqs, Req{Table: name, F: f})
			}
			setRule(c.Set)
		}
	case parser.KindUpdate:
		setRule(d.Set)
	case parser.KindMerge:
		if a.pinned[ref] == nil {
			a.fail(deny("unscoped_table", "MERGE target "+name+" is not scoped to your account",
				"add "+t.Name+"."+col+" = <your account id> to the ON condition"))
			return
		}
		a.res.Reqs = append(a.res.Reqs, Req{Table: name, F: a.pinned[ref]})
		for _, act := range d.Actions {
			switch {
			case act.Match == "not_matched_by_source":
				a.fail(deny("merge", "MERGE ... WHEN NOT MATCHED BY SOURCE reaches other tenants' rows of "+name, ""))
				return
			case act.Cmd == "insert":
				pos := a.insertPos(nonNil(act.Cols), nil, col, name, len(act.Cols) == 0)
				if pos < 0 {
					return
				}
				if pos >= len(act.Values) {
					a.insertValueDenial(name, col)
					return
				}
				f := a.exprFormula(act.Values[pos], t.TenantType)
				if f == nil {
					a.insertValueDenial(name, col)
					return
				}
				a.res.Reqs = append(a.res.Reqs, Req{Table: name, F: f})
			case act.Cmd == "update":
				setRule(act.Set)
			case act.Cmd == "delete", act.Cmd == "nothing":
			default:
				a.fail(deny("merge", "unsupported MERGE action", ""))
			}
		}
	}
}

func nonNil(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}

func (a *analyzer) insertValueDenial(name, col string) {
	a.fail(deny("insert_tenant", "INSERT into "+name+" must set "+col+" to your own account id on every row",
		"list "+col+" and give it your account id (a literal, $n, or current_setting('"+a.e.cfg.TenantSetting+"'))"))
}

// insertPos returns the tenant column's position in an INSERT column list, or -1 after denying.
func (a *analyzer) insertPos(cols []string, indirect []bool, col, name string, defaults bool) int {
	if defaults || cols == nil {
		a.fail(deny("insert_tenant", "INSERT into "+name+" needs an explicit column list including "+col,
			"write INSERT INTO "+name+" ("+col+", ...) VALUES (<your account id>, ...)"))
		return -1
	}
	pos := -1
	for i, c := range cols {
		if c == col {
			if pos >= 0 || (i < len(indirect) && indirect[i]) {
				a.fail(deny("insert_tenant", "INSERT into "+name+" lists "+col+" more than once", ""))
				return -1
			}
			pos = i
		}
	}
	if pos < 0 {
		a.fail(deny("insert_tenant", "INSERT into "+name+" does not set "+col,
			"add "+col+" to the column list with your account id"))
	}
	return pos
}

func (a *analyzer) exprFormula(e parser.Expr, typ string) *formula {
	if e.Kind != "value" {
		return nil
	}
	return a.valueFormula(e.Val, typ)
}

// isExcludedTenant reports whether e is EXCLUDED.<tenant column> of block bi's ON CONFLICT.
func (a *analyzer) isExcludedTenant(bi int, e parser.Expr, col string) bool {
	if e.Kind != "column" || len(e.Col.Fields) != 2 || e.Col.Fields[1] != col {
		return false
	}
	for _, r := range a.st.Blocks[bi].Rels {
		if r.Kind == parser.RelExcluded && r.Name == e.Col.Fields[0] {
			return true
		}
	}
	return false
}

// isOwnTenantColumn reports whether e is a reference to the tenant column of
// block bi's target itself (resolved as PostgreSQL does: in ON CONFLICT an
// unqualified name is ambiguous with EXCLUDED and resolves to nothing).
func (a *analyzer) isOwnTenantColumn(bi int, e parser.Expr) bool {
	if e.Kind != "column" {
		return false
	}
	rels, c, ok := a.resolve(bi, nil, e.Col)
	ref := relRef{bi, 0}
	return ok && len(rels) == 1 && rels[0] == ref && c == a.tenantCol(ref)
}

// isInsertTarget reports whether ref is the target of an INSERT block.
func (a *analyzer) isInsertTarget(ref relRef) bool {
	b := a.st.Blocks[ref.b]
	return ref.r == 0 && b.DML != nil && b.DML.Kind == parser.KindInsert && b.Rels[0].Target
}

// insertPin is the formula under which every row an INSERT block writes or
// returns has the caller's tenant value: the inserted values' formulas and,
// for ON CONFLICT DO UPDATE on a conflict target without the tenant column,
// the DO UPDATE WHERE pin. nil when they cannot be derived.
func (a *analyzer) insertPin(bi int) *formula {
	if f, ok := a.insertPins[bi]; ok {
		return f
	}
	a.insertPins[bi] = nil // cycle guard
	f := a.insertValuesPin(bi)
	if c := a.st.Blocks[bi].DML.Conflict; f != nil && c != nil && c.Update && !a.conflictInferred(bi) {
		f = fAnd(f, a.conflictPin(bi))
	}
	a.insertPins[bi] = f
	return f
}

// insertValuesPin is the conjunction of the tenant value formulas of every
// row an INSERT block proposes (nil when one is not a pin).
func (a *analyzer) insertValuesPin(bi int) *formula {
	b := a.st.Blocks[bi]
	d := b.DML
	ref := relRef{bi, 0}
	t := a.tables[ref]
	if t == nil || a.class[ref] != ClassTenant || d.DefaultValues || d.Cols == nil || d.SourceOther || len(d.Arms) == 0 {
		return nil
	}
	pos := -1
	for i, c := range d.Cols {
		if c == t.TenantColumn {
			if pos >= 0 || (i < len(d.Indirect) && d.Indirect[i]) {
				return nil
			}
			pos = i
		}
	}
	if pos < 0 {
		return nil
	}
	var kids []*formula
	for _, arm := range d.Arms {
		ab := a.st.Blocks[arm]
		if ab.Values != nil {
			for _, row := range ab.Values {
				if pos >= len(row) {
					return nil
				}
				kids = append(kids, a.exprFormula(row[pos], t.TenantType))
			}
			continue
		}
		if ab.Star || pos >= len(ab.Targets) {
			return nil
		}
		e := ab.Targets[pos]
		if e.Kind == "column" {
			rels, c, ok := a.resolve(arm, nil, e.Col)
			if !ok || len(rels) != 1 || rels[0].b != arm || a.class[rels[0]] != ClassTenant || a.tenantCol(rels[0]) != c {
				return nil
			}
			kids = append(kids, a.pinned[rels[0]])
			continue
		}
		kids = append(kids, a.exprFormula(e, t.TenantType))
	}
	return fAnd(kids...)
}

// conflictInferred reports whether ON CONFLICT's arbiter names the tenant
// column, so that a conflicting row has the proposed row's tenant value.
func (a *analyzer) conflictInferred(bi int) bool {
	ref := relRef{bi, 0}
	for _, x := range a.st.Blocks[bi].DML.Conflict.Infer {
		if x == a.tenantCol(ref) {
			return true
		}
	}
	return false
}

// conflictPin is the formula under which ON CONFLICT DO UPDATE's WHERE
// restricts the existing row to the caller's account: a pin predicate, or
// target.col = EXCLUDED.col with the proposed rows pinned.
func (a *analyzer) conflictPin(bi int) *formula {
	ref := relRef{bi, 0}
	col := a.tenantCol(ref)
	var alts []*formula
	for _, p := range a.st.Blocks[bi].DML.Conflict.Where {
		alts = append(alts, a.predPins(bi, nil, p, ref, false))
		if p.Kind != parser.PredColEq {
			continue
		}
		l, lc, lok := a.resolve(bi, nil, p.Col)
		r, rc, rok := a.resolve(bi, nil, p.Col2)
		if !lok || !rok || len(l) != 1 || len(r) != 1 || lc != col || rc != col {
			continue
		}
		if (l[0] == ref && a.isExcluded(r[0])) || (r[0] == ref && a.isExcluded(l[0])) {
			alts = append(alts, a.insertValuesPin(bi))
		}
	}
	return fOr(alts...)
}

func (a *analyzer) isExcluded(ref relRef) bool {
	return a.st.Blocks[ref.b].Rels[ref.r].Kind == parser.RelExcluded
}
