package parser

import (
	"errors"
	"fmt"

	pg "github.com/pganalyze/pg_query_go/v6"
	"google.golang.org/protobuf/reflect/protoreflect"
)

// PinTable describes a tenant relation to the rewriter.
type PinTable struct {
	// Column is the tenant column.
	Column string
	// Type is the tenant column's type: bigint, integer, smallint, text or uuid.
	Type string
	// Columns are all columns in order (nil when unknown); with them an
	// INSERT without a column list gets one.
	Columns []string
}

// PinResolver returns the tenant table a relation reference (schema may be
// empty) denotes; ok is false for anything that is not a tenant table.
type PinResolver func(schema, name string) (t PinTable, ok bool)

// ErrNoRewrite is returned when a text has nothing the rewriter can pin.
var ErrNoRewrite = errors.New("nothing to rewrite")

// Rewrite adds the caller's pin to every tenant relation sql uses without one
// (policy.unscoped: rewrite): `<rel>.<col> = current_setting(setting)::<type>`
// in the WHERE of the relation's query block, in the ON of an outer join's
// nullable side, or, where neither filters the relation's own rows (either
// side of a FULL JOIN, a MERGE source, the nullable side of a USING/NATURAL
// join), by replacing the relation with `(SELECT * FROM rel WHERE pin) AS rel`.
// INSERTs that omit the tenant column get it, with the same value. A relation
// that a conjunct already compares by its tenant column with a column-free
// expression is left alone, so the policy still judges that value (another
// tenant's account stays refused). The pin reads the tenant setting, never a
// literal account, so one rewrite serves every tenant.
//
// The result is pg_query's deparse of the rewritten tree: parameter numbers
// are unchanged, comments are dropped. ErrNoRewrite means no pin was added.
// The caller must analyse the result like any statement: Rewrite only adds
// restrictions, it decides nothing.
func (p *Parser) Rewrite(sql, setting string, resolve PinResolver) (out string, err error) {
	if _, err := p.Guard(sql); err != nil {
		return "", err
	}
	p.sem <- struct{}{}
	tree, err := pg.Parse(sql)
	<-p.sem
	if err != nil {
		return "", fmt.Errorf("%w: %v", ErrSyntax, err)
	}
	defer func() {
		if r := recover(); r != nil {
			out, err = "", fmt.Errorf("rewrite: unexpected tree: %v", r)
		}
	}()
	rw := &rewriter{resolve: resolve, setting: setting}
	for _, raw := range tree.Stmts {
		rw.stmt(raw.Stmt, nil)
	}
	if !rw.changed {
		return "", ErrNoRewrite
	}
	p.sem <- struct{}{}
	out, err = pg.Deparse(tree)
	<-p.sem
	if err != nil {
		return "", fmt.Errorf("rewrite: deparse: %w", err)
	}
	return out, nil
}

type rewriter struct {
	resolve PinResolver
	setting string
	changed bool
}

// cteScope is the set of WITH names visible at a point, innermost first.
type cteScope struct {
	names  map[string]bool
	parent *cteScope
}

func (s *cteScope) has(name string) bool {
	for ; s != nil; s = s.parent {
		if s.names[name] {
			return true
		}
	}
	return false
}

func (r *rewriter) stmt(n *pg.Node, sc *cteScope) {
	if n == nil {
		return
	}
	switch x := n.Node.(type) {
	case *pg.Node_SelectStmt:
		r.selectStmt(x.SelectStmt, sc)
	case *pg.Node_InsertStmt:
		r.insert(x.InsertStmt, sc)
	case *pg.Node_UpdateStmt:
		r.update(x.UpdateStmt, sc)
	case *pg.Node_DeleteStmt:
		r.delete(x.DeleteStmt, sc)
	case *pg.Node_MergeStmt:
		r.merge(x.MergeStmt, sc)
	case *pg.Node_ExplainStmt:
		r.stmt(x.ExplainStmt.Query, sc)
	case *pg.Node_PrepareStmt:
		r.stmt(x.PrepareStmt.Query, sc)
	case *pg.Node_DeclareCursorStmt:
		r.stmt(x.DeclareCursorStmt.Query, sc)
	case *pg.Node_CopyStmt:
		r.copyTo(x.CopyStmt, sc)
	}
}

