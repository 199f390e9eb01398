package cluster

import (
	"context"
	"fmt"
	"net/url"
	"strings"

	"github.com/jackc/pgx/v5"
)

// DSN returns a postgres:// URL for user/password/db over TCP to
// 127.0.0.1 with sslmode=disable. An empty password is left out.
func (c *Cluster) DSN(user, password, db string) string {
	u := url.URL{Scheme: "postgres", Host: c.Addr(), Path: "/" + db, RawQuery: "sslmode=disable"}
	if password == "" {
		u.User = url.User(user)
	} else {
		u.User = url.UserPassword(user, password)
	}
	return u.String()
}

// SuperuserDSN returns a DSN for the superuser, which pg_hba.conf trusts
// from 127.0.0.1.
func (c *Cluster) SuperuserDSN(db string) string { return c.DSN(c.Superuser, "", db) }

// ServiceDSN returns a DSN for the service role, with its password, to
// Database.
func (c *Cluster) ServiceDSN() string { return c.DSN(c.ServiceUser, c.ServicePassword, c.Database) }

// Exec runs sql (several statements allowed, simple query protocol) as the
// superuser in database db. Statements run in one implicit transaction
// unless sql contains its own transaction control.
func (c *Cluster) Exec(ctx context.Context, db, sql string) error {
	conn, err := pgx.Connect(ctx, c.SuperuserDSN(db))
	if err != nil {
		return fmt.Errorf("cluster %s: connect to %s as %s: %w", c.Name, db, c.Superuser, err)
	}
	defer conn.Close(context.WithoutCancel(ctx))
	if _, err := conn.Exec(ctx, sql); err != nil {
		return fmt.Errorf("cluster %s: exec in %s: %w", c.Name, db, err)
	}
	return nil
}

// bootstrap creates the service role and the database.
func (c *Cluster) bootstrap(ctx context.Context) error {
	role := pgx.Identifier{c.ServiceUser}.Sanitize()
	// password_encryption is scram-sha-256 (unless overridden), so the
	// server stores a SCRAM verifier, never the password.
	createRole := fmt.Sprintf(
		"CREATE ROLE %s LOGIN NOSUPERUSER NOBYPASSRLS NOCREATEDB NOCREATEROLE NOREPLICATION PASSWORD %s",
		role, quoteLiteral(c.ServicePassword))
	if err := c.Exec(ctx, "postgres", createRole); err != nil {
		return fmt.Errorf("create service role: %w", err)
	}
	if c.Database != "postgres" {
		createDB := fmt.Sprintf("CREATE DATABASE %s OWNER %s",
			pgx.Identifier{c.Database}.Sanitize(), pgx.Identifier{c.Superuser}.Sanitize())
		if err := c.Exec(ctx, "postgres", createDB); err != nil {
			return fmt.Errorf("create database: %w", err)
		}
	}
	return nil
}

// quoteLiteral quotes s as an SQL string literal (standard_conforming_strings
// is on in a fresh cluster, so only quotes need doubling).
func quoteLiteral(s string) string {
	return "'" + strings.ReplaceAll(s, "'", "''") + "'"
}
