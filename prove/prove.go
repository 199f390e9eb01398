package prove

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/pgtenant/pgtenant/config"
	"github.com/pgtenant/pgtenant/regiondb"
)

// Options configures a run. Config, Addr and Token are required.
type Options struct {
	// Config is pgtenant's configuration: regions, policy and claim names.
	Config *config.Config
	// Regions to prove; default every configured region.
	Regions []string
	// TenantA and TenantB are the synthetic tenants' ids; default random ids
	// that own no rows. Either must own no row in any tenant table: the
	// cleanup deletes every row of both.
	TenantA, TenantB string
	// Addr is pgtenant's client address, host:port.
	Addr string
	// SSLMode for connections to Addr; default prefer.
	SSLMode string
	// Token returns a token for account in region.
	Token func(account, region string) (string, error)
	// Keep skips the cleanup (for debugging): A's rows stay.
	Keep bool
	// StepTimeout bounds each statement or connection; default 30s.
	StepTimeout time.Duration
	// Log receives progress at debug level and problems at warn; default discards.
	Log *slog.Logger
}

// region is one region under proof.
type region struct {
	name   string
	cfg    config.Region
	tables []*table
	direct *pgx.Conn // the service role, straight to PostgreSQL
	// seeded holds, by table oid, the rows inserted as A (column -> text, nil for NULL).
	seeded map[uint32][]map[string]*string
	// seedErr holds, by table oid, why a table could not be seeded.
	seedErr map[uint32]string
	// before holds, by table oid, A's rows as seen by A after seeding.
	before map[uint32]snapshot
}

// prover is one run.
type prover struct {
	o   Options
	rep *Report
	a   string // tenant A
	b   string // tenant B
}

// Run proves isolation in every selected region and returns the report. It
// returns an error, and no report, only when the proof cannot run: bad
// options, an unreachable region, tenant ids that already own rows.
func Run(ctx context.Context, o Options) (*Report, error) {
	if o.Config == nil || o.Addr == "" || o.Token == nil {
		return nil, errors.New("prove: Config, Addr and Token are required")
	}
	if o.SSLMode == "" {
		o.SSLMode = "prefer"
	}
	if o.StepTimeout <= 0 {
		o.StepTimeout = 30 * time.Second
	}
	if o.Log == nil {
		o.Log = slog.New(slog.DiscardHandler)
	}
	names := o.Regions
	if len(names) == 0 {
		names = o.Config.RegionNames()
	}
	var regions []*region
	defer func() {
		for _, r := range regions {
			r.direct.Close(context.Background())
		}
	}()
	for _, name := range names {
		rc, ok := o.Config.Regions[name]
		if !ok {
			return nil, fmt.Errorf("prove: region %q is not configured (configured: %v)", name, o.Config.RegionNames())
		}
		r, err := openRegion(ctx, o, name, rc)
		if err != nil {
			return nil, err
		}
		regions = append(regions, r)
	}
	p := &prover{o: o, rep: &Report{OK: true, Regions: names, Results: []Result{}}}
	if err := p.pickTenants(ctx, regions); err != nil {
		return nil, err
	}
	p.rep.TenantA, p.rep.TenantB = p.a, p.b
	for _, r := range regions {
		if err := p.proveRegion(ctx, r); err != nil {
			return nil, err
		}
	}
	return p.rep, nil
}

// openRegion connects to a region as the service role and reads its tenant tables.
func openRegion(ctx context.Context, o Options, name string, rc config.Region) (*region, error) {
	cctx, cancel := context.WithTimeout(ctx, o.StepTimeout)
	defer cancel()
	conn, err := regiondb.Connect(cctx, name, rc, regiondb.Service(rc, "pgtenant-prove"))
	if err != nil {
		return nil, fmt.Errorf("prove: %w", err)
	}
	tables, err := discoverTables(cctx, conn, o.Config.Policy)
	if err != nil {
		conn.Close(context.Background())
		return nil, fmt.Errorf("prove: region %s: %w", name, err)
	}
	return &region{name: name, cfg: rc, tables: tables, direct: conn,
		seeded: map[uint32][]map[string]*string{}, seedErr: map[uint32]string{}, before: map[uint32]snapshot{}}, nil
}

// usable returns the region's resolved tenant tables.
func (r *region) usable() []*table {
	var out []*table
	for _, t := range r.tables {
		if t.missing == "" {
			out = append(out, t)
		}
	}
	return out
}

// result records a result for region r.
func (p *prover) result(r *region, t *table, layer, check, status, detail string) {
	name := ""
	if t != nil {
		name = t.display
	}
	p.rep.add(Result{Region: r.name, Table: name, Layer: layer, Check: check, Status: status, Detail: detail})
	if status == Fail {
		p.o.Log.Warn("isolation check failed", "region", r.name, "table", name, "check", check)
	}
}