// copyTo turns `COPY tenant_table [(cols)] TO STDOUT` into
// `COPY (SELECT cols FROM tenant_table WHERE pin) TO STDOUT`, which writes
// the same columns in the same format; a COPY (query) has its query pinned.
// COPY FROM and files are left to the policy.
func (r *rewriter) copyTo(c *pg.CopyStmt, sc *cteScope) {
	if c.Query != nil {
		r.stmt(c.Query, sc)
		return
	}
	if c.IsFrom || c.IsProgram || c.Filename != "" || c.WhereClause != nil {
		return
	}
	t, ok := r.table(c.Relation, nil)
	if !ok {
		return
	}
	pin := r.pin(refName(c.Relation), t)
	if pin == nil {
		return
	}
	var targets []*pg.Node
	for _, a := range c.Attlist {
		targets = append(targets, pg.MakeResTargetNodeWithVal(
			pg.MakeColumnRefNode([]*pg.Node{pg.MakeStrNode(a.GetString_().GetSval())}, -1), -1))
	}
	if len(targets) == 0 {
		targets = []*pg.Node{pg.MakeResTargetNodeWithVal(pg.MakeColumnRefNode([]*pg.Node{pg.MakeAStarNode()}, -1), -1)}
	}
	sel := &pg.SelectStmt{TargetList: targets, FromClause: []*pg.Node{{Node: &pg.Node_RangeVar{RangeVar: c.Relation}}},
		WhereClause: pin, Op: pg.SetOperation_SETOP_NONE}
	c.Query = &pg.Node{Node: &pg.Node_SelectStmt{SelectStmt: sel}}
	c.Relation, c.Attlist = nil, nil
	r.changed = true
}

// with rewrites the CTE bodies and returns the scope the statement sees.
func (r *rewriter) with(w *pg.WithClause, sc *cteScope) *cteScope {
	if w == nil {
		return sc
	}
	all := &cteScope{names: map[string]bool{}, parent: sc}
	for _, c := range w.Ctes {
		if cte := c.GetCommonTableExpr(); cte != nil {
			all.names[cte.Ctename] = true
		}
	}
	seen := &cteScope{names: map[string]bool{}, parent: sc}
	for _, c := range w.Ctes {
		cte := c.GetCommonTableExpr()
		if cte == nil {
			continue
		}
		if w.Recursive {
			r.stmt(cte.Ctequery, all)
		} else {
			// a non-recursive CTE sees only the ones before it: its own
			// name inside its body is the table
			r.stmt(cte.Ctequery, seen)
		}
		seen.names[cte.Ctename] = true
	}
	return all
}

func (r *rewriter) selectStmt(s *pg.SelectStmt, sc *cteScope) {
	if s == nil {
		return
	}
	sc = r.with(s.WithClause, sc)
	if s.Op != pg.SetOperation_SETOP_NONE && s.Op != pg.SetOperation_SET_OPERATION_UNDEFINED {
		r.selectStmt(s.Larg, sc)
		r.selectStmt(s.Rarg, sc)
		r.exprs(sc, s.SortClause, s.LimitOffset, s.LimitCount)
		return
	}
	r.exprs(sc, s.TargetList, s.WhereClause, s.GroupClause, s.HavingClause, s.WindowClause,
		s.ValuesLists, s.SortClause, s.LimitOffset, s.LimitCount, s.DistinctClause)
	conj := blockConjuncts(s.WhereClause, s.FromClause)
	for i, f := range s.FromClause {
		s.FromClause[i] = r.from(f, &s.WhereClause, false, sc, conj)
	}
}

