package parser

import (
	"strconv"
	"strings"

	pg "github.com/pganalyze/pg_query_go/v6"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
)

func (w *walker) exprs(list []*pg.Node, b int) {
	for _, n := range list {
		w.expr(n, b)
	}
}

// expr walks an expression of block b: sublinks become blocks, functions,
// operators and types are recorded, and everything else is walked
// generically so that nothing nested is skipped.
func (w *walker) expr(n *pg.Node, b int) {
	if n == nil {
		return
	}
	w.msg(nodeMsg(n), b)
}

func (w *walker) msg(m proto.Message, b int) {
	switch x := m.(type) {
	case nil:
		return
	case *pg.SubLink:
		if len(x.OperName) > 0 {
			w.st.Ops = append(w.st.Ops, qname(x.OperName))
		}
		w.expr(x.Testexpr, b)
		if sel, ok := nodeMsg(x.Subselect).(*pg.SelectStmt); ok {
			saved, savedOK := w.onScope, w.onScoped
			w.onScope, w.onScoped = nil, false
			w.selectStmt(sel, b, "sublink")
			w.onScope, w.onScoped = saved, savedOK
		} else {
			w.unknown("sublink:" + msgName(nodeMsg(x.Subselect)))
		}
	case *pg.FuncCall:
		f := Func{QName: qname(x.Funcname), Loc: int(x.Location)}
		special := isSettingFunc(f.QName)
		for _, a := range x.Args {
			v := w.value(a)
			if special && v.Kind == ValConst {
				w.st.Fixed = append(w.st.Fixed, v.Loc)
			}
			f.Args = append(f.Args, v)
		}
		w.st.Funcs = append(w.st.Funcs, f)
		w.exprs(x.Args, b)
		w.exprs(x.AggOrder, b)
		w.expr(x.AggFilter, b)
		if x.Over != nil {
			w.msg(x.Over, b)
		}
	case *pg.A_Expr:
		if len(x.Name) > 0 {
			w.st.Ops = append(w.st.Ops, qname(x.Name))
		}
		w.expr(x.Lexpr, b)
		w.expr(x.Rexpr, b)
	case *pg.TypeCast:
		if x.TypeName != nil {
			w.typeName(x.TypeName)
		}
		w.expr(x.Arg, b)
	case *pg.TypeName:
		w.typeName(x)
	case *pg.ColumnRef:
		var f []string
		for _, n := range x.Fields {
			switch v := nodeMsg(n).(type) {
			case *pg.String:
				f = append(f, v.Sval)
			default:
				f = append(f, "*")
			}
		}
		w.st.Cols = append(w.st.Cols, ColUse{Block: b, Col: ColRef{Fields: f}, Scoped: w.onScoped, Scope: w.onScope})
	case *pg.ParamRef, *pg.A_Const, *pg.A_Star, *pg.String, *pg.Integer,
		*pg.Float, *pg.Boolean, *pg.BitString, *pg.SQLValueFunction, *pg.SetToDefault:
		return
	case *pg.SortBy:
		if len(x.UseOp) > 0 {
			w.st.Ops = append(w.st.Ops, qname(x.UseOp))
		}
		w.expr(x.Node, b)
	case *pg.CurrentOfExpr:
		w.st.CurrentOf = true
	case *pg.CollateClause:
		w.expr(x.Arg, b)
		if q := qname(x.Collname); q.Schema != "" && q.Schema != "pg_catalog" {
			w.unknown("collation:" + q.Schema + "." + q.Name)
		}
	case *pg.SelectStmt, *pg.InsertStmt, *pg.UpdateStmt, *pg.DeleteStmt, *pg.MergeStmt,
		*pg.RangeVar, *pg.RangeSubselect, *pg.RangeFunction, *pg.JoinExpr, *pg.RangeTableFunc,
		*pg.IntoClause, *pg.WithClause, *pg.CommonTableExpr:
		w.unknown("expr:" + msgName(m))
	default:
		w.generic(m, b)
	}
}

// generic walks every message-typed field of m.
func (w *walker) generic(m proto.Message, b int) {
	m.ProtoReflect().Range(func(fd protoreflect.FieldDescriptor, v protoreflect.Value) bool {
		if fd.Kind() != protoreflect.MessageKind && fd.Kind() != protoreflect.GroupKind {
			return true
		}
		if fd.IsList() {
			l := v.List()
			for i := 0; i < l.Len(); i++ {
				w.child(l.Get(i).Message().Interface(), b)
			}
			return true
		}
		if fd.IsMap() {
			w.unknown("map:" + string(fd.Name()))
			return true
		}
		w.child(v.Message().Interface(), b)
		return true
	})
}

func (w *walker) child(m proto.Message, b int) {
	if n, ok := m.(*pg.Node); ok {
		w.expr(n, b)
		return
	}
	w.msg(m, b)
}