// proveRegion runs every step in one region. Cleanup runs even when a step
// fails, unless Options.Keep.
func (p *prover) proveRegion(ctx context.Context, r *region) error {
	if len(r.tables) == 0 {
		p.result(r, nil, LayerSetup, "discover", Fail, fmt.Sprintf(
			"no tenant tables: no table has column %s and policy.tenant_tables is empty, so there is nothing to prove", p.o.Config.Policy.TenantColumn))
		return nil
	}
	for _, t := range r.tables {
		if t.missing != "" {
			p.result(r, t, LayerSetup, "discover", Fail, t.missing)
		}
	}
	tables := r.usable()
	if len(tables) == 0 {
		return nil
	}
	connA, err := p.connect(ctx, r, p.a, nil)
	if err != nil {
		return fmt.Errorf("prove: region %s: connect through pgtenant at %s as tenant A: %w", r.name, p.o.Addr, err)
	}
	defer connA.Close(context.Background())
	if p.o.Keep {
		defer p.result(r, nil, LayerCleanup, "cleanup", Warn, "skipped (keep): the rows of tenant "+p.a+" stay; a later run refuses that tenant id")
	} else {
		defer p.cleanup(context.WithoutCancel(ctx), r, connA)
	}
	p.seed(ctx, r, connA)
	p.attacks(ctx, r)
	p.checkIntact(ctx, r, connA)
	p.rlsAlone(ctx, r)
	p.footguns(ctx, r) // RLS deployment footguns (footguns.go)
	return nil
}

// step returns a context bounded by the step timeout.
func (p *prover) step(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(ctx, p.o.StepTimeout)
}

// pickTenants chooses (or checks) the synthetic tenant ids: both must own
// no row in any tenant table of any region.
func (p *prover) pickTenants(ctx context.Context, regions []*region) error {
	var types []string
	for _, r := range regions {
		for _, t := range r.usable() {
			types = append(types, t.columnType)
		}
	}
	if p.o.TenantA != "" || p.o.TenantB != "" {
		if p.o.TenantA == "" || p.o.TenantB == "" || p.o.TenantA == p.o.TenantB {
			return errors.New("prove: tenant A and tenant B must both be given and differ")
		}
		p.a, p.b = p.o.TenantA, p.o.TenantB
		for _, id := range []string{p.a, p.b} {
			owner, err := ownsRows(ctx, p, regions, id)
			if err != nil {
				return err
			}
			if owner != "" {
				return fmt.Errorf("prove: tenant %s already has rows in %s; prove needs tenants that own no data (it deletes every row of both afterwards)", id, owner)
			}
		}
		return nil
	}
	kind, err := idKindFor(types)
	if err != nil {
		return fmt.Errorf("prove: %w", err)
	}
	var picked []string
	for len(picked) < 2 {
		id := newID(kind)
		if slices.Contains(picked, id) {
			continue
		}
		owner, err := ownsRows(ctx, p, regions, id)
		if err != nil {
			return err
		}
		if owner == "" {
			picked = append(picked, id)
		}
	}
	p.a, p.b = picked[0], picked[1]
	return nil
}

// ownsRows returns the first table (region/table) holding a row of id, or "".
// It sets the tenant setting to id first, so RLS lets the rows be seen.
func ownsRows(ctx context.Context, p *prover, regions []*region, id string) (string, error) {
	for _, r := range regions {
		cctx, cancel := p.step(ctx)
		err := setTenant(cctx, r.direct, p.o.Config.Policy.TenantSetting, id)
		cancel()
		if err != nil {
			return "", fmt.Errorf("prove: region %s: %w", r.name, err)
		}
		for _, t := range r.usable() {
			var found bool
			cctx, cancel := p.step(ctx)
			err := r.direct.QueryRow(cctx, "SELECT EXISTS (SELECT 1 FROM "+t.name+" WHERE "+ident(t.column)+"::text = $1)", id).Scan(&found)
			cancel()
			if err != nil {
				return "", fmt.Errorf("prove: region %s: look for rows of tenant %s in %s: %w", r.name, id, t.display, err)
			}
			if found {
				return r.name + "/" + t.display, nil
			}
		}
	}
	return "", nil
}

// setTenant sets the tenant setting for the rest of the session.
func setTenant(ctx context.Context, conn *pgx.Conn, setting, id string) error {
	if _, err := conn.Exec(ctx, "SELECT pg_catalog.set_config($1, $2, false)", setting, id); err != nil {
		return fmt.Errorf("set %s: %w", setting, err)
	}
	return nil
}
