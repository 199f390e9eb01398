package prove

import (
	"context"
	"fmt"

	"github.com/jackc/pgx/v5"
)

// escape is an attempt by tenant B to leave its tenant context.
type escape struct {
	check string
	sql   string
	tx    bool // needs a transaction block (SET LOCAL)
	// honoured: pgtenant runs it (RESET ALL) and must keep the session in
	// its tenant context instead of refusing it
	honoured bool
}

// escapes tries, as tenant B, to change the tenant setting or the role,
// then to connect with the tenant setting in the startup packet. Every
// statement must be refused; every such connection refused with 28000.
func (p *prover) escapes(ctx context.Context, r *region, conn *pgx.Conn) {
	setting := p.o.Config.Policy.TenantSetting
	a := quoteLiteral(p.a)
	list := []escape{
		{check: "escape_set_tenant_setting", sql: "SET " + setting + " = " + a},
		{check: "escape_set_local_tenant_setting", sql: "SET LOCAL " + setting + " = " + a, tx: true},
		{check: "escape_set_config", sql: "SELECT pg_catalog.set_config(" + quoteLiteral(setting) + ", " + a + ", false)"},
		{check: "escape_reset_tenant_setting", sql: "RESET " + setting},
		{check: "escape_reset_all", sql: "RESET ALL", honoured: true},
		{check: "escape_set_role", sql: "SET ROLE postgres"},
		{check: "escape_set_session_authorization", sql: "SET SESSION AUTHORIZATION postgres"},
	}
	for _, e := range list {
		if conn == nil || conn.IsClosed() {
			var err error
			if conn, err = p.connect(ctx, r, p.b, nil); err != nil {
				conn = nil
				p.result(r, nil, LayerProxy, e.check, Fail, "cannot connect through pgtenant as tenant B: "+describeErr(err))
				continue
			}
			defer conn.Close(context.Background())
		}
		o := p.runAttack(ctx, conn, attack{write: e.tx, run: func(ctx context.Context, c *pgx.Conn) outcome {
			return exec(ctx, c, e.sql)
		}})
		switch {
		case o.err != nil && sqlState(o.err) == "":
			p.result(r, nil, LayerProxy, e.check, Warn, "no answer from the server: "+describeErr(o.err))
		case o.err != nil:
			p.result(r, nil, LayerProxy, e.check, Pass, "denied: "+describeErr(o.err)+p.probe(ctx, r, conn))
		case e.honoured && p.intact(ctx, r, conn):
			p.result(r, nil, LayerProxy, e.check, Pass, "honoured; the session kept its tenant context")
		default:
			after := p.probe(ctx, r, conn)
			p.result(r, nil, LayerProxy, e.check, Fail, "pgtenant let tenant B run it"+after)
			conn.Close(context.Background()) // the session may be out of its tenant context now
			conn = nil
		}
	}
	for _, s := range []struct{ check, key, value string }{
		{"escape_startup_options", "options", "-c " + setting + "=" + p.a},
		{"escape_startup_parameter", setting, p.a},
	} {
		c, err := p.connect(ctx, r, p.b, map[string]string{s.key: s.value})
		switch {
		case err == nil:
			c.Close(context.Background())
			p.result(r, nil, LayerProxy, s.check, Fail, "the connection was accepted; it must be refused with 28000")
		case sqlState(err) == "28000":
			p.result(r, nil, LayerProxy, s.check, Pass, "refused: "+describeErr(err))
		default:
			p.result(r, nil, LayerProxy, s.check, Fail, "refused, but not with 28000: "+describeErr(err))
		}
	}
}

// intact reports whether the session's tenant setting and role are still
// tenant B's, as read back from the server.
func (p *prover) intact(ctx context.Context, r *region, c *pgx.Conn) bool {
	if c.IsClosed() {
		return false
	}
	cctx, cancel := p.step(ctx)
	defer cancel()
	_, rows, err := queryRows(cctx, c, "SELECT pg_catalog.current_setting("+quoteLiteral(p.o.Config.Policy.TenantSetting)+", true), current_user")
	if err != nil || len(rows) != 1 || rows[0][0] == nil || rows[0][1] == nil {
		return false
	}
	return *rows[0][0] == p.b && *rows[0][1] == r.cfg.User
}

// probe reports, after an escape attempt, whether the session's tenant
// setting or role changed; "" when they did not (or cannot be read).
func (p *prover) probe(ctx context.Context, r *region, c *pgx.Conn) string {
	if c.IsClosed() {
		return ""
	}
	cctx, cancel := p.step(ctx)
	defer cancel()
	_, rows, err := queryRows(cctx, c, "SELECT pg_catalog.current_setting("+quoteLiteral(p.o.Config.Policy.TenantSetting)+", true), current_user")
	if err != nil || len(rows) != 1 || rows[0][0] == nil || rows[0][1] == nil {
		return ""
	}
	setting, user := *rows[0][0], *rows[0][1]
	if setting != p.b || user != r.cfg.User {
		return fmt.Sprintf("; afterwards the session runs as %s with %s = %q", user, p.o.Config.Policy.TenantSetting, setting)
	}
	return ""
}
