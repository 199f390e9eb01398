package policy

import (
	"strings"

	"github.com/jackc/pgerrcode"

	"github.com/pgtenant/pgtenant/auth"
	"github.com/pgtenant/pgtenant/parser"
	"github.com/pgtenant/pgtenant/tenancy"
)

// Session checks one client session's statements and mirrors the prepared
// statements its server session holds (protocol-level and SQL PREPARE share
// one namespace, as in PostgreSQL): see mirror.go for how the mirror follows
// the server. It implements proxy.StatementChecker; use it from one goroutine.
type Session struct {
	e   *Engine
	p   auth.Principal
	cat *Catalog
	acc account
	// prepared is what the server holds, as far as it confirmed it.
	prepared map[string]*prepared
	// inflight are the changes of forwarded messages not resolved yet, in
	// the order the server runs them.
	inflight []change
	nextID   uint64
	batch    uint64
	syncs    uint64
	// extOpen: an extended-protocol message was forwarded since the last Sync.
	extOpen bool
	// unknown names (and, when lost, every named statement but the
	// relearned ones) are those whose statement pgtenant cannot know.
	unknown   map[string]bool
	lost      bool
	relearned map[string]bool
	// memo is the analysis of the last text this session checked (see analyze).
	memo struct {
		cat *Catalog
		sql string
		an  *analysis
		sc  *parser.Scanned
	}
}

// memoMaxBytes bounds the text a session keeps for its memo, so an idle
// session does not pin a large statement.
const memoMaxBytes = 2 << 10

// analyze is the engine's analyzeText with a one-entry memo of the
// session's last text: a client that sends the same text again (an unnamed
// Parse before every execution, as pgbench -M extended and many drivers do)
// skips the guard's scan and the shared cache's locks and key. The analysis
// depends only on the text and the catalog, which RefreshCatalog swaps after
// a migration: the memo is keyed on both, and an analysis the shared cache
// would not keep (noCache: it must be redone) is not kept either. Neither
// an analysis nor its scan changes once made: the shared cache hands the
// same ones to every session.
func (s *Session) analyze(sql string) (*analysis, *parser.Scanned) {
	if s.memo.an != nil && s.memo.cat == s.cat && s.memo.sql == sql {
		return s.memo.an, s.memo.sc
	}
	an, sc := s.e.analyzeText(s.cat, sql)
	if len(sql) <= memoMaxBytes && !an.noCache {
		s.memo.cat, s.memo.sql, s.memo.an, s.memo.sc = s.cat, sql, an, sc
	}
	return an, sc
}

// prepared is a remembered statement: its analysis, the text its literal
// slots read and the audit records, and its parameters' types.
type prepared struct {
	an   *StmtAnalysis
	sql  string
	norm string
	sc   *parser.Scanned
	// oids are the parameters' types: declared at Parse (0 = unspecified),
	// or the server's own after a Describe.
	oids []uint32
	// rewritten: sql is rewrite mode's text, not the client's.
	rewritten bool
}

// reservedName reports whether name, as PostgreSQL resolved it, is reserved.
func reservedName(name string) bool { return strings.HasPrefix(name, tenancy.ReservedPrefix) }

func reservedDenial(what, name string) *Denial {
	return deny("reserved_name", what+" name \""+name+"\" is reserved: names starting with \""+tenancy.ReservedPrefix+"\" belong to pgtenant",
		"choose another name")
}

// params supplies parameter values to slot evaluation.
type params struct {
	known   bool // false at Parse: parameters are not bound yet
	formats []int16
	values  [][]byte
	oids    []uint32
}

// slotEnv is what slot evaluation reads: the account, the text and the parameters.
type slotEnv struct {
	acc *account
	sql string
	sc  *parser.Scanned
	ps  *params
}

