package main

import (
	"context"
	"fmt"
	"time"

	"github.com/pgtenant/pgtenant/config"
	"github.com/pgtenant/pgtenant/isolation"
	"github.com/pgtenant/pgtenant/regiondb"
)

// proofOptions configures /isolation-proof for cfg: the parser layer is
// active whenever serve runs (the policy engine is always wired in).
func (a *app) proofOptions(cfg *config.Config) isolation.Options {
	return isolation.Options{
		Policy:        cfg.Policy,
		ParserActive:  true,
		PolicyVersion: fmt.Sprintf("pgtenant %s, config sha256:%.12s", version, configHash(cfg)),
		ChainHeads: func(ctx context.Context, region string) (isolation.ChainHeads, error) {
			return chainHeads(ctx, cfg, region)
		},
	}
}

// chainHeads summarises a region's audit chains without naming a tenant.
// The service role may not read the audit tables, so this uses the region's
// admin role; without one the proof reports the heads as unavailable.
func chainHeads(ctx context.Context, cfg *config.Config, region string) (isolation.ChainHeads, error) {
	r, ok := cfg.Regions[region]
	if !ok || r.AdminUser == "" {
		return isolation.ChainHeads{}, fmt.Errorf("chain heads need regions.%s.admin_user (the service role cannot read the audit)", region)
	}
	adminDB := r
	adminDB.Database = r.AuditDB()
	conn, err := regiondb.Connect(ctx, region, adminDB, regiondb.Admin(adminDB, "pgtenant-isolation-proof"))
	if err != nil {
		return isolation.ChainHeads{}, err
	}
	defer conn.Close(context.Background())
	var heads isolation.ChainHeads
	var last *time.Time
	err = conn.QueryRow(ctx, `SELECT count(*), coalesce(sum(seq), 0), max(updated_at) FROM pgtenant_audit.chain_heads`).Scan(&heads.Chains, &heads.Entries, &last)
	heads.LastAppend = last
	return heads, err
}

// requireRLS refuses to start when policy.require_rls is set and a region's
// tenant tables lack enabled and forced row-level security.
func requireRLS(ctx context.Context, cfg *config.Config) error {
	if !cfg.Policy.RequireRLS {
		return nil
	}
	for _, name := range cfg.RegionNames() {
		if err := isolation.CheckRLS(ctx, name, cfg.Regions[name], cfg.Policy); err != nil {
			return fmt.Errorf("policy.require_rls: region %s: %w", name, err)
		}
	}
	return nil
}