func (w *walker) typeName(t *pg.TypeName) QName {
	q := qname(t.Names)
	if len(t.Names) > 2 {
		w.unknown("type:" + strings.Join(strs(t.Names), "."))
	}
	w.st.Types = append(w.st.Types, q)
	return q
}

func isSettingFunc(q QName) bool {
	if q.Schema != "" && q.Schema != "pg_catalog" {
		return false
	}
	return q.Name == "set_config" || q.Name == "current_setting"
}

// value reduces an expression to a candidate pin value.
func (w *walker) value(n *pg.Node) Value {
	switch x := nodeMsg(n).(type) {
	case *pg.A_Const:
		v := Value{Kind: ValConst, Loc: int(x.Location)}
		if x.Isnull {
			v.ConstKind = "null"
			return v
		}
		switch c := x.Val.(type) {
		case *pg.A_Const_Ival:
			v.ConstKind, v.Text = "int", strconv.FormatInt(int64(c.Ival.Ival), 10)
		case *pg.A_Const_Sval:
			v.ConstKind, v.Text = "string", c.Sval.Sval
		case *pg.A_Const_Fval:
			// integers beyond int4 arrive as Float nodes; PostgreSQL types
			// them bigint (or numeric): they are exact integers either way
			v.ConstKind, v.Text = "float", c.Fval.Fval
			if allDigits(c.Fval.Fval) {
				v.ConstKind = "int"
			}
		case *pg.A_Const_Boolval:
			v.ConstKind, v.Text = "bool", strconv.FormatBool(c.Boolval.Boolval)
		default:
			v.ConstKind = "other"
		}
		return v
	case *pg.ParamRef:
		return Value{Kind: ValParam, Param: int(x.Number), Loc: int(x.Location)}
	case *pg.TypeCast:
		v := w.value(x.Arg)
		if v.Kind == ValOther || x.TypeName == nil {
			return Value{}
		}
		q := qname(x.TypeName.Names)
		name := q.Name
		if q.Schema != "" && q.Schema != "pg_catalog" {
			name = "?"
		}
		if len(x.TypeName.ArrayBounds) > 0 {
			name += "[]"
		}
		v.Casts = append(v.Casts, name)
		return v
	case *pg.FuncCall:
		q := qname(x.Funcname)
		if q.Name != "current_setting" || (q.Schema != "" && q.Schema != "pg_catalog") ||
			len(x.Args) < 1 || len(x.Args) > 2 || x.AggStar || x.AggDistinct || x.Over != nil || x.AggFilter != nil || x.FuncVariadic {
			return Value{}
		}
		name := w.value(x.Args[0])
		if name.Kind != ValConst || name.ConstKind != "string" || len(name.Casts) > 0 {
			return Value{}
		}
		if len(x.Args) == 2 {
			ok := w.value(x.Args[1])
			if ok.Kind != ValConst || ok.ConstKind != "bool" || len(ok.Casts) > 0 {
				return Value{}
			}
		}
		return Value{Kind: ValSetting, Text: name.Text, Loc: name.Loc}
	}
	return Value{}
}

// exprOf reduces a target-list or VALUES expression.
func (w *walker) exprOf(n *pg.Node) Expr {
	switch x := nodeMsg(n).(type) {
	case *pg.ColumnRef:
		if c, ok := colRef(x); ok {
			return Expr{Kind: "column", Col: c}
		}
		return Expr{Kind: "other"}
	case *pg.SetToDefault:
		return Expr{Kind: "default"}
	}
	v := w.value(n)
	if v.Kind == ValOther {
		return Expr{Kind: "other"}
	}
	return Expr{Kind: "value", Val: v}
}

func colRef(c *pg.ColumnRef) (ColRef, bool) {
	var f []string
	for _, n := range c.Fields {
		s, ok := nodeMsg(n).(*pg.String)
		if !ok {
			return ColRef{}, false
		}
		f = append(f, s.Sval)
	}
	return ColRef{Fields: f}, len(f) > 0
}

func asCol(n *pg.Node) (ColRef, bool) {
	if c, ok := nodeMsg(n).(*pg.ColumnRef); ok {
		return colRef(c)
	}
	return ColRef{}, false
}

func isEqOp(name []*pg.Node) bool {
	q := qname(name)
	return q.Name == "=" && (q.Schema == "" || q.Schema == "pg_catalog") && len(name) <= 2
}