// evalSlot evaluates one slot against literal values of sql and the parameters.
func evalSlot(env *slotEnv, sl Slot) tri {
	acc, sql, sc, ps := env.acc, env.sql, env.sc, env.ps
	switch sl.Kind {
	case SlotLit, SlotLitArray:
		if sc == nil || sl.Index >= len(sc.Lits) {
			return no
		}
		v, ok := parser.LitValue(sql, sc.Lits[sl.Index])
		if !ok {
			return no
		}
		if sl.Kind == SlotLitArray {
			return boolTri(acc.matchArrayText(v, sl.Type))
		}
		return boolTri(acc.matchText(v, sl.Type))
	case SlotParam, SlotParamArray:
		if ps == nil {
			return no
		}
		if !ps.known {
			return unknown
		}
		i := sl.Index - 1
		if i < 0 || i >= len(ps.values) || ps.values[i] == nil {
			return no
		}
		var oid uint32
		if i < len(ps.oids) {
			oid = ps.oids[i]
		}
		array := sl.Kind == SlotParamArray
		if !oidOK(oid, sl.Type, array) {
			return no
		}
		var format int16
		switch {
		case len(ps.formats) == 0:
		case len(ps.formats) == 1:
			format = ps.formats[0]
		case i < len(ps.formats) && len(ps.formats) == len(ps.values):
			format = ps.formats[i]
		default:
			return no
		}
		v := ps.values[i]
		switch format {
		case 0:
			if array {
				return boolTri(acc.matchArrayText(string(v), sl.Type))
			}
			return boolTri(acc.matchParamText(string(v), oid, sl.Type))
		case 1:
			if oid == 0 {
				// PostgreSQL reads binary bytes by the type it gives the
				// parameter; with none declared and no ParameterDescription
				// seen, pgtenant does not know that type.
				return no
			}
			if array {
				return boolTri(acc.matchBinaryArray(v, oid, sl.Type))
			}
			return boolTri(acc.matchBinary(v, oid, sl.Type))
		}
	}
	return no
}

func boolTri(b bool) tri {
	if b {
		return yes
	}
	return no
}

// evalReqs checks every requirement; it returns the first failing one.
func (s *Session) evalReqs(reqs []Req, sql string, sc *parser.Scanned, ps *params) (tri, string) {
	env := slotEnv{acc: &s.acc, sql: sql, sc: sc, ps: ps}
	res := yes
	for _, r := range reqs {
		v := r.F.eval(&env)
		switch v {
		case no:
			return no, r.Table
		case unknown:
			res = unknown
		}
	}
	return res, ""
}

func wrongAccount(table string) *Denial {
	return deny("wrong_account", "table "+table+" is not scoped to your account: a tenant value given is not your account id, or is bound with a type or format pgtenant cannot compare",
		"compare "+table+"'s tenant column with your own account id, bound as int8/int4/int2, numeric, text, uuid or unknown (text or binary), or as an array of those for = ANY")
}

func (d *Denial) decision(tables []string, stmt string) tenancy.Decision {
	return tenancy.Decision{Allow: false, SQLState: d.SQLState, Message: d.Message, Hint: d.Hint, Reason: d.Reason,
		Tables: tables, Statement: stmt}
}

// waitDecision asks the caller to wait for the server's replies and check again.
var waitDecision = tenancy.Decision{Wait: true, Reason: "await_server"}

// unknownState is the denial when pgtenant cannot know which statement the
// server holds under name.
func unknownState(name string) *Denial {
	return deny("prepare_unknown", "pgtenant cannot tell which statement the server holds under \""+name+"\" (a change to it is pending or its outcome was not reported)",
		"wait for the result of PREPARE, DEALLOCATE or Close before using the name, or prepare it again under a new name")
}

// resolveName looks name up for a check: the statement, or the decision to
// return instead (Wait, or a denial when the server's statement is unknown
// or missing).
func (s *Session) resolveName(name string, local []change, tables []string, stmt string) (*prepared, *tenancy.Decision) {
	p, st := s.lookup(name, local)
	switch {
	case st == stateWait:
		d := waitDecision
		return nil, &d
	case st == stateUnknown:
		d := unknownState(name).decision(tables, stmt)
		return nil, &d
	case p == nil:
		d := unknownPrepared(name).decision(tables, stmt)
		return nil, &d
	}
	return p, nil
}

