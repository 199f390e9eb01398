package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"io"
	"log/slog"
	"net/url"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/pgtenant/pgtenant/auth"
	"github.com/pgtenant/pgtenant/cluster"
	"github.com/pgtenant/pgtenant/config"
	"github.com/pgtenant/pgtenant/demo"
)

func init() { register(newDemoCmd) }

// demoTenants are the tenants the demo mints tokens for: one per region.
var demoTenants = []struct{ account, region string }{{"42", "eu-west"}, {"7", "us-east"}}

func newDemoCmd() *cobra.Command {
	var listen, adminListen string
	cmd := &cobra.Command{
		Use:   "demo",
		Short: "Run pgtenant in front of two throw-away local PostgreSQL clusters (eu-west, us-east)",
		Long: "demo starts two local PostgreSQL clusters as regions eu-west and us-east, installs a small\n" +
			"schema with tenant tables under row-level security, starts the proxy and prints ready-to-paste\n" +
			"psql connection strings with tokens for two tenants. It runs until interrupted and then removes\n" +
			"everything it created. Only PostgreSQL's server binaries need to be installed.",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			if err := runDemo(ctx, cmd.OutOrStdout(), cmd.ErrOrStderr(), listen, adminListen); err != nil {
				return withCode(exitFailed, err)
			}
			return nil
		},
	}
	cmd.Flags().StringVar(&listen, "listen", "127.0.0.1:6432", "client-facing address (port 0 picks a free one)")
	cmd.Flags().StringVar(&adminListen, "admin-listen", "127.0.0.1:0", "admin HTTP address (empty disables)")
	return cmd
}

func runDemo(ctx context.Context, out, errOut io.Writer, listen, adminListen string) error {
	// bind first: a port in use is one line, before any cluster starts
	ls, err := bind(listen, adminListen, "")
	if err != nil {
		return fmt.Errorf("%w (demo: try --listen 127.0.0.1:0)", err)
	}
	defer ls.close()
	dir, err := os.MkdirTemp("", "pgtenant-demo-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	fmt.Fprintln(out, "pgtenant demo: starting PostgreSQL clusters eu-west and us-east ...")
	clusters := map[string]*cluster.Cluster{}
	defer func() {
		for _, c := range clusters {
			_ = c.Close()
		}
	}()
	for _, name := range []string{"eu-west", "us-east"} {
		sctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
		// Default location: fast shared memory when available; a later start
		// reaps clusters of a demo that was killed without cleaning up.
		c, err := cluster.Start(sctx, cluster.Config{Name: name})
		cancel()
		if err != nil {
			return fmt.Errorf("start cluster %s: %w", name, err)
		}
		clusters[name] = c
		if err := demo.Install(ctx, c); err != nil {
			return err
		}
	}
	adminAddr := ""
	if ls.admin != nil {
		adminAddr = ls.admin.Addr().String()
	}
	cfg, err := demoConfig(dir, ls.proxy.Addr().String(), adminAddr, clusters)
	if err != nil {
		return err
	}
	level := new(slog.LevelVar)
	log := newLogger(errOut, config.Log{Level: "warn", Format: "text"}, level)
	a, err := newApp(ctx, cfg, log, level)
	if err != nil {
		return err
	}
	if err := printDemoBanner(out, a, ls); err != nil {
		return err
	}
	return a.run(ctx, ls)
}

// demoConfig is the configuration a production deployment would write by
// hand, pointing at the throw-away clusters.
func demoConfig(dir, listen, adminListen string, clusters map[string]*cluster.Cluster) (*config.Config, error) {
	secret := make([]byte, 32)
	if _, err := rand.Read(secret); err != nil {
		return nil, err
	}
	cfg := config.Default()
	cfg.Listen, cfg.AdminListen = listen, adminListen
	cfg.Auth.Secret = []byte(hex.EncodeToString(secret))
	cfg.Audit.SpoolDir = filepath.Join(dir, "spool")
	cfg.Audit.CheckpointDir = filepath.Join(dir, "checkpoints")
	cfg.Policy.GlobalTables = []string{"public.countries"}
	cfg.Regions = map[string]config.Region{}
	for name, c := range clusters {
		cfg.Regions[name] = config.Region{Host: "127.0.0.1", Port: c.Port, User: c.ServiceUser, Password: c.ServicePassword,
			Database: c.Database, SSLMode: "disable", ConnectTimeout: 5 * time.Second,
			AdminUser: cluster.Superuser}
	}
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("demo config: %w", err)
	}
	return cfg, nil
}

func printDemoBanner(out io.Writer, a *app, ls *listeners) error {
	addr := ls.proxy.Addr().String()
	fmt.Fprintf(out, "\npgtenant demo is ready: proxy on %s", addr)
	if ls.admin != nil {
		fmt.Fprintf(out, ", admin on http://%s (/metrics /readyz /isolation-proof)", ls.admin.Addr())
	}
	fmt.Fprint(out, "\n\nConnect as a tenant (the password is the tenant's JWT):\n\n")
	for _, t := range demoTenants {
		tok, err := auth.Mint(auth.MintOptions{Secret: a.cfg.Auth.Secret, Account: t.account, Region: t.region, Subject: "demo-user-" + t.account, TTL: 24 * time.Hour})
		if err != nil {
			return err
		}
		u := url.URL{Scheme: "postgresql", User: url.UserPassword("demo", tok), Host: addr, Path: "/app", RawQuery: "sslmode=disable"}
		fmt.Fprintf(out, "  # tenant %s, region %s\n  psql '%s'\n\n", t.account, t.region, u.String())
	}
	fmt.Fprint(out, "Try:\n"+
		"  SELECT * FROM orders WHERE account_id = 42;   -- scoped: allowed (tenant 42)\n"+
		"  SELECT * FROM orders;                         -- unscoped: denied with 42501\n"+
		"  SELECT * FROM countries;                      -- global table: allowed\n"+
		"  SET app.current_account_id = 7;               -- escape attempt: denied\n\n"+
		"Press Ctrl-C to stop; everything the demo created is removed.\n")
	return nil
}
