// Package proxytest runs pgtenant's proxy in-process in front of real
// PostgreSQL clusters (one per region, with the demo schema), for end-to-end
// tests with real clients.
package proxytest

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"net/url"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/pgtenant/pgtenant/auth"
	"github.com/pgtenant/pgtenant/budget"
	"github.com/pgtenant/pgtenant/cluster"
	"github.com/pgtenant/pgtenant/config"
	"github.com/pgtenant/pgtenant/demo"
	"github.com/pgtenant/pgtenant/policy"
	"github.com/pgtenant/pgtenant/proxy"
	"github.com/pgtenant/pgtenant/regiondb"
	"github.com/pgtenant/pgtenant/tenancy"
	"github.com/pgtenant/pgtenant/test/pgtest"
)

// Secret is the HS256 secret every test environment verifies tokens with.
const Secret = "proxytest-secret-0123456789abcdef0123456789"

// Regions are the region names of a default environment.
var Regions = []string{"eu-west", "us-east"}

// Options adjusts an environment. Every field is optional.
type Options struct {
	// Regions to start (shared clusters, demo schema installed); default Regions.
	Regions []string
	// Configure edits the configuration before the proxy starts.
	Configure func(*config.Config)
	// Policy enforces the real policy engine, with each region's catalog
	// discovered (as serve does). Without it and without Checkers, a test
	// checker allows every statement (RLS still scopes rows).
	Policy bool
	// Checkers replaces the policy with a test double.
	Checkers func(cfg *config.Config, regions map[string]*cluster.Cluster) proxy.CheckerFactory
	// Auditor records events; nil discards them.
	Auditor proxy.Auditor
	// NewAuditor, when set, builds the auditor from the final configuration
	// (after Configure) instead of Auditor.
	NewAuditor func(t testing.TB, cfg *config.Config) proxy.Auditor
	// Metrics receives measurements; nil discards them.
	Metrics proxy.Metrics
}

// Env is a running proxy with its regions.
type Env struct {
	Clusters map[string]*cluster.Cluster
	Config   *config.Config
	Server   *proxy.Server
	Addr     string         // host:port of the proxy
	Engine   *policy.Engine // the policy engine, with Options.Policy
	Done     chan error
}

var installs sync.Map // *cluster.Cluster -> *sync.Once

// Start starts (or reuses) the regions' shared clusters with the demo schema
// and an in-process proxy, stopped in t.Cleanup. The test package's TestMain
// must call pgtest.Main.
func Start(t testing.TB, o Options) *Env {
	t.Helper()
	if len(o.Regions) == 0 {
		o.Regions = Regions
	}
	env := &Env{Clusters: map[string]*cluster.Cluster{}, Done: make(chan error, 1)}
	cfg := config.Default()
	cfg.Auth.Secret = []byte(Secret)
	cfg.Audit.Disabled = true
	cfg.AdminListen = ""
	cfg.Regions = map[string]config.Region{}
	for _, name := range o.Regions {
		c := pgtest.Shared(t, name)
		InstallDemo(t, c)
		env.Clusters[name] = c
		cfg.Regions[name] = config.Region{Host: "127.0.0.1", Port: c.Port, User: c.ServiceUser,
			Password: c.ServicePassword, Database: c.Database, SSLMode: "disable", ConnectTimeout: 5 * time.Second}
	}
	if o.Configure != nil {
		o.Configure(cfg)
	}
	env.Config = cfg
	if o.NewAuditor != nil {
		o.Auditor = o.NewAuditor(t, cfg)
	}
	verifier, err := auth.NewVerifier(cfg.Auth, auth.WithAccess(cfg.Access))
	if err != nil {
		t.Fatalf("proxytest: verifier: %v", err)
	}
	t.Cleanup(verifier.Close)
	var checkers proxy.CheckerFactory
	switch {
	case o.Checkers != nil:
		checkers = o.Checkers(cfg, env.Clusters)
	case o.Policy:
		env.Engine = startPolicy(t, cfg)
		checkers = func(p auth.Principal) proxy.StatementChecker { return env.Engine.NewSession(p) }
	default:
		checkers = func(auth.Principal) proxy.StatementChecker { return allowAll{} }
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	popts := proxy.Options{Config: cfg, Authenticator: verifier, Checkers: checkers,
		Auditor: o.Auditor, Metrics: o.Metrics, Logger: log}
	if bc := budget.FromConfig(cfg.Limits, log); bc.Enabled() {
		b, err := budget.New(context.Background(), bc)
		if err != nil {
			t.Fatalf("proxytest: budgets: %v", err)
		}
		t.Cleanup(func() { _ = b.Close() })
		popts.Budgets = b
	}
	srv, err := proxy.New(popts)
	if err != nil {
		t.Fatalf("proxytest: proxy: %v", err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("proxytest: listen: %v", err)
	}
	env.Server, env.Addr = srv, ln.Addr().String()
	go func() { env.Done <- srv.Serve(ln) }()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := srv.Shutdown(ctx); err != nil {
			t.Errorf("proxytest: shutdown: %v", err)
		}
	})
	return env
}

