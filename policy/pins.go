package policy

import (
	"strings"

	"github.com/pgtenant/pgtenant/parser"
)

// restriction is a conjunct list restricting some relations of a block,
// resolved in a scope (nil scope = the whole block).
type restriction struct {
	preds []parser.Pred
	scope []*parser.FromItem
	// restricts lists the relations the conjuncts restrict.
	restricts map[int]bool
	// using holds JOIN ... USING equalities (left/right subtrees) for the tenant column.
	usingL, usingR *parser.FromItem
	usingCol       string
}

// pinBlock computes the pinned formula of every tenant relation of block bi.
func (a *analyzer) pinBlock(bi int) {
	b := a.st.Blocks[bi]
	if len(b.Rels) == 0 {
		return
	}
	var rs []restriction
	all := map[int]bool{}
	for i := range b.Rels {
		all[i] = true
	}
	isMerge := b.DML != nil && b.DML.Kind == parser.KindMerge
	if !isMerge && len(b.Where) > 0 {
		rs = append(rs, restriction{preds: b.Where, restricts: all})
	}
	for _, it := range b.From {
		a.joinRestrictions(it, &rs)
	}
	var tenants []int
	for i := range b.Rels {
		if a.class[relRef{bi, i}] == ClassTenant {
			tenants = append(tenants, i)
		}
	}
	if isMerge {
		// the target is pinned only by a pin predicate among ON's conjuncts
		ref := relRef{bi, 0}
		if a.class[ref] == ClassTenant {
			var alts []*formula
			for _, p := range b.DML.On {
				alts = append(alts, a.predPins(bi, nil, p, ref, false))
			}
			a.pinned[ref] = fOr(alts...)
		}
		return
	}
	for round := 0; round <= len(tenants)+1; round++ {
		changed := false
		next := map[int]*formula{}
		for _, ri := range tenants {
			ref := relRef{bi, ri}
			var alts []*formula
			for _, r := range rs {
				if !r.restricts[ri] {
					continue
				}
				if r.usingCol != "" {
					alts = append(alts, a.usingPins(bi, r, ref))
					continue
				}
				for _, p := range r.preds {
					alts = append(alts, a.predPins(bi, r.scope, p, ref, true))
				}
			}
			next[ri] = fOr(alts...)
		}
		for ri, f := range next {
			ref := relRef{bi, ri}
			if (a.pinned[ref] == nil) != (f == nil) {
				changed = true
			}
			a.pinned[ref] = f
		}
		if !changed && round > 0 {
			break
		}
	}
}

// joinRestrictions appends the ON/USING restrictions of a join tree.
func (a *analyzer) joinRestrictions(it *parser.FromItem, rs *[]restriction) {
	if it == nil || it.Rel >= 0 {
		return
	}
	a.joinRestrictions(it.Left, rs)
	a.joinRestrictions(it.Right, rs)
	set := map[int]bool{}
	switch it.Join {
	case parser.JoinInner:
		leaves(it, set)
	case parser.JoinLeft:
		leaves(it.Right, set)
	case parser.JoinRight:
		leaves(it.Left, set)
	case parser.JoinFull:
		return
	}
	if len(it.Quals) > 0 {
		// ON sees the join's two sides only (parse_clause.c transformJoinOnClause)
		*rs = append(*rs, restriction{preds: it.Quals, scope: []*parser.FromItem{it.Left, it.Right}, restricts: set})
	}
	for _, u := range it.Using {
		*rs = append(*rs, restriction{restricts: set, usingL: it.Left, usingR: it.Right, usingCol: u})
	}
}

func leaves(it *parser.FromItem, set map[int]bool) {
	if it == nil {
		return
	}
	if it.Rel >= 0 {
		set[it.Rel] = true
		return
	}
	leaves(it.Left, set)
	leaves(it.Right, set)
}

