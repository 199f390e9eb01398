package parser

import (
	"fmt"
	"strconv"
	"strings"

	pg "github.com/pganalyze/pg_query_go/v6"
	"google.golang.org/protobuf/proto"
)

// walker turns one statement's tree into a Statement summary.
type walker struct {
	st   *Statement
	ctes []map[string]cteInfo // visible WITH names, innermost last
	// onScope is set while walking a JOIN ON condition: its column
	// references see only the join's two sides.
	onScope  []*FromItem
	onScoped bool
}

type cteInfo struct {
	block   int
	cols    []string
	aliases []string
}

// summarize walks one RawStmt.Stmt. It never panics: an unexpected shape is
// reported as an unknown node.
func summarize(n *pg.Node) (st *Statement) {
	w := &walker{st: &Statement{}}
	defer func() {
		if r := recover(); r != nil {
			st = &Statement{Kind: KindOther, Node: "walker-panic", Unknown: []string{fmt.Sprint("walker: ", r)}}
		}
	}()
	w.stmt(n)
	return w.st
}

// nodeMsg unwraps a pg.Node's oneof into the concrete message.
func nodeMsg(n *pg.Node) proto.Message {
	if n == nil {
		return nil
	}
	m := n.ProtoReflect()
	od := m.Descriptor().Oneofs().Get(0)
	fd := m.WhichOneof(od)
	if fd == nil {
		return nil
	}
	return m.Get(fd).Message().Interface()
}

func msgName(m proto.Message) string {
	if m == nil {
		return "nil"
	}
	return string(m.ProtoReflect().Descriptor().Name())
}

func (w *walker) unknown(what string) { w.st.Unknown = append(w.st.Unknown, what) }

func (w *walker) newBlock(parent int, role string) int {
	w.st.Blocks = append(w.st.Blocks, &Block{Parent: parent, Role: role})
	return len(w.st.Blocks) - 1
}

// scoped runs fn and gives every block it created directly under parent
// (not yet scoped by a nested call) the visible items scope.
func (w *walker) scoped(parent int, scope []*FromItem, fn func()) {
	start := len(w.st.Blocks)
	fn()
	for i := start; i < len(w.st.Blocks); i++ {
		if bl := w.st.Blocks[i]; bl.Parent == parent && !bl.Scoped {
			bl.Scoped, bl.Scope = true, scope
		}
	}
}

// visible returns a copy of the items visible to a lateral reference.
func visible(items []*FromItem, more ...*FromItem) []*FromItem {
	out := make([]*FromItem, 0, len(items)+len(more))
	out = append(out, items...)
	return append(out, more...)
}

