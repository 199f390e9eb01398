package policy

import (
	"errors"
	"strings"

	"github.com/pgtenant/pgtenant/parser"
	"github.com/pgtenant/pgtenant/tenancy"
)

// Rewrite mode (policy.unscoped: rewrite).
//
// A statement the analysis denies only because a tenant table lacks its pin
// (or an INSERT lacks the tenant column) is rewritten by parser.Rewrite: the
// pin `<rel>.<col> = pg_catalog.current_setting('<tenant setting>')::<type>`
// is added where the relation's rows are filtered, and a missing tenant
// column is filled with the same value. The rewritten text is then decided
// like any other text, by the same analysis: the rewrite only ever adds
// restrictions, so everything denied for another reason (escapes, a write of
// the tenant column, another tenant's value, forbidden objects) stays denied,
// and a rewrite that failed to pin something is denied as unscoped.
//
// The pin reads the tenant setting the proxy pins on every backend session
// (the same value RLS policies read), never a literal account: a rewrite
// is tenant-independent and is cached per statement shape as a template
// whose holes are the text's abstracted literals.

// rewriteReasons are the denials a rewrite can cure.
var rewriteReasons = map[string]bool{
	"unscoped_table":  true,
	"insert_tenant":   true,
	"upsert_unscoped": true,
	"merge_source":    true,
}

// Rewriting reports whether the engine runs in rewrite mode.
func (e *Engine) Rewriting() bool { return e.cfg.Unscoped == "rewrite" }

// CheckQuery decides a simple-protocol Query message (see checkQuery); in
// rewrite mode a text denied for a missing pin is rewritten and decided again.
func (s *Session) CheckQuery(sql string) tenancy.Decision {
	d := s.checkQuery(sql)
	if !d.Allow && d.Reason == "copy_from" && s.e.Rewriting() {
		if c, ok := s.copyDecision(sql, d); ok {
			return c
		}
		return d
	}
	if d.Allow || !s.e.Rewriting() || !rewriteReasons[d.Reason] {
		return d
	}
	rw, ok := s.e.rewrite(s.cat, sql)
	if !ok {
		return d
	}
	d2 := s.checkQuery(rw)
	if !d2.Allow {
		d2.Statement = d.Statement // the audit records what the client sent
		return d2
	}
	d2.Rewritten = rw
	return d2
}

// CheckParse decides a Parse message (see checkParseNamed); in rewrite mode
// a text denied for a missing pin is rewritten and decided again, and the
// rewritten text is what later Binds are checked against.
func (s *Session) CheckParse(name, sql string, paramOIDs []uint32) tenancy.Decision {
	d := s.checkParseNamed(name, sql, paramOIDs)
	if d.Allow || !s.e.Rewriting() || !rewriteReasons[d.Reason] {
		return d
	}
	rw, ok := s.e.rewrite(s.cat, sql)
	if !ok {
		return d
	}
	d2 := s.checkParseNamed(name, rw, paramOIDs)
	if !d2.Allow {
		d2.Statement = d.Statement
		return d2
	}
	d2.Rewritten = rw
	s.markRewritten(d2.Changes)
	return d2
}

// rewrite returns the rewrite of sql for cat (false when nothing can be
// pinned or the text is not understood).
func (e *Engine) rewrite(cat *Catalog, sql string) (string, bool) {
	sc, err := e.parser.Guard(sql)
	if err != nil {
		return "", false
	}
	rc := e.rw
	key := cacheKey{cat: cat, key: sc.Shape}
	if t, ok := rc.get(key); ok {
		if t == nil {
			return "", false
		}
		return t.Fill(sql, sc)
	}
	resolve := e.pinResolver(cat)
	t, err := e.parser.RewriteTemplate(sql, sc, e.cfg.TenantSetting, resolve)
	switch {
	case err == nil:
		rc.put(key, t)
		return t.Fill(sql, sc)
	case errors.Is(err, parser.ErrNoRewrite):
		rc.put(key, nil)
		return "", false
	}
	// a literal that cannot stand as a parameter (interval '1 day'): rewrite
	// this text itself, cached under the exact text
	key = cacheKey{cat: cat, key: "\x00" + sql}
	if t, ok := rc.get(key); ok {
		if t == nil {
			return "", false
		}
		return t.Fill(sql, sc)
	}
	out, err := e.parser.Rewrite(sql, e.cfg.TenantSetting, resolve)
	if err != nil {
		if len(sql) <= maxCachedBytes {
			rc.put(key, nil)
		}
		return "", false
	}
	t = parser.LiteralTemplate(out)
	if len(sql) <= maxCachedBytes {
		rc.put(key, t)
	}
	return out, true
}

// pinResolver resolves relation references as the analysis does, to the
// tenant tables of cat.
func (e *Engine) pinResolver(cat *Catalog) parser.PinResolver {
	return func(schema, name string) (parser.PinTable, bool) {
		var t *Table
		if schema != "" {
			if e.forbidden[schema] {
				return parser.PinTable{}, false
			}
			t = cat.Tables[schema+"."+name]
		} else if !catalogRels[name] {
			for _, s := range cat.SearchPath {
				if x := cat.Tables[s+"."+name]; x != nil {
					if !e.forbidden[s] {
						t = x
					}
					break
				}
			}
		}
		if t == nil || e.tableClass(t) != ClassTenant || t.TenantColumn == "" {
			return parser.PinTable{}, false
		}
		typ := strings.ToLower(t.TenantType)
		if typ == "" {
			typ = "bigint"
		}
		return parser.PinTable{Column: t.TenantColumn, Type: typ, Columns: t.Columns}, true
	}
}

// markRewritten flags the statements an allowed Parse stores as rewrite
// mode's text, so Binds of them are audited as rewritten.
func (s *Session) markRewritten(changes []tenancy.Change) {
	for _, ch := range changes {
		for i := range s.inflight {
			if c := &s.inflight[i]; c.id == ch.ID && c.op == opStore && c.p != nil {
				c.p.rewritten = true
			}
		}
	}
}