// usingPins: JOIN ... USING (col) is l.col = r.col.
func (a *analyzer) usingPins(bi int, r restriction, ref relRef) *formula {
	if a.tables[ref] == nil || r.usingCol != a.tenantCol(ref) {
		return nil
	}
	ls, lst := a.unqualified(bi, r.usingL, r.usingCol)
	rsx, rst := a.unqualified(bi, r.usingR, r.usingCol)
	if lst != stFound || rst != stFound {
		return nil
	}
	other := rsx
	if !containsRef(ls, ref) {
		if !containsRef(rsx, ref) {
			return nil
		}
		other = ls
	}
	return a.allPinned(other, r.usingCol, ref)
}

func containsRef(list []relRef, r relRef) bool {
	for _, x := range list {
		if x == r {
			return true
		}
	}
	return false
}

// allPinned is the conjunction of the pins of every relation in list, each of
// which must be a tenant table whose tenant column is col (and not self).
func (a *analyzer) allPinned(list []relRef, col string, self relRef) *formula {
	if len(list) == 0 {
		return nil
	}
	var kids []*formula
	for _, s := range list {
		if s == self {
			return nil
		}
		if a.class[s] != ClassTenant || a.tables[s] == nil || a.tenantCol(s) != col {
			return nil
		}
		if a.isInsertTarget(s) {
			// the rows an INSERT writes (and RETURNING shows) carry the
			// values its tenant-column rules require
			kids = append(kids, a.insertPin(s.b))
			continue
		}
		kids = append(kids, a.pinned[s])
	}
	return fAnd(kids...)
}

// predPins returns the formula under which conjunct p pins relation ref, or nil.
func (a *analyzer) predPins(bi int, scope []*parser.FromItem, p parser.Pred, ref relRef, propagate bool) *formula {
	t := a.tables[ref]
	if t == nil {
		return nil
	}
	switch p.Kind {
	case parser.PredEq:
		rels, col, ok := a.resolve(bi, scope, p.Col)
		if !ok || col != a.tenantCol(ref) || !containsRef(rels, ref) {
			return nil
		}
		var kids []*formula
		for _, v := range p.Vals {
			kids = append(kids, a.valueFormula(v, t.TenantType))
		}
		return fAnd(kids...)
	case parser.PredColEq:
		if !propagate {
			return nil
		}
		l, lc, lok := a.resolve(bi, scope, p.Col)
		r, rc, rok := a.resolve(bi, scope, p.Col2)
		if !lok || !rok {
			return nil
		}
		if containsRef(l, ref) && lc == a.tenantCol(ref) {
			if f := a.allPinned(r, rc, ref); f != nil {
				return f
			}
		}
		if containsRef(r, ref) && rc == a.tenantCol(ref) {
			return a.allPinned(l, lc, ref)
		}
	case parser.PredOr:
		var branches []*formula
		for _, br := range p.Or {
			var alts []*formula
			for _, q := range br {
				alts = append(alts, a.predPins(bi, scope, q, ref, propagate))
			}
			f := fOr(alts...)
			if f == nil {
				return nil
			}
			branches = append(branches, f)
		}
		return fAnd(branches...)
	}
	return nil
}

var intCasts = map[string]bool{"int2": true, "int4": true, "int8": true, "smallint": true, "integer": true, "bigint": true, "int": true}

func castsOK(casts []string, typ string) bool {
	for _, c := range casts {
		switch typ {
		case "text":
			if c != "text" && c != "varchar" {
				return false
			}
		case "uuid":
			if c != "uuid" && c != "text" {
				return false
			}
		default:
			if !intCasts[c] {
				return false
			}
		}
	}
	return true
}

