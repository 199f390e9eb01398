// Package regiondb opens connections to a configured region's PostgreSQL:
// one place that turns a config.Region and a login into pgx settings, so the
// proxy, policy discovery, the audit and the admin checks connect alike.
package regiondb

import (
	"context"
	"fmt"
	"strconv"
	"strings"

	"github.com/jackc/pgx/v5"

	"github.com/pgtenant/pgtenant/config"
)

// Login is who connects to which database of a region.
type Login struct {
	User, Password, Database string
	// Application is sent as application_name so DBAs can tell pgtenant's
	// connections apart in pg_stat_activity.
	Application string
}

// Service is the region's service role logged in to Database(r).
func Service(r config.Region, application string) Login {
	return Login{User: r.User, Password: r.Password, Database: Database(r), Application: application}
}

// Admin is the region's admin role (admin_user), or the service role when none is set.
func Admin(r config.Region, application string) Login {
	if r.AdminUser == "" {
		return Service(r, application)
	}
	return Login{User: r.AdminUser, Password: r.AdminPassword, Database: Database(r), Application: application}
}

// Database is the database pgtenant's own connections use in region r: the
// pinned one, else the service role's name (libpq's default).
func Database(r config.Region) string {
	if r.Database != "" {
		return r.Database
	}
	return r.User
}

// ConnConfig returns pgx settings for l in region name. The password is set
// on the parsed config, never placed in the connection string, so it cannot
// appear in a parse error.
func ConnConfig(name string, r config.Region, l Login) (*pgx.ConnConfig, error) {
	port := r.Port
	if port == 0 {
		port = 5432
	}
	sslmode := r.SSLMode
	if sslmode == "" {
		sslmode = "disable"
	}
	parts := []string{kv("host", r.Host), kv("port", strconv.Itoa(port)), kv("user", l.User),
		kv("dbname", l.Database), kv("sslmode", sslmode), kv("sslrootcert", r.SSLRootCert),
		kv("application_name", l.Application)}
	cc, err := pgx.ParseConfig(strings.Join(parts, " "))
	if err != nil {
		return nil, fmt.Errorf("region %s: connection settings: %w", name, err)
	}
	cc.Password = l.Password
	if r.ConnectTimeout > 0 {
		cc.ConnectTimeout = r.ConnectTimeout
	}
	return cc, nil
}

// Connect opens one connection for l to region name.
func Connect(ctx context.Context, name string, r config.Region, l Login) (*pgx.Conn, error) {
	cc, err := ConnConfig(name, r, l)
	if err != nil {
		return nil, err
	}
	conn, err := pgx.ConnectConfig(ctx, cc)
	if err != nil {
		return nil, fmt.Errorf("region %s: connect as %s: %w", name, l.User, err)
	}
	return conn, nil
}

// kv renders one keyword='value' pair of a libpq connection string; an
// empty value is left out.
func kv(k, v string) string {
	if v == "" {
		return ""
	}
	return k + "='" + strings.NewReplacer(`\`, `\\`, `'`, `\'`).Replace(v) + "'"
}
