package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pgtenant/pgtenant/admin"
	"github.com/pgtenant/pgtenant/audit"
	"github.com/pgtenant/pgtenant/auth"
	"github.com/pgtenant/pgtenant/budget"
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
	tenant  *http.Server  // the tenant API; nil when tenant_api.listen is empty
	auditor proxy.Auditor // nil when the audit is disabled
	// verifier is the token verifier in force; a reload closes the one it
	// replaces, so a changed jwks_url or issuer stops the old refresh loop.
	verifier *auth.Verifier
	ctx      context.Context // ends when the app stops: background work follows it
	// stopDiscovery ends the current policy engine's discovery loop.
	stopDiscovery context.CancelFunc
	engine        atomic.Pointer[policy.Engine]
	// configPath is the file serve loaded, for the admin console's RELOAD;
	// reloadMu serialises reloads (SIGHUP, file watch, console).
	configPath string
	reloadMu   sync.Mutex
	closers    []func(context.Context) error
}

// newApp builds every part from cfg; nothing listens yet.
func newApp(ctx context.Context, cfg *config.Config, log *slog.Logger, level *slog.LevelVar) (*app, error) {
	a := &app{cfg: cfg, log: log, level: level, ctx: ctx}
	if err := requireRLS(ctx, cfg); err != nil {
		return nil, err
	}
	verifier, err := auth.NewVerifier(cfg.Auth, auth.WithAccess(cfg.Access))
	if err != nil {
		return nil, fmt.Errorf("auth: %w", err)
	}
	a.verifier = verifier
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
	pol, err := a.policyFor(cfg)
	if err != nil {
		return nil, err
	}
	a.metrics = metrics.New(metrics.Options{Version: version, Commit: commit, Regions: cfg.RegionNames(),
		AuditStats: auditStats(recorder), CacheStats: a.cacheStats})
	popts := proxy.Options{Config: cfg, Authenticator: verifier, Checkers: pol.checkers, Auditor: auditor, Metrics: a.metrics,
		Logger: log, Version: version, Reload: a.reloadFromConsole}
	if bc := budget.FromConfig(cfg.Limits, log); bc.Enabled() {
		b, err := budget.New(ctx, bc)
		if err != nil {
			return nil, err
		}
		a.closers = append(a.closers, func(context.Context) error { return b.Close() })
		popts.Budgets = b
	}
	srv, err := proxy.New(popts)
	if err != nil {
		return nil, fmt.Errorf("proxy: %w", err)
	}
	a.commit(pol)
	a.proxy = srv
	a.recordConfig(ctx, "start", configHash(cfg), nil)
	if cfg.AdminListen != "" {
		a.admin = admin.New(admin.Options{
			Addr: cfg.AdminListen, Metrics: a.metrics.Handler(), Regions: cfg.Regions,
			RegionChecks: admin.RegionChecks(cfg.Regions), OnRegionProbe: a.metrics.SetRegionUp, Logger: log,
			AuditCheck: auditCheck(recorder, cfg.RegionNames()), Proof: a.proofOptions(cfg),
		})
	}
	if a.tenant, err = a.newTenantAPI(); err != nil {
		return nil, err
	}
	return a, nil
}

// listeners are the app's bound sockets; binding before serving lets the
// caller print the real addresses (port 0 picks a free port).
type listeners struct {
	proxy, admin, tenant net.Listener
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
	if a.tenant != nil {
		if ls.tenant, err = net.Listen("tcp", a.cfg.TenantAPI.Listen); err != nil {
			_ = ls.proxy.Close()
			if ls.admin != nil {
				_ = ls.admin.Close()
			}
			return nil, fmt.Errorf("tenant_api.listen %s: %w", a.cfg.TenantAPI.Listen, err)
		}
	}
	return ls, nil
}

// run serves on ls until ctx ends, then drains for up to
// limits.shutdown_timeout and closes every part.
func (a *app) run(ctx context.Context, ls *listeners) error {
	errc := make(chan error, 3)
	go func() { errc <- a.proxy.Serve(ls.proxy) }()
	adminAddr := ""
	if ls.admin != nil {
		adminAddr = ls.admin.Addr().String()
		go func() { errc <- a.admin.Serve(ctx, ls.admin) }()
	}
	tenantAddr := ""
	if ls.tenant != nil {
		tenantAddr = ls.tenant.Addr().String()
		go func() { errc <- serveTenantAPI(ctx, a.tenant, ls.tenant) }()
	}
	a.log.Info("pgtenant listening", "listen", ls.proxy.Addr().String(), "admin_listen", adminAddr,
		"tenant_api", tenantAddr, "regions", a.cfg.RegionNames())
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
			out.Chains[name] = metrics.ChainHeads{Entries: rs.HeadSeq}
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
