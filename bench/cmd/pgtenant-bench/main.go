// Command pgtenant-bench compares pgtenant with a direct connection and with
// PgBouncer using pgbench, in one run on this machine, and measures pgtenant
// with many idle connections. See bench/README.md.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/spf13/pflag"

	"github.com/pgtenant/pgtenant/bench"
)

// Exit codes, as for pgtenant itself.
const (
	exitFailed = 1
	exitUsage  = 2
)

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

// run parses args, runs the harness and returns the exit code.
func run(args []string, stdout, stderr io.Writer) int {
	o, verbose, err := parseFlags(args, stderr)
	if errors.Is(err, pflag.ErrHelp) {
		return 0
	}
	if err != nil {
		fmt.Fprintf(stderr, "pgtenant-bench: %s\n", oneLine(err))
		return exitUsage
	}
	if err := o.Validate(); err != nil {
		fmt.Fprintf(stderr, "pgtenant-bench: %s\n", oneLine(err))
		return exitUsage
	}
	level := slog.LevelInfo
	if !verbose && o.Smoke {
		level = slog.LevelWarn
	}
	log := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: level}))
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	res, err := bench.Run(ctx, o, log)
	if err != nil {
		fmt.Fprintf(stderr, "pgtenant-bench: %s\n", oneLine(err))
		return exitFailed
	}
	res.Markdown(stdout)
	fmt.Fprintf(stdout, "\nresults written to %s/results.json and %s/results.md\n", o.OutDir, o.OutDir)
	if failed := res.Failed(); len(failed) > 0 {
		fmt.Fprintf(stderr, "pgtenant-bench: %d run(s) failed, first: %s %s -c %d: %s\n", len(failed),
			failed[0].Target, failed[0].Mode, failed[0].Clients, oneLine(errors.New(failed[0].Error)))
		return exitFailed
	}
	return 0
}

// parseFlags builds the options: the defaults (or the --smoke preset),
// overridden by every flag given explicitly.
func parseFlags(args []string, stderr io.Writer) (bench.Options, bool, error) {
	def := bench.DefaultOptions()
	fs := pflag.NewFlagSet("pgtenant-bench", pflag.ContinueOnError)
	fs.SetOutput(io.Discard) // errors are reported in one line by run
	var (
		o       bench.Options
		verbose bool
	)
	fs.DurationVar(&o.Duration, "duration", def.Duration, "pgbench -T of each measured run")
	fs.IntVar(&o.Rounds, "rounds", def.Rounds, "measured runs per target, mode and client count, the targets' order reversed every other round; the report keeps each target's median-TPS run")
	fs.DurationVar(&o.Warmup, "warmup", def.Warmup, "unmeasured pgbench run per target before measuring (0 = none)")
	fs.IntSliceVar(&o.Clients, "clients", def.Clients, "pgbench -c values")
	fs.IntVar(&o.PoolSize, "pool-size", def.PoolSize, "backends of the transaction-mode pools: PgBouncer's default_pool_size and pgtenant-transaction's pool.size")
	fs.StringSliceVar(&o.Modes, "modes", def.Modes, "pgbench -M values: simple,extended,prepared")
	fs.StringSliceVar(&o.Targets, "targets", def.Targets, "targets: "+strings.Join(bench.AllTargets, ","))
	fs.IntVar(&o.IdleConns, "idle-conns", def.IdleConns, "idle connections held through pgtenant in the connection-scale run (0 = skip)")
	fs.IntVar(&o.Tenants, "tenants", def.Tenants, "tenants in the accounts table")
	fs.IntVar(&o.RowsPerTenant, "rows-per-tenant", def.RowsPerTenant, "accounts rows per tenant")
	fs.Int64Var(&o.Tenant, "tenant", def.Tenant, "the tenant pgbench connects as")
	fs.StringVar(&o.Workload, "workload", def.Workload, "pgbench script: rw (BEGIN; SELECT; UPDATE; SELECT; END) or select (one tenant-scoped point select)")
	fs.StringVar(&o.OutDir, "out", def.OutDir, "directory for results.json and results.md")
	fs.StringVar(&o.DataDir, "data-dir", "", "parent directory of the cluster's data (default: a temp dir under $TMPDIR; avoid tmpfs, where fsync is free)")
	fs.StringVar(&o.PgtenantBin, "pgtenant-bin", "", "prebuilt pgtenant binary (default: go build ./cmd/pgtenant)")
	fs.BoolVar(&o.KeepLogs, "keep-logs", false, "keep pgbench's per-transaction logs under --out/logs")
	fs.BoolVar(&o.Smoke, "smoke", false, "a few seconds in all: every target, 1 client, 1 mode, 1s runs, 20 idle connections (for CI)")
	fs.BoolVarP(&verbose, "verbose", "v", false, "progress logs in --smoke mode too")
	usage := func() {
		fmt.Fprintf(stderr, "Usage: pgtenant-bench [flags]\n\nBenchmarks pgtenant against a direct connection and PgBouncer with pgbench.\n\n%s", fs.FlagUsages())
	}
	fs.Usage = func() {}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, pflag.ErrHelp) {
			usage()
		}
		return o, false, err
	}
	if fs.NArg() > 0 {
		return o, false, fmt.Errorf("unexpected argument %q", fs.Arg(0))
	}
	if o.Smoke {
		// Start from the preset; explicit flags still win.
		s := bench.SmokeOptions()
		fs.Visit(func(f *pflag.Flag) {
			switch f.Name {
			case "duration":
				s.Duration = o.Duration
			case "warmup":
				s.Warmup = o.Warmup
			case "rounds":
				s.Rounds = o.Rounds
			case "clients":
				s.Clients = o.Clients
			case "pool-size":
				s.PoolSize = o.PoolSize
			case "modes":
				s.Modes = o.Modes
			case "targets":
				s.Targets = o.Targets
			case "idle-conns":
				s.IdleConns = o.IdleConns
			case "tenants":
				s.Tenants = o.Tenants
			case "rows-per-tenant":
				s.RowsPerTenant = o.RowsPerTenant
			case "tenant":
				s.Tenant = o.Tenant
			case "out":
				s.OutDir = o.OutDir
			case "workload":
				s.Workload = o.Workload
			}
		})
		s.PgtenantBin, s.KeepLogs, s.DataDir = o.PgtenantBin, o.KeepLogs, o.DataDir
		o = s
	}
	return o, verbose, nil
}

// oneLine joins a multi-line error into one line.
func oneLine(err error) string {
	return strings.Join(strings.Fields(strings.ReplaceAll(err.Error(), "\n", "; ")), " ")
}