// from pins the tenant relations of one FROM item: into *where, or by
// wrapping them in a pinned subquery when wrap is set. It returns the item
// (replaced when wrapped).
func (r *rewriter) from(n *pg.Node, where **pg.Node, wrap bool, sc *cteScope, conj []*pg.Node) *pg.Node {
	if n == nil {
		return n
	}
	switch x := n.Node.(type) {
	case *pg.Node_RangeVar:
		rv := x.RangeVar
		t, ok := r.table(rv, sc)
		if !ok {
			return n
		}
		ref := refName(rv)
		if pinish(conj, ref, t.Column) {
			return n
		}
		pin := r.pin(ref, t)
		if pin == nil {
			return n
		}
		r.changed = true
		if wrap {
			return wrapped(rv, pin, t)
		}
		andInto(where, pin)
		return n
	case *pg.Node_JoinExpr:
		j := x.JoinExpr
		r.exprs(sc, j.Quals)
		onOK := j.Quals != nil && len(j.UsingClause) == 0 && !j.IsNatural
		if j.Alias != nil {
			// `(a JOIN b) AS j` hides a and b from the enclosing block:
			// their pins go into this join's ON, or inside them
			if j.Jointype == pg.JoinType_JOIN_INNER && onOK {
				where = &j.Quals
			} else {
				wrap = true
			}
		}
		switch j.Jointype {
		case pg.JoinType_JOIN_INNER:
			j.Larg = r.from(j.Larg, where, wrap, sc, conj)
			j.Rarg = r.from(j.Rarg, where, wrap, sc, conj)
		case pg.JoinType_JOIN_LEFT:
			j.Larg = r.from(j.Larg, where, wrap, sc, conj)
			j.Rarg = r.from(j.Rarg, &j.Quals, !onOK, sc, conj)
		case pg.JoinType_JOIN_RIGHT:
			j.Rarg = r.from(j.Rarg, where, wrap, sc, conj)
			j.Larg = r.from(j.Larg, &j.Quals, !onOK, sc, conj)
		case pg.JoinType_JOIN_FULL:
			j.Larg = r.from(j.Larg, nil, true, sc, conj)
			j.Rarg = r.from(j.Rarg, nil, true, sc, conj)
		}
		return n
	case *pg.Node_RangeSubselect:
		r.stmt(x.RangeSubselect.Subquery, sc)
		return n
	case *pg.Node_RangeTableSample:
		ts := x.RangeTableSample
		r.exprs(sc, ts.Args, ts.Repeatable)
		if rv := ts.Relation.GetRangeVar(); rv != nil && !wrap {
			if t, ok := r.table(rv, sc); ok && !pinish(conj, refName(rv), t.Column) {
				if pin := r.pin(refName(rv), t); pin != nil {
					r.changed = true
					andInto(where, pin)
				}
			}
		}
		return n
	default:
		// function calls, XMLTABLE, JSON_TABLE: only their subqueries
		r.exprs(sc, n)
		return n
	}
}

func (r *rewriter) insert(s *pg.InsertStmt, sc *cteScope) {
	sc = r.with(s.WithClause, sc)
	r.stmt(s.SelectStmt, sc)
	r.exprs(sc, s.ReturningList)
	if s.OnConflictClause != nil {
		r.exprs(sc, s.OnConflictClause.TargetList, s.OnConflictClause.WhereClause)
	}
	t, ok := r.table(s.Relation, nil)
	if !ok {
		return
	}
	r.fillInsert(s, t)
	oc := s.OnConflictClause
	if oc == nil || oc.Action != pg.OnConflictAction_ONCONFLICT_UPDATE {
		return
	}
	if oc.Infer != nil {
		for _, e := range oc.Infer.IndexElems {
			if ie := e.GetIndexElem(); ie != nil && ie.Name == t.Column {
				return // the conflicting row has the inserted (pinned) tenant value
			}
		}
	}
	ref := refName(s.Relation)
	if pinish(conjuncts(oc.WhereClause), ref, t.Column) {
		return
	}
	if pin := r.pin(ref, t); pin != nil {
		r.changed = true
		andInto(&oc.WhereClause, pin)
	}
}