func (w *walker) stmt(n *pg.Node) {
	st := w.st
	m := nodeMsg(n)
	st.Node = msgName(m)
	switch x := m.(type) {
	case *pg.SelectStmt:
		st.Kind = KindSelect
		w.selectStmt(x, -1, "select")
	case *pg.InsertStmt, *pg.UpdateStmt, *pg.DeleteStmt, *pg.MergeStmt:
		st.Kind = map[string]Kind{"InsertStmt": KindInsert, "UpdateStmt": KindUpdate, "DeleteStmt": KindDelete, "MergeStmt": KindMerge}[st.Node]
		w.query(n, -1, "dml")
	case *pg.CopyStmt:
		st.Kind = KindCopy
		ci := &CopyInfo{From: x.IsFrom, File: x.Filename != "", Program: x.IsProgram}
		if x.Relation != nil {
			r := relFromRangeVar(x.Relation)
			ci.Rel = &r
		}
		if x.Query != nil {
			ci.Query = true
			w.query(x.Query, -1, "copy")
		}
		if x.WhereClause != nil {
			b := w.newBlock(-1, "copy")
			w.expr(x.WhereClause, b)
		}
		st.Copy = ci
	case *pg.ExplainStmt:
		st.Kind = KindExplain
		for _, o := range x.Options {
			if d, ok := nodeMsg(o).(*pg.DefElem); ok && strings.EqualFold(d.Defname, "analyze") {
				st.Analyze = !defFalse(d.Arg)
			}
		}
		st.Inner = summarize(x.Query)
	case *pg.DeclareCursorStmt:
		st.Kind = KindDeclareCursor
		st.Name = x.Portalname
		st.Hold = x.Options&cursorOptHold != 0
		st.Inner = summarize(x.Query)
	case *pg.FetchStmt:
		st.Kind = KindFetch
	case *pg.ClosePortalStmt:
		st.Kind = KindClosePortal
	case *pg.PrepareStmt:
		st.Kind = KindPrepare
		st.Name = x.Name
		for _, t := range x.Argtypes {
			if tn, ok := nodeMsg(t).(*pg.TypeName); ok {
				q := w.typeName(tn)
				st.ParamTypes = append(st.ParamTypes, q.Name)
			} else {
				st.ParamTypes = append(st.ParamTypes, "?")
			}
		}
		st.Inner = summarize(x.Query)
	case *pg.ExecuteStmt:
		st.Kind = KindExecute
		st.Name = x.Name
		b := w.newBlock(-1, "execute")
		for _, p := range x.Params {
			st.ExecArgs = append(st.ExecArgs, w.value(p))
			w.expr(p, b)
		}
	case *pg.DeallocateStmt:
		st.Kind = KindDeallocate
		st.Name = x.Name
		st.All = x.Isall
	case *pg.TransactionStmt:
		st.Kind = KindTransaction
		st.Txn = map[pg.TransactionStmtKind]string{
			pg.TransactionStmtKind_TRANS_STMT_BEGIN: "begin", pg.TransactionStmtKind_TRANS_STMT_START: "begin",
			pg.TransactionStmtKind_TRANS_STMT_COMMIT: "commit", pg.TransactionStmtKind_TRANS_STMT_ROLLBACK: "rollback",
			pg.TransactionStmtKind_TRANS_STMT_SAVEPOINT: "savepoint", pg.TransactionStmtKind_TRANS_STMT_RELEASE: "release",
			pg.TransactionStmtKind_TRANS_STMT_ROLLBACK_TO: "rollback_to", pg.TransactionStmtKind_TRANS_STMT_PREPARE: "prepare",
			pg.TransactionStmtKind_TRANS_STMT_COMMIT_PREPARED:   "commit_prepared",
			pg.TransactionStmtKind_TRANS_STMT_ROLLBACK_PREPARED: "rollback_prepared",
		}[x.Kind]
		st.ReadWrite = readWriteOption(x.Options)
	case *pg.VariableSetStmt:
		st.Kind = KindSet
		st.Set = w.setInfo(x)
		if x.Kind == pg.VariableSetKind_VAR_SET_MULTI {
			st.ReadWrite = readWriteOption(x.Args) // SET TRANSACTION / SESSION CHARACTERISTICS
		}
	case *pg.VariableShowStmt:
		st.Kind = KindShow
		st.Name = x.Name
	case *pg.DiscardStmt:
		st.Kind = KindDiscard
		st.Discard = map[pg.DiscardMode]string{pg.DiscardMode_DISCARD_ALL: "all", pg.DiscardMode_DISCARD_PLANS: "plans",
			pg.DiscardMode_DISCARD_SEQUENCES: "sequences", pg.DiscardMode_DISCARD_TEMP: "temp"}[x.Target]
		st.All = x.Target == pg.DiscardMode_DISCARD_ALL
	case *pg.ListenStmt:
		st.Kind = KindListen
		st.Name = x.Conditionname
	case *pg.UnlistenStmt:
		st.Kind = KindUnlisten
		st.Name = x.Conditionname
	case *pg.NotifyStmt:
		st.Kind = KindNotify
		st.Name = x.Conditionname
	default:
		st.Kind = KindOther
	}
}

// readWriteOption reports whether transaction options ask for READ WRITE:
// a transaction_read_only option whose value is not the integer 1.
func readWriteOption(opts []*pg.Node) bool {
	for _, o := range opts {
		d, ok := nodeMsg(o).(*pg.DefElem)
		if !ok || d.Defname != "transaction_read_only" {
			continue
		}
		c, ok := nodeMsg(d.Arg).(*pg.A_Const)
		if !ok || c.GetIval() == nil || c.GetIval().Ival != 1 {
			return true
		}
	}
	return false
}

// cursorOptHold is PostgreSQL's CURSOR_OPT_HOLD (parsenodes.h): WITH HOLD.
const cursorOptHold = 0x0020

