package proxy

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgerrcode"

	"github.com/pgtenant/pgtenant/auth"
	"github.com/pgtenant/pgtenant/config"
)

// Options wires a Server. Config, Authenticator and Checkers are required;
// nil Auditor and Metrics discard.
type Options struct {
	Config        *config.Config
	Authenticator Authenticator
	Checkers      CheckerFactory
	Auditor       Auditor
	Metrics       Metrics
	Logger        *slog.Logger
	// Budgets enforces per-tenant statement budgets; nil means none.
	Budgets Budgets
	// Version names the build in the admin console's SHOW VERSION.
	Version string
	// Reload re-reads the configuration for the admin console's RELOAD; nil
	// when the process has no file to re-read.
	Reload func() error
}

// runtimeConfig is the part of the configuration a reload may replace; a
// session keeps the one it started with.
type runtimeConfig struct {
	auth       Authenticator
	checkers   CheckerFactory
	regions    map[string]*region
	tls        *tls.Config
	rules      paramRules
	settings   sessionSettings
	limits     config.Limits
	requireTLS bool
	adminRoles []string // roles allowed into the admin console; empty: console off
	pool       config.Pool
}

// Server accepts PostgreSQL client connections and relays each to its
// tenant's region.
type Server struct {
	opts    Options
	rt      atomic.Pointer[runtimeConfig]
	cancels *cancelRegistry
	backoff *authBackoff
	log     *slog.Logger

	mu        sync.Mutex
	sessions  map[*session]struct{}
	perTenant map[string]int
	listeners []net.Listener
	draining  bool
	wg        sync.WaitGroup
	clients   atomic.Int64

	tenantStats sync.Map // account -> *tenantCounters, for the admin console
	pause       pauseGate
	sweepOnce   sync.Once     // the idle-session sweeper starts with the first Serve
	sweepStop   chan struct{} // closed by Shutdown

	// pools are the transaction-mode backend pools (pool.go).
	poolMu sync.Mutex
	pools  map[poolKey]*backendPool
}

// New builds a Server from opts.
func New(opts Options) (*Server, error) {
	if opts.Config == nil || opts.Authenticator == nil || opts.Checkers == nil {
		// Without a statement checker every statement would pass unchecked.
		return nil, errors.New("proxy: Config, Authenticator and Checkers are required")
	}
	if opts.Metrics == nil {
		opts.Metrics = nopMetrics{}
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	s := &Server{opts: opts, cancels: newCancelRegistry(), backoff: newAuthBackoff(), log: opts.Logger,
		sessions: map[*session]struct{}{}, perTenant: map[string]int{}, sweepStop: make(chan struct{}),
		pools: map[poolKey]*backendPool{}}
	startParker()
	if err := s.Reload(opts.Config, opts.Authenticator, opts.Checkers); err != nil {
		return nil, err
	}
	return s, nil
}

// Reload replaces the authenticator, policy, regions, TLS certificate and
// limits for new connections; open sessions keep what they started with.
func (s *Server) Reload(cfg *config.Config, a Authenticator, checkers CheckerFactory) error {
	rt := &runtimeConfig{
		auth: a, checkers: checkers, regions: map[string]*region{}, limits: cfg.Limits, requireTLS: cfg.TLS.Require,
		adminRoles: cfg.Admin.Roles, pool: cfg.Pool,
		rules:    newParamRules(cfg.Policy.TenantSetting, cfg.Policy.SearchPath, cfg.Policy.AllowedSettings),
		settings: sessionSettings{tenantSetting: cfg.Policy.TenantSetting, searchPath: cfg.Policy.SearchPath},
	}
	for name, rc := range cfg.Regions {
		r, err := newRegion(name, rc)
		if err != nil {
			return err
		}
		rt.regions[name] = r
	}
	if cfg.TLS.Enabled() {
		cert, err := tls.LoadX509KeyPair(cfg.TLS.CertFile, cfg.TLS.KeyFile)
		if err != nil {
			return fmt.Errorf("tls: %w", err)
		}
		rt.tls = &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
	}
	if checkers == nil {
		rt.checkers = s.opts.Checkers
	}
	s.rt.Store(rt)
	s.mu.Lock()
	draining := s.draining
	s.mu.Unlock()
	if !draining {
		s.configurePools(rt)
	}
	return nil
}

func (s *Server) rules() paramRules       { return s.rt.Load().rules }
func (s *Server) tlsConfig() *tls.Config  { return s.rt.Load().tls }
func (s *Server) runtime() *runtimeConfig { return s.rt.Load() }

// auditing reports whether an Auditor is configured; without one no audit
// event is even built.
func (s *Server) auditing() bool { return s.opts.Auditor != nil }

// ActiveClients is the number of client connections being handled, from
// accept (startup included) to close.
func (s *Server) ActiveClients() int64 { return s.clients.Load() }

// Serve accepts connections on ln until ln is closed or Shutdown is called.
func (s *Server) Serve(ln net.Listener) error {
	s.mu.Lock()
	if s.draining {
		s.mu.Unlock()
		return errors.New("proxy: server is shutting down")
	}
	s.listeners = append(s.listeners, ln)
	s.mu.Unlock()
	if theParker != nil {
		s.sweepOnce.Do(func() { go s.sweepIdle(s.sweepStop) })
	}
	var delay time.Duration
	for {
		conn, err := ln.Accept()
		if err != nil {
			if s.isDraining() || errors.Is(err, net.ErrClosed) {
				return nil
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				delay = min(max(2*delay, 5*time.Millisecond), time.Second)
				time.Sleep(delay)
				continue
			}
			return fmt.Errorf("accept: %w", err)
		}
		delay = 0
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			s.handle(conn)
		}()
	}
}