// fillInsert adds the tenant column to an INSERT that omits it.
func (r *rewriter) fillInsert(s *pg.InsertStmt, t PinTable) {
	val := r.value(t.Type)
	if val == nil {
		return
	}
	if s.Cols == nil && s.SelectStmt == nil { // DEFAULT VALUES
		s.Cols = []*pg.Node{pg.MakeResTargetNodeWithName(t.Column, -1)}
		s.SelectStmt = &pg.Node{Node: &pg.Node_SelectStmt{SelectStmt: &pg.SelectStmt{
			ValuesLists: []*pg.Node{pg.MakeListNode([]*pg.Node{val})}, Op: pg.SetOperation_SETOP_NONE}}}
		r.changed = true
		return
	}
	sel := s.SelectStmt.GetSelectStmt()
	if sel == nil {
		return
	}
	if s.Cols == nil {
		// no column list: name the columns the source fills, by position
		n := sourceWidth(sel)
		if t.Columns == nil || n <= 0 || n > len(t.Columns) {
			return
		}
		for _, c := range t.Columns[:n] {
			s.Cols = append(s.Cols, pg.MakeResTargetNodeWithName(c, -1))
		}
		r.changed = true
	}
	for _, c := range s.Cols {
		if rt := c.GetResTarget(); rt != nil && rt.Name == t.Column {
			return // listed: the policy judges its value
		}
	}
	width := len(s.Cols)
	s.Cols = append(s.Cols, pg.MakeResTargetNodeWithName(t.Column, -1))
	r.changed = true
	switch {
	case sel.ValuesLists != nil:
		for _, row := range sel.ValuesLists {
			if l := row.GetList(); l != nil {
				l.Items = append(l.Items, r.value(t.Type))
			}
		}
	case sel.Op == pg.SetOperation_SETOP_NONE || sel.Op == pg.SetOperation_SET_OPERATION_UNDEFINED:
		sel.TargetList = append(sel.TargetList, pg.MakeResTargetNodeWithVal(val, -1))
	default:
		// a set operation: select its rows, column by column (as many as
		// the INSERT lists), and the value from it
		const src = "pgtenant_src"
		alias := &pg.Alias{Aliasname: src}
		var targets []*pg.Node
		for i := 1; i <= width; i++ {
			c := fmt.Sprintf("c%d", i)
			alias.Colnames = append(alias.Colnames, pg.MakeStrNode(c))
			targets = append(targets, pg.MakeResTargetNodeWithVal(
				pg.MakeColumnRefNode([]*pg.Node{pg.MakeStrNode(src), pg.MakeStrNode(c)}, -1), -1))
		}
		sub := &pg.Node{Node: &pg.Node_RangeSubselect{RangeSubselect: &pg.RangeSubselect{Subquery: s.SelectStmt, Alias: alias}}}
		s.SelectStmt = &pg.Node{Node: &pg.Node_SelectStmt{SelectStmt: &pg.SelectStmt{
			TargetList: append(targets, pg.MakeResTargetNodeWithVal(val, -1)),
			FromClause: []*pg.Node{sub}, Op: pg.SetOperation_SETOP_NONE}}}
	}
}

// sourceWidth is the number of columns an INSERT source yields, or -1 when
// it cannot be told from the text (a * or a set operation).
func sourceWidth(sel *pg.SelectStmt) int {
	if sel.ValuesLists != nil {
		n := -1
		for _, row := range sel.ValuesLists {
			l := row.GetList()
			if l == nil || (n >= 0 && len(l.Items) != n) {
				return -1
			}
			n = len(l.Items)
		}
		return n
	}
	if sel.Op != pg.SetOperation_SETOP_NONE && sel.Op != pg.SetOperation_SET_OPERATION_UNDEFINED {
		return -1
	}
	for _, t := range sel.TargetList {
		if cr := t.GetResTarget().GetVal().GetColumnRef(); cr != nil {
			for _, f := range cr.Fields {
				if f.GetAStar() != nil {
					return -1
				}
			}
		}
	}
	return len(sel.TargetList)
}

func (r *rewriter) update(s *pg.UpdateStmt, sc *cteScope) {
	sc = r.with(s.WithClause, sc)
	r.exprs(sc, s.TargetList, s.WhereClause, s.ReturningList)
	conj := blockConjuncts(s.WhereClause, s.FromClause)
	r.target(s.Relation, &s.WhereClause, conj)
	for i, f := range s.FromClause {
		s.FromClause[i] = r.from(f, &s.WhereClause, false, sc, conj)
	}
}

func (r *rewriter) delete(s *pg.DeleteStmt, sc *cteScope) {
	sc = r.with(s.WithClause, sc)
	r.exprs(sc, s.WhereClause, s.ReturningList)
	conj := blockConjuncts(s.WhereClause, s.UsingClause)
	r.target(s.Relation, &s.WhereClause, conj)
	for i, f := range s.UsingClause {
		s.UsingClause[i] = r.from(f, &s.WhereClause, false, sc, conj)
	}
}

// target pins an UPDATE/DELETE target in the statement's WHERE.
func (r *rewriter) target(rv *pg.RangeVar, where **pg.Node, conj []*pg.Node) {
	t, ok := r.table(rv, nil)
	if !ok || (*where).GetCurrentOfExpr() != nil {
		// WHERE CURRENT OF takes no other condition; the cursor's own
		// query was pinned when it was declared
		return
	}
	ref := refName(rv)
	if pinish(conj, ref, t.Column) {
		return
	}
	if pin := r.pin(ref, t); pin != nil {
		r.changed = true
		andInto(where, pin)
	}
}