func (w *walker) setInfo(x *pg.VariableSetStmt) *SetInfo {
	si := &SetInfo{Name: strings.ToLower(x.Name), Local: x.IsLocal, ArgsOK: true}
	si.Kind = map[pg.VariableSetKind]string{
		pg.VariableSetKind_VAR_SET_VALUE: "value", pg.VariableSetKind_VAR_SET_DEFAULT: "default",
		pg.VariableSetKind_VAR_SET_CURRENT: "current", pg.VariableSetKind_VAR_SET_MULTI: "multi",
		pg.VariableSetKind_VAR_RESET: "reset", pg.VariableSetKind_VAR_RESET_ALL: "reset_all",
	}[x.Kind]
	for _, a := range x.Args {
		v := w.value(a)
		if v.Kind != ValConst || len(v.Casts) > 0 {
			si.ArgsOK = false
			continue
		}
		w.st.Fixed = append(w.st.Fixed, v.Loc)
		si.Args = append(si.Args, v.Text)
	}
	return si
}

// query walks a SELECT or DML node as a block (CTE bodies, COPY queries) and
// returns its first block and output columns.
func (w *walker) query(n *pg.Node, parent int, role string) (int, []string) {
	switch x := nodeMsg(n).(type) {
	case *pg.SelectStmt:
		arms, cols := w.selectStmt(x, parent, role)
		if len(arms) == 0 {
			return -1, cols
		}
		return arms[0], cols
	case *pg.InsertStmt:
		return w.insertStmt(x, parent, role)
	case *pg.UpdateStmt:
		return w.updateStmt(x, parent, role)
	case *pg.DeleteStmt:
		return w.deleteStmt(x, parent, role)
	case *pg.MergeStmt:
		return w.mergeStmt(x, parent, role)
	default:
		w.unknown("query:" + msgName(x))
		return -1, nil
	}
}

// withClause walks every CTE body and pushes the WITH names; call the
// returned func to pop them.
func (w *walker) withClause(wc *pg.WithClause) func() {
	if wc == nil {
		return func() {}
	}
	scope := map[string]cteInfo{}
	w.ctes = append(w.ctes, scope)
	var ctes []*pg.CommonTableExpr
	for _, c := range wc.Ctes {
		cte, ok := nodeMsg(c).(*pg.CommonTableExpr)
		if !ok {
			w.unknown("with:" + msgName(nodeMsg(c)))
			continue
		}
		ctes = append(ctes, cte)
		if wc.Recursive {
			scope[cte.Ctename] = cteInfo{block: -1, cols: strs(cte.Aliascolnames)}
		}
	}
	for _, cte := range ctes {
		b, cols := w.query(cte.Ctequery, -1, "cte")
		if ac := strs(cte.Aliascolnames); len(ac) > 0 {
			cols = overlayCols(ac, cols)
		}
		scope[cte.Ctename] = cteInfo{block: b, cols: cols, aliases: strs(cte.Aliascolnames)}
	}
	return func() { w.ctes = w.ctes[:len(w.ctes)-1] }
}

func overlayCols(alias, cols []string) []string {
	if cols == nil {
		if len(alias) == 0 {
			return nil
		}
		return nil // unknown width: remaining columns unknown
	}
	out := append([]string(nil), cols...)
	for i, a := range alias {
		if i < len(out) {
			out[i] = a
		}
	}
	return out
}

func (w *walker) lookupCTE(name string) (cteInfo, bool) {
	for i := len(w.ctes) - 1; i >= 0; i-- {
		if c, ok := w.ctes[i][name]; ok {
			return c, true
		}
	}
	return cteInfo{}, false
}