// valueFormula turns a candidate pin value into a slot formula (nil: not a pin value).
func (a *analyzer) valueFormula(v parser.Value, typ string) *formula {
	if typ == "" {
		typ = "bigint"
	}
	switch typ {
	case "bigint", "integer", "smallint", "numeric", "text", "uuid":
		// numeric compares like an integer: only exact integer values pin
	default:
		return nil
	}
	if !castsOK(v.Casts, typ) {
		return nil
	}
	switch v.Kind {
	case parser.ValConst:
		if v.ConstKind != "int" && v.ConstKind != "string" {
			return nil
		}
		i := a.sc.LitAt(v.Loc)
		if i < 0 || a.sc.Lits[i].Kind == parser.LitRaw {
			return nil
		}
		if (a.sc.Lits[i].Kind == parser.LitInt) != (v.ConstKind == "int") {
			return nil
		}
		return fSlot(Slot{Kind: SlotLit, Index: i, Type: typ})
	case parser.ValArrayConst:
		i := a.sc.LitAt(v.Loc)
		if i < 0 || a.sc.Lits[i].Kind != parser.LitString {
			return nil
		}
		return fSlot(Slot{Kind: SlotLitArray, Index: i, Type: typ})
	case parser.ValParam:
		return fSlot(Slot{Kind: SlotParam, Index: v.Param, Type: typ})
	case parser.ValArrayParam:
		return fSlot(Slot{Kind: SlotParamArray, Index: v.Param, Type: typ})
	case parser.ValSetting:
		if strings.EqualFold(v.Text, a.e.cfg.TenantSetting) {
			return fTrue
		}
	}
	return nil
}

type resStatus int

const (
	stNone resStatus = iota
	stFound
	stAmbiguous
	stUnknown
)

// resolve binds a column reference as PostgreSQL's parse analysis does,
// starting at block bi (in scope, or the whole FROM when scope is nil) and
// moving outwards through the query levels; at each outer level only the
// items visible to the block the search comes from are searched.
func (a *analyzer) resolve(bi int, scope []*parser.FromItem, c parser.ColRef) ([]relRef, string, bool) {
	f := c.Fields
	col := f[len(f)-1]
	child := -1
	for b := bi; b >= 0; child, b = b, a.st.Blocks[b].Parent {
		items := a.st.Blocks[b].From
		switch {
		case b == bi && scope != nil:
			items = scope
		case child >= 0 && a.st.Blocks[child].Scoped:
			items = a.st.Blocks[child].Scope
		}
		switch len(f) {
		case 1:
			var rels []relRef
			st := stNone
			for _, it := range items {
				r, s := a.unqualified(b, it, col)
				rels, st = combine(rels, st, r, s)
			}
			switch st {
			case stFound:
				return rels, col, true
			case stAmbiguous, stUnknown:
				return nil, "", false
			}
		case 2, 3, 4:
			qual := f[:len(f)-1]
			if len(f) == 4 {
				// catalog.schema.rel.col: the catalog must be this database
				if !a.sameDatabase(f[0]) {
					return nil, "", false
				}
				qual = f[1:3]
			}
			var found []relRef
			var joins []*parser.FromItem
			hidden := false
			for _, it := range items {
				a.qualified(b, it, qual, &found, &joins, &hidden)
			}
			if len(found)+len(joins) > 1 || (len(found)+len(joins) == 1 && hidden) {
				return nil, "", false
			}
			if len(joins) == 1 {
				// j.col of JOIN ... USING (...) AS j: the merged USING column
				j := joins[0]
				for _, u := range j.Using {
					if u == col {
						rels, st := a.unqualified(b, j, col)
						if st != stFound {
							return nil, "", false
						}
						return rels, col, true
					}
				}
				return nil, "", false
			}
			if len(found) == 1 {
				if a.hasColumn(found[0], col) == no {
					return nil, "", false
				}
				return found, col, true
			}
			if hidden {
				return nil, "", false
			}
		default:
			return nil, "", false
		}
	}
	return nil, "", false
}

func combine(rels []relRef, st resStatus, r []relRef, s resStatus) ([]relRef, resStatus) {
	switch {
	case st == stAmbiguous || s == stAmbiguous:
		return nil, stAmbiguous
	case st == stFound && s == stFound:
		return nil, stAmbiguous
	case st == stUnknown || s == stUnknown:
		return nil, stUnknown
	case s == stFound:
		return r, stFound
	}
	return rels, st
}

