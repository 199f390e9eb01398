package admin

import (
	"context"
	"errors"
	"fmt"

	"github.com/pgtenant/pgtenant/config"
	"github.com/pgtenant/pgtenant/regiondb"
)

var errPanicked = errors.New("check panicked")

// RegionCheck returns a readiness check that logs in to region name's
// backend with its service credentials and pings it.
func RegionCheck(name string, r config.Region) CheckFunc {
	return func(ctx context.Context) error {
		conn, err := regiondb.Connect(ctx, name, r, regiondb.Service(r, "pgtenant-readyz"))
		if err != nil {
			return fmt.Errorf("region %s unreachable: %w", name, err)
		}
		defer conn.Close(context.WithoutCancel(ctx))
		if err := conn.Ping(ctx); err != nil {
			return fmt.Errorf("region %s: ping: %w", name, err)
		}
		return nil
	}
}

// RegionChecks returns RegionCheck for every configured region.
func RegionChecks(regions map[string]config.Region) map[string]CheckFunc {
	m := make(map[string]CheckFunc, len(regions))
	for name, r := range regions {
		m[name] = RegionCheck(name, r)
	}
	return m
}