// selectStmt walks a SELECT (or set operation) and returns its leaf blocks
// and output column names (nil when not derivable).
func (w *walker) selectStmt(s *pg.SelectStmt, parent int, role string) ([]int, []string) {
	if s == nil {
		return nil, nil
	}
	if s.IntoClause != nil {
		w.st.Into = true
	}
	if len(s.LockingClause) > 0 {
		w.st.Locking = true
	}
	pop := w.withClause(s.WithClause)
	defer pop()
	if s.Op != pg.SetOperation_SETOP_NONE && s.Op != pg.SetOperation_SET_OPERATION_UNDEFINED {
		host := w.newBlock(parent, "setop")
		la, lc := w.selectStmt(s.Larg, parent, "setop")
		ra, _ := w.selectStmt(s.Rarg, parent, "setop")
		w.exprs(s.SortClause, host)
		w.expr(s.LimitOffset, host)
		w.expr(s.LimitCount, host)
		return append(la, ra...), lc
	}
	b := w.newBlock(parent, role)
	blk := w.st.Blocks[b]
	if len(s.ValuesLists) > 0 {
		blk.Role = "values"
		width := 0
		for _, row := range s.ValuesLists {
			var exprs []Expr
			if l, ok := nodeMsg(row).(*pg.List); ok {
				for _, it := range l.Items {
					exprs = append(exprs, w.exprOf(it))
					w.expr(it, b)
				}
			} else {
				w.unknown("values:" + msgName(nodeMsg(row)))
			}
			width = len(exprs)
			blk.Values = append(blk.Values, exprs)
		}
		for i := 1; i <= width; i++ {
			blk.OutCols = append(blk.OutCols, "column"+strconv.Itoa(i))
		}
	}
	for _, f := range s.FromClause {
		blk.From = append(blk.From, w.fromItem(f, b, visible(blk.From)))
	}
	if s.WhereClause != nil {
		blk.Where = w.preds(s.WhereClause)
		w.expr(s.WhereClause, b)
	}
	cols := []string{}
	for _, t := range s.TargetList {
		rt, ok := nodeMsg(t).(*pg.ResTarget)
		if !ok {
			w.unknown("target:" + msgName(nodeMsg(t)))
			continue
		}
		tn := rt.Name
		if isStar(rt.Val) {
			blk.Star = true
			cols = nil
			tn = starName(rt.Val)
		} else if tn == "" {
			tn = figureColname(rt.Val)
		}
		blk.TargetNames = append(blk.TargetNames, tn)
		blk.Targets = append(blk.Targets, w.exprOf(rt.Val))
		if cols != nil {
			name := rt.Name
			if name == "" {
				name = figureColname(rt.Val)
			}
			if name == "" {
				cols = nil
			} else {
				cols = append(cols, name)
			}
		}
		w.expr(rt.Val, b)
	}
	if len(s.ValuesLists) == 0 {
		blk.OutCols = cols
	}
	w.exprs(s.DistinctClause, b)
	w.exprs(s.GroupClause, b)
	w.expr(s.HavingClause, b)
	w.exprs(s.WindowClause, b)
	w.exprs(s.SortClause, b)
	w.expr(s.LimitOffset, b)
	w.expr(s.LimitCount, b)
	for _, l := range s.LockingClause {
		lc, ok := nodeMsg(l).(*pg.LockingClause)
		if !ok {
			w.unknown("locking:" + msgName(nodeMsg(l)))
			continue
		}
		blk.Locking = true
		for _, r := range lc.LockedRels {
			if rv, ok := nodeMsg(r).(*pg.RangeVar); ok {
				blk.LockRels = append(blk.LockRels, rv.Relname)
			} else {
				w.unknown("locked-rel")
			}
		}
		if len(lc.LockedRels) == 0 {
			blk.LockRels = nil
			break // every relation
		}
	}
	return []int{b}, blk.OutCols
}

// starName renders a star target as "*" or "qualifier.*" ("" when odd).
func starName(n *pg.Node) string {
	cr, ok := nodeMsg(n).(*pg.ColumnRef)
	if !ok || len(cr.Fields) == 0 {
		return ""
	}
	if _, ok := nodeMsg(cr.Fields[len(cr.Fields)-1]).(*pg.A_Star); !ok {
		return ""
	}
	parts := strs(cr.Fields[:len(cr.Fields)-1])
	return strings.Join(append(parts, "*"), ".")
}

func isStar(n *pg.Node) bool {
	cr, ok := nodeMsg(n).(*pg.ColumnRef)
	if !ok {
		return false
	}
	for _, f := range cr.Fields {
		if _, ok := nodeMsg(f).(*pg.A_Star); ok {
			return true
		}
	}
	return false
}

// figureColname mirrors PostgreSQL's FigureColname for the common forms; ""
// means "not derivable here".
func figureColname(n *pg.Node) string {
	switch x := nodeMsg(n).(type) {
	case *pg.ColumnRef:
		if len(x.Fields) > 0 {
			if s, ok := nodeMsg(x.Fields[len(x.Fields)-1]).(*pg.String); ok {
				return s.Sval
			}
		}
	case *pg.FuncCall:
		if len(x.Funcname) > 0 {
			if s, ok := nodeMsg(x.Funcname[len(x.Funcname)-1]).(*pg.String); ok {
				return s.Sval
			}
		}
	case *pg.TypeCast:
		if name := figureColname(x.Arg); name != "" && name != "?column?" {
			return name
		}
		if x.TypeName != nil && len(x.TypeName.Names) > 0 {
			if s, ok := nodeMsg(x.TypeName.Names[len(x.TypeName.Names)-1]).(*pg.String); ok {
				return s.Sval
			}
		}
	case *pg.A_Const, *pg.A_Expr, *pg.BoolExpr, *pg.ParamRef, *pg.NullTest, *pg.BooleanTest:
		return "?column?"
	case *pg.CaseExpr:
		return "case"
	case *pg.A_ArrayExpr:
		return "array"
	case *pg.RowExpr:
		return "row"
	case *pg.CoalesceExpr:
		return "coalesce"
	}
	return ""
}