// unqualified resolves an unqualified column within one FROM item of block b.
func (a *analyzer) unqualified(b int, it *parser.FromItem, col string) ([]relRef, resStatus) {
	if it == nil {
		return nil, stNone
	}
	if it.Rel >= 0 {
		ref := relRef{b, it.Rel}
		// EXCLUDED is visible to unqualified names too: in ON CONFLICT an
		// unqualified target column is ambiguous (42702), as in PostgreSQL
		switch a.hasColumn(ref, col) {
		case yes:
			return []relRef{ref}, stFound
		case no:
			return nil, stNone
		}
		return nil, stUnknown
	}
	l, ls := a.unqualified(b, it.Left, col)
	r, rs := a.unqualified(b, it.Right, col)
	if it.Natural {
		if ls == stNone && rs == stNone {
			return nil, stNone
		}
		return nil, stUnknown
	}
	for _, u := range it.Using {
		if u == col {
			if ls == stAmbiguous || rs == stAmbiguous {
				return nil, stAmbiguous
			}
			var out []relRef
			if ls == stFound {
				out = append(out, l...)
			}
			if rs == stFound {
				out = append(out, r...)
			}
			if len(out) == 0 {
				return nil, stUnknown
			}
			return out, stFound
		}
	}
	rels, st := combine(l, ls, nil, stNone)
	return combine(rels, st, r, rs)
}

// qualified finds entries named by qual (rel or schema.rel) under item it:
// relations in found, joins named by their USING alias in joins.
func (a *analyzer) qualified(b int, it *parser.FromItem, qual []string, found *[]relRef, joins *[]*parser.FromItem, hidden *bool) {
	if it == nil {
		return
	}
	if it.Rel < 0 {
		if it.Alias != "" {
			if len(qual) == 1 && qual[0] == it.Alias {
				*hidden = true
			}
			return // the alias hides the joined entries and the USING alias
		}
		if it.UsingAlias != "" && len(qual) == 1 && qual[0] == it.UsingAlias {
			*joins = append(*joins, it)
		}
		a.qualified(b, it.Left, qual, found, joins, hidden)
		a.qualified(b, it.Right, qual, found, joins, hidden)
		return
	}
	r := &a.st.Blocks[b].Rels[it.Rel]
	ref := relRef{b, it.Rel}
	switch len(qual) {
	case 1:
		if r.RefName() == qual[0] && (r.Name != "" || r.Alias != "") {
			*found = append(*found, ref)
		}
	case 2:
		if r.Alias != "" || r.Kind != parser.RelTable || r.Name != qual[1] {
			return
		}
		if t := a.tables[ref]; t != nil && t.Schema == qual[0] {
			*found = append(*found, ref)
		} else if r.Schema == qual[0] {
			*found = append(*found, ref)
		}
	}
}

// sameDatabase reports whether a catalog name is the database the catalog
// describes (unknown: no).
func (a *analyzer) sameDatabase(name string) bool {
	return a.cat.Database != "" && name == a.cat.Database
}

// hasColumn says whether a range entry has column c.
func (a *analyzer) hasColumn(ref relRef, c string) tri {
	r := &a.st.Blocks[ref.b].Rels[ref.r]
	var cols []string
	switch r.Kind {
	case parser.RelTable:
		t := a.tables[ref]
		if t == nil {
			if a.isRelStats(ref) && len(r.ColAliases) == 0 && contains(relStatsViews[r.Name], c) {
				return yes // other names stay unknown: a newer server may have more columns
			}
			return unknown
		}
		if len(r.ColAliases) == 0 {
			return t.hasColumn(c)
		}
		if t.Columns == nil {
			return unknown
		}
		cols = append([]string(nil), t.Columns...)
		for i, al := range r.ColAliases {
			if i < len(cols) {
				cols[i] = al
			}
		}
	case parser.RelExcluded:
		// EXCLUDED has the target's columns (the target is Rels[0])
		return a.hasColumn(relRef{ref.b, 0}, c)
	default:
		cols = a.outCols(ref)
		if cols == nil {
			return unknown
		}
	}
	for _, x := range cols {
		if x == c {
			return yes
		}
	}
	return no
}

