package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"slices"
	"syscall"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/spf13/cobra"

	"github.com/pgtenant/pgtenant/audit"
	"github.com/pgtenant/pgtenant/auth"
	"github.com/pgtenant/pgtenant/config"
	"github.com/pgtenant/pgtenant/prove"
)

func init() { register(newProveCmd) }

// proveFlags are the flags of `pgtenant prove`.
type proveFlags struct {
	config           string
	regions          []string
	tenantA, tenantB string
	tokenA, tokenB   string
	addr             string
	json, keep       bool
	timeout          time.Duration
}

func newProveCmd() *cobra.Command {
	f := &proveFlags{}
	cmd := &cobra.Command{
		Use:   "prove --config FILE [--region R] [--tenant-a ID --tenant-b ID] [--addr HOST:PORT] [--json] [--keep]",
		Short: "Prove cross-tenant isolation end to end (a CI/CD gate); exit 0 pass, 1 fail, 2 cannot run",
		Long: `prove creates two synthetic tenants A and B in every region, writes rows as A through
pgtenant into every tenant table, then as B tries every way to reach A's rows (reads, writes,
deletes, unscoped and A-scoped queries, joins, subqueries, prepared statements re-bound to A,
COPY, escapes from the tenant context) and checks that each is denied or touches no row. It
then bypasses pgtenant (a direct connection as the service role with the tenant setting set
to B) and checks that row-level security alone still hides A's rows, and finally deletes
everything it wrote.

Without --addr it runs pgtenant in-process from the config on 127.0.0.1 (a free port); with
--addr it tests an already running pgtenant. Tokens are minted with the config's HS256
secret; without one, pass --token-a and --token-b (their claims name the tenants and region).

Exit status: 0 every check passed (warnings allowed), 1 a check failed, 2 it could not run.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			return runProve(ctx, cmd.OutOrStdout(), cmd.ErrOrStderr(), f)
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&f.config, "config", "", "configuration file (YAML)")
	fl.StringSliceVar(&f.regions, "region", nil, "region to prove (repeatable; default every configured region)")
	fl.StringVar(&f.tenantA, "tenant-a", "", "id of the synthetic tenant that owns the rows (default: a random unused id)")
	fl.StringVar(&f.tenantB, "tenant-b", "", "id of the synthetic attacking tenant (default: a random unused id)")
	fl.StringVar(&f.tokenA, "token-a", "", "token for tenant A, when the config has no HS256 secret to mint one")
	fl.StringVar(&f.tokenB, "token-b", "", "token for tenant B, when the config has no HS256 secret to mint one")
	fl.StringVar(&f.addr, "addr", "", "host:port of a running pgtenant to test (default: run one in-process)")
	fl.BoolVar(&f.json, "json", false, "print the report as JSON")
	fl.BoolVar(&f.keep, "keep", false, "leave tenant A's rows in place (debugging; a later run refuses that tenant id)")
	fl.DurationVar(&f.timeout, "step-timeout", 30*time.Second, "time limit of each statement or connection")
	_ = cmd.MarkFlagRequired("config")
	return cmd
}

// runProve runs the gate and prints the report.
func runProve(ctx context.Context, out, errOut io.Writer, f *proveFlags) error {
	cfg, err := config.Load(f.config)
	if err != nil {
		return withCode(exitUsage, err)
	}
	for _, r := range f.regions {
		if _, ok := cfg.Regions[r]; !ok {
			return withCode(exitUsage, fmt.Errorf("prove: --region %s is not configured (configured: %v)", r, cfg.RegionNames()))
		}
	}
	if f.timeout <= 0 {
		return withCode(exitUsage, fmt.Errorf("prove: --step-timeout %s must be positive", f.timeout))
	}
	opts := prove.Options{Config: cfg, Regions: f.regions, TenantA: f.tenantA, TenantB: f.tenantB,
		Addr: f.addr, Keep: f.keep, StepTimeout: f.timeout}
	if err := proveTokens(cfg, f, &opts); err != nil {
		return withCode(exitUsage, err)
	}
	level := new(slog.LevelVar)
	log := newLogger(errOut, config.Log{Level: "warn", Format: cfg.Log.Format}, level)
	opts.Log = log
	if opts.Addr == "" {
		addr, stopApp, err := startProveApp(ctx, cfg, log, level)
		if err != nil {
			return withCode(exitUsage, err)
		}
		defer stopApp()
		opts.Addr, opts.SSLMode = addr, "disable"
		if cfg.TLS.Enabled() {
			opts.SSLMode = "require"
		}
	}
	rep, err := prove.Run(ctx, opts)
	if err != nil {
		return withCode(exitUsage, err)
	}
	if f.json {
		err = rep.WriteJSON(out)
	} else {
		err = rep.WriteTable(out)
	}
	if err != nil {
		return withCode(exitUsage, fmt.Errorf("prove: write the report: %w", err))
	}
	if !rep.OK {
		return withCode(exitFailed, fmt.Errorf("prove: isolation proof failed: %d check(s) failed", rep.Failed))
	}
	return nil
}

// startProveApp runs pgtenant in-process as serve would, on a free
// loopback port with no admin endpoint. A spool-mode audit is switched to
// strict so it does not contend for the spool directory of a pgtenant
// already running from the same config; the events still reach the audit.
func startProveApp(ctx context.Context, cfg *config.Config, log *slog.Logger, level *slog.LevelVar) (string, func(), error) {
	c := *cfg
	c.Listen, c.AdminListen = "127.0.0.1:0", ""
	if c.Audit.Mode == audit.ModeSpool {
		c.Audit.Mode = audit.ModeStrict
	}
	c.Limits.ShutdownTimeout = 5 * time.Second
	ls, err := bind(c.Listen, c.AdminListen, "")
	if err != nil {
		return "", nil, fmt.Errorf("prove: start pgtenant: %w", err)
	}
	a, err := newApp(ctx, &c, log, level)
	if err != nil {
		ls.close()
		return "", nil, fmt.Errorf("prove: start pgtenant: %w", err)
	}
	runCtx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	done := make(chan error, 1)
	go func() { done <- a.run(runCtx, ls) }()
	stop := func() {
		cancel()
		if err := <-done; err != nil {
			log.Warn("in-process pgtenant stopped with an error", "error", err)
		}
	}
	return ls.proxy.Addr().String(), stop, nil
}

// proveTokens sets opts.Token: minted with the config's HS256 secret, or
// the --token-a/--token-b pair, whose claims then fix the tenants and the region.
func proveTokens(cfg *config.Config, f *proveFlags, opts *prove.Options) error {
	if f.tokenA == "" && f.tokenB == "" {
		if len(cfg.Auth.Secret) == 0 {
			return errors.New("prove: the config has no HS256 secret (auth.hs256_secret, _env or _file) to mint tokens with: pass --token-a and --token-b")
		}
		opts.Token = func(account, region string) (string, error) {
			return auth.Mint(auth.MintOptions{Secret: cfg.Auth.Secret, Account: account, Region: region, Subject: "pgtenant-prove",
				TTL: time.Hour, Issuer: cfg.Auth.Issuer, Audience: cfg.Auth.Audience,
				TenantClaim: cfg.Auth.TenantClaim, RegionClaim: cfg.Auth.RegionClaim})
		}
		return nil
	}
	if f.tokenA == "" || f.tokenB == "" {
		return errors.New("prove: --token-a and --token-b go together")
	}
	accA, regA, err := tokenClaims(cfg, "--token-a", f.tokenA)
	if err != nil {
		return err
	}
	accB, regB, err := tokenClaims(cfg, "--token-b", f.tokenB)
	if err != nil {
		return err
	}
	switch {
	case regA != regB:
		return fmt.Errorf("prove: --token-a is for region %s but --token-b for %s", regA, regB)
	case f.tenantA != "" && f.tenantA != accA:
		return fmt.Errorf("prove: --tenant-a %s differs from --token-a's tenant %s", f.tenantA, accA)
	case f.tenantB != "" && f.tenantB != accB:
		return fmt.Errorf("prove: --tenant-b %s differs from --token-b's tenant %s", f.tenantB, accB)
	case len(f.regions) > 0 && (len(f.regions) != 1 || f.regions[0] != regA):
		return fmt.Errorf("prove: the tokens are for region %s only; --region %v", regA, f.regions)
	}
	if _, ok := cfg.Regions[regA]; !ok {
		return fmt.Errorf("prove: the tokens' region %s is not configured", regA)
	}
	opts.Regions, opts.TenantA, opts.TenantB = []string{regA}, accA, accB
	tokens := map[string]string{accA: f.tokenA, accB: f.tokenB}
	opts.Token = func(account, region string) (string, error) {
		tok, ok := tokens[account]
		if !ok || region != regA {
			return "", fmt.Errorf("no token given for tenant %s in region %s", account, region)
		}
		return tok, nil
	}
	return nil
}

// tokenClaims reads a token's tenant and region claims without verifying
// it (pgtenant verifies it when prove connects).
func tokenClaims(cfg *config.Config, flag, token string) (account, region string, err error) {
	claims := jwt.MapClaims{}
	if _, _, err := jwt.NewParser(jwt.WithJSONNumber()).ParseUnverified(token, claims); err != nil {
		return "", "", fmt.Errorf("prove: %s is not a JWT: %w", flag, err)
	}
	get := func(name string) string {
		switch v := claims[name].(type) {
		case string:
			return v
		case fmt.Stringer:
			return v.String()
		}
		return ""
	}
	tenantClaim, regionClaim := cfg.Auth.TenantClaim, cfg.Auth.RegionClaim
	account, region = get(tenantClaim), get(regionClaim)
	if account == "" || region == "" {
		return "", "", fmt.Errorf("prove: %s has no %s or %s claim", flag, tenantClaim, regionClaim)
	}
	if !slices.Contains(cfg.RegionNames(), region) {
		return "", "", fmt.Errorf("prove: %s is for region %s, which is not configured", flag, region)
	}
	return account, region, nil
}