func (r *rewriter) merge(s *pg.MergeStmt, sc *cteScope) {
	sc = r.with(s.WithClause, sc)
	r.exprs(sc, s.JoinCondition, s.ReturningList)
	for _, w := range s.MergeWhenClauses {
		if mw := w.GetMergeWhenClause(); mw != nil {
			r.exprs(sc, mw.Condition, mw.TargetList, mw.Values)
		}
	}
	// the source is the preserved side: its rows are filtered inside it
	// (unless ON already compares its tenant column: the policy judges that)
	s.SourceRelation = r.from(s.SourceRelation, nil, true, sc, conjuncts(s.JoinCondition))
	t, ok := r.table(s.Relation, nil)
	if !ok {
		return
	}
	ref := refName(s.Relation)
	if !pinish(conjuncts(s.JoinCondition), ref, t.Column) {
		if pin := r.pin(ref, t); pin != nil {
			// another tenant's row never matches, as under RLS
			r.changed = true
			andInto(&s.JoinCondition, pin)
		}
	}
	for _, w := range s.MergeWhenClauses {
		mw := w.GetMergeWhenClause()
		if mw == nil || mw.CommandType != pg.CmdType_CMD_INSERT {
			continue
		}
		listed := false
		for _, c := range mw.TargetList {
			if c.GetResTarget().GetName() == t.Column {
				listed = true
			}
		}
		if listed || (len(mw.TargetList) == 0 && len(mw.Values) > 0) {
			continue
		}
		if val := r.value(t.Type); val != nil {
			mw.TargetList = append(mw.TargetList, pg.MakeResTargetNodeWithName(t.Column, -1))
			mw.Values = append(mw.Values, val)
			r.changed = true
		}
	}
}

func (r *rewriter) table(rv *pg.RangeVar, sc *cteScope) (PinTable, bool) {
	if rv == nil || rv.Catalogname != "" {
		return PinTable{}, false
	}
	if rv.Schemaname == "" && sc.has(rv.Relname) {
		return PinTable{}, false
	}
	return r.resolve(rv.Schemaname, rv.Relname)
}

func refName(rv *pg.RangeVar) string {
	if rv.Alias != nil && rv.Alias.Aliasname != "" {
		return rv.Alias.Aliasname
	}
	return rv.Relname
}

// castType maps a tenant column type to the cast's type name.
var castType = map[string][]string{
	"bigint": {"pg_catalog", "int8"}, "integer": {"pg_catalog", "int4"}, "smallint": {"pg_catalog", "int2"},
	"text": {"text"}, "uuid": {"uuid"},
}

// value is `pg_catalog.current_setting('<setting>')::<type>`, nil for an unknown type.
func (r *rewriter) value(typ string) *pg.Node {
	names := castType[typ]
	if names == nil {
		return nil
	}
	fc := pg.MakeFuncCallNode([]*pg.Node{pg.MakeStrNode("pg_catalog"), pg.MakeStrNode("current_setting")},
		[]*pg.Node{pg.MakeAConstStrNode(r.setting, -1)}, -1)
	tn := &pg.TypeName{Typemod: -1, Location: -1}
	for _, s := range names {
		tn.Names = append(tn.Names, pg.MakeStrNode(s))
	}
	return &pg.Node{Node: &pg.Node_TypeCast{TypeCast: &pg.TypeCast{Arg: fc, TypeName: tn, Location: -1}}}
}

// pin is `<ref>.<col> = <value>`.
func (r *rewriter) pin(ref string, t PinTable) *pg.Node {
	val := r.value(t.Type)
	if val == nil {
		return nil
	}
	col := pg.MakeColumnRefNode([]*pg.Node{pg.MakeStrNode(ref), pg.MakeStrNode(t.Column)}, -1)
	return pg.MakeAExprNode(pg.A_Expr_Kind_AEXPR_OP, []*pg.Node{pg.MakeStrNode("=")}, col, val, -1)
}