// tenantCol is the name under which a tenant relation's tenant column is
// visible in its block (column aliases rename it; "" when unknowable).
func (a *analyzer) tenantCol(ref relRef) string {
	t := a.tables[ref]
	if t == nil {
		return ""
	}
	r := &a.st.Blocks[ref.b].Rels[ref.r]
	if len(r.ColAliases) == 0 {
		return t.TenantColumn
	}
	if t.Columns == nil {
		return ""
	}
	for i, c := range t.Columns {
		if c == t.TenantColumn {
			if i < len(r.ColAliases) {
				return r.ColAliases[i]
			}
			return c
		}
	}
	return ""
}

// outCols returns the output column names of a range entry (nil: unknown),
// expanding * in derived tables and CTEs from the catalog.
func (a *analyzer) outCols(ref relRef) []string {
	r := &a.st.Blocks[ref.b].Rels[ref.r]
	switch r.Kind {
	case parser.RelTable:
		t := a.tables[ref]
		if t == nil || t.Columns == nil {
			return nil
		}
		return overlay(t.Columns, r.ColAliases)
	case parser.RelSubquery, parser.RelCTE:
		if r.Cols != nil {
			return r.Cols
		}
		if r.Block < 0 {
			return nil
		}
		cols := a.blockCols(r.Block)
		if cols == nil {
			return nil
		}
		return overlay(overlay(cols, r.DefAliases), r.ColAliases)
	case parser.RelFunction:
		return r.Cols
	}
	return nil
}

func overlay(cols, aliases []string) []string {
	if len(aliases) == 0 {
		return cols
	}
	out := append([]string(nil), cols...)
	for i, al := range aliases {
		if i < len(out) {
			out[i] = al
		}
	}
	return out
}

// blockCols derives a SELECT block's output names, expanding stars.
func (a *analyzer) blockCols(bi int) []string {
	if a.colMemo == nil {
		a.colMemo = map[int][]string{}
	}
	if c, ok := a.colMemo[bi]; ok {
		return c
	}
	a.colMemo[bi] = nil // cycle guard
	b := a.st.Blocks[bi]
	if b.OutCols != nil {
		a.colMemo[bi] = b.OutCols
		return b.OutCols
	}
	if len(b.TargetNames) == 0 {
		return nil
	}
	var out []string
	for _, n := range b.TargetNames {
		switch {
		case n == "":
			return nil
		case n == "*":
			for _, it := range b.From {
				if hasMerge(it) {
					return nil
				}
				var rels []int
				leavesInOrder(it, &rels)
				for _, ri := range rels {
					c := a.outCols(relRef{bi, ri})
					if c == nil {
						return nil
					}
					out = append(out, c...)
				}
			}
		case len(n) > 2 && n[len(n)-2:] == ".*":
			q := n[:len(n)-2]
			found := -1
			for ri := range b.Rels {
				if b.Rels[ri].RefName() == q && !b.Rels[ri].QualifiedOnly {
					if found >= 0 {
						return nil
					}
					found = ri
				}
			}
			if found < 0 {
				return nil
			}
			c := a.outCols(relRef{bi, found})
			if c == nil {
				return nil
			}
			out = append(out, c...)
		default:
			out = append(out, n)
		}
	}
	a.colMemo[bi] = out
	return out
}

func hasMerge(it *parser.FromItem) bool {
	if it == nil || it.Rel >= 0 {
		return false
	}
	return it.Natural || len(it.Using) > 0 || it.Alias != "" || hasMerge(it.Left) || hasMerge(it.Right)
}

func leavesInOrder(it *parser.FromItem, out *[]int) {
	if it == nil {
		return
	}
	if it.Rel >= 0 {
		*out = append(*out, it.Rel)
		return
	}
	leavesInOrder(it.Left, out)
	leavesInOrder(it.Right, out)
}
