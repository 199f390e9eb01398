package audit

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"fmt"
	"log/slog"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/pgtenant/pgtenant/config"
)

// SealResult reports one sealing pass.
type SealResult struct {
	Sealed  int // new checkpoints written
	Skipped int // chains whose latest checkpoint is still current
	// TreesSealed counts signed tree checkpoints (C2SP notes) written.
	TreesSealed int
	Failures    []Failure // chains not sealed because the rows since their last checkpoint do not verify
}

// Seal signs a checkpoint of every chain in every region whose head moved
// since its latest checkpoint, after verifying the rows added since then
// (it never signs a broken chain), and writes each checkpoint into
// pgtenant_audit.checkpoints and, when checkpointDir is set, to an external
// copy there. It logs in as each region's admin role.
func Seal(ctx context.Context, regions map[string]config.Region, key ed25519.PrivateKey, checkpointDir string, logger *slog.Logger) (SealResult, error) {
	var res SealResult
	for _, name := range sortedRegions(regions) {
		if err := sealRegion(ctx, name, regions[name], key, checkpointDir, &res); err != nil {
			return res, fmt.Errorf("region %s: seal: %w", name, err)
		}
	}
	if logger != nil {
		logger.Info("audit sealed", "checkpoints", res.Sealed, "unchanged", res.Skipped, "broken", len(res.Failures))
	}
	return res, nil
}

func sealRegion(ctx context.Context, name string, r config.Region, key ed25519.PrivateKey, dir string, res *SealResult) error {
	conn, err := connectAdmin(ctx, name, r)
	if err != nil {
		return err
	}
	defer conn.Close(context.Background())
	rows, err := conn.Query(ctx, `SELECT chain_id, region, seq, head FROM pgtenant_audit.chain_heads WHERE seq > 0 ORDER BY chain_id`)
	if err != nil {
		return err
	}
	type head struct {
		chain, region string
		seq           int64
		hash          []byte
	}
	heads, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (head, error) {
		var h head
		err := row.Scan(&h.chain, &h.region, &h.seq, &h.hash)
		return h, err
	})
	if err != nil {
		return err
	}
	pub := key.Public().(ed25519.PublicKey)
	for _, h := range heads {
		if h.region != name {
			res.Failures = append(res.Failures, Failure{Region: name, ChainID: h.chain, Kind: FailChainMismatch,
				Detail: fmt.Sprintf("chain head names region %s", h.region)})
			continue
		}
		cps, err := dbCheckpoints(ctx, conn, h.chain)
		if err != nil {
			return err
		}
		// Verify from the latest checkpoint we can trust up to the head.
		v := newChainVerifier(name, h.chain)
		var from int64 = 1
		if n := len(cps); n > 0 {
			last := cps[n-1]
			if err := last.Verify(pub); err == nil && last.Size <= h.seq {
				if last.Size == h.seq && bytes.Equal(last.Head, h.hash) {
					res.Skipped++
					continue
				}
				from = last.Size + 1
				v.next, v.prev = from, last.Head
			}
		}
		v.want(h.seq)
		err = streamChain(ctx, conn, h.chain, from, h.seq, func(row *Row) error { v.add(row); return nil })
		if err != nil {
			return err
		}
		v.checkHead(h.seq, h.hash)
		if f := v.first(); f != nil {
			res.Failures = append(res.Failures, *f)
			continue
		}
		c := Checkpoint{ChainID: h.chain, Region: name, Size: h.seq, Head: h.hash, TS: time.Now()}
		c.Sign(key)
		if _, err := conn.Exec(ctx, `INSERT INTO pgtenant_audit.checkpoints (chain_id, region, size, head, ts, key_id, signature)
			VALUES ($1, $2, $3, $4, $5, $6, $7)`, c.ChainID, c.Region, c.Size, []byte(c.Head), c.TS, c.KeyID, []byte(c.Signature)); err != nil {
			return fmt.Errorf("chain %q: %w", h.chain, err)
		}
		if dir != "" {
			if err := appendExternal(dir, c); err != nil {
				return fmt.Errorf("chain %q: external copy: %w", h.chain, err)
			}
		}
		res.Sealed++
	}
	return sealTree(ctx, conn, name, key, dir, res)
}