// checkQuery decides a simple-protocol Query message: allowed only if every
// statement in it is allowed. The PREPARE and DEALLOCATE statements in it
// come back as Changes, applied as the server completes each one.
// CheckQuery (rewrite.go) wraps it.
func (s *Session) checkQuery(sql string) tenancy.Decision {
	an, sc := s.analyze(sql)
	norm := an.normalized
	if an.deny != nil {
		d := an.deny.decision(nil, norm)
		d.Text = sql
		return d
	}
	if d := s.readOnlyDenial(an); d != nil {
		return d.decision(nil, norm)
	}
	if len(an.stmts) == 1 && isQueryKind(an.stmts[0].Kind) {
		// fast path: one plain statement, no session effects
		st := an.stmts[0]
		if st.Deny != nil {
			return withText(st.Deny.decision(st.Tables, norm), sql)
		}
		if v, t := s.evalReqs(st.Reqs, sql, sc, &params{known: true}); v != yes {
			return withText(wrongAccount(t).decision(st.Tables, norm), sql)
		}
		return tenancy.Decision{Allow: true, Tables: st.Tables, Statement: norm, Text: sql}
	}
	var tables []string
	type localChange struct {
		c   change
		i   int
		tag string
	}
	var local []change
	var meta []localChange
	for i, st := range an.stmts {
		tables = appendUnique(tables, st.Tables...)
		if st.Deny != nil {
			return withText(st.Deny.decision(tables, norm), sql)
		}
		target := st
		for target.Kind == parser.KindExplain && target.Inner != nil {
			target = target.Inner
		}
		switch target.Kind {
		case parser.KindPrepare:
			if reservedName(target.Name) {
				return withText(reservedDenial("prepared statement", target.Name).decision(tables, norm), sql)
			}
			if v, t := s.evalReqs(target.Prepared.Reqs, sql, sc, &params{}); v == no {
				return withText(wrongAccount(t).decision(tables, norm), sql)
			}
			if target == st {
				c := change{op: opStore, name: target.Name,
					p: &prepared{an: target.Prepared, sql: sql, norm: norm, sc: sc, oids: typeOIDs(target.ParamTypes)}}
				local = append(local, c)
				meta = append(meta, localChange{c: c, i: i, tag: "PREPARE"})
			}
			continue
		case parser.KindExecute:
			p, dd := s.resolveName(target.Name, local, tables, norm)
			if dd != nil {
				return withText(*dd, sql)
			}
			if v, t := s.execTri(target, p, sql, sc, nil); v != yes {
				return withText(wrongAccount(t).decision(tables, norm), sql)
			}
			tables = appendUnique(tables, p.an.Tables...)
		case parser.KindDeallocate:
			if target == st {
				c, tag := change{op: opDrop, name: target.Name}, "DEALLOCATE"
				if target.All {
					c, tag = change{op: opDropAll}, "DEALLOCATE ALL"
				}
				local = append(local, c)
				meta = append(meta, localChange{c: c, i: i, tag: tag})
			}
		case parser.KindDeclareCursor:
			if reservedName(target.Name) {
				return withText(reservedDenial("cursor", target.Name).decision(tables, norm), sql)
			}
		}
		if v, t := s.evalReqs(st.Reqs, sql, sc, &params{known: true}); v != yes {
			return withText(wrongAccount(t).decision(tables, norm), sql)
		}
	}
	d := tenancy.Decision{Allow: true, Tables: tables, Statement: norm, Text: sql}
	for i, st := range an.stmts {
		if st.Set != nil {
			set := *st.Set
			set.Stmt = i
			d.Sets = append(d.Sets, set)
		}
	}
	// the server answers the Query's statements without more client input,
	// unless an extended message before it may fail (the server then skips
	// the Query until a Sync) or a COPY waits for the client's data
	withCopy := false
	for _, st := range an.stmts {
		withCopy = withCopy || st.Kind == parser.KindCopy
	}
	for _, m := range meta {
		m.c.free, m.c.copy = !s.extOpen, withCopy
		d.Changes = append(d.Changes, s.register(m.c, m.i, m.tag))
	}
	return d
}

func withText(d tenancy.Decision, sql string) tenancy.Decision {
	d.Text = sql
	return d
}

// execTri evaluates the statement EXECUTE names with EXECUTE's arguments as
// text values; outer supplies the values of arguments that are parameters of
// a protocol-level Parse (nil or unknown at Parse time).
func (s *Session) execTri(ex *StmtAnalysis, p *prepared, sql string, sc *parser.Scanned, outer *params) (tri, string) {
	ps := &params{known: true, oids: p.oids}
	for _, a := range ex.ExecArgs {
		switch {
		case a.Param > 0:
			if outer == nil || !outer.known {
				if outer == nil {
					ps.values = append(ps.values, nil)
				} else {
					ps.known = false
					ps.values = append(ps.values, nil)
				}
				continue
			}
			ps.values = append(ps.values, outer.text(a.Param))
		case a.Lit >= 0 && a.Lit < len(sc.Lits):
			v, ok := parser.LitValue(sql, sc.Lits[a.Lit])
			if ok {
				ps.values = append(ps.values, []byte(v))
			} else {
				ps.values = append(ps.values, nil)
			}
		case a.HasConst:
			ps.values = append(ps.values, []byte(a.Const))
		default:
			ps.values = append(ps.values, nil)
		}
	}
	return s.evalReqs(p.an.Reqs, p.sql, p.sc, ps)
}