// InstallDemo installs the demo schema and seed into c once per test binary.
func InstallDemo(t testing.TB, c *cluster.Cluster) {
	t.Helper()
	// Keyed by the cluster itself, not its name: a test that starts its own
	// cluster under a name another test used gets a new, empty one.
	once, _ := installs.LoadOrStore(c, &sync.Once{})
	var err error
	once.(*sync.Once).Do(func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		err = demo.Install(ctx, c)
	})
	if err != nil {
		t.Fatalf("proxytest: %v", err)
	}
}

// Token mints a token for account in region, valid for ttl (default 1h).
func Token(t testing.TB, account, region string, ttl time.Duration) string {
	t.Helper()
	if ttl == 0 {
		ttl = time.Hour
	}
	tok, err := auth.Mint(auth.MintOptions{Secret: []byte(Secret), Account: account, Region: region, Subject: "user-" + account, TTL: ttl})
	if err != nil {
		t.Fatalf("proxytest: mint: %v", err)
	}
	return tok
}

// DSN is a connection URL through the proxy with the token as the password.
func (e *Env) DSN(t testing.TB, account, region string) string {
	return e.DSNWithToken(Token(t, account, region, 0))
}

// DSNWithToken is a connection URL through the proxy carrying token as the password.
func (e *Env) DSNWithToken(token string) string {
	u := url.URL{Scheme: "postgres", User: url.UserPassword("tester", token), Host: e.Addr, Path: "/app", RawQuery: "sslmode=disable"}
	return u.String()
}

// Host and Port split Addr for clients that take them separately.
func (e *Env) Host() string { h, _, _ := net.SplitHostPort(e.Addr); return h }

// Port is the proxy's port as a string.
func (e *Env) Port() string { _, p, _ := net.SplitHostPort(e.Addr); return p }

// DirectDSN connects straight to region's cluster as the service role.
func (e *Env) DirectDSN(region string) string {
	c := e.Clusters[region]
	return fmt.Sprintf("postgres://%s:%s@%s/%s?sslmode=disable", c.ServiceUser, c.ServicePassword, c.Addr(), c.Database)
}

// SignedToken signs arbitrary claims with Secret (HS256), for tokens Mint
// refuses to make: expired ones, ones with missing or odd claims.
func SignedToken(t testing.TB, claims map[string]any) string {
	t.Helper()
	tok, err := jwt.NewWithClaims(jwt.SigningMethodHS256, jwt.MapClaims(claims)).SignedString([]byte(Secret))
	if err != nil {
		t.Fatalf("proxytest: sign: %v", err)
	}
	return tok
}

// startPolicy builds the policy engine for cfg and discovers every region's
// catalog, as serve does.
func startPolicy(t testing.TB, cfg *config.Config) *policy.Engine {
	t.Helper()
	var opts []policy.EngineOption
	if cfg.Pool.Transaction() {
		opts = append(opts, policy.TransactionPooling())
	}
	engine, err := policy.NewEngine(cfg.Policy, opts...)
	if err != nil {
		t.Fatalf("proxytest: policy: %v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for name, r := range cfg.Regions {
		conn, err := regiondb.Connect(ctx, name, r, regiondb.Service(r, "proxytest-discovery"))
		if err != nil {
			t.Fatalf("proxytest: discovery: %v", err)
		}
		err = engine.Discover(ctx, name, conn)
		conn.Close(context.Background())
		if err != nil {
			t.Fatalf("proxytest: discovery: %v", err)
		}
	}
	return engine
}

// allowAll is the checker of an environment without a policy: it allows
// every statement, so the tests measure RLS and the relay alone. (The proxy
// itself refuses to start without a checker.)
type allowAll struct{}

func (allowAll) CheckQuery(string) tenancy.Decision { return tenancy.Decision{Allow: true} }
func (allowAll) CheckParse(string, string, []uint32) tenancy.Decision {
	return tenancy.Decision{Allow: true}
}
func (allowAll) CheckBind(string, []int16, [][]byte) tenancy.Decision {
	return tenancy.Decision{Allow: true}
}
func (allowAll) CloseStatement(string) tenancy.Change      { return tenancy.Change{} }
func (allowAll) DescribeStatement(string) tenancy.Change   { return tenancy.Change{} }
func (allowAll) Sent(byte)                                 {}
func (allowAll) Resolve(uint64, tenancy.Outcome, []uint32) {}