// wrapped replaces rv by `(SELECT * FROM rv WHERE pin) AS <alias>`; the
// pin refers to the relation by its own name inside.
func wrapped(rv *pg.RangeVar, pin *pg.Node, t PinTable) *pg.Node {
	alias := rv.Alias
	if alias == nil {
		alias = &pg.Alias{Aliasname: rv.Relname}
	}
	inner := &pg.RangeVar{Schemaname: rv.Schemaname, Relname: rv.Relname, Inh: rv.Inh,
		Relpersistence: rv.Relpersistence, Location: -1}
	// the pin names the relation as the outer query did; inside, its name is Relname
	pin.GetAExpr().Lexpr = pg.MakeColumnRefNode([]*pg.Node{pg.MakeStrNode(rv.Relname), pg.MakeStrNode(t.Column)}, -1)
	star := pg.MakeColumnRefNode([]*pg.Node{pg.MakeAStarNode()}, -1)
	sel := &pg.SelectStmt{TargetList: []*pg.Node{pg.MakeResTargetNodeWithVal(star, -1)},
		FromClause: []*pg.Node{{Node: &pg.Node_RangeVar{RangeVar: inner}}}, WhereClause: pin, Op: pg.SetOperation_SETOP_NONE}
	return &pg.Node{Node: &pg.Node_RangeSubselect{RangeSubselect: &pg.RangeSubselect{
		Subquery: &pg.Node{Node: &pg.Node_SelectStmt{SelectStmt: sel}}, Alias: alias}}}
}

// andInto adds pin as a conjunct of *where.
func andInto(where **pg.Node, pin *pg.Node) {
	switch {
	case *where == nil:
		*where = pin
	case (*where).GetBoolExpr() != nil && (*where).GetBoolExpr().Boolop == pg.BoolExprType_AND_EXPR:
		b := (*where).GetBoolExpr()
		b.Args = append(b.Args, pin)
	default:
		*where = pg.MakeBoolExprNode(pg.BoolExprType_AND_EXPR, []*pg.Node{*where, pin}, -1)
	}
}

// conjuncts flattens the top-level ANDs of e.
func conjuncts(e *pg.Node) []*pg.Node {
	if e == nil {
		return nil
	}
	if b := e.GetBoolExpr(); b != nil && b.Boolop == pg.BoolExprType_AND_EXPR {
		var out []*pg.Node
		for _, a := range b.Args {
			out = append(out, conjuncts(a)...)
		}
		return out
	}
	return []*pg.Node{e}
}

// blockConjuncts are the WHERE conjuncts and those of every ON in the FROM
// list: a relation compared by its tenant column in any of them is left to
// the policy (over-inclusion only means fewer rewrites, never a lost pin).
func blockConjuncts(where *pg.Node, from []*pg.Node) []*pg.Node {
	out := conjuncts(where)
	var walk func(n *pg.Node)
	walk = func(n *pg.Node) {
		if j := n.GetJoinExpr(); j != nil {
			out = append(out, conjuncts(j.Quals)...)
			walk(j.Larg)
			walk(j.Rarg)
		}
	}
	for _, f := range from {
		walk(f)
	}
	return out
}

// pinish reports whether a conjunct compares ref's tenant column (bare or
// qualified, casts allowed) with an expression that reads no column, with
// =, IN, = ANY or IS NOT DISTINCT FROM, or is an OR of such comparisons.
func pinish(conj []*pg.Node, ref, col string) bool {
	for _, c := range conj {
		if pinishExpr(c, ref, col) {
			return true
		}
	}
	return false
}

func pinishExpr(e *pg.Node, ref, col string) bool {
	if b := e.GetBoolExpr(); b != nil {
		switch b.Boolop {
		case pg.BoolExprType_OR_EXPR:
			for _, a := range b.Args {
				if !pinishExpr(a, ref, col) {
					return false
				}
			}
			return len(b.Args) > 0
		case pg.BoolExprType_AND_EXPR:
			return pinish(b.Args, ref, col)
		}
		return false
	}
	x := e.GetAExpr()
	if x == nil {
		return false
	}
	switch x.Kind {
	case pg.A_Expr_Kind_AEXPR_OP, pg.A_Expr_Kind_AEXPR_OP_ANY, pg.A_Expr_Kind_AEXPR_NOT_DISTINCT, pg.A_Expr_Kind_AEXPR_IN:
	default:
		return false
	}
	if x.Kind != pg.A_Expr_Kind_AEXPR_NOT_DISTINCT && (len(x.Name) != 1 || x.Name[0].GetString_().GetSval() != "=") {
		return false
	}
	if isTenantCol(x.Lexpr, ref, col) && !computed(x.Rexpr) {
		return true
	}
	return x.Kind != pg.A_Expr_Kind_AEXPR_IN && x.Kind != pg.A_Expr_Kind_AEXPR_OP_ANY &&
		isTenantCol(x.Rexpr, ref, col) && !computed(x.Lexpr)
}

