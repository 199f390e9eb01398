package main

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"syscall"

	"github.com/spf13/cobra"

	"github.com/pgtenant/pgtenant/config"
)

func init() { register(newServeCmd) }

func newServeCmd() *cobra.Command {
	var path string
	cmd := &cobra.Command{
		Use:   "serve --config FILE",
		Short: "Run the proxy until SIGTERM or SIGINT, then drain gracefully",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			return runServe(ctx, path, cmd.ErrOrStderr())
		},
	}
	cmd.Flags().StringVar(&path, "config", "", "configuration file (YAML)")
	_ = cmd.MarkFlagRequired("config")
	return cmd
}

// runServe runs the proxy configured by the file at path until ctx ends.
// The addresses are bound first, so that a port in use is reported in one
// line before anything connects to a region.
func runServe(ctx context.Context, path string, errOut io.Writer) error {
	cfg, err := config.Load(path)
	if err != nil {
		return withCode(exitUsage, err)
	}
	level := new(slog.LevelVar)
	log := newLogger(errOut, cfg.Log, level)
	ls, err := bind(cfg.Listen, cfg.AdminListen, cfg.TenantAPI.Listen)
	if err != nil {
		return withCode(exitUsage, err)
	}
	startPprof(log)
	tuneGC()
	a, err := newApp(ctx, cfg, log, level)
	if err != nil {
		ls.close()
		if errors.Is(err, context.Canceled) && ctx.Err() != nil {
			return nil // stopped while starting
		}
		return withCode(exitUsage, withFix(err))
	}
	a.configPath = path
	go a.watchConfig(ctx, path)
	if err := a.run(ctx, ls); err != nil {
		return withCode(exitFailed, err)
	}
	return nil
}
