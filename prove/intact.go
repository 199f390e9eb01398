package prove

import (
	"context"
	"fmt"

	"github.com/jackc/pgx/v5"
)

// checkIntact checks, as tenant A through pgtenant, that A's rows are all
// still there and unchanged after B's attacks (row count and digest).
func (p *prover) checkIntact(ctx context.Context, r *region, conn *pgx.Conn) {
	for _, t := range r.usable() {
		before, ok := r.before[t.oid]
		if !ok {
			continue // reported as read_as_a already
		}
		cctx, cancel := p.step(ctx)
		after, err := takeSnapshot(cctx, conn, t, p.a)
		cancel()
		switch {
		case err != nil:
			p.result(r, t, LayerProxy, "a_rows_intact", Fail, "tenant A cannot read its rows after the attacks: "+describeErr(err))
		case after != before:
			p.result(r, t, LayerProxy, "a_rows_intact", Fail, fmt.Sprintf(
				"tenant A's rows changed during B's attacks: %d row(s) digest %s before, %d row(s) digest %s after", before.count, before.digest, after.count, after.digest))
		case after.count < len(r.seeded[t.oid]):
			p.result(r, t, LayerProxy, "a_rows_intact", Fail, fmt.Sprintf("tenant A sees %d row(s) but %d were seeded", after.count, len(r.seeded[t.oid])))
		default:
			p.result(r, t, LayerProxy, "a_rows_intact", Pass, fmt.Sprintf("%d row(s), digest %s, unchanged", after.count, after.digest))
		}
	}
}
