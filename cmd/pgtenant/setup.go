package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"time"

	"github.com/spf13/cobra"

	"github.com/pgtenant/pgtenant/config"
	"github.com/pgtenant/pgtenant/setup"
)

func init() { register(newSetupCmd) }

func newSetupCmd() *cobra.Command {
	var path, region string
	var apply bool
	cmd := &cobra.Command{
		Use:   "setup --config FILE [--region R] [--apply]",
		Short: "Print (or apply, as each region's admin_user) what the database needs for pgtenant: service role, grants, forced RLS, audit schema",
		Long: `setup inspects each region's database as regions.NAME.admin_user and prints,
as SQL to review, what pgtenant's three layers need there: a service role
(regions.NAME.user) that is neither superuser, BYPASSRLS nor owner of a tenant
table; SELECT, INSERT, UPDATE and DELETE on every tenant table (and USAGE on
its schema and sequences, also for tables migrations create later); row-level
security enabled and forced with a fail-closed policy on the tenant setting
(an unset or empty setting matches no row); the audit schema; and an event
trigger that tells running proxies about migrations at commit.

Without --apply it changes nothing and exits 0, also when changes are pending.
With --apply it runs the plan as the admin role (idempotent: a second run finds
nothing pending) and exits 0 when every region is done, 2 on any error.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return runSetup(cmd.Context(), cmd.OutOrStdout(), cmd.ErrOrStderr(), path, region, apply)
		},
	}
	cmd.Flags().StringVar(&path, "config", "", "configuration file (YAML)")
	cmd.Flags().StringVar(&region, "region", "", "only this region (default: every configured region)")
	cmd.Flags().BoolVar(&apply, "apply", false, "apply the plan as each region's admin_user")
	_ = cmd.MarkFlagRequired("config")
	return cmd
}

func runSetup(ctx context.Context, out, errOut io.Writer, path, region string, apply bool) error {
	if ctx == nil {
		ctx = context.Background()
	}
	cfg, err := config.LoadAdmin(path)
	if err != nil {
		return withCode(exitUsage, err)
	}
	names := cfg.RegionNames()
	if region != "" {
		if _, ok := cfg.Regions[region]; !ok {
			return withCode(exitUsage, fmt.Errorf("setup: region %q is not configured", region))
		}
		names = []string{region}
	}
	log := newLogger(errOut, config.Log{Level: "warn", Format: "text"}, new(slog.LevelVar))
	opts := setup.Options{Policy: cfg.Policy, Audit: !cfg.Audit.Disabled, Logger: log}
	for _, name := range names {
		r := cfg.Regions[name]
		rctx, cancel := context.WithTimeout(ctx, r.ConnectTimeout+2*time.Minute)
		if !apply {
			plan, err := setup.Inspect(rctx, name, r, opts)
			cancel()
			if err != nil {
				return withCode(exitUsage, withFix(err))
			}
			plan.Write(out)
			continue
		}
		applied, remaining, err := setup.Apply(rctx, name, r, opts)
		cancel()
		if err != nil {
			return withCode(exitUsage, withFix(err))
		}
		if !applied.Pending() {
			applied.Write(out)
			continue
		}
		fmt.Fprintf(out, "-- applied in region %s:\n", name)
		applied.Write(out)
		if remaining.Pending() {
			remaining.Write(out)
			return withCode(exitUsage, fmt.Errorf("setup: region %s: %d change(s) still pending after --apply", name, len(remaining.Steps)))
		}
	}
	return nil
}
