package prove

import (
	"context"
	"fmt"
	"slices"

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
