package prove

import (
	"context"
	"fmt"
	"strings"
)

// rlsAlone bypasses pgtenant's parser layer: it connects straight to the
// region as the service role (the login pgtenant uses) with the tenant
// setting set to B, then empty, and checks that row-level security by
// itself hides A's rows, keeps B from changing them, refuses a row for A,
// and fails closed. RLS must also be enabled and forced on every table: a
// table that relies on the service role not owning it is one ALTER OWNER
// away from being open.
func (p *prover) rlsAlone(ctx context.Context, r *region) {
	setting := p.o.Config.Policy.TenantSetting
	cctx, cancel := p.step(ctx)
	var super, bypass bool
	err := r.direct.QueryRow(cctx, "SELECT rolsuper, rolbypassrls FROM pg_catalog.pg_roles WHERE rolname = current_user").Scan(&super, &bypass)
	cancel()
	switch {
	case err != nil:
		p.result(r, nil, LayerRLS, "rls_service_role", Fail, "cannot read the service role's attributes: "+describeErr(err))
	case super || bypass:
		p.result(r, nil, LayerRLS, "rls_service_role", Fail, fmt.Sprintf(
			"service role %s is superuser=%t bypassrls=%t, so row-level security does not apply to it (ALTER ROLE %s NOSUPERUSER NOBYPASSRLS)", r.cfg.User, super, bypass, ident(r.cfg.User)))
	default:
		p.result(r, nil, LayerRLS, "rls_service_role", Pass, fmt.Sprintf("service role %s is neither superuser nor bypassrls", r.cfg.User))
	}
	for _, t := range r.usable() {
		var problems []string
		if !t.rlsEnabled {
			problems = append(problems, "row level security is not enabled (ALTER TABLE "+t.name+" ENABLE ROW LEVEL SECURITY)")
		}
		if !t.rlsForced {
			problems = append(problems, "row level security is not forced, so the table owner bypasses it (ALTER TABLE "+t.name+" FORCE ROW LEVEL SECURITY)")
		}
		if len(problems) > 0 {
			p.result(r, t, LayerRLS, "rls_enabled_forced", Fail, strings.Join(problems, "; "))
		} else {
			p.result(r, t, LayerRLS, "rls_enabled_forced", Pass, "enabled and forced")
		}
	}

	cctx, cancel = p.step(ctx)
	err = setTenant(cctx, r.direct, setting, p.b)
	cancel()
	if err != nil {
		p.result(r, nil, LayerRLS, "rls_set_tenant_b", Fail, "cannot set the tenant setting directly: "+describeErr(err))
		return
	}
	for _, t := range r.usable() {
		p.rlsTable(ctx, r, t)
	}

	cctx, cancel = p.step(ctx)
	err = setTenant(cctx, r.direct, setting, "")
	cancel()
	if err != nil {
		p.result(r, nil, LayerRLS, "rls_fail_closed", Fail, "cannot clear the tenant setting directly: "+describeErr(err))
		return
	}
	for _, t := range r.usable() {
		var n int64
		cctx, cancel := p.step(ctx)
		err := r.direct.QueryRow(cctx, "SELECT count(*) FROM "+t.name).Scan(&n)
		cancel()
		switch {
		case err != nil:
			p.result(r, t, LayerRLS, "rls_fail_closed", Pass, "with the setting empty the query fails: "+describeErr(err))
		case n > 0:
			p.result(r, t, LayerRLS, "rls_fail_closed", Fail, fmt.Sprintf(
				"with %s empty the service role sees %d row(s): the policy must match nothing when the setting is unset or empty", setting, n))
		case len(r.seeded[t.oid]) == 0:
			p.result(r, t, LayerRLS, "rls_fail_closed", Warn, "no row visible with the setting empty, but no row of A was seeded to hide")
		default:
			p.result(r, t, LayerRLS, "rls_fail_closed", Pass, "with the setting empty no row is visible")
		}
	}
}

