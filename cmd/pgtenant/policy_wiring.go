package main

import (
	"context"
	"fmt"
	"slices"
	"time"

	"github.com/pgtenant/pgtenant/auth"
	"github.com/pgtenant/pgtenant/config"
	"github.com/pgtenant/pgtenant/policy"
	"github.com/pgtenant/pgtenant/proxy"
	"github.com/pgtenant/pgtenant/regiondb"
)

// Discovery timing: a region whose catalog could not be read is retried
// every discoverRetry; every region is read again every discoverRefresh, so
// tables that migrations add are known without a reload.
const (
	discoverRetry   = 5 * time.Second
	discoverRefresh = time.Minute
)

// builtPolicy is a statement policy built for a configuration and not in
// force yet: the running engine keeps deciding, and refreshing its catalogs,
// until commit.
type builtPolicy struct {
	cfg      *config.Config
	engine   *policy.Engine
	failed   []string // regions whose catalog could not be read
	checkers proxy.CheckerFactory
	watch    *catalogWatch // with policy.discover: migrations' notifications
}

// policyFor builds the statement policy for cfg: the configured tables plus,
// with policy.discover, each region's catalog. A region whose catalog cannot
// be read keeps only the configured tables (its other tables are unknown, so
// denied: fail closed) until a background retry reads it. Nothing changes
// for the running policy until the result is committed.
func (a *app) policyFor(cfg *config.Config) (*builtPolicy, error) {
	engine, err := policy.NewEngine(cfg.Policy, engineOptions(cfg)...)
	if err != nil {
		return nil, fmt.Errorf("policy: %w", err)
	}
	b := &builtPolicy{cfg: cfg, engine: engine,
		checkers: func(p auth.Principal) proxy.StatementChecker { return engine.NewSession(p) }}
	if cfg.Policy.Discover {
		b.watch = newCatalogWatch(a, engine, cfg)
		b.checkers = b.watch.factory()
		for _, name := range cfg.RegionNames() {
			if err := discover(engine, name, cfg.Regions[name]); err != nil {
				a.log.Warn("policy discovery failed: the region's tables are unknown (denied) until it succeeds", "region", name, "error", err)
				b.failed = append(b.failed, name)
			}
		}
	}
	return b, nil
}

// commit puts a built policy in force: its discovery loops (retry and
// refresh, and the migrations' notifications) replace the previous engine's.
func (a *app) commit(b *builtPolicy) {
	if a.stopDiscovery != nil {
		a.stopDiscovery() // the previous engine's loops; they are replaced
		a.stopDiscovery = nil
	}
	for _, name := range b.cfg.RegionNames() {
		if !slices.Contains(b.failed, name) {
			a.warnIsolation(name)
		}
	}
	if b.cfg.Policy.Discover {
		ctx, cancel := context.WithCancel(a.ctx)
		a.stopDiscovery = cancel
		a.background(func() { a.rediscover(ctx, b.engine, b.cfg, b.failed) })
		for _, name := range b.cfg.RegionNames() {
			a.background(func() { b.watch.listen(ctx, name) })
		}
	}
	a.engine.Store(b.engine)
}

// rediscover retries the regions in failed until each succeeds, and
// refreshes every region's catalog periodically, until ctx ends.
func (a *app) rediscover(ctx context.Context, engine *policy.Engine, cfg *config.Config, failed []string) {
	retry := time.NewTicker(discoverRetry)
	defer retry.Stop()
	refresh := time.NewTicker(discoverRefresh)
	defer refresh.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-retry.C:
			var still []string
			for _, name := range failed {
				if err := discover(engine, name, cfg.Regions[name]); err != nil {
					still = append(still, name)
					continue
				}
				a.log.Info("policy discovery succeeded", "region", name)
				a.warnIsolation(name)
			}
			failed = still
		case <-refresh.C:
			for _, name := range cfg.RegionNames() {
				if err := discover(engine, name, cfg.Regions[name]); err != nil {
					a.log.Warn("policy discovery refresh failed; the last catalog stays in force", "region", name, "error", err)
					continue
				}
				a.warnIsolation(name)
			}
		}
	}
}

// discover reads region name's catalog into engine.
func discover(engine *policy.Engine, name string, r config.Region) error {
	ctx, cancel := context.WithTimeout(context.Background(), r.ConnectTimeout+10*time.Second)
	defer cancel()
	conn, err := regiondb.Connect(ctx, name, r, regiondb.Service(r, "pgtenant-discovery"))
	if err != nil {
		return err
	}
	defer conn.Close(context.Background())
	return engine.Discover(ctx, name, conn)
}

// cacheStats reports the current engine's analysis cache for the metrics.
func (a *app) cacheStats() (hits, misses uint64) {
	if e := a.engine.Load(); e != nil {
		return e.CacheStats()
	}
	return 0, 0
}

// engineOptions are the policy engine's options for cfg: under transaction
// pooling the session state a pooled backend cannot carry to the client's
// next transaction is refused, by serve and by check alike.
func engineOptions(cfg *config.Config) []policy.EngineOption {
	if cfg.Pool.Transaction() {
		return []policy.EngineOption{policy.TransactionPooling()}
	}
	return nil
}