// preds flattens a boolean expression into conjuncts.
func (w *walker) preds(n *pg.Node) []Pred {
	switch x := nodeMsg(n).(type) {
	case *pg.BoolExpr:
		switch x.Boolop {
		case pg.BoolExprType_AND_EXPR:
			var out []Pred
			for _, a := range x.Args {
				out = append(out, w.preds(a)...)
			}
			return out
		case pg.BoolExprType_OR_EXPR:
			p := Pred{Kind: PredOr}
			for _, a := range x.Args {
				p.Or = append(p.Or, w.preds(a))
			}
			return []Pred{p}
		}
	case *pg.A_Expr:
		if !isEqOp(x.Name) {
			return []Pred{{}}
		}
		switch x.Kind {
		case pg.A_Expr_Kind_AEXPR_OP:
			if l, r, ok := rowPair(x.Lexpr, x.Rexpr); ok {
				// (a, b) = (x, y) is a = x AND b = y
				var out []Pred
				for i := range l {
					out = append(out, w.eqPred(l[i], r[i]))
				}
				return out
			}
			return []Pred{w.eqPred(x.Lexpr, x.Rexpr)}
		case pg.A_Expr_Kind_AEXPR_NOT_DISTINCT:
			lc, lok := asCol(x.Lexpr)
			rc, rok := asCol(x.Rexpr)
			switch {
			case lok && !rok:
				return []Pred{{Kind: PredEq, Col: lc, Vals: []Value{w.value(x.Rexpr)}}}
			case rok && !lok:
				return []Pred{{Kind: PredEq, Col: rc, Vals: []Value{w.value(x.Lexpr)}}}
			}
		case pg.A_Expr_Kind_AEXPR_IN:
			lc, lok := asCol(x.Lexpr)
			l, isList := nodeMsg(x.Rexpr).(*pg.List)
			if _, isRow := nodeMsg(x.Lexpr).(*pg.RowExpr); isRow && isList && len(l.Items) > 0 {
				// (a, b) IN ((x, y), ...) is an OR of row equalities
				p := Pred{Kind: PredOr}
				for _, it := range l.Items {
					lr, rr, ok := rowPair(x.Lexpr, it)
					if !ok {
						return []Pred{{}}
					}
					var br []Pred
					for i := range lr {
						br = append(br, w.eqPred(lr[i], rr[i]))
					}
					p.Or = append(p.Or, br)
				}
				return []Pred{p}
			}
			if lok && isList && len(l.Items) > 0 {
				p := Pred{Kind: PredEq, Col: lc}
				for _, it := range l.Items {
					p.Vals = append(p.Vals, w.value(it))
				}
				return []Pred{p}
			}
		case pg.A_Expr_Kind_AEXPR_OP_ANY:
			lc, lok := asCol(x.Lexpr)
			if !lok {
				break
			}
			if vals, ok := w.anyValues(x.Rexpr); ok {
				return []Pred{{Kind: PredEq, Col: lc, Vals: vals}}
			}
		}
	}
	return []Pred{{}}
}

// eqPred reduces l = r (uncast sides) to a conjunct.
func (w *walker) eqPred(l, r *pg.Node) Pred {
	lc, lok := asCol(l)
	rc, rok := asCol(r)
	switch {
	case lok && rok:
		return Pred{Kind: PredColEq, Col: lc, Col2: rc}
	case lok:
		return Pred{Kind: PredEq, Col: lc, Vals: []Value{w.value(r)}}
	case rok:
		return Pred{Kind: PredEq, Col: rc, Vals: []Value{w.value(l)}}
	}
	return Pred{}
}

// rowPair returns the elements of two row constructors of equal width.
func rowPair(l, r *pg.Node) ([]*pg.Node, []*pg.Node, bool) {
	lr, ok1 := nodeMsg(l).(*pg.RowExpr)
	rr, ok2 := nodeMsg(r).(*pg.RowExpr)
	if !ok1 || !ok2 || len(lr.Args) != len(rr.Args) || len(lr.Args) == 0 {
		return nil, nil, false
	}
	return lr.Args, rr.Args, true
}

// anyValues reduces the right side of = ANY(...) to the values every element must equal.
func (w *walker) anyValues(n *pg.Node) ([]Value, bool) {
	switch x := nodeMsg(n).(type) {
	case *pg.A_ArrayExpr:
		if len(x.Elements) == 0 {
			return nil, false
		}
		var vals []Value
		for _, e := range x.Elements {
			vals = append(vals, w.value(e))
		}
		return vals, true
	case *pg.TypeCast:
		if x.TypeName == nil || len(x.TypeName.ArrayBounds) == 0 {
			return nil, false
		}
		q := qname(x.TypeName.Names)
		if q.Schema != "" && q.Schema != "pg_catalog" {
			return nil, false
		}
		if arr, ok := nodeMsg(x.Arg).(*pg.A_ArrayExpr); ok {
			vals, ok := w.anyValues(x.Arg)
			_ = arr
			for i := range vals {
				vals[i].Casts = append(vals[i].Casts, q.Name)
			}
			return vals, ok
		}
	}
	v := w.value(n)
	switch {
	case v.Kind == ValConst && v.ConstKind == "string":
		v.Kind = ValArrayConst
	case v.Kind == ValParam:
		v.Kind = ValArrayParam
	default:
		return nil, false
	}
	// casts must be to array types; strip the [] for the element type check
	for i, c := range v.Casts {
		if !strings.HasSuffix(c, "[]") {
			return nil, false
		}
		v.Casts[i] = strings.TrimSuffix(c, "[]")
	}
	return []Value{v}, true
}

func allDigits(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}
