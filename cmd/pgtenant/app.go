package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"sync/atomic"
	"time"

	"github.com/pgtenant/pgtenant/admin"
	"github.com/pgtenant/pgtenant/audit"
	"github.com/pgtenant/pgtenant/auth"
	"github.com/pgtenant/pgtenant/config"
	"github.com/pgtenant/pgtenant/metrics"
	"github.com/pgtenant/pgtenant/policy"
	"github.com/pgtenant/pgtenant/proxy"
)

// app is a running pgtenant: the proxy, its admin endpoint and the parts
// they share. serve and demo both run one.
type app struct {
	cfg     *config.Config
	log     *slog.Logger
	level   *slog.LevelVar
	proxy   *proxy.Server
	metrics *metrics.Metrics
	admin   *admin.Server
	auditor proxy.Auditor   // nil when the audit is disabled
	ctx     context.Context // ends when the app stops: background work follows it
	// stopDiscovery ends the current policy engine's discovery loop.
	stopDiscovery context.CancelFunc
	engine        atomic.Pointer[policy.Engine]
	closers       []func(context.Context) error
}

// newApp builds every part from cfg; nothing listens yet.
func newApp(ctx context.Context, cfg *config.Config, log *slog.Logger, level *slog.LevelVar) (*app, error) {
	a := &app{cfg: cfg, log: log, level: level, ctx: ctx}
	if err := requireRLS(ctx, cfg); err != nil {
		return nil, err
	}
	verifier, err := auth.NewVerifier(cfg.Auth)
	if err != nil {
		return nil, fmt.Errorf("auth: %w", err)
	}
	var auditor proxy.Auditor
	var recorder *audit.Recorder
	if !cfg.Audit.Disabled {
		if cfg.Audit.Init {
			if err := a.initAudit(ctx, cfg); err != nil {
				return nil, err
			}
		}
		recorder, err = audit.NewRecorder(ctx, cfg.Audit, cfg.Regions, instanceName(), log)
		if err != nil {
			return nil, fmt.Errorf("audit: %w", err)
		}
		a.closers = append(a.closers, recorder.Close)
		auditor = recorder
		a.auditor = recorder
	}
	checkers, err := a.policyFor(cfg)
	if err != nil {
		return nil, err
	}
	a.metrics = metrics.New(metrics.Options{Version: version, Commit: commit, Regions: cfg.RegionNames(),
		AuditStats: auditStats(recorder), CacheStats: a.cacheStats})
	srv, err := proxy.New(proxy.Options{
		Config: cfg, Authenticator: verifier, Checkers: checkers, Auditor: auditor, Metrics: a.metrics, Logger: log,
	})
	if err != nil {
		return nil, fmt.Errorf("proxy: %w", err)
	}
	a.proxy = srv
	a.recordConfig(ctx, "start", configHash(cfg), nil)
	if cfg.AdminListen != "" {
		a.admin = admin.New(admin.Options{
			Addr: cfg.AdminListen, Metrics: a.metrics.Handler(), Regions: cfg.Regions,
			RegionChecks: admin.RegionChecks(cfg.Regions), OnRegionProbe: a.metrics.SetRegionUp, Logger: log,
			AuditCheck: auditCheck(recorder, cfg.RegionNames()), Proof: a.proofOptions(cfg),
		})
	}
	return a, nil
}

// listeners are the app's bound sockets; binding before serving lets the
// caller print the real addresses (port 0 picks a free port).
type listeners struct {
	proxy, admin net.Listener
}

// listen binds cfg.Listen and, when set, cfg.AdminListen.
func (a *app) listen() (*listeners, error) {
	ls := &listeners{}
	var err error
	if ls.proxy, err = net.Listen("tcp", a.cfg.Listen); err != nil {
		return nil, fmt.Errorf("listen %s: %w", a.cfg.Listen, err)
	}
	if a.admin != nil {
		if ls.admin, err = net.Listen("tcp", a.cfg.AdminListen); err != nil {
			_ = ls.proxy.Close()
			return nil, fmt.Errorf("admin_listen %s: %w", a.cfg.AdminListen, err)
		}
	}
	return ls, nil
}

// run serves on ls until ctx ends, then drains for up to
// limits.shutdown_timeout and closes every part.
func (a *app) run(ctx context.Context, ls *listeners) error {
	errc := make(chan error, 2)
	go func() { errc <- a.proxy.Serve(ls.proxy) }()
	adminAddr := ""
	if ls.admin != nil {
		adminAddr = ls.admin.Addr().String()
		go func() { errc <- a.admin.Serve(ctx, ls.admin) }()
	}
	a.log.Info("pgtenant listening", "listen", ls.proxy.Addr().String(), "admin_listen", adminAddr, "regions", a.cfg.RegionNames())
	var runErr error
	select {
	case <-ctx.Done():
	case runErr = <-errc:
	}
	a.log.Info("draining", "timeout", a.cfg.Limits.ShutdownTimeout.String())
	dctx, cancel := context.WithTimeout(context.Background(), a.cfg.Limits.ShutdownTimeout)
	defer cancel()
	if err := a.proxy.Shutdown(dctx); err != nil && !errors.Is(err, context.DeadlineExceeded) {
		runErr = errors.Join(runErr, err)
	}
	for i := len(a.closers) - 1; i >= 0; i-- {
		cctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		if err := a.closers[i](cctx); err != nil {
			runErr = errors.Join(runErr, err)
		}
		cancel()
	}
	a.log.Info("stopped")
	return runErr
}

// instanceName identifies this proxy process in audit rows.
func instanceName() string {
	host, err := os.Hostname()
	if err != nil {
		host = "unknown"
	}
	return fmt.Sprintf("%s:%d", host, os.Getpid())
}

// auditStats adapts the recorder's measurements for the metrics package.
func auditStats(r *audit.Recorder) func() metrics.AuditStats {
	if r == nil {
		return nil
	}
	return func() metrics.AuditStats {
		st := r.Stats()
		out := metrics.AuditStats{Chains: map[string]metrics.ChainHeads{}}
		for name, rs := range st.Regions {
			out.QueueDepth += int(rs.QueueDepth)
			out.SpoolBytes += rs.SpoolBytes
			out.Written += rs.EventsWritten
			out.Failed += rs.EventsFailed
			out.Chains[name] = metrics.ChainHeads{Entries: int64(rs.EventsIntegrated),
				IntegrationLagSeconds: rs.IntegrationLagSeconds}
		}
		return out
	}
}

// auditCheck reports whether every region's audit store is writable, for /readyz.
func auditCheck(r *audit.Recorder, regions []string) admin.CheckFunc {
	if r == nil {
		return nil
	}
	return func(context.Context) error {
		var errs []error
		for _, name := range regions {
			if err := r.Healthy(name); err != nil {
				errs = append(errs, fmt.Errorf("%s: %w", name, err))
			}
		}
		return errors.Join(errs...)
	}
}
