package isolation

import (
	"context"

	"github.com/jackc/pgx/v5"

	"github.com/pgtenant/pgtenant/config"
	"github.com/pgtenant/pgtenant/regiondb"
)

// Database returns the database whose tenant tables are inspected for region
// r: its configured database, else the service role's name (libpq's default,
// as policy discovery uses). The audit layer is read from r.AuditDB().
func Database(r config.Region) string {
	return regiondb.Database(r)
}

// connect opens one connection to database db of region name as its service role.
func connect(ctx context.Context, name string, r config.Region, db string) (*pgx.Conn, error) {
	l := regiondb.Service(r, "pgtenant-isolation-proof")
	l.Database = db
	return regiondb.Connect(ctx, name, r, l)
}
