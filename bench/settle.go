package bench

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// Audit settling: every audited pgtenant target writes its audit into a
// database of its own in the run's cluster (auditDatabase). An async queue
// or a spool still draining from an earlier target would take CPU from the
// next target's run, so each run starts only once no chain of any of them
// has grown for auditQuietFor.
const (
	auditQuietFor   = time.Second
	auditSettleMax  = 3 * time.Minute
	auditSettleStep = 250 * time.Millisecond
)

// awaitAuditIdle blocks until the audit chains of dbs stop growing, or
// gives up (with a warning) after auditSettleMax. A database without an
// audit schema (its target not started yet) counts as idle; with no
// database (no audited target) it returns at once.
func (h *harness) awaitAuditIdle(ctx context.Context, dbs ...string) error {
	if len(dbs) == 0 {
		return nil
	}
	start := time.Now()
	last, quietSince := int64(-1), time.Now()
	for time.Since(start) < auditSettleMax {
		var appended int64
		for _, db := range dbs {
			n, err := h.auditStored(ctx, db)
			if err != nil {
				return fmt.Errorf("audit settle: %w", err)
			}
			appended += max(n, 0)
		}
		if appended != last {
			last, quietSince = appended, time.Now()
		} else if time.Since(quietSince) >= auditQuietFor {
			if waited := time.Since(start); waited > 2*auditQuietFor {
				h.log.Info("waited for the audit to drain", "seconds", waited.Round(time.Millisecond).Seconds())
			}
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(auditSettleStep):
		}
	}
	h.log.Warn("audit still draining; measuring anyway", "after", auditSettleMax.String())
	return nil
}

// auditStored returns the events chained so far in db (the sum of every
// chain's head), or -1 when db does not exist or has no audit schema.
func (h *harness) auditStored(ctx context.Context, db string) (int64, error) {
	conn, err := pgx.Connect(ctx, h.c.SuperuserDSN(db))
	var pe *pgconn.PgError
	if errors.As(err, &pe) && pe.Code == "3D000" {
		return -1, nil
	}
	if err != nil {
		return 0, fmt.Errorf("audit count: %w", err)
	}
	defer conn.Close(context.Background())
	var n int64
	err = conn.QueryRow(ctx, `SELECT coalesce(sum(seq), 0) FROM pgtenant_audit.chain_heads`).Scan(&n)
	if errors.As(err, &pe) && (pe.Code == "42P01" || pe.Code == "3F000") {
		return -1, nil
	}
	if err != nil {
		return 0, fmt.Errorf("audit count: %w", err)
	}
	return n, nil
}

// measureDrain waits for the audit to settle after a run and reports what
// it stored since before (the count at the run's start) and how long after
// the run it kept growing.
func (h *harness) measureDrain(ctx context.Context, db string, before int64, ended time.Time, row *Row) error {
	if before < 0 {
		return nil
	}
	if err := h.awaitAuditIdle(ctx, db); err != nil {
		return err
	}
	// awaitAuditIdle returns auditQuietFor after the last growth.
	drain := max(time.Since(ended)-auditQuietFor, 0).Seconds()
	after, err := h.auditStored(ctx, db)
	if err != nil {
		return err
	}
	stored := after - before
	row.AuditStored, row.AuditDrainSeconds = &stored, &drain
	return nil
}