// computed reports whether e reads a column or runs a subquery: its value is
// not one the statement shows, so the comparison is no pin to judge.
func computed(e *pg.Node) bool {
	return readsColumn(e)
}

func isTenantCol(e *pg.Node, ref, col string) bool {
	for e != nil {
		switch {
		case e.GetTypeCast() != nil:
			e = e.GetTypeCast().Arg
		case e.GetCollateClause() != nil:
			e = e.GetCollateClause().Arg
		default:
			cr := e.GetColumnRef()
			if cr == nil || len(cr.Fields) == 0 {
				return false
			}
			f := cr.Fields
			if f[len(f)-1].GetString_().GetSval() != col {
				return false
			}
			return len(f) == 1 || f[len(f)-2].GetString_().GetSval() == ref
		}
	}
	return false
}

// readsColumn reports whether a column reference or a subquery occurs in e.
func readsColumn(e *pg.Node) bool {
	if e == nil {
		return false
	}
	found := false
	var visit func(m protoreflect.Message)
	visit = func(m protoreflect.Message) {
		if found {
			return
		}
		switch m.Interface().(type) {
		case *pg.ColumnRef, *pg.SubLink:
			found = true
			return
		}
		m.Range(func(fd protoreflect.FieldDescriptor, v protoreflect.Value) bool {
			switch {
			case fd.IsList() && fd.Message() != nil:
				l := v.List()
				for i := 0; i < l.Len(); i++ {
					visit(l.Get(i).Message())
				}
			case fd.Message() != nil && !fd.IsMap():
				visit(v.Message())
			}
			return !found
		})
	}
	visit(e.ProtoReflect())
	return found
}

// exprs rewrites the subqueries inside expressions (and lists of them).
func (r *rewriter) exprs(sc *cteScope, xs ...any) {
	for _, x := range xs {
		switch v := x.(type) {
		case *pg.Node:
			if v != nil {
				r.visit(v.ProtoReflect(), sc)
			}
		case []*pg.Node:
			for _, n := range v {
				if n != nil {
					r.visit(n.ProtoReflect(), sc)
				}
			}
		}
	}
}

func (r *rewriter) visit(m protoreflect.Message, sc *cteScope) {
	switch x := m.Interface().(type) {
	case *pg.SubLink:
		r.exprs(sc, x.Testexpr)
		r.stmt(x.Subselect, sc)
		return
	case *pg.SelectStmt:
		r.selectStmt(x, sc)
		return
	}
	m.Range(func(fd protoreflect.FieldDescriptor, v protoreflect.Value) bool {
		switch {
		case fd.IsList() && fd.Message() != nil:
			l := v.List()
			for i := 0; i < l.Len(); i++ {
				r.visit(l.Get(i).Message(), sc)
			}
		case fd.Message() != nil && !fd.IsMap():
			r.visit(v.Message(), sc)
		}
		return true
	})
}

// ParamRefs returns the $n numbers of every parameter reference in sql, in
// tree order (for checking that a rewrite keeps the parameters).
func (p *Parser) ParamRefs(sql string) ([]int, error) {
	if _, err := p.Guard(sql); err != nil {
		return nil, err
	}
	p.sem <- struct{}{}
	tree, err := pg.Parse(sql)
	<-p.sem
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrSyntax, err)
	}
	var out []int
	var visit func(m protoreflect.Message)
	visit = func(m protoreflect.Message) {
		if pr, ok := m.Interface().(*pg.ParamRef); ok {
			out = append(out, int(pr.Number))
			return
		}
		m.Range(func(fd protoreflect.FieldDescriptor, v protoreflect.Value) bool {
			switch {
			case fd.IsList() && fd.Message() != nil:
				l := v.List()
				for i := 0; i < l.Len(); i++ {
					visit(l.Get(i).Message())
				}
			case fd.Message() != nil && !fd.IsMap():
				visit(v.Message())
			}
			return true
		})
	}
	visit(tree.ProtoReflect())
	return out, nil
}
