package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"

	"log/slog"

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
			cfg, err := config.Load(path)
			if err != nil {
				return withCode(exitUsage, err)
			}
			level := new(slog.LevelVar)
			log := newLogger(cmd.ErrOrStderr(), cfg.Log, level)
			startPprof(log)
			ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			a, err := newApp(ctx, cfg, log, level)
			if err != nil {
				return withCode(exitUsage, err)
			}
			ls, err := a.listen()
			if err != nil {
				return withCode(exitUsage, err)
			}
			a.configPath = path
			go a.watchConfig(ctx, path)
			if err := a.run(ctx, ls); err != nil {
				return withCode(exitFailed, err)
			}
			return nil
		},
	}
	cmd.Flags().StringVar(&path, "config", "", "configuration file (YAML)")
	_ = cmd.MarkFlagRequired("config")
	return cmd
}
