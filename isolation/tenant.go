package isolation

import (
	"context"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/pgtenant/pgtenant/config"
)

// TenantTable is one tenant table's figures in a tenant's attestation.
type TenantTable struct {
	Table string `json:"table"`
	// Rows is the number of the tenant's own rows, counted under the
	// tenant's context (the tenant setting set, and pinned to the account).
	Rows int64 `json:"rows"`
}

// SystemTable is a tenant table's size over all tenants: counts only.
type SystemTable struct {
	Table string `json:"table"`
	// EstimatedRows is PostgreSQL's planner estimate (pg_class.reltuples);
	// -1 when the table was never analysed.
	EstimatedRows int64 `json:"estimated_rows"`
}

// TenantData is what a tenant's attestation says about its data in one region.
type TenantData struct {
	YourData     []TenantTable `json:"your_data"`
	SystemTotals []SystemTable `json:"system_totals"`
}

// CountTenantData counts account's rows in every tenant table of region
// name, connected as the service role with the tenant setting set to
// account (so RLS applies as to the tenant's own sessions) and each count
// pinned to the account as well, in one read-only snapshot. The system
// totals are table-wide estimates that reveal no tenant's rows.
func CountTenantData(ctx context.Context, name string, r config.Region, p config.Policy, account string, timeout time.Duration) (TenantData, error) {
	conn, err := connect(ctx, name, r, Database(r))
	if err != nil {
		return TenantData{}, err
	}
	defer conn.Close(context.WithoutCancel(ctx))
	tx, err := readOnly(ctx, conn, timeout)
	if err != nil {
		return TenantData{}, err
	}
	defer tx.Rollback(context.WithoutCancel(ctx)) //nolint:errcheck // read-only
	if _, err := tx.Exec(ctx, `SELECT set_config($1, $2, true)`, tenantSetting(p), account); err != nil {
		return TenantData{}, fmt.Errorf("set the tenant setting: %w", err)
	}
	tables, err := tenantTables(ctx, tx, p)
	if err != nil {
		return TenantData{}, err
	}
	d := TenantData{YourData: []TenantTable{}, SystemTotals: []SystemTable{}}
	for _, t := range tables {
		if t.missing != "" {
			continue
		}
		var n int64
		// The column's own type decides how the account compares, as the
		// proxy's pins do: compare as text so any key type works.
		q := fmt.Sprintf(`SELECT count(*) FROM %s WHERE %s::text = $1`, t.name, pgx.Identifier{t.column}.Sanitize())
		if err := tx.QueryRow(ctx, q, account).Scan(&n); err != nil {
			return TenantData{}, fmt.Errorf("count %s: %w", t.name, err)
		}
		d.YourData = append(d.YourData, TenantTable{Table: t.name, Rows: n})
		var est float64
		if err := tx.QueryRow(ctx, `SELECT reltuples FROM pg_catalog.pg_class WHERE oid = $1`, t.oid).Scan(&est); err != nil {
			return TenantData{}, fmt.Errorf("estimate %s: %w", t.name, err)
		}
		d.SystemTotals = append(d.SystemTotals, SystemTable{Table: t.name, EstimatedRows: int64(est)})
	}
	return d, nil
}
