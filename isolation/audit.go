package isolation

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
)

// pg_trigger.tgtype bits (src/include/catalog/pg_trigger.h).
const (
	tgDelete   = 1 << 3
	tgUpdate   = 1 << 4
	tgTruncate = 1 << 5
)

// auditLayer checks that pgtenant_audit.events, and ingest_batches (rows
// appended and not yet chained) where the schema has it, have ENABLE ALWAYS
// triggers that raise on UPDATE, DELETE and TRUNCATE, and that the service
// role cannot disable them.
func auditLayer(ctx context.Context, tx pgx.Tx) (AuditLayer, error) {
	events, found, err := appendOnly(ctx, tx, "events")
	if err != nil {
		return AuditLayer{AuditTable: AuditTable{Status: Unknown, Table: events.Table}}, err
	}
	if !found {
		events.Status, events.Problems = Missing, []string{"table " + events.Table + " does not exist (run `pgtenant audit init`)"}
		return AuditLayer{AuditTable: events}, nil
	}
	l := AuditLayer{AuditTable: events}
	pending, found, err := appendOnly(ctx, tx, "ingest_batches")
	if err != nil {
		return l, err
	}
	if found { // schema version 7 on
		l.Pending = &pending
		l.Status = Worst(l.Status, pending.Status)
		l.Problems = append(l.Problems, pending.Problems...)
	}
	return l, nil
}

// appendOnly checks one table of the audit schema (found is false when it
// does not exist).
func appendOnly(ctx context.Context, tx pgx.Tx, relname string) (l AuditTable, found bool, err error) {
	l = AuditTable{Status: Active, Table: AuditSchema + "." + relname}
	var oid uint32
	var ownedByRole bool
	err = tx.QueryRow(ctx, `SELECT c.oid, pg_catalog.pg_get_userbyid(c.relowner)::text, pg_catalog.pg_has_role(current_user, c.relowner, 'MEMBER')
	  FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
	 WHERE n.nspname = $1 AND c.relname = $2 AND c.relkind IN ('r', 'p')`, AuditSchema, relname).Scan(&oid, &l.Owner, &ownedByRole)
	if errors.Is(err, pgx.ErrNoRows) {
		return l, false, nil
	}
	if err != nil {
		return l, false, fmt.Errorf("find audit table %s: %w", l.Table, err)
	}
	rows, err := tx.Query(ctx, `SELECT t.tgname::text, t.tgtype::int, t.tgenabled::text, t.tgfoid::regprocedure::text,
	       coalesce(p.prosrc, '') ~* '\mraise\M'
	  FROM pg_catalog.pg_trigger t JOIN pg_catalog.pg_proc p ON p.oid = t.tgfoid
	 WHERE t.tgrelid = $1 AND NOT t.tgisinternal ORDER BY t.tgname`, oid)
	if err != nil {
		return l, true, fmt.Errorf("read triggers of %s: %w", l.Table, err)
	}
	type trig struct {
		TriggerReport
		mask int
	}
	trigs, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (trig, error) {
		var t trig
		var enabled string
		err := row.Scan(&t.Name, &t.mask, &enabled, &t.Function, &t.Raises)
		t.Enabled = enabledWord(enabled)
		for _, e := range []struct {
			bit  int
			name string
		}{{tgUpdate, "UPDATE"}, {tgDelete, "DELETE"}, {tgTruncate, "TRUNCATE"}, {1 << 2, "INSERT"}} {
			if t.mask&e.bit != 0 {
				t.Events = append(t.Events, e.name)
			}
		}
		return t, err
	})
	if err != nil {
		return l, true, fmt.Errorf("read triggers of %s: %w", l.Table, err)
	}
	for _, t := range trigs {
		l.Triggers = append(l.Triggers, t.TriggerReport)
	}
	for _, op := range []struct {
		bit  int
		name string
	}{{tgUpdate, "UPDATE"}, {tgDelete, "DELETE"}, {tgTruncate, "TRUNCATE"}} {
		status, why := Missing, fmt.Sprintf("no trigger blocks %s on %s", op.name, l.Table)
		for _, t := range trigs {
			if t.mask&op.bit == 0 || !t.Raises {
				continue
			}
			if t.Enabled == "always" {
				status = Active
				break
			}
			status = DeployedInert
			why = fmt.Sprintf("trigger %s blocks %s on %s but is %s, not ENABLE ALWAYS, so sessions with session_replication_role = replica (or the owner disabling it) bypass it", t.Name, op.name, l.Table, t.Enabled)
		}
		if status != Active {
			l.Problems = append(l.Problems, why)
			l.Status = Worst(l.Status, status)
		}
	}
	if ownedByRole {
		l.Problems = append(l.Problems, fmt.Sprintf("the service role can act as the owner (%s) of %s and disable its triggers", l.Owner, l.Table))
		l.Status = Worst(l.Status, DeployedInert)
	}
	return l, true, nil
}

func enabledWord(code string) string {
	switch code {
	case "A":
		return "always"
	case "O":
		return "origin"
	case "R":
		return "replica"
	default:
		return "disabled"
	}
}

// chainHeads summarises the audit chains from pgtenant_audit.chain_heads,
// else from pgtenant_audit.events, each in a savepoint so that a role without
// SELECT on them (the service role, by design) leaves the snapshot usable. It
// returns why neither could be read.
func chainHeads(ctx context.Context, tx pgx.Tx) (*ChainHeads, string) {
	queries := []string{
		`SELECT count(*), coalesce(sum(seq), 0)::int8, max(updated_at) FROM ` + AuditSchema + `.chain_heads`,
		`SELECT count(*), coalesce(sum(head), 0)::int8, max(last)
		   FROM (SELECT chain_id, max(seq) AS head, max(ts) AS last FROM ` + AuditSchema + `.events GROUP BY chain_id) c`,
	}
	var errs []string
	for _, q := range queries {
		h, err := chainHeadsQuery(ctx, tx, q)
		if err == nil {
			return h, ""
		}
		errs = append(errs, err.Error())
	}
	return nil, "cannot read the chain heads with the service role (wire isolation.Options.ChainHeads from the audit recorder): " + strings.Join(errs, "; ")
}

func chainHeadsQuery(ctx context.Context, tx pgx.Tx, q string) (*ChainHeads, error) {
	sp, err := tx.Begin(ctx)
	if err != nil {
		return nil, err
	}
	defer sp.Rollback(ctx) //nolint:errcheck // read-only
	var h ChainHeads
	var last *time.Time
	if err := sp.QueryRow(ctx, q).Scan(&h.Chains, &h.Entries, &last); err != nil {
		return nil, err
	}
	if last != nil {
		t := last.UTC()
		h.LastAppend = &t
	}
	return &h, nil
}
