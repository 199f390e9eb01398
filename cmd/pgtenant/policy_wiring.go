package main

import (
	"context"
	"fmt"
	"time"

	"github.com/pgtenant/pgtenant/auth"
	"github.com/pgtenant/pgtenant/config"
	"github.com/pgtenant/pgtenant/policy"
	"github.com/pgtenant/pgtenant/proxy"
	"github.com/pgtenant/pgtenant/regiondb"
)

// policyFor builds the statement policy for cfg: the configured tables plus,
// with policy.discover, each region's catalog. A region whose catalog cannot
// be read keeps only the configured tables, so its other tables are unknown
// and denied until the next reload reads them.
func (a *app) policyFor(cfg *config.Config) (proxy.CheckerFactory, error) {
	engine, err := policy.NewEngine(cfg.Policy)
	if err != nil {
		return nil, fmt.Errorf("policy: %w", err)
	}
	if cfg.Policy.Discover {
		for _, name := range cfg.RegionNames() {
			if err := discover(engine, name, cfg.Regions[name]); err != nil {
				a.log.Warn("policy discovery failed: the region's tables stay unknown (denied) until a reload", "region", name, "error", err)
			}
		}
	}
	a.engine.Store(engine)
	return func(p auth.Principal) proxy.StatementChecker { return engine.NewSession(p) }, nil
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
