package admin

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/jackc/pgx/v5"

	"github.com/pgtenant/pgtenant/config"
	"github.com/pgtenant/pgtenant/isolation"
)

var errPanicked = errors.New("check panicked")

// RegionCheck returns a readiness check that logs in to region name's
// backend with its service credentials and runs SELECT 1.
func RegionCheck(name string, r config.Region) CheckFunc {
	return func(ctx context.Context) error {
		sslmode := r.SSLMode
		if sslmode == "" {
			sslmode = "disable"
		}
		port := r.Port
		if port == 0 {
			port = 5432
		}
		dsn := fmt.Sprintf("host=%s port=%d dbname=%s user=%s sslmode=%s application_name=pgtenant-readyz",
			quote(r.Host), port, quote(isolation.Database(r)), quote(r.User), quote(sslmode))
		if r.SSLRootCert != "" {
			dsn += " sslrootcert=" + quote(r.SSLRootCert)
		}
		cc, err := pgx.ParseConfig(dsn)
		if err != nil {
			return fmt.Errorf("region %s: %w", name, err)
		}
		cc.Password = r.Password
		if r.ConnectTimeout > 0 {
			cc.ConnectTimeout = r.ConnectTimeout
		}
		conn, err := pgx.ConnectConfig(ctx, cc)
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

func quote(s string) string {
	return "'" + strings.NewReplacer(`\`, `\\`, `'`, `\'`).Replace(s) + "'"
}
