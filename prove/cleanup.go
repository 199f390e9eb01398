package prove

import (
	"context"
	"fmt"
	"slices"

	"github.com/jackc/pgx/v5"
)

// cleanup deletes tenant A's rows through pgtenant, children before
// parents, and verifies with direct counts (the tenant setting set to each
// tenant, so RLS shows their rows) that neither A nor B has a row left.
// Rows left behind are deleted directly and reported: as a warning where
// pgtenant already refused the DELETE, else as a failure (a row appeared
// that tenant A could not see or delete).
func (p *prover) cleanup(ctx context.Context, r *region, conn *pgx.Conn) {
	order := seedOrder(r.usable())
	slices.Reverse(order)
	refused := map[uint32]bool{}
	for _, t := range order {
		if conn.IsClosed() {
			refused[t.oid] = true
			continue
		}
		cctx, cancel := p.step(ctx)
		_, err := conn.Exec(cctx, "DELETE FROM "+t.name+" WHERE "+ident(t.column)+" = "+typed(p.a, t.columnType))
		cancel()
		if err != nil {
			refused[t.oid] = true
			p.result(r, t, LayerCleanup, "delete_as_a", Warn, "tenant A cannot delete its rows through pgtenant; deleting directly: "+describeErr(err))
		}
	}
	clean := true
	for _, id := range []string{p.a, p.b} {
		cctx, cancel := p.step(ctx)
		err := setTenant(cctx, r.direct, p.o.Config.Policy.TenantSetting, id)
		cancel()
		if err != nil {
			p.result(r, nil, LayerCleanup, "no_rows_left", Fail, "cannot verify the cleanup: "+describeErr(err))
			return
		}
		for _, t := range order {
			where := " FROM " + t.name + " WHERE " + ident(t.column) + " = " + typed(id, t.columnType)
			var n int64
			cctx, cancel := p.step(ctx)
			err := r.direct.QueryRow(cctx, "SELECT count(*)"+where).Scan(&n)
			if err != nil {
				cancel()
				clean = false
				p.result(r, t, LayerCleanup, "no_rows_left", Fail, "cannot count the rows left: "+describeErr(err))
				continue
			}
			if n == 0 {
				cancel()
				continue
			}
			clean = false
			tag, err := r.direct.Exec(cctx, "DELETE"+where)
			cancel()
			switch {
			case err != nil:
				p.result(r, t, LayerCleanup, "no_rows_left", Fail, fmt.Sprintf("%d row(s) of tenant %s left and the direct DELETE failed: %s", n, id, describeErr(err)))
			case refused[t.oid]:
				p.result(r, t, LayerCleanup, "no_rows_left", Warn, fmt.Sprintf("%d row(s) of tenant %s deleted directly", tag.RowsAffected(), id))
			default:
				p.result(r, t, LayerCleanup, "no_rows_left", Fail, fmt.Sprintf("%d row(s) of tenant %s were left after tenant A deleted its rows through pgtenant (deleted directly)", tag.RowsAffected(), id))
			}
		}
	}
	if clean {
		p.result(r, nil, LayerCleanup, "no_rows_left", Pass, "no row of tenant A or B left in any tenant table")
	}
}
