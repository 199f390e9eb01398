package audit

import (
	"context"
	"fmt"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/pgtenant/pgtenant/config"
	"github.com/pgtenant/pgtenant/regiondb"
)

// connConfig returns the pgx configuration for region r's audit database,
// logging in as the service role, or as the admin role when admin is set.
func connConfig(name string, r config.Region, admin bool) (*pgx.ConnConfig, error) {
	l := regiondb.Service(r, "pgtenant-audit")
	if admin {
		l = regiondb.Admin(r, "pgtenant-audit")
	}
	l.Database = r.AuditDB()
	return regiondb.ConnConfig(name, r, l)
}

// connectAdmin opens one admin connection to region name's audit database.
func connectAdmin(ctx context.Context, name string, r config.Region) (*pgx.Conn, error) {
	cc, err := connConfig(name, r, true)
	if err != nil {
		return nil, err
	}
	conn, err := pgx.ConnectConfig(ctx, cc)
	if err != nil {
		return nil, fmt.Errorf("region %s: connect as %s: %w", name, cc.User, err)
	}
	return conn, nil
}

// newPool opens the service-role pool a Recorder writes through.
func newPool(ctx context.Context, name string, r config.Region, size int32) (*pgxpool.Pool, error) {
	cc, err := connConfig(name, r, false)
	if err != nil {
		return nil, err
	}
	pc, err := pgxpool.ParseConfig("")
	if err != nil {
		return nil, err
	}
	pc.ConnConfig = cc
	pc.MaxConns = size
	pc.MinConns = 0
	pool, err := pgxpool.NewWithConfig(ctx, pc)
	if err != nil {
		return nil, fmt.Errorf("region %s: audit pool: %w", name, err)
	}
	return pool, nil
}