// text returns parameter n's value when it is bound in text format (nil otherwise).
func (ps *params) text(n int) []byte {
	i := n - 1
	if i < 0 || i >= len(ps.values) {
		return nil
	}
	var format int16
	switch {
	case len(ps.formats) == 0:
	case len(ps.formats) == 1:
		format = ps.formats[0]
	case i < len(ps.formats):
		format = ps.formats[i]
	}
	if format != 0 {
		return nil
	}
	return ps.values[i]
}

// execTarget returns the EXECUTE an analysis runs (through EXPLAIN), or nil.
func execTarget(an *StmtAnalysis) *StmtAnalysis {
	for an != nil && an.Kind == parser.KindExplain {
		an = an.Inner
	}
	if an != nil && an.Kind == parser.KindExecute {
		return an
	}
	return nil
}

func unknownPrepared(name string) *Denial {
	return deny("prepare", "prepared statement \""+name+"\" is not known to pgtenant", "PREPARE it in this session first")
}

func typeOIDs(names []string) []uint32 {
	var out []uint32
	for _, n := range names {
		oid := map[string]uint32{"int8": oidInt8, "int4": oidInt4, "int2": oidInt2, "text": oidText,
			"varchar": oidVarchar, "uuid": oidUUID}[n]
		if oid == 0 {
			oid = 1 // declared, but not a type a tenant value may have
		}
		out = append(out, oid)
	}
	return out
}

// checkParseNamed decides a Parse message. An allowed Parse comes back with
// the Change that stores its analysis under name once the server answers
// ParseComplete (a name the server already holds makes it fail with 42P05).
// CheckParse (rewrite.go) wraps it.
func (s *Session) checkParseNamed(name, sql string, paramOIDs []uint32) tenancy.Decision {
	s.extOpen = true
	if reservedName(name) {
		return withText(reservedDenial("prepared statement", name).decision(nil, ""), sql)
	}
	an, sc := s.analyze(sql)
	norm := an.normalized
	d, st := s.checkParse(an, sc, sql, paramOIDs)
	d.Text = sql
	if d.Statement == "" {
		d.Statement = norm
	}
	if !d.Allow || d.Wait {
		return d
	}
	p := &prepared{an: st, sql: sql, norm: norm, sc: sc, oids: append([]uint32(nil), paramOIDs...)}
	d.Changes = []tenancy.Change{s.register(change{op: opStore, name: name, p: p}, 0, "")}
	return d
}

// checkParse decides a Parse; an allowed decision carries the analysis to store.
func (s *Session) checkParse(an *analysis, sc *parser.Scanned, sql string, paramOIDs []uint32) (tenancy.Decision, *StmtAnalysis) {
	norm := an.normalized
	if an.deny != nil {
		return an.deny.decision(nil, norm), nil
	}
	if d := s.readOnlyDenial(an); d != nil {
		return d.decision(nil, norm), nil
	}
	if len(an.stmts) > 1 {
		return deny("multi_statement", "a prepared statement may hold only one statement", "send one statement per Parse").decision(nil, norm), nil
	}
	var st *StmtAnalysis
	if len(an.stmts) == 1 {
		st = an.stmts[0]
	} else {
		st = &StmtAnalysis{Kind: parser.KindOther}
	}
	if st.Deny != nil {
		return st.Deny.decision(st.Tables, norm), nil
	}
	// SQL PREPARE / EXECUTE / DEALLOCATE sent with Parse: checked now as far
	// as possible, completed at Bind (their changes happen at Execute).
	if ex := execTarget(st); ex != nil {
		p, dd := s.resolveName(ex.Name, nil, st.Tables, norm)
		if dd != nil {
			return *dd, nil
		}
		if v, t := s.execTri(ex, p, sql, sc, &params{oids: paramOIDs}); v == no {
			return wrongAccount(t).decision(p.an.Tables, norm), nil
		}
		st = withTables(st, p.an.Tables)
	}
	switch st.Kind {
	case parser.KindPrepare:
		if reservedName(st.Name) {
			return reservedDenial("prepared statement", st.Name).decision(st.Tables, norm), nil
		}
		if st.Prepared != nil {
			if v, t := s.evalReqs(st.Prepared.Reqs, sql, sc, &params{}); v == no {
				return wrongAccount(t).decision(st.Tables, norm), nil
			}
		}
	case parser.KindDeclareCursor:
		if reservedName(st.Name) {
			return reservedDenial("cursor", st.Name).decision(st.Tables, norm), nil
		}
	}
	ps := &params{oids: paramOIDs}
	if v, t := s.evalReqs(st.Reqs, sql, sc, ps); v == no {
		return wrongAccount(t).decision(st.Tables, norm), nil
	}
	return tenancy.Decision{Allow: true, Tables: st.Tables, Statement: norm}, st
}