// rlsTable runs the direct checks on t with the tenant setting set to B.
func (p *prover) rlsTable(ctx context.Context, r *region, t *table) {
	col, a := ident(t.column), typed(p.a, t.columnType)
	seeded := len(r.seeded[t.oid]) > 0
	var n int64
	cctx, cancel := p.step(ctx)
	err := r.direct.QueryRow(cctx, "SELECT count(*) FROM "+t.name+" WHERE "+col+" = "+a).Scan(&n)
	cancel()
	switch {
	case err != nil:
		p.result(r, t, LayerRLS, "rls_select_a", Fail, "cannot run the check: "+describeErr(err))
	case n > 0:
		p.result(r, t, LayerRLS, "rls_select_a", Fail, fmt.Sprintf("with the parser bypassed and %s = B, the service role sees %d row(s) of tenant A", p.o.Config.Policy.TenantSetting, n))
	case !seeded:
		p.result(r, t, LayerRLS, "rls_select_a", Warn, "no row of A visible, but none was seeded")
	default:
		p.result(r, t, LayerRLS, "rls_select_a", Pass, "no row of tenant A visible")
	}
	other := col
	for _, c := range t.columns {
		if c.name != t.column && !c.generated {
			other = ident(c.name)
			break
		}
	}
	for _, w := range []struct{ check, sql string }{
		{"rls_update_a", "UPDATE " + t.name + " SET " + other + " = " + other + " WHERE " + col + " = " + a},
		{"rls_delete_a", "DELETE FROM " + t.name + " WHERE " + col + " = " + a},
	} {
		o := p.directWrite(ctx, r, w.sql)
		switch {
		case o.err != nil:
			p.result(r, t, LayerRLS, w.check, Pass, "failed, no row changed: "+describeErr(o.err))
		case o.rows > 0:
			p.result(r, t, LayerRLS, w.check, Fail, fmt.Sprintf("with the parser bypassed and the setting = B, it affected %d row(s) of tenant A (rolled back)", o.rows))
		case !seeded:
			p.result(r, t, LayerRLS, w.check, Warn, "affected no row, but no row of A was seeded")
		default:
			p.result(r, t, LayerRLS, w.check, Pass, "affected no row of tenant A")
		}
	}
	sql, err := p.insertFor(ctx, r, t, p.a, 2)
	if err != nil {
		p.result(r, t, LayerRLS, "rls_insert_a", Warn, "not attempted: "+describeErr(err))
		return
	}
	o := p.directWrite(ctx, r, sql)
	switch {
	case o.err == nil:
		p.result(r, t, LayerRLS, "rls_insert_a", Fail, "with the setting = B a row for tenant A was accepted (rolled back): row-level security must refuse it (a policy WITH CHECK comparing the tenant column with the setting)")
	case sqlState(o.err) == "42501":
		p.result(r, t, LayerRLS, "rls_insert_a", Pass, "refused by row-level security: "+describeErr(o.err))
	case !seeded:
		p.result(r, t, LayerRLS, "rls_insert_a", Warn, "refused, but not by row-level security (and the row could not be seeded as A either): "+describeErr(o.err))
	default:
		p.result(r, t, LayerRLS, "rls_insert_a", Fail, "refused, but not by row-level security (42501), so WITH CHECK is not shown to hold: "+describeErr(o.err))
	}
}

// directWrite runs a write on the direct connection inside a transaction
// that is always rolled back.
func (p *prover) directWrite(ctx context.Context, r *region, sql string) outcome {
	cctx, cancel := p.step(ctx)
	defer cancel()
	tx, err := r.direct.Begin(cctx)
	if err != nil {
		return outcome{err: err}
	}
	defer func() { _ = tx.Rollback(context.WithoutCancel(cctx)) }()
	tag, err := tx.Exec(cctx, sql)
	return outcome{rows: tag.RowsAffected(), err: err}
}