func relFromRangeVar(rv *pg.RangeVar) Rel {
	r := Rel{Kind: RelTable, Catalog: rv.Catalogname, Schema: rv.Schemaname, Name: rv.Relname, Block: -1, Loc: int(rv.Location)}
	if rv.Alias != nil {
		r.Alias = rv.Alias.Aliasname
		r.ColAliases = strs(rv.Alias.Colnames)
	}
	return r
}

func (w *walker) addRel(b int, r Rel) *FromItem {
	blk := w.st.Blocks[b]
	blk.Rels = append(blk.Rels, r)
	return &FromItem{Rel: len(blk.Rels) - 1}
}

// fromItem walks one FROM entry of block b; vis are the items a LATERAL
// reference from it may see.
func (w *walker) fromItem(n *pg.Node, b int, vis []*FromItem) *FromItem {
	blk := w.st.Blocks[b]
	switch x := nodeMsg(n).(type) {
	case *pg.RangeVar:
		r := relFromRangeVar(x)
		if x.Schemaname == "" && x.Catalogname == "" {
			if c, ok := w.lookupCTE(x.Relname); ok {
				r.Kind = RelCTE
				r.Block = c.block
				r.Cols = c.cols
				r.DefAliases = c.aliases
				if len(r.ColAliases) > 0 {
					r.Cols = overlayCols(r.ColAliases, r.Cols)
				}
			}
		}
		return w.addRel(b, r)
	case *pg.RangeSubselect:
		parent := blk.Parent
		if x.Lateral {
			parent = b
		}
		sel, ok := nodeMsg(x.Subquery).(*pg.SelectStmt)
		if !ok {
			w.unknown("subselect:" + msgName(nodeMsg(x.Subquery)))
			return w.addRel(b, Rel{Kind: RelSubquery, Block: -1})
		}
		var arms []int
		var cols []string
		walk := func() { arms, cols = w.selectStmt(sel, parent, "from") }
		switch {
		case x.Lateral:
			w.scoped(b, vis, walk)
		case blk.Scoped:
			// a plain subquery skips this level: it sees what this block sees
			w.scoped(parent, blk.Scope, walk)
		default:
			walk()
		}
		r := Rel{Kind: RelSubquery, Block: -1, Cols: cols}
		if len(arms) > 0 {
			r.Block = arms[0]
		}
		if x.Alias != nil {
			r.Alias = x.Alias.Aliasname
			r.ColAliases = strs(x.Alias.Colnames)
			if len(r.ColAliases) > 0 {
				r.Cols = overlayCols(r.ColAliases, cols)
			}
		}
		return w.addRel(b, r)
	case *pg.RangeFunction:
		r := Rel{Kind: RelFunction, Block: -1}
		var names []string
		for _, f := range x.Functions {
			l, ok := nodeMsg(f).(*pg.List)
			if !ok || len(l.Items) == 0 {
				w.unknown("rangefunction")
				continue
			}
			if fc, ok := nodeMsg(l.Items[0]).(*pg.FuncCall); ok {
				q := qname(fc.Funcname)
				names = append(names, q.Name)
			}
			// a function in FROM is implicitly LATERAL
			w.scoped(b, vis, func() {
				for _, it := range l.Items {
					w.expr(it, b)
				}
			})
		}
		if len(names) == 1 {
			r.Name = names[0]
		}
		if x.Alias != nil {
			r.Alias = x.Alias.Aliasname
			r.ColAliases = strs(x.Alias.Colnames)
		}
		switch {
		case len(r.ColAliases) > 0 && len(x.Coldeflist) == 0 && len(names) == 1 && scalarSRF[r.Name]:
			r.Cols = r.ColAliases[:1]
		case len(x.Coldeflist) > 0:
			for _, cd := range x.Coldeflist {
				if c, ok := nodeMsg(cd).(*pg.ColumnDef); ok {
					r.Cols = append(r.Cols, c.Colname)
				}
				w.msg(nodeMsg(cd), b)
			}
		case len(names) == 1 && scalarSRF[r.Name]:
			if r.Alias != "" {
				r.Cols = []string{r.Alias}
			} else {
				r.Cols = []string{r.Name}
			}
		}
		if r.Cols != nil && x.Ordinality {
			r.Cols = append(r.Cols, "ordinality")
		}
		return w.addRel(b, r)
	case *pg.JoinExpr:
		j := &FromItem{Rel: -1, Natural: x.IsNatural}
		j.Left = w.fromItem(x.Larg, b, vis)
		// the right side may LATERAL-reference the left (an error for RIGHT
		// and FULL joins, which never runs)
		j.Right = w.fromItem(x.Rarg, b, visible(vis, j.Left))
		switch x.Jointype {
		case pg.JoinType_JOIN_INNER:
			j.Join = JoinInner
		case pg.JoinType_JOIN_LEFT:
			j.Join = JoinLeft
		case pg.JoinType_JOIN_RIGHT:
			j.Join = JoinRight
		case pg.JoinType_JOIN_FULL:
			j.Join = JoinFull
		default:
			w.unknown("join:" + x.Jointype.String())
			j.Join = JoinFull
		}
		j.Using = strs(x.UsingClause)
		if x.Quals != nil {
			j.Quals = w.preds(x.Quals)
			// ON sees only the join's two sides (and outer query levels)
			sides := []*FromItem{j.Left, j.Right}
			saved, savedOK := w.onScope, w.onScoped
			w.onScope, w.onScoped = sides, true
			w.scoped(b, sides, func() { w.expr(x.Quals, b) })
			w.onScope, w.onScoped = saved, savedOK
		}
		if x.Alias != nil {
			j.Alias = x.Alias.Aliasname
			if len(x.Alias.Colnames) > 0 {
				w.unknown("join-alias-columns")
			}
		}
		if x.JoinUsingAlias != nil {
			j.UsingAlias = x.JoinUsingAlias.Aliasname
		}
		return j
	case *pg.RangeTableSample:
		it := w.fromItem(x.Relation, b, vis)
		w.scoped(b, vis, func() {
			w.exprs(x.Args, b)
			w.expr(x.Repeatable, b)
			for _, m := range x.Method {
				w.expr(m, b)
			}
		})
		return it
	default:
		w.unknown("from:" + msgName(x))
		return w.addRel(b, Rel{Kind: RelFunction, Name: "?", Block: -1})
	}
}

