package isolation

import (
	"context"
	"fmt"
	"strings"

	"github.com/jackc/pgx/v5"

	"github.com/pgtenant/pgtenant/config"
)

// Database returns the database inspected for region r: its configured
// database, else "postgres".
func Database(r config.Region) string {
	if r.Database != "" {
		return r.Database
	}
	return "postgres"
}

// connect opens one connection to region name as its service role.
func connect(ctx context.Context, name string, r config.Region) (*pgx.Conn, error) {
	sslmode := r.SSLMode
	if sslmode == "" {
		sslmode = "disable"
	}
	port := r.Port
	if port == 0 {
		port = 5432
	}
	dsn := fmt.Sprintf("host=%s port=%d dbname=%s user=%s sslmode=%s application_name=pgtenant-isolation-proof",
		dsnQuote(r.Host), port, dsnQuote(Database(r)), dsnQuote(r.User), dsnQuote(sslmode))
	if r.SSLRootCert != "" {
		dsn += " sslrootcert=" + dsnQuote(r.SSLRootCert)
	}
	cc, err := pgx.ParseConfig(dsn)
	if err != nil {
		return nil, fmt.Errorf("region %s: connection settings: %w", name, err)
	}
	cc.Password = r.Password
	if r.ConnectTimeout > 0 {
		cc.ConnectTimeout = r.ConnectTimeout
	}
	conn, err := pgx.ConnectConfig(ctx, cc)
	if err != nil {
		return nil, fmt.Errorf("region %s: connect as %s: %w", name, r.User, err)
	}
	return conn, nil
}

// dsnQuote quotes a keyword/value connection string value.
func dsnQuote(s string) string {
	return "'" + strings.NewReplacer(`\`, `\\`, `'`, `\'`).Replace(s) + "'"
}
