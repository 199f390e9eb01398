package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
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
	// auditWatch feeds the audit metrics and the last verification; nil
	// when the audit is disabled.
	auditWatch *auditWatch
	// verifier is the token verifier in force; a reload closes the one it
	// replaces, so a changed jwks_url or issuer stops the old refresh loop.
	verifier *auth.Verifier
	ctx      context.Context // ends when the app stops: background work follows it
	// stopBackground ends ctx; bg counts the goroutines run waits for.
	stopBackground context.CancelFunc
	bg             sync.WaitGroup
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
	a := &app{cfg: cfg, log: log, level: level}
	// Background work (discovery, isolation warnings, audit metrics) follows
	// a context of the app's own, which run ends and then waits for: nothing
	// of this app runs, or logs, after run returns.
	a.ctx, a.stopBackground = context.WithCancel(ctx)
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
		a.closers = append(a.closers, a.closeRecorder(recorder))
		auditor = recorder
		a.auditor = recorder
	}
	pol, err := a.policyFor(cfg)
	if err != nil {
		return nil, err
	}
	var statsFn func() metrics.AuditStats
	if recorder != nil {
		a.auditWatch = newAuditWatch(a, recorder)
		statsFn = a.auditWatch.stats
	}
	a.metrics = metrics.New(metrics.Options{Version: version, Commit: commit, Regions: cfg.RegionNames(),
		AuditStats: statsFn, CacheStats: a.cacheStats, PoolStats: a.poolStats})
	if a.auditWatch != nil {
		a.background(func() { a.auditWatch.run(a.ctx, a.metrics) })
	}
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

// bind binds the client address and, when set, the admin and tenant API
// addresses. A port already in use is one line naming the key and the fix.
func bind(listen, adminListen, tenantListen string) (*listeners, error) {
	ls := &listeners{}
	var err error
	if ls.proxy, err = listenTCP("listen", listen); err != nil {
		return nil, err
	}
	if adminListen != "" {
		if ls.admin, err = listenTCP("admin_listen", adminListen); err != nil {
			ls.close()
			return nil, err
		}
	}
	if tenantListen != "" {
		if ls.tenant, err = listenTCP("tenant_api.listen", tenantListen); err != nil {
			ls.close()
			return nil, err
		}
	}
	return ls, nil
}

// listenTCP binds addr; the error names the configuration key, the cause
// without repetition, and the fix.
func listenTCP(key, addr string) (net.Listener, error) {
	l, err := net.Listen("tcp", addr)
	if err == nil {
		return l, nil
	}
	switch {
	case errors.Is(err, syscall.EADDRINUSE):
		return nil, fmt.Errorf("%s %s: address already in use: stop the process holding the port or set %s to a free address (port 0 picks one)", key, addr, key)
	case errors.Is(err, syscall.EACCES):
		return nil, fmt.Errorf("%s %s: permission denied: ports below 1024 need privileges; choose a higher port", key, addr)
	case errors.Is(err, syscall.EADDRNOTAVAIL):
		return nil, fmt.Errorf("%s %s: no local interface has this address: use 127.0.0.1, 0.0.0.0 or an address of this host", key, addr)
	}
	var op *net.OpError
	if errors.As(err, &op) && op.Err != nil {
		err = op.Err
	}
	return nil, fmt.Errorf("%s %s: %w", key, addr, err)
}

// close releases the bound sockets (when the app does not start).
func (ls *listeners) close() {
	if ls.proxy != nil {
		_ = ls.proxy.Close()
	}
	if ls.admin != nil {
		_ = ls.admin.Close()
	}
	if ls.tenant != nil {
		_ = ls.tenant.Close()
	}
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
	a.stopBackground()
	a.bg.Wait()
	a.log.Info("stopped")
	return runErr
}

// background runs f on a goroutine of the app's background work: f must
// return once a.ctx ends; run waits for it.
func (a *app) background(f func()) {
	if a.ctx.Err() != nil {
		return // stopping: start nothing new
	}
	a.bg.Add(1)
	go func() {
		defer a.bg.Done()
		f()
	}()
}

// instanceName identifies this proxy process in audit rows.
func instanceName() string {
	host, err := os.Hostname()
	if err != nil {
		host = "unknown"
	}
	return fmt.Sprintf("%s:%d", host, os.Getpid())
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

// spoolCloseGrace is how long stopping waits for a region that is down to
// take the spooled events: they stay on disk and ship at the next start.
const spoolCloseGrace = 2 * time.Second

// closeRecorder closes the audit recorder. In spool mode every event is on
// disk before it is acknowledged, so a region that is down need not hold
// up the stop: after a short grace the rest stays in the spool, which is
// not a failure. In the other modes unshipped events live only in memory,
// so closing waits its full time and reports what it could not write.
func (a *app) closeRecorder(r *audit.Recorder) func(context.Context) error {
	return func(ctx context.Context) error {
		if a.cfg.Audit.Mode != audit.ModeSpool {
			return r.Close(ctx)
		}
		// A region that is down (or went down just now, before the writer
		// noticed: dial it) must not hold the stop: its unshipped events are
		// durable in the spool and ship at the next start. Healthy regions
		// get the whole closer timeout, so a pod's spool is emptied before
		// an emptyDir goes away with it.
		var down []string
		for _, name := range a.cfg.RegionNames() {
			if r.Healthy(name) != nil || !reachable(a.cfg.Regions[name]) {
				down = append(down, name)
			}
		}
		if len(down) == 0 {
			return r.Close(ctx)
		}
		gctx, cancel := context.WithTimeout(ctx, spoolCloseGrace)
		defer cancel()
		err := r.Close(gctx)
		if err != nil && errors.Is(err, context.DeadlineExceeded) && ctx.Err() == nil {
			a.log.Warn("audit: regions down at stop; their unshipped events stay in the spool and ship at the next start",
				"regions", down, "spool_dir", a.cfg.Audit.SpoolDir)
			return nil
		}
		return err
	}
}

// reachable reports whether region r's server accepts a TCP connection
// within half a second (a Unix socket directory counts as reachable).
func reachable(r config.Region) bool {
	if strings.HasPrefix(r.Host, "/") {
		return true
	}
	port := r.Port
	if port == 0 {
		port = 5432 // libpq's default, as regiondb applies it
	}
	c, err := net.DialTimeout("tcp", net.JoinHostPort(r.Host, strconv.Itoa(port)), 500*time.Millisecond)
	if err != nil {
		return false
	}
	_ = c.Close()
	return true
}