// scalarSRF are set-returning functions in FROM whose single output column is
// named after the alias (or the function).
var scalarSRF = map[string]bool{"generate_series": true, "unnest": true, "generate_subscripts": true}

func (w *walker) returning(list []*pg.Node, b int) {
	for _, t := range list {
		if rt, ok := nodeMsg(t).(*pg.ResTarget); ok {
			w.expr(rt.Val, b)
		} else {
			w.expr(t, b)
		}
	}
}

func returningCols(list []*pg.Node) []string {
	var cols []string
	for _, t := range list {
		rt, ok := nodeMsg(t).(*pg.ResTarget)
		if !ok || isStar(rt.Val) {
			return nil
		}
		name := rt.Name
		if name == "" {
			name = figureColname(rt.Val)
		}
		if name == "" {
			return nil
		}
		cols = append(cols, name)
	}
	return cols
}

func (w *walker) insertStmt(x *pg.InsertStmt, parent int, role string) (int, []string) {
	pop := w.withClause(x.WithClause)
	defer pop()
	b := w.newBlock(parent, "insert")
	blk := w.st.Blocks[b]
	d := &DML{Kind: KindInsert}
	blk.DML = d
	target := relFromRangeVar(x.Relation)
	target.Target = true
	blk.From = append(blk.From, w.addRel(b, target))
	if x.Cols != nil {
		d.Cols = []string{}
		for _, c := range x.Cols {
			rt, ok := nodeMsg(c).(*pg.ResTarget)
			if !ok {
				w.unknown("insert-col")
				continue
			}
			d.Cols = append(d.Cols, rt.Name)
			d.Indirect = append(d.Indirect, len(rt.Indirection) > 0)
			w.exprs(rt.Indirection, b)
		}
	}
	if x.SelectStmt == nil {
		d.DefaultValues = true
	} else if sel, ok := nodeMsg(x.SelectStmt).(*pg.SelectStmt); ok {
		arms, _ := w.selectStmt(sel, -1, "source")
		d.Arms = arms
	} else {
		d.SourceOther = true
		w.unknown("insert-source:" + msgName(nodeMsg(x.SelectStmt)))
	}
	if oc := x.OnConflictClause; oc != nil {
		c := &Conflict{Update: oc.Action == pg.OnConflictAction_ONCONFLICT_UPDATE}
		if oc.Action != pg.OnConflictAction_ONCONFLICT_UPDATE && oc.Action != pg.OnConflictAction_ONCONFLICT_NOTHING {
			w.unknown("on-conflict:" + oc.Action.String())
		}
		blk.From = append(blk.From, w.addRel(b, Rel{Kind: RelExcluded, Name: "excluded", Block: -1, QualifiedOnly: true}))
		if oc.Infer != nil {
			c.Constraint = oc.Infer.Conname
			for _, e := range oc.Infer.IndexElems {
				ie, ok := nodeMsg(e).(*pg.IndexElem)
				if !ok {
					w.unknown("infer")
					continue
				}
				c.Infer = append(c.Infer, ie.Name) // "" for an expression
				w.expr(ie.Expr, b)
			}
			w.expr(oc.Infer.WhereClause, b)
		}
		c.Set = w.setTargets(oc.TargetList, b)
		if oc.WhereClause != nil {
			c.Where = w.preds(oc.WhereClause)
			w.expr(oc.WhereClause, b)
		}
		d.Conflict = c
	}
	// RETURNING sees the target only: EXCLUDED is visible to ON CONFLICT alone
	target0 := []*FromItem{blk.From[0]}
	saved, savedOK := w.onScope, w.onScoped
	w.onScope, w.onScoped = target0, true
	w.scoped(b, target0, func() { w.returning(x.ReturningList, b) })
	w.onScope, w.onScoped = saved, savedOK
	return b, returningCols(x.ReturningList)
}

