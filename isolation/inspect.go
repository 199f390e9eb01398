package isolation

import (
	"context"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/pgtenant/pgtenant/config"
)

// AuditSchema is the schema holding the audit trail (SPEC.md, Audit).
const AuditSchema = "pgtenant_audit"

// Options configures an inspection.
type Options struct {
	// Policy supplies tenant_column, tenant_setting, tenant_tables and
	// forbidden_schemas.
	Policy config.Policy
	// ParserActive reports whether the proxy enforces the statement policy
	// (false when it runs without a checker).
	ParserActive bool
	// PolicyVersion identifies the policy build in force (e.g. a version or hash).
	PolicyVersion string
	// ChainHeads, when set, supplies a region's chain summary; otherwise it is
	// read from pgtenant_audit.events.
	ChainHeads func(ctx context.Context, region string) (ChainHeads, error)
	// LastVerification, when set, returns the last chain verification of a region.
	LastVerification func(region string) (Verification, bool)
	// StatementTimeout bounds each catalog query. Default 5s.
	StatementTimeout time.Duration
}

// Inspect connects to region name with its service credentials and reports
// its isolation layers. It never fails: an unreachable region gives a Report
// with Status unknown and Error set.
func Inspect(ctx context.Context, name string, r config.Region, o Options) Report {
	rep := Report{Region: name, CheckedAt: time.Now().UTC(), Database: Database(r), AuditDatabase: r.AuditDB(), ServiceRole: r.User}
	rep.Parser = ParserLayer{Status: Missing, PolicyVersion: o.PolicyVersion}
	if o.ParserActive {
		rep.Parser.Status = Active
	}
	if o.LastVerification != nil {
		if v, ok := o.LastVerification(name); ok {
			rep.LastVerification = &v
		}
	}
	conn, err := connect(ctx, name, r, rep.Database)
	if err != nil {
		return rep.failed(err)
	}
	defer conn.Close(context.WithoutCancel(ctx))
	auditConn := conn
	if rep.AuditDatabase != rep.Database {
		if auditConn, err = connect(ctx, name, r, rep.AuditDatabase); err != nil {
			return rep.failed(err)
		}
		defer auditConn.Close(context.WithoutCancel(ctx))
	}
	if err := inspectConn(ctx, conn, auditConn, &rep, o); err != nil {
		return rep.failed(fmt.Errorf("region %s: %w", name, err))
	}
	if o.ChainHeads != nil {
		if h, err := o.ChainHeads(ctx, name); err != nil {
			rep.ChainHeadsError = err.Error()
		} else {
			rep.ChainHeads = &h
		}
	}
	rep.Status = Worst(rep.Parser.Status, rep.RLS.Status, rep.Role.Status, rep.Audit.Status)
	return rep
}

// failed marks a report whose catalog could not be read.
func (rep Report) failed(err error) Report {
	rep.Status, rep.Error = Unknown, err.Error()
	rep.RLS = RLSLayer{Status: Unknown}
	rep.Role = RoleLayer{Status: Unknown, Role: rep.ServiceRole}
	rep.Audit = AuditLayer{AuditTable: AuditTable{Status: Unknown, Table: AuditSchema + ".events"}}
	return rep
}

// readOnly begins a read-only snapshot with a statement timeout.
func readOnly(ctx context.Context, conn *pgx.Conn, timeout time.Duration) (pgx.Tx, error) {
	tx, err := conn.BeginTx(ctx, pgx.TxOptions{IsoLevel: pgx.RepeatableRead, AccessMode: pgx.ReadOnly})
	if err != nil {
		return nil, fmt.Errorf("begin: %w", err)
	}
	if timeout <= 0 {
		timeout = 5 * time.Second
	}
	if _, err := tx.Exec(ctx, "SELECT set_config('statement_timeout', $1, true)", fmt.Sprintf("%dms", timeout.Milliseconds())); err != nil {
		_ = tx.Rollback(context.WithoutCancel(ctx))
		return nil, fmt.Errorf("set statement_timeout: %w", err)
	}
	return tx, nil
}

// inspectConn reads the tenant tables' catalog through conn and the audit
// schema's through auditConn (the same connection when both live in one
// database), each in one read-only snapshot.
func inspectConn(ctx context.Context, conn, auditConn *pgx.Conn, rep *Report, o Options) error {
	tx, err := readOnly(ctx, conn, o.StatementTimeout)
	if err != nil {
		return err
	}
	defer tx.Rollback(context.WithoutCancel(ctx)) //nolint:errcheck // read-only

	role, err := readRole(ctx, tx)
	if err != nil {
		return err
	}
	rep.ServiceRole, rep.Database, rep.ServerVersion = role.name, role.database, role.serverVersion

	tables, err := tenantTables(ctx, tx, o.Policy)
	if err != nil {
		return err
	}
	rep.RLS, err = rlsLayer(ctx, tx, tables, o.Policy, role)
	if err != nil {
		return err
	}
	if err := addFootguns(ctx, tx, tables, o.Policy, &rep.RLS); err != nil { // RLS footguns (footguns.go)
		return err
	}
	rep.Role = roleLayer(role, rep.RLS.Tables)
	atx := tx
	if auditConn != conn {
		if atx, err = readOnly(ctx, auditConn, o.StatementTimeout); err != nil {
			return fmt.Errorf("audit database %s: %w", rep.AuditDatabase, err)
		}
		defer atx.Rollback(context.WithoutCancel(ctx)) //nolint:errcheck // read-only
	}
	rep.Audit, err = auditLayer(ctx, atx)
	if err != nil {
		return err
	}
	if o.ChainHeads == nil && rep.Audit.Status != Missing {
		rep.ChainHeads, rep.ChainHeadsError = chainHeads(ctx, atx)
	}
	return nil
}

// role is the service role as the backend sees it.
type role struct {
	name, database, serverVersion string
	superuser, bypassRLS          bool
}

func readRole(ctx context.Context, tx pgx.Tx) (role, error) {
	var r role
	err := tx.QueryRow(ctx, `SELECT current_user::text, current_database()::text, current_setting('server_version'),
	       r.rolsuper, r.rolbypassrls
	  FROM pg_catalog.pg_roles r WHERE r.rolname = current_user`).Scan(&r.name, &r.database, &r.serverVersion, &r.superuser, &r.bypassRLS)
	if err != nil {
		return r, fmt.Errorf("read service role: %w", err)
	}
	return r, nil
}

// roleLayer judges whether the service role can bypass RLS.
func roleLayer(r role, tables []TableReport) RoleLayer {
	l := RoleLayer{Status: Active, Role: r.name, Superuser: r.superuser, BypassRLS: r.bypassRLS}
	if r.superuser {
		l.Problems = append(l.Problems, "service role "+r.name+" is a superuser: row-level security does not apply to it")
	}
	if r.bypassRLS {
		l.Problems = append(l.Problems, "service role "+r.name+" has BYPASSRLS: row-level security does not apply to it")
	}
	for _, t := range tables {
		if t.Owner != "" && t.ownedByRole {
			l.OwnsTables = append(l.OwnsTables, t.Table)
		}
	}
	if len(l.OwnsTables) > 0 {
		l.Problems = append(l.Problems, fmt.Sprintf("service role %s owns (or is a member of the owner of) %d tenant table(s) and can disable their row-level security", r.name, len(l.OwnsTables)))
	}
	if len(l.Problems) > 0 {
		l.Status = Missing
	}
	return l
}
