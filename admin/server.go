package admin

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"time"

	"github.com/pgtenant/pgtenant/config"
	"github.com/pgtenant/pgtenant/isolation"
)

// CheckFunc reports whether a dependency is usable; nil means ready.
type CheckFunc func(ctx context.Context) error

// Options configures a Server. Only Addr is needed for Run.
type Options struct {
	// Addr is the listen address (config admin_listen).
	Addr string
	// Metrics serves /metrics; nil serves 404 there.
	Metrics http.Handler
	// RegionChecks are the readiness checks per region (see RegionCheck).
	RegionChecks map[string]CheckFunc
	// AuditCheck reports whether the audit store is writable; nil when the
	// audit trail is disabled.
	AuditCheck CheckFunc
	// OnRegionProbe, when set, is told each region probe's outcome (e.g.
	// metrics.SetRegionUp).
	OnRegionProbe func(region string, up bool)
	// Regions are the backends /isolation-proof inspects, with resolved passwords.
	Regions map[string]config.Region
	// Proof configures the inspection (policy, parser status, hooks).
	Proof isolation.Options
	// CheckTimeout bounds one readiness check. Default 3s.
	CheckTimeout time.Duration
	// ProofTimeout bounds one /isolation-proof request. Default 30s.
	ProofTimeout time.Duration
	// ShutdownTimeout bounds the graceful shutdown. Default 5s.
	ShutdownTimeout time.Duration
	// Logger receives the server's logs; default slog.Default().
	Logger *slog.Logger
}

// Server is the admin HTTP server.
type Server struct {
	o       Options
	handler http.Handler
	proofMu chan struct{} // one proof computation at a time
}

// New returns a Server; it does not listen yet.
func New(o Options) *Server {
	if o.CheckTimeout <= 0 {
		o.CheckTimeout = 3 * time.Second
	}
	if o.ProofTimeout <= 0 {
		o.ProofTimeout = 30 * time.Second
	}
	if o.ShutdownTimeout <= 0 {
		o.ShutdownTimeout = 5 * time.Second
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	s := &Server{o: o, proofMu: make(chan struct{}, 1)}
	mux := http.NewServeMux()
	if o.Metrics != nil {
		mux.Handle("GET /metrics", o.Metrics)
	}
	mux.HandleFunc("GET /healthz", s.healthz)
	mux.HandleFunc("GET /readyz", s.readyz)
	mux.HandleFunc("GET /isolation-proof", s.isolationProof)
	s.handler = mux
	return s
}

// Handler returns the server's routes.
func (s *Server) Handler() http.Handler { return s.handler }

// Run listens on Options.Addr and serves until ctx ends, then shuts down
// gracefully.
func (s *Server) Run(ctx context.Context) error {
	ln, err := net.Listen("tcp", s.o.Addr)
	if err != nil {
		return fmt.Errorf("admin: listen %s: %w", s.o.Addr, err)
	}
	return s.Serve(ctx, ln)
}

// Serve serves on ln until ctx ends, then stops accepting, lets in-flight
// requests finish within ShutdownTimeout and returns. It closes ln.
func (s *Server) Serve(ctx context.Context, ln net.Listener) error {
	srv := &http.Server{
		Handler:           s.handler,
		ReadHeaderTimeout: 5 * time.Second,
		ReadTimeout:       10 * time.Second,
		WriteTimeout:      s.o.ProofTimeout + 10*time.Second,
		IdleTimeout:       60 * time.Second,
		MaxHeaderBytes:    16 << 10,
		ErrorLog:          slog.NewLogLogger(s.o.Logger.Handler(), slog.LevelWarn),
		BaseContext:       func(net.Listener) context.Context { return context.WithoutCancel(ctx) },
	}
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	s.o.Logger.Info("admin server listening", "addr", ln.Addr().String())
	select {
	case err := <-errc:
		return fmt.Errorf("admin: serve: %w", err)
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), s.o.ShutdownTimeout)
	defer cancel()
	err := srv.Shutdown(sctx)
	if errors.Is(err, context.DeadlineExceeded) {
		err = srv.Close()
	}
	if serr := <-errc; serr != nil && !errors.Is(serr, http.ErrServerClosed) {
		return fmt.Errorf("admin: serve: %w", serr)
	}
	if err != nil {
		return fmt.Errorf("admin: shutdown: %w", err)
	}
	s.o.Logger.Info("admin server stopped")
	return nil
}
