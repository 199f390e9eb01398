package main

import (
	"context"
	"fmt"
	"time"

	"github.com/pgtenant/pgtenant/audit"
	"github.com/pgtenant/pgtenant/config"
)

// auditInitRetry is how often serve retries the audit schema of a region
// that was unreachable at start.
const auditInitRetry = 5 * time.Second

// initAudit creates or upgrades the audit schema in every region. A region
// whose server answers with an error (bad credentials, missing privileges)
// stops the start: that is a configuration to fix. A region that cannot be
// reached at all is retried in the background until ctx ends, so an outage at
// start affects only that region's tenants (their statements get 57P03 until
// the region's audit is writable) and the other regions serve.
func (a *app) initAudit(ctx context.Context, cfg *config.Config) error {
	var down []string
	for _, name := range cfg.RegionNames() {
		err := audit.InitRegion(ctx, name, cfg.Regions[name], a.log)
		switch {
		case err == nil:
		case ctx.Err() != nil:
			return ctx.Err()
		case unreachable(err):
			a.log.Warn("audit init: region unreachable, retrying in the background", "region", name, "error", err)
			down = append(down, name)
		default:
			// the server answered: credentials, privileges or a missing
			// admin role are a configuration to fix, not an outage
			return fmt.Errorf("audit init: %w", err)
		}
	}
	for _, name := range down {
		go a.retryAuditInit(ctx, name, cfg.Regions[name])
	}
	return nil
}

func (a *app) retryAuditInit(ctx context.Context, name string, r config.Region) {
	t := time.NewTicker(auditInitRetry)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			if err := audit.InitRegion(ctx, name, r, a.log); err == nil {
				return
			}
		}
	}
}
