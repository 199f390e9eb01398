package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strings"
	"syscall"

	"github.com/jackc/pgx/v5/pgconn"
)

// unreachable reports whether err means a server could not be reached at
// all (refused, timed out, no route, name not resolved), as opposed to a
// server that answered with an error: only the former is worth retrying in
// the background, the latter is a configuration to fix now.
func unreachable(err error) bool {
	if err == nil {
		return false
	}
	var pe *pgconn.PgError
	if errors.As(err, &pe) {
		return false
	}
	var ne net.Error
	return errors.As(err, &ne) || errors.Is(err, context.DeadlineExceeded) ||
		errors.Is(err, syscall.ECONNREFUSED) || errors.Is(err, syscall.ECONNRESET) ||
		errors.Is(err, syscall.EHOSTUNREACH) || errors.Is(err, syscall.ENETUNREACH)
}

// withFix appends the fix for a start-up error whose message does not
// already name one: what to run or which key to set for the cause the
// server reported (by SQLSTATE) or for an unreachable server.
func withFix(err error) error {
	if err == nil {
		return nil
	}
	msg := err.Error()
	if strings.Contains(msg, "; set ") || strings.Contains(msg, ": set ") || strings.Contains(msg, "run `pgtenant") {
		return err
	}
	fix := ""
	var pe *pgconn.PgError
	switch {
	case errors.As(err, &pe):
		switch {
		case pe.Code == "28P01" || pe.Code == "28000":
			fix = "check regions.<name>.user and password (or admin_user and admin_password for the admin role) and the server's pg_hba.conf"
		case pe.Code == "3D000":
			fix = "create the database, or set regions.<name>.database (and audit_database) to an existing one"
		case pe.Code == "42501":
			fix = "a role lacks a privilege: run `pgtenant setup --config FILE` to list what the region needs, then `pgtenant setup --config FILE --apply` (as regions.<name>.admin_user)"
		case pe.Code == "3F000" || pe.Code == "42P01" || pe.Code == "42883":
			fix = "the audit schema is missing: set regions.<name>.admin_user to a role with CREATEROLE and run `pgtenant setup --config FILE --apply` (or keep audit.init on)"
		case pe.Code == "53300":
			fix = "the server has no free connection slots: raise max_connections or lower pool sizes"
		}
	case unreachable(err):
		fix = "is PostgreSQL running there? check regions.<name>.host and port, firewalls and connect_timeout"
	}
	if fix == "" {
		return err
	}
	return fmt.Errorf("%w (fix: %s)", err, fix)
}
