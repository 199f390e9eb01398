package audit

import (
	"context"
	"fmt"
	"slices"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

// appendRows appends rows (all of one region) to their chains in a single
// transaction: it locks every chain's head row in chain_id order (so
// concurrent writers never deadlock), skips rows whose event_id is already
// recorded, assigns seq and hashes from the head, and appends through
// pgtenant_audit.append. It returns how many rows it inserted and how many it
// skipped as duplicates. On error nothing was written.
func appendRows(ctx context.Context, pool *pgxpool.Pool, region string, rows []*Row) (inserted, dups int, err error) {
	byChain := map[string][]*Row{}
	for _, r := range rows {
		if r.hasAttribution() || r.StatementCommitment != nil {
			// append_rows (schema version 2) has no columns for them: the
			// stored row would not match its hash version.
			return 0, 0, fmt.Errorf("append rows: event %s needs hash version %d, which append_rows cannot store", r.EventID, r.hashVersionFor())
		}
		byChain[r.ChainID] = append(byChain[r.ChainID], r)
	}
	chains := make([]string, 0, len(byChain))
	for c := range byChain {
		chains = append(chains, c)
	}
	slices.Sort(chains)

	err = pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error {
		inserted, dups = 0, 0
		reserve := &pgx.Batch{}
		for _, c := range chains {
			ids := make([]uuid.UUID, len(byChain[c]))
			for i, r := range byChain[c] {
				ids[i] = r.EventID
			}
			reserve.Queue(`SELECT seq, head, present FROM pgtenant_audit.reserve($1, $2, $3, $4)`,
				c, region, GenesisHash(region, c), ids)
		}
		type head struct {
			seq  int64
			hash []byte
			pres []uuid.UUID
		}
		heads := make([]head, len(chains))
		br := tx.SendBatch(ctx, reserve)
		for i := range chains {
			if err := br.QueryRow().Scan(&heads[i].seq, &heads[i].hash, &heads[i].pres); err != nil {
				br.Close()
				return fmt.Errorf("reserve chain %q: %w", chains[i], err)
			}
		}
		if err := br.Close(); err != nil {
			return fmt.Errorf("reserve: %w", err)
		}
		appendB := &pgx.Batch{}
		var queued []string
		for i, c := range chains {
			seq, prev := heads[i].seq, heads[i].hash
			var cols columns
			for _, r := range byChain[c] {
				if slices.Contains(heads[i].pres, r.EventID) {
					dups++
					continue
				}
				seq++
				r.Seal(seq, prev)
				prev = r.EntryHash
				cols.add(r)
			}
			if len(cols.seq) == 0 {
				continue
			}
			appendB.Queue(appendRowsSQL, cols.args(c)...)
			queued = append(queued, c)
			inserted += len(cols.seq)
		}
		if len(queued) == 0 {
			return nil
		}
		br = tx.SendBatch(ctx, appendB)
		for _, c := range queued {
			var last int64
			if err := br.QueryRow().Scan(&last); err != nil {
				br.Close()
				return fmt.Errorf("append chain %q: %w", c, err)
			}
		}
		return br.Close()
	})
	if err != nil {
		return 0, 0, err
	}
	return inserted, dups, nil
}