func (s *Server) isDraining() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.draining
}

// Shutdown stops accepting, ends idle sessions at once and busy ones when
// they become idle, and at ctx's deadline closes whatever is left.
func (s *Server) Shutdown(ctx context.Context) error {
	s.mu.Lock()
	if !s.draining {
		close(s.sweepStop)
	}
	s.draining = true
	for _, ln := range s.listeners {
		_ = ln.Close()
	}
	sessions := make([]*session, 0, len(s.sessions))
	for ss := range s.sessions {
		sessions = append(sessions, ss)
	}
	s.mu.Unlock()
	for _, ss := range sessions {
		ss.drain()
	}
	done := make(chan struct{})
	go func() { s.wg.Wait(); close(done) }()
	select {
	case <-done:
		s.closePools()
		return nil
	case <-ctx.Done():
	}
	defer s.closePools()
	s.mu.Lock()
	for ss := range s.sessions {
		if ss.wmu.TryLock() {
			_ = ss.client.SetWriteDeadline(time.Now().Add(100 * time.Millisecond))
			_ = encode(ss.cw, shutdownError().errorResponse("FATAL"))
			_ = ss.cw.Flush()
			ss.wmu.Unlock()
		}
		ss.close()
	}
	s.mu.Unlock()
	<-done
	return ctx.Err()
}

// Authenticate verifies token with the authenticator in force, which
// follows configuration reloads (the tenant API authenticates through it).
func (s *Server) Authenticate(token string) (auth.Principal, error) {
	return s.runtime().auth.Authenticate(token)
}

// track registers a running session, enforcing the per-tenant limit.
func (s *Server) track(ss *session) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.draining {
		return shutdownError()
	}
	if lim := ss.rt.limits.MaxConnectionsPerTenant; lim > 0 && s.perTenant[ss.principal.Account] >= lim {
		return newClientError(pgerrcode.TooManyConnections, "tenant_limit", "too many connections for this account (limit %d)", lim)
	}
	s.perTenant[ss.principal.Account]++
	s.sessions[ss] = struct{}{}
	return nil
}

func (s *Server) untrack(ss *session) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.sessions[ss]; !ok {
		return
	}
	delete(s.sessions, ss)
	if s.perTenant[ss.principal.Account]--; s.perTenant[ss.principal.Account] <= 0 {
		delete(s.perTenant, ss.principal.Account)
	}
}
