package policy

import (
	"github.com/pgtenant/pgtenant/auth"
	"github.com/pgtenant/pgtenant/parser"
)

// Session checks one client session's statements and remembers its prepared
// statements (protocol-level and SQL PREPARE share one namespace, as in
// PostgreSQL). It implements proxy.StatementChecker; use it from one goroutine.
type Session struct {
	e        *Engine
	p        auth.Principal
	cat      *Catalog
	acc      account
	prepared map[string]*prepared
	// closed holds analyses of closed statements (see forget).
	closed map[string]*prepared
	// undo holds, per name, the entries earlier Parses replaced (see ParseSkipped).
	undo map[string][]undoEntry
	// pendingParse is the analysis checkParse allowed, stored by CheckParse.
	pendingParse *prepared
}

// prepared is a remembered statement: its analysis and the text its literal slots read.
type prepared struct {
	an   *StmtAnalysis
	sql  string
	sc   *parser.Scanned
	oids []uint32
	// shadow is a closed statement of the same name PostgreSQL may still hold.
	shadow *prepared
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
			return boolTri(acc.matchText(string(v), sl.Type))
		case 1:
			if array {
				return no
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
	return deny("wrong_account", "table "+table+" is not scoped to your account (the tenant value given is not your account id)",
		"compare "+table+"'s tenant column with your own account id")
}

func (d *Denial) decision(tables []string, stmt string) Decision {
	return Decision{Allow: false, SQLState: d.SQLState, Message: d.Message, Hint: d.Hint, Reason: d.Reason,
		Tables: tables, Statement: stmt}
}

// checkQuery decides a simple-protocol Query message: allowed only if every
// statement in it is allowed; session state (PREPARE/DEALLOCATE) changes only then.
// CheckQuery (rewrite.go) wraps it.
func (s *Session) checkQuery(sql string) Decision {
	an, sc := s.e.analyzeText(s.cat, sql)
	norm := an.normalized
	if an.deny != nil {
		return an.deny.decision(nil, norm)
	}
	if len(an.stmts) == 1 && isQueryKind(an.stmts[0].Kind) {
		// fast path: one plain statement, no session effects
		st := an.stmts[0]
		if st.Deny != nil {
			return st.Deny.decision(st.Tables, norm)
		}
		if v, t := s.evalReqs(st.Reqs, sql, sc, &params{known: true}); v != yes {
			return wrongAccount(t).decision(st.Tables, norm)
		}
		return Decision{Allow: true, Tables: st.Tables, Statement: norm}
	}
	var tables []string
	pending := map[string]*prepared{}
	dropped := map[string]bool{}
	dropAll := false
	lookup := func(name string) *prepared {
		if p, ok := pending[name]; ok {
			return p
		}
		if (dropAll && name != "") || dropped[name] {
			return nil
		}
		return s.prepared[name]
	}
	for _, st := range an.stmts {
		tables = appendUnique(tables, st.Tables...)
		if st.Deny != nil {
			return st.Deny.decision(tables, norm)
		}
		target := st
		for target.Kind == parser.KindExplain && target.Inner != nil {
			target = target.Inner
		}
		switch target.Kind {
		case parser.KindPrepare:
			if _, exists := pending[target.Name]; exists || lookup(target.Name) != nil {
				return deny("prepare", "prepared statement \""+target.Name+"\" already exists", "DEALLOCATE it first").decision(tables, norm)
			}
			pending[target.Name] = &prepared{an: target.Prepared, sql: sql, sc: sc, oids: typeOIDs(target.ParamTypes)}
			if v, t := s.evalReqs(target.Prepared.Reqs, sql, sc, &params{}); v == no {
				return wrongAccount(t).decision(tables, norm)
			}
			continue
		case parser.KindExecute:
			p := lookup(target.Name)
			if p == nil {
				return unknownPrepared(target.Name).decision(tables, norm)
			}
			if v, t := s.execTri(target, p, sql, sc, nil); v != yes {
				return wrongAccount(t).decision(tables, norm)
			}
			tables = appendUnique(tables, p.an.Tables...)
		case parser.KindDeallocate:
			if target.All {
				dropAll = true
				pending = map[string]*prepared{}
			} else {
				delete(pending, target.Name)
				dropped[target.Name] = true
			}
		}
		if v, t := s.evalReqs(st.Reqs, sql, sc, &params{known: true}); v != yes {
			return wrongAccount(t).decision(tables, norm)
		}
	}
	// the whole message is allowed: apply the session changes
	if dropAll {
		// DEALLOCATE ALL drops the named statements only: PostgreSQL keeps
		// the unnamed one, so its analysis must keep governing Binds
		for name := range s.prepared {
			if name != "" {
				s.forget(name)
			}
		}
	}
	for name := range dropped {
		s.forget(name)
	}
	for name, p := range pending {
		s.store(name, p)
	}
	return Decision{Allow: true, Tables: tables, Statement: norm}
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

// checkParseNamed decides a Parse message; when allowed the analysis is remembered
// under name (a denied Parse leaves the previous statement of that name in place).
// CheckParse (rewrite.go) wraps it.
func (s *Session) checkParseNamed(name, sql string, paramOIDs []uint32) Decision {
	d := s.checkParse(name, sql, paramOIDs)
	if old := s.prepared[name]; d.Allow && name != "" && old != nil && (old.sql != sql || !sameOIDs(old.oids, paramOIDs)) {
		// PostgreSQL refuses to redefine a named statement (42P05) and keeps
		// the old one: keep checking Binds against the old analysis by
		// refusing the new text here.
		return Decision{SQLState: "42P05", Reason: "prepare", Tables: d.Tables, Statement: d.Statement,
			Message: "pgtenant: prepared statement \"" + name + "\" already exists",
			Hint:    "close it before parsing another statement under the same name"}
	}
	if d.Allow {
		s.pushUndo(name)
		s.store(name, s.pendingParse)
	}
	s.pendingParse = nil
	return d
}

// checkParse decides a Parse and leaves the analysis to remember in s.pendingParse.
func (s *Session) checkParse(name, sql string, paramOIDs []uint32) Decision {
	s.pendingParse = nil
	an, sc := s.e.analyzeText(s.cat, sql)
	norm := an.normalized
	if an.deny != nil {
		return an.deny.decision(nil, norm)
	}
	if len(an.stmts) > 1 {
		return deny("multi_statement", "a prepared statement may hold only one statement", "send one statement per Parse").decision(nil, norm)
	}
	var st *StmtAnalysis
	if len(an.stmts) == 1 {
		st = an.stmts[0]
	} else {
		st = &StmtAnalysis{Kind: parser.KindOther}
	}
	if st.Deny != nil {
		return st.Deny.decision(st.Tables, norm)
	}
	// SQL PREPARE / EXECUTE / DEALLOCATE sent with Parse: checked now as far
	// as possible, completed (and their session effects applied) at Bind.
	if ex := execTarget(st); ex != nil {
		p := s.prepared[ex.Name]
		if p == nil {
			return unknownPrepared(ex.Name).decision(st.Tables, norm)
		}
		if v, t := s.execTri(ex, p, sql, sc, &params{oids: paramOIDs}); v == no {
			return wrongAccount(t).decision(p.an.Tables, norm)
		}
		st = withTables(st, p.an.Tables)
	}
	if st.Kind == parser.KindPrepare && st.Prepared != nil {
		if v, t := s.evalReqs(st.Prepared.Reqs, sql, sc, &params{}); v == no {
			return wrongAccount(t).decision(st.Tables, norm)
		}
	}
	ps := &params{oids: paramOIDs}
	if v, t := s.evalReqs(st.Reqs, sql, sc, ps); v == no {
		return wrongAccount(t).decision(st.Tables, norm)
	}
	s.pendingParse = &prepared{an: st, sql: sql, sc: sc, oids: append([]uint32(nil), paramOIDs...)}
	return Decision{Allow: true, Tables: st.Tables, Statement: norm}
}

// CheckBind evaluates the remembered statement's parameter slots against the
// bound values; a Bind of a statement pgtenant does not know is allowed (the
// server raises its own error).
func (s *Session) CheckBind(statement string, formats []int16, values [][]byte) Decision {
	p := s.prepared[statement]
	if p == nil {
		// A closed statement may still exist in PostgreSQL (a Close or
		// DEALLOCATE skipped after an error): keep checking its last analysis.
		p = s.closed[statement]
	}
	if p == nil {
		return Decision{Allow: true}
	}
	if len(formats) > 1 && len(formats) != len(values) {
		return deny("bind", "Bind format codes do not match the parameters", "").decision(p.an.Tables, "")
	}
	ps := &params{known: true, formats: formats, values: values, oids: p.oids}
	if v, t := s.evalReqs(p.an.Reqs, p.sql, p.sc, ps); v != yes {
		return wrongAccount(t).decision(p.an.Tables, "")
	}
	if sh := p.shadow; sh != nil {
		// the name was re-parsed after a Close PostgreSQL may have skipped:
		// the values must also be safe for the statement it may still hold
		shp := &params{known: true, formats: formats, values: values, oids: sh.oids}
		if v, t := s.evalReqs(sh.an.Reqs, sh.sql, sh.sc, shp); v != yes {
			return wrongAccount(t).decision(p.an.Tables, "")
		}
	}
	if ex := execTarget(p.an); ex != nil {
		target := s.prepared[ex.Name]
		if target == nil {
			return unknownPrepared(ex.Name).decision(p.an.Tables, "")
		}
		if v, t := s.execTri(ex, target, p.sql, p.sc, ps); v != yes {
			return wrongAccount(t).decision(p.an.Tables, "")
		}
	}
	switch p.an.Kind {
	case parser.KindPrepare:
		if p.an.Prepared == nil || s.prepared[p.an.Name] != nil {
			return deny("prepare", "prepared statement \""+p.an.Name+"\" already exists", "DEALLOCATE it first").decision(p.an.Tables, "")
		}
		s.store(p.an.Name, &prepared{an: p.an.Prepared, sql: p.sql, sc: p.sc, oids: typeOIDs(p.an.ParamTypes)})
	case parser.KindDeallocate:
		if p.an.All {
			for name := range s.prepared {
				if name != "" && name != statement {
					s.forget(name)
				}
			}
		} else {
			s.forget(p.an.Name)
		}
	}
	return Decision{Allow: true, Tables: p.an.Tables}
}

func sameOIDs(a, b []uint32) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// withTables returns a copy of an with tables added.
func withTables(an *StmtAnalysis, tables []string) *StmtAnalysis {
	cp := *an
	cp.Tables = appendUnique(append([]string(nil), an.Tables...), tables...)
	return &cp
}

// CloseStatement forgets a prepared statement.
func (s *Session) CloseStatement(name string) { s.forget(name) }

// maxClosed bounds the remembered analyses of closed statements per session.
const maxClosed = 4096

// forget moves a statement's analysis to the closed set: PostgreSQL may not
// have executed the Close or DEALLOCATE (messages after an error are skipped),
// so Binds of the name stay checked against it.
func (s *Session) forget(name string) {
	p := s.prepared[name]
	if p == nil {
		return
	}
	if s.closed == nil {
		s.closed = map[string]*prepared{}
	}
	if len(s.closed) >= maxClosed && s.closed[name] == nil {
		return // keep it live: still checked, and a different re-Parse gets 42P05
	}
	s.closed[name] = p
	delete(s.prepared, name)
}

// store remembers an allowed statement under name. If the name was closed
// with another text, PostgreSQL may still hold the old statement (if the
// Close was skipped, it refused the new Parse): Binds must then satisfy both.
func (s *Session) store(name string, p *prepared) {
	if old := s.closed[name]; old != nil {
		if old.sql != p.sql || !sameOIDs(old.oids, p.oids) {
			cp := *p
			cp.shadow = old
			p = &cp
		}
		delete(s.closed, name)
	}
	s.prepared[name] = p
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

// undoEntry is the state of a name before a Parse replaced it.
type undoEntry struct {
	live, closed *prepared
}

// maxUndo bounds the remembered replacements per name.
const maxUndo = 32

func (s *Session) pushUndo(name string) {
	if s.undo == nil {
		s.undo = map[string][]undoEntry{}
	}
	st := append(s.undo[name], undoEntry{live: s.prepared[name], closed: s.closed[name]})
	if len(st) > maxUndo {
		st = st[len(st)-maxUndo:]
	}
	s.undo[name] = st
}

// ParseSkipped tells the session that PostgreSQL skipped an allowed Parse of
// name (it followed an error in the same extended-protocol batch, before
// Sync): the statement the server still holds under name is restored, so
// later Binds are checked against it. Call it once per skipped Parse.
func (s *Session) ParseSkipped(name string) {
	st := s.undo[name]
	if len(st) == 0 {
		return
	}
	e := st[len(st)-1]
	s.undo[name] = st[:len(st)-1]
	if e.live != nil {
		s.prepared[name] = e.live
	} else {
		delete(s.prepared, name)
	}
	if e.closed != nil {
		if s.closed == nil {
			s.closed = map[string]*prepared{}
		}
		s.closed[name] = e.closed
	}
}

// Synced tells the session that PostgreSQL answered up to a Sync: earlier
// Parses can no longer be skipped, so their undo records are dropped.
func (s *Session) Synced() { s.undo = nil }
