package bench

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// Audit settling: every pgtenant target writes its audit into the same
// cluster, and the benchmark's tenant has one chain there, on whose head row
// appends serialize. An async queue or a spool still draining from an
// earlier target would make the next target wait behind it, so each run
// starts only once no chain has grown for auditQuietFor.
const (
	auditQuietFor   = time.Second
	auditSettleMax  = 3 * time.Minute
	auditSettleStep = 250 * time.Millisecond
)

// awaitAuditIdle blocks until the audit chains stop growing, or gives up
// (with a warning) after auditSettleMax. Without an audit schema (no
// pgtenant target) it returns at once.
func (h *harness) awaitAuditIdle(ctx context.Context) error {
	conn, err := pgx.Connect(ctx, h.c.SuperuserDSN(h.c.Database))
	if err != nil {
		return fmt.Errorf("audit settle: %w", err)
	}
	defer conn.Close(context.Background())
	start := time.Now()
	last, quietSince := int64(-1), time.Now()
	for time.Since(start) < auditSettleMax {
		var appended int64
		err := conn.QueryRow(ctx, `SELECT coalesce(sum(seq), 0) FROM pgtenant_audit.chain_heads`).Scan(&appended)
		var pe *pgconn.PgError
		if errors.As(err, &pe) && (pe.Code == "42P01" || pe.Code == "3F000") {
			return nil // no audit in this cluster
		}
		if err != nil {
			return fmt.Errorf("audit settle: %w", err)
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

// auditStored returns the events chained so far (the sum of every chain's
// head), or -1 when the cluster has no audit schema.
func (h *harness) auditStored(ctx context.Context) (int64, error) {
	conn, err := pgx.Connect(ctx, h.c.SuperuserDSN(h.c.Database))
	if err != nil {
		return 0, fmt.Errorf("audit count: %w", err)
	}
	defer conn.Close(context.Background())
	var n int64
	err = conn.QueryRow(ctx, `SELECT coalesce(sum(seq), 0) FROM pgtenant_audit.chain_heads`).Scan(&n)
	var pe *pgconn.PgError
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
func (h *harness) measureDrain(ctx context.Context, before int64, ended time.Time, row *Row) error {
	if before < 0 {
		return nil
	}
	if err := h.awaitAuditIdle(ctx); err != nil {
		return err
	}
	// awaitAuditIdle returns auditQuietFor after the last growth.
	drain := max(time.Since(ended)-auditQuietFor, 0).Seconds()
	after, err := h.auditStored(ctx)
	if err != nil {
		return err
	}
	stored := after - before
	row.AuditStored, row.AuditDrainSeconds = &stored, &drain
	return nil
}