func (w *walker) setTargets(list []*pg.Node, b int) []SetTarget {
	var out []SetTarget
	for _, t := range list {
		rt, ok := nodeMsg(t).(*pg.ResTarget)
		if !ok {
			w.unknown("set-target")
			continue
		}
		st := SetTarget{Col: rt.Name, Indirect: len(rt.Indirection) > 0}
		w.exprs(rt.Indirection, b) // subscripts may hold sublinks
		if mar, ok := nodeMsg(rt.Val).(*pg.MultiAssignRef); ok {
			st.Val = Expr{Kind: "other"}
			if row, ok := nodeMsg(mar.Source).(*pg.RowExpr); ok && int(mar.Colno) >= 1 && int(mar.Colno) <= len(row.Args) {
				st.Val = w.exprOf(row.Args[mar.Colno-1])
			}
			if mar.Colno == 1 {
				w.expr(mar.Source, b)
			}
		} else {
			st.Val = w.exprOf(rt.Val)
			w.expr(rt.Val, b)
		}
		out = append(out, st)
	}
	return out
}

func (w *walker) updateStmt(x *pg.UpdateStmt, parent int, role string) (int, []string) {
	pop := w.withClause(x.WithClause)
	defer pop()
	b := w.newBlock(parent, "update")
	blk := w.st.Blocks[b]
	blk.DML = &DML{Kind: KindUpdate}
	target := relFromRangeVar(x.Relation)
	target.Target = true
	blk.From = append(blk.From, w.addRel(b, target))
	for _, f := range x.FromClause {
		blk.From = append(blk.From, w.fromItem(f, b, visible(blk.From)))
	}
	blk.DML.Set = w.setTargets(x.TargetList, b)
	if x.WhereClause != nil {
		blk.Where = w.preds(x.WhereClause)
		w.expr(x.WhereClause, b)
	}
	w.returning(x.ReturningList, b)
	return b, returningCols(x.ReturningList)
}

func (w *walker) deleteStmt(x *pg.DeleteStmt, parent int, role string) (int, []string) {
	pop := w.withClause(x.WithClause)
	defer pop()
	b := w.newBlock(parent, "delete")
	blk := w.st.Blocks[b]
	blk.DML = &DML{Kind: KindDelete}
	target := relFromRangeVar(x.Relation)
	target.Target = true
	blk.From = append(blk.From, w.addRel(b, target))
	for _, f := range x.UsingClause {
		blk.From = append(blk.From, w.fromItem(f, b, visible(blk.From)))
	}
	if x.WhereClause != nil {
		blk.Where = w.preds(x.WhereClause)
		w.expr(x.WhereClause, b)
	}
	w.returning(x.ReturningList, b)
	return b, returningCols(x.ReturningList)
}

