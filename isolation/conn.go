package isolation

import (
	"context"
	"fmt"
	"strings"

	"github.com/jackc/pgx/v5"

	"github.com/pgtenant/pgtenant/config"
)

// Database returns the database whose tenant tables are inspected for region
// r: its configured database, else the service role's name (libpq's default,
// as policy discovery uses). The audit layer is read from r.AuditDB().
func Database(r config.Region) string {
	if r.Database != "" {
		return r.Database
	}
	return r.User
}

// connect opens one connection to database db of region name as its service role.
func connect(ctx context.Context, name string, r config.Region, db string) (*pgx.Conn, error) {
	sslmode := r.SSLMode
	if sslmode == "" {
		sslmode = "disable"
	}
	port := r.Port
	if port == 0 {
		port = 5432
	}
	dsn := fmt.Sprintf("host=%s port=%d dbname=%s user=%s sslmode=%s application_name=pgtenant-isolation-proof",
		dsnQuote(r.Host), port, dsnQuote(db), dsnQuote(r.User), dsnQuote(sslmode))
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
		return nil, fmt.Errorf("region %s: connect to %s as %s: %w", name, db, r.User, err)
	}
	return conn, nil
}

// dsnQuote quotes a keyword/value connection string value.
func dsnQuote(s string) string {
	return "'" + strings.NewReplacer(`\`, `\\`, `'`, `\'`).Replace(s) + "'"
}
