package main

import (
	"context"
	"errors"
	"sync"
	"time"

	"github.com/pgtenant/pgtenant/auth"
	"github.com/pgtenant/pgtenant/config"
	"github.com/pgtenant/pgtenant/policy"
	"github.com/pgtenant/pgtenant/proxy"
	"github.com/pgtenant/pgtenant/regiondb"
	"github.com/pgtenant/pgtenant/setup"
	"github.com/pgtenant/pgtenant/tenancy"
)

// Rediscovery on demand: a statement naming a relation the catalog does not
// know waits for a catalog read that started after it asked, before the
// denial stands; reads on demand are at least unknownRediscoverEvery apart
// per region (concurrent sessions share one) and bounded by
// unknownRediscoverWait.
const (
	unknownRediscoverEvery = time.Second
	unknownRediscoverWait  = 3 * time.Second
)

// catalogWatch keeps one engine's region catalogs current: it rediscovers a
// region when the event trigger installed by `pgtenant setup` notifies
// (right after a migration commits) and, rate-limited, when a session meets
// an unknown relation.
type catalogWatch struct {
	a      *app
	engine *policy.Engine
	cfg    *config.Config
	mu     sync.Mutex
	region map[string]*regionWatch
}

// regionWatch serializes one region's on-demand rediscoveries.
type regionWatch struct {
	mu        sync.Mutex // held while a rediscovery runs: others wait and share it
	lastStart time.Time  // when the last read began
}

func newCatalogWatch(a *app, engine *policy.Engine, cfg *config.Config) *catalogWatch {
	w := &catalogWatch{a: a, engine: engine, cfg: cfg, region: map[string]*regionWatch{}}
	for _, name := range cfg.RegionNames() {
		w.region[name] = &regionWatch{}
	}
	return w
}

// rediscover reads region's catalog for a session that met an unknown
// relation: a read that started after it asked serves it; otherwise it
// waits for its turn (reads are at least unknownRediscoverEvery apart,
// whoever asks) and reads.
func (w *catalogWatch) rediscover(region string) {
	rw := w.region[region]
	if rw == nil {
		return
	}
	asked := time.Now()
	for {
		rw.mu.Lock()
		if rw.lastStart.After(asked) {
			rw.mu.Unlock()
			return // e.g. the read a migration's notification started
		}
		if time.Since(rw.lastStart) >= unknownRediscoverEvery {
			break // our turn; the lock is held through the read
		}
		rw.mu.Unlock()
		time.Sleep(20 * time.Millisecond)
	}
	defer rw.mu.Unlock()
	rw.lastStart = time.Now()
	if err := discoverTimeout(w.engine, region, w.cfg.Regions[region], unknownRediscoverWait); err != nil {
		w.a.log.Warn("policy rediscovery for an unknown relation failed", "region", region, "error", err)
		return
	}
	w.a.warnIsolation(region)
}

// discoverTimeout reads region name's catalog into engine within timeout.
func discoverTimeout(engine *policy.Engine, name string, r config.Region, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	conn, err := regiondb.Connect(ctx, name, r, regiondb.Service(r, "pgtenant-discovery"))
	if err != nil {
		return err
	}
	defer conn.Close(context.Background())
	return engine.Discover(ctx, name, conn)
}

// listen rediscovers region whenever the DDL event trigger notifies, until
// ctx ends; a lost connection is re-established (and the region re-read, as
// notifications may have been missed meanwhile).
func (w *catalogWatch) listen(ctx context.Context, region string) {
	r := w.cfg.Regions[region]
	first := true
	for ctx.Err() == nil {
		err := w.listenOnce(ctx, region, r, !first)
		first = false
		if ctx.Err() != nil {
			return
		}
		w.a.log.Debug("catalog notifications interrupted; reconnecting", "region", region, "error", err)
		select {
		case <-ctx.Done():
			return
		case <-time.After(discoverRetry):
		}
	}
}

func (w *catalogWatch) listenOnce(ctx context.Context, region string, r config.Region, reread bool) error {
	cctx, cancel := context.WithTimeout(ctx, r.ConnectTimeout)
	conn, err := regiondb.Connect(cctx, region, r, regiondb.Service(r, "pgtenant-catalog-listen"))
	cancel()
	if err != nil {
		return err
	}
	defer conn.Close(context.Background())
	if _, err := conn.Exec(ctx, "LISTEN "+setup.NotifyChannel); err != nil {
		return err
	}
	if reread {
		w.discoverNow(region)
	}
	for {
		if _, err := conn.WaitForNotification(ctx); err != nil {
			return err
		}
		// one migration notifies once per DDL statement: take them all, read once
		for {
			nctx, cancel := context.WithTimeout(ctx, 20*time.Millisecond)
			_, err := conn.WaitForNotification(nctx)
			cancel()
			if err != nil {
				if ctx.Err() != nil {
					return ctx.Err()
				}
				if !errors.Is(err, context.DeadlineExceeded) && conn.IsClosed() {
					return err
				}
				break
			}
		}
		w.discoverNow(region)
	}
}

// discoverNow reads region's catalog for a notification.
func (w *catalogWatch) discoverNow(region string) {
	rw := w.region[region]
	rw.mu.Lock()
	defer rw.mu.Unlock()
	rw.lastStart = time.Now()
	if err := discoverTimeout(w.engine, region, w.cfg.Regions[region], w.cfg.Regions[region].ConnectTimeout+10*time.Second); err != nil {
		w.a.log.Warn("policy rediscovery after a catalog notification failed; the last catalog stays in force", "region", region, "error", err)
		return
	}
	w.a.log.Debug("policy catalog re-read after a migration", "region", region)
	w.a.warnIsolation(region)
}

// checker wraps a policy session: each message first switches the session
// to the region's current catalog, and a denial for an unknown relation
// waits for one (rate-limited) rediscovery and is checked again, so that a
// table a migration just created is usable at once.
type checker struct {
	*policy.Session
	watch  *catalogWatch
	region string
}

func (w *catalogWatch) factory() proxy.CheckerFactory {
	return func(p auth.Principal) proxy.StatementChecker {
		return &checker{Session: w.engine.NewSession(p), watch: w, region: p.Region}
	}
}

// unknownHint replaces the policy's "register it" hint for a relation the
// region's catalog does not hold even after a fresh read.
const unknownHint = "no such table or view in this region's catalog (read again just now): check the name and search_path; " +
	"a table with the tenant column is a tenant table as soon as its migration commits; list shared tables in policy.global_tables, " +
	"and views and partitions in policy.tenant_tables or policy.global_tables"

func (c *checker) retry(d tenancy.Decision, again func() tenancy.Decision) tenancy.Decision {
	if d.Allow || d.Reason != "unknown_table" {
		return d
	}
	c.watch.rediscover(c.region)
	if c.Session.RefreshCatalog() {
		d = again()
	}
	if !d.Allow && d.Reason == "unknown_table" {
		d.Hint = unknownHint
	}
	return d
}

// CheckQuery implements proxy.StatementChecker.
func (c *checker) CheckQuery(sql string) tenancy.Decision {
	c.Session.RefreshCatalog()
	return c.retry(c.Session.CheckQuery(sql), func() tenancy.Decision { return c.Session.CheckQuery(sql) })
}

// CheckParse implements proxy.StatementChecker.
func (c *checker) CheckParse(name, sql string, paramOIDs []uint32) tenancy.Decision {
	c.Session.RefreshCatalog()
	return c.retry(c.Session.CheckParse(name, sql, paramOIDs), func() tenancy.Decision { return c.Session.CheckParse(name, sql, paramOIDs) })
}
