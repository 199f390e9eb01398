package main

import (
	"context"
	"fmt"
	"log/slog"
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
		LastVerification: func(region string) (isolation.Verification, bool) {
			if a.auditWatch == nil {
				return isolation.Verification{}, false
			}
			return a.auditWatch.lastVerification(region)
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
			return fmt.Errorf("policy.require_rls: region %s: %w (fix: `pgtenant setup --config FILE` prints the SQL that enables and forces it, `--apply` runs it)", name, err)
		}
	}
	return nil
}

// warnIsolation inspects region's isolation layers in the background and
// logs a WARN for each that row-level security does not hold: a service
// role that is superuser, BYPASSRLS or owns a tenant table, and a tenant
// table without enabled and forced RLS. Called at start and after every
// discovery, so a migration that adds an unprotected table is noticed.
func (a *app) warnIsolation(region string) {
	r, ok := a.cfg.Regions[region]
	if !ok {
		return
	}
	a.background(func() {
		ctx, cancel := context.WithTimeout(a.ctx, r.ConnectTimeout+10*time.Second)
		defer cancel()
		rep := isolation.Inspect(ctx, region, r, isolation.Options{Policy: a.cfg.Policy, ParserActive: true})
		if a.ctx.Err() == nil { // not a report cut short by the app stopping
			logIsolationWarnings(a.log, rep)
		}
	})
}

// logIsolationWarnings logs the WARNs for rep (see warnIsolation).
func logIsolationWarnings(log *slog.Logger, rep isolation.Report) {
	if rep.Error != "" {
		log.Warn("isolation check failed: row-level security state unknown", "region", rep.Region, "error", rep.Error)
		return
	}
	const fix = "run `pgtenant setup --config FILE` to see the fix, `--apply` to apply it"
	role := rep.Role
	if role.Superuser || role.BypassRLS || len(role.OwnsTables) > 0 {
		log.Warn("service role bypasses row-level security: only the proxy's statement policy isolates tenants",
			"region", rep.Region, "role", role.Role, "superuser", role.Superuser, "bypassrls", role.BypassRLS,
			"owns_tenant_tables", role.OwnsTables, "fix", fix)
	}
	var unforced []string
	for _, t := range rep.RLS.Tables {
		if !t.RLSEnabled || !t.RLSForced {
			unforced = append(unforced, t.Table)
		}
	}
	if len(unforced) > 0 {
		log.Warn("tenant tables without enabled and forced row-level security", "region", rep.Region,
			"tables", unforced, "fix", fix)
	}
}