// CheckBind evaluates the statement the server will bind against the bound
// values. The decision carries that statement's text (what the server runs,
// for the audit) and, for a SQL PREPARE or DEALLOCATE, the Change the
// portal's execution makes (Change.Portal).
func (s *Session) CheckBind(statement string, formats []int16, values [][]byte) tenancy.Decision {
	s.extOpen = true
	p, dd := s.resolveName(statement, nil, nil, "")
	if dd != nil {
		if !dd.Wait {
			dd.Statement = "-- Bind of prepared statement \"" + statement + "\""
			dd.SQLState = pgerrcode.InvalidSQLStatementName
			if dd.Reason == "prepare_unknown" {
				dd.SQLState = pgerrcode.InsufficientPrivilege
			}
		}
		return *dd
	}
	deny := func(dn *Denial) tenancy.Decision {
		d := dn.decision(p.an.Tables, p.norm)
		d.Text = p.sql
		return d
	}
	if len(formats) > 1 && len(formats) != len(values) {
		return deny(bindFormats)
	}
	ps := &params{known: true, formats: formats, values: values, oids: p.oids}
	if v, t := s.evalReqs(p.an.Reqs, p.sql, p.sc, ps); v != yes {
		return deny(wrongAccount(t))
	}
	d := tenancy.Decision{Allow: true, Tables: p.an.Tables, Statement: p.norm, Text: p.sql}
	if p.an.Set != nil {
		d.Sets = []tenancy.SessionSet{*p.an.Set}
	}
	if p.rewritten {
		d.Rewritten = p.sql
	}
	if ex := execTarget(p.an); ex != nil {
		target, dd := s.resolveName(ex.Name, nil, p.an.Tables, p.norm)
		if dd != nil {
			dd.Text = p.sql
			return *dd
		}
		if v, t := s.execTri(ex, target, p.sql, p.sc, ps); v != yes {
			return deny(wrongAccount(t))
		}
	}
	switch p.an.Kind {
	case parser.KindPrepare:
		if p.an.Prepared == nil {
			return deny(unknownPrepared(p.an.Name))
		}
		c := change{op: opStore, name: p.an.Name, portal: true,
			p: &prepared{an: p.an.Prepared, sql: p.sql, norm: p.norm, sc: p.sc, oids: typeOIDs(p.an.ParamTypes)}}
		d.Changes = []tenancy.Change{s.register(c, 0, "PREPARE")}
	case parser.KindDeallocate:
		if p.an.All {
			d.Changes = []tenancy.Change{s.register(change{op: opDropAll, portal: true}, 0, "DEALLOCATE ALL")}
		} else {
			d.Changes = []tenancy.Change{s.register(change{op: opDrop, name: p.an.Name, portal: true}, 0, "DEALLOCATE")}
		}
	}
	return d
}

var bindFormats = deny("bind", "Bind format codes do not match the parameters", "")

// withTables returns a copy of an with tables added.
func withTables(an *StmtAnalysis, tables []string) *StmtAnalysis {
	cp := *an
	cp.Tables = appendUnique(append([]string(nil), an.Tables...), tables...)
	return &cp
}

func appendUnique(list []string, more ...string) []string {
outer:
	for _, m := range more {
		for _, x := range list {
			if x == m {
				continue outer
			}
		}
		list = append(list, m)
	}
	return list
}
