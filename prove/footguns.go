package prove

import (
	"context"
	"fmt"
	"slices"

	"github.com/jackc/pgx/v5"

	"github.com/pgtenant/pgtenant/isolation"
	"github.com/pgtenant/pgtenant/regiondb"
)

// footguns reports the RLS deployment footguns of isolation.Footguns (the
// same checks /isolation-proof runs): a leak fails the gate, a warning is
// reported, and every check that found nothing passes. It uses a fresh
// connection as the service role, on which the tenant setting has never been
// set, so that policies can be evaluated with it unset.
func (p *prover) footguns(ctx context.Context, r *region) {
	cctx, cancel := p.step(ctx)
	defer cancel()
	conn, err := regiondb.Connect(cctx, r.name, r.cfg, regiondb.Service(r.cfg, "pgtenant-prove"))
	if err != nil {
		p.result(r, nil, LayerRLS, "footguns", Fail, "cannot connect as the service role to look for RLS footguns: "+describeErr(err))
		return
	}
	defer conn.Close(context.WithoutCancel(ctx))
	p.unsetSetting(cctx, r, conn)
	findings, err := isolation.Footguns(cctx, conn, p.o.Config.Policy, p.o.StepTimeout)
	if err != nil {
		p.result(r, nil, LayerRLS, "footguns", Fail, "cannot look for RLS footguns: "+describeErr(err))
		return
	}
	for _, check := range isolation.FootgunChecks {
		if !slices.ContainsFunc(findings, func(f isolation.Finding) bool { return f.Check == check }) {
			p.result(r, nil, LayerRLS, check, Pass, "none found")
		}
	}
	for _, f := range findings {
		status := Warn
		if f.Severity == isolation.SeverityLeak {
			status = Fail
		}
		p.footgunResult(r, f, status)
	}
}

// footgunResult records one finding against its tenant table (by the
// display name prove uses) or region-wide.
func (p *prover) footgunResult(r *region, f isolation.Finding, status string) {
	var t *table
	for _, tt := range r.tables {
		if tt.name == f.Table {
			t = tt
		}
	}
	detail := fmt.Sprintf("%s: %s. Fix: %s", f.Object, f.Detail, f.Fix)
	if t == nil && f.Table != "" {
		detail = f.Table + ": " + detail
	}
	p.result(r, t, LayerRLS, f.Check, status, detail)
}

// unsetSetting counts, on a connection that has never set the tenant
// setting, the rows of each tenant table the service role sees: a policy
// must match nothing when the setting is unset (rls_fail_closed tries the
// empty string; a policy testing "IS NULL" passes that one). A's seeded
// rows are there to be seen.
func (p *prover) unsetSetting(ctx context.Context, r *region, conn *pgx.Conn) {
	var current *string
	if err := conn.QueryRow(ctx, "SELECT pg_catalog.current_setting($1, true)", p.o.Config.Policy.TenantSetting).Scan(&current); err != nil {
		p.result(r, nil, LayerRLS, "rls_fail_closed_unset", Fail, "cannot read the tenant setting: "+describeErr(err))
		return
	}
	if current != nil {
		p.result(r, nil, LayerRLS, "rls_fail_closed_unset", Warn, fmt.Sprintf("not attempted: sessions start with %s = %q (see tenant_setting_default)", p.o.Config.Policy.TenantSetting, *current))
		return
	}
	for _, t := range r.usable() {
		var n int64
		err := conn.QueryRow(ctx, "SELECT count(*) FROM (SELECT 1 FROM "+t.name+" LIMIT 1) s").Scan(&n)
		switch {
		case err != nil:
			p.result(r, t, LayerRLS, "rls_fail_closed_unset", Pass, "with the setting unset the query fails: "+describeErr(err))
		case n > 0:
			setting := p.o.Config.Policy.TenantSetting
			p.result(r, t, LayerRLS, "rls_fail_closed_unset", Fail, fmt.Sprintf(
				"with %s unset the service role sees rows: the policy must match nothing when the setting is unset. Fix: USING (%s = NULLIF(current_setting('%s', true), '')::%s) on every permissive policy",
				setting, ident(t.column), setting, t.columnType))
		case len(r.seeded[t.oid]) == 0:
			p.result(r, t, LayerRLS, "rls_fail_closed_unset", Warn, "no row visible with the setting unset, but no row of A was seeded to hide")
		default:
			p.result(r, t, LayerRLS, "rls_fail_closed_unset", Pass, "with the setting unset no row is visible")
		}
	}
}