func (w *walker) mergeStmt(x *pg.MergeStmt, parent int, role string) (int, []string) {
	pop := w.withClause(x.WithClause)
	defer pop()
	b := w.newBlock(parent, "merge")
	blk := w.st.Blocks[b]
	d := &DML{Kind: KindMerge}
	blk.DML = d
	target := relFromRangeVar(x.Relation)
	target.Target = true
	blk.From = append(blk.From, w.addRel(b, target))
	src := w.fromItem(x.SourceRelation, b, nil) // the target is not visible to the source
	if src.Rel >= 0 {
		blk.Rels[src.Rel].Source = true
	} else {
		w.unknown("merge-source:join")
	}
	blk.From = append(blk.From, src)
	if x.JoinCondition != nil {
		d.On = w.preds(x.JoinCondition)
		w.expr(x.JoinCondition, b)
	}
	for _, wc := range x.MergeWhenClauses {
		mw, ok := nodeMsg(wc).(*pg.MergeWhenClause)
		if !ok {
			w.unknown("merge-when")
			continue
		}
		a := MergeAction{}
		switch mw.MatchKind {
		case pg.MergeMatchKind_MERGE_WHEN_MATCHED:
			a.Match = "matched"
		case pg.MergeMatchKind_MERGE_WHEN_NOT_MATCHED_BY_TARGET:
			a.Match = "not_matched"
		default:
			a.Match = "not_matched_by_source"
		}
		switch mw.CommandType {
		case pg.CmdType_CMD_INSERT:
			a.Cmd = "insert"
			for _, c := range mw.TargetList {
				if rt, ok := nodeMsg(c).(*pg.ResTarget); ok {
					name := rt.Name
					if len(rt.Indirection) > 0 {
						name += "[]"
						w.exprs(rt.Indirection, b)
					}
					a.Cols = append(a.Cols, name)
				}
			}
			for _, v := range mw.Values {
				a.Values = append(a.Values, w.exprOf(v))
				w.expr(v, b)
			}
		case pg.CmdType_CMD_UPDATE:
			a.Cmd = "update"
			a.Set = w.setTargets(mw.TargetList, b)
		case pg.CmdType_CMD_DELETE:
			a.Cmd = "delete"
		case pg.CmdType_CMD_NOTHING:
			a.Cmd = "nothing"
		default:
			a.Cmd = "?"
			w.unknown("merge-cmd:" + mw.CommandType.String())
		}
		w.expr(mw.Condition, b)
		d.Actions = append(d.Actions, a)
	}
	w.returning(x.ReturningList, b)
	return b, returningCols(x.ReturningList)
}

// defFalse reports whether a boolean option's argument is one PostgreSQL's
// defGetBoolean reads as false (no argument means true; anything it would
// not read counts as true here, to stay on the safe side).
func defFalse(n *pg.Node) bool {
	switch v := nodeMsg(n).(type) {
	case *pg.String:
		switch strings.ToLower(v.Sval) {
		case "false", "off":
			return true
		}
	case *pg.Integer:
		return v.Ival == 0
	case *pg.A_Const:
		switch c := v.Val.(type) {
		case *pg.A_Const_Ival:
			return c.Ival.Ival == 0
		case *pg.A_Const_Sval:
			s := strings.ToLower(c.Sval.Sval)
			return s == "false" || s == "off"
		case *pg.A_Const_Boolval:
			return !c.Boolval.Boolval
		}
	case *pg.Boolean:
		return !v.Boolval
	}
	return false
}

func strs(list []*pg.Node) []string {
	var out []string
	for _, n := range list {
		if s, ok := nodeMsg(n).(*pg.String); ok {
			out = append(out, s.Sval)
		} else {
			out = append(out, "?")
		}
	}
	return out
}

func qname(list []*pg.Node) QName {
	parts := strs(list)
	switch len(parts) {
	case 0:
		return QName{}
	case 1:
		return QName{Name: parts[0]}
	default:
		return QName{Schema: parts[len(parts)-2], Name: parts[len(parts)-1]}
	}
}
