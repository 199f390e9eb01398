package audit

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/pgtenant/pgtenant/config"
	"github.com/pgtenant/pgtenant/tenancy"
)

// Retention (audit.retention_days, audit.retention_overrides): the holder
// of the seal key purges each chain's expired prefix. A purge redacts the
// rows in place (purge_chain: personal fields set to NULL, purged = true;
// the append-only trigger lets nothing else through, and the service role
// may not update at all), keeps their hashes, so every chain and the tree
// still verify, and leaves a signed purge record: a redacted row verifies
// only inside a prefix such a record covers, so a purge is never mistaken
// for tampering and tampering never passes for a purge.

// DefaultRetentionDays is audit.retention_days' default (7 years).
const DefaultRetentionDays = 2555

// PurgeRecord is a signed statement that chain's rows up to UpTo, whose
// last entry hash is Head, were redacted because they were older than Before.
type PurgeRecord struct {
	Region    string    `json:"region"`
	ChainID   string    `json:"chain_id"`
	UpTo      int64     `json:"upto_seq"`
	Head      HexBytes  `json:"head"`
	Before    time.Time `json:"before"`
	TS        time.Time `json:"ts"`
	KeyID     string    `json:"key_id"`
	Signature HexBytes  `json:"signature"`
}

const tagPurge = 0x31

// SignedMessage is what the signature covers: 0x31 || lp(region) ||
// lp(chain_id) || upto int64 || lp(head) || before µs int64 || ts µs int64
// || lp(key_id).
func (p *PurgeRecord) SignedMessage() []byte {
	b := []byte{tagPurge}
	lp := func(s []byte) {
		b = binary.BigEndian.AppendUint32(b, uint32(len(s)))
		b = append(b, s...)
	}
	lp([]byte(p.Region))
	lp([]byte(p.ChainID))
	b = binary.BigEndian.AppendUint64(b, uint64(p.UpTo))
	lp(p.Head)
	b = binary.BigEndian.AppendUint64(b, uint64(p.Before.UnixMicro()))
	b = binary.BigEndian.AppendUint64(b, uint64(p.TS.UnixMicro()))
	lp([]byte(p.KeyID))
	return b
}

// Sign fills KeyID and Signature.
func (p *PurgeRecord) Sign(key ed25519.PrivateKey) {
	p.Before = p.Before.Truncate(time.Microsecond).UTC()
	p.TS = p.TS.Truncate(time.Microsecond).UTC()
	p.KeyID = KeyID(key.Public().(ed25519.PublicKey))
	p.Signature = ed25519.Sign(key, p.SignedMessage())
}

// Verify checks the signature with pub.
func (p *PurgeRecord) Verify(pub ed25519.PublicKey) error {
	if id := KeyID(pub); p.KeyID != id {
		return fmt.Errorf("signed by key %s, verifying with key %s", p.KeyID, id)
	}
	if !ed25519.Verify(pub, p.SignedMessage(), p.Signature) {
		return errors.New("purge record signature does not verify")
	}
	return nil
}

// acceptPurges lets the verifier take redacted rows up to the largest
// prefix a purge record signed by pub covers; a record that does not
// verify is a failure. Call before the rows are added.
func (v *chainVerifier) acceptPurges(list []PurgeRecord, pub ed25519.PublicKey, where string) {
	for _, p := range list {
		if pub == nil {
			v.fail(p.UpTo, FailBadSignature, where+": purge record present but no public key", nil, nil)
			continue
		}
		if err := p.Verify(pub); err != nil || p.Region != v.region || p.ChainID != v.chain {
			v.fail(p.UpTo, FailBadSignature, fmt.Sprintf("%s: purge record: %v", where, err), nil, nil)
			continue
		}
		v.purges = append(v.purges, p)
		v.purgedUpTo = max(v.purgedUpTo, p.UpTo)
		v.want(p.UpTo)
	}
}

// checkPurges compares each accepted purge record's head with the entry
// hash at its seq. Call after the rows.
func (v *chainVerifier) checkPurges() {
	for _, p := range v.purges {
		if v.rowsBroken && p.UpTo >= v.next {
			continue
		}
		if h, ok := v.hashAt[p.UpTo]; !ok {
			v.fail(p.UpTo, FailTruncated, fmt.Sprintf("a purge record covers seq %d, the chain has %d rows", p.UpTo, v.last()), nil, nil)
		} else if !bytes.Equal(h, p.Head) {
			v.fail(p.UpTo, FailCheckpointMismatch, "a purge record's head is not the entry hash at its seq", p.Head, h)
		}
	}
}

// dbPurges returns chain's purge records (none before schema version 4).
func dbPurges(ctx context.Context, conn *pgx.Conn, chain string) ([]PurgeRecord, error) {
	var present bool
	if err := conn.QueryRow(ctx, `SELECT to_regclass('pgtenant_audit.purges') IS NOT NULL`).Scan(&present); err != nil || !present {
		return nil, err
	}
	rows, err := conn.Query(ctx, `SELECT region, chain_id, upto_seq, head, before, ts, key_id, signature
		FROM pgtenant_audit.purges WHERE chain_id = $1 ORDER BY id`, chain)
	if err != nil {
		return nil, fmt.Errorf("read purge records of %q: %w", chain, err)
	}
	return pgx.CollectRows(rows, func(row pgx.CollectableRow) (PurgeRecord, error) {
		var p PurgeRecord
		var head, sig []byte
		err := row.Scan(&p.Region, &p.ChainID, &p.UpTo, &head, &p.Before, &p.TS, &p.KeyID, &sig)
		p.Head, p.Signature, p.Before, p.TS = head, sig, p.Before.UTC(), p.TS.UTC()
		return p, err
	})
}

// PurgeResult reports one purge pass.
type PurgeResult struct {
	Chains   int   // chains with a newly purged prefix
	Redacted int64 // rows redacted
}

// RetentionFor returns the retention window of account.
func RetentionFor(cfg config.Audit, account string) time.Duration {
	days := cfg.RetentionDays
	if d, ok := cfg.RetentionOverrides[account]; ok && d > 0 {
		days = d
	}
	if days <= 0 {
		days = DefaultRetentionDays
	}
	return time.Duration(days) * 24 * time.Hour
}

// Purge redacts every chain's prefix older than its retention window
// (RetentionFor, measured from now) in every region, as each region's
// admin role, and writes a signed purge record per chain it purged.
func Purge(ctx context.Context, regions map[string]config.Region, cfg config.Audit, key ed25519.PrivateKey, now time.Time, logger *slog.Logger) (PurgeResult, error) {
	var res PurgeResult
	for _, name := range sortedRegions(regions) {
		if err := purgeRegion(ctx, name, regions[name], cfg, key, now, &res); err != nil {
			return res, fmt.Errorf("region %s: purge: %w", name, err)
		}
	}
	if logger != nil {
		logger.Info("audit purged", "chains", res.Chains, "rows", res.Redacted)
	}
	return res, nil
}

func purgeRegion(ctx context.Context, name string, r config.Region, cfg config.Audit, key ed25519.PrivateKey, now time.Time, res *PurgeResult) error {
	conn, err := connectAdmin(ctx, name, r)
	if err != nil {
		return err
	}
	defer conn.Close(context.Background())
	rows, err := conn.Query(ctx, `SELECT chain_id FROM pgtenant_audit.chain_heads WHERE region = $1 AND seq > 0 ORDER BY chain_id`, name)
	if err != nil {
		return err
	}
	chains, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return err
	}
	for _, chain := range chains {
		before := now.Add(-RetentionFor(cfg, chain))
		err := pgx.BeginFunc(ctx, conn, func(tx pgx.Tx) error {
			var upto, n int64
			var head []byte
			if err := tx.QueryRow(ctx, `SELECT upto, head, redacted FROM pgtenant_audit.purge_chain($1, $2)`, chain, before).
				Scan(&upto, &head, &n); err != nil {
				return err
			}
			if upto == 0 || n == 0 {
				return nil
			}
			p := PurgeRecord{Region: name, ChainID: chain, UpTo: upto, Head: head, Before: before, TS: now}
			p.Sign(key)
			if _, err := tx.Exec(ctx, `INSERT INTO pgtenant_audit.purges (region, chain_id, upto_seq, head, before, ts, key_id, signature)
				VALUES ($1, $2, $3, $4, $5, $6, $7, $8)`, p.Region, p.ChainID, p.UpTo, []byte(p.Head), p.Before, p.TS, p.KeyID, []byte(p.Signature)); err != nil {
				return err
			}
			// The tenant's own chain records the purge too (kind purge),
			// appended like any event and chained by the integrator.
			ev := tenancy.Event{Kind: tenancy.KindPurge, Time: now, AccountID: accountOf(chain), Region: name, Verdict: tenancy.VerdictAllow,
				Reason: fmt.Sprintf("retention: seq 1-%d older than %s redacted", upto, before.UTC().Format(time.RFC3339))}
			row, err := newRow(ev, chain, name, "pgtenant-audit-purge", StatementNormalized)
			if err != nil {
				return err
			}
			row.HashVersion = row.hashVersionFor()
			row.ContentHash = row.ComputeContentHash()
			oid, err := ingestEventOID(ctx, tx)
			if err != nil {
				return fmt.Errorf("purge event: %w", err)
			}
			if err := insertBatch(ctx, tx.Conn(), name, 1, encodeEventArray(nil, oid, []*Row{row})); err != nil {
				return fmt.Errorf("purge event: %w", err)
			}
			res.Chains++
			res.Redacted += n
			return nil
		})
		if err != nil {
			return fmt.Errorf("chain %q: %w", chain, err)
		}
	}
	return nil
}

// accountOf is the account of a chain ("" for the no-tenant chain).
func accountOf(chain string) string {
	if chain == NoTenantChain {
		return ""
	}
	return chain
}

// Erase clears the statement text of account's events older than before in
// every region (hash version 2 rows: recorded with audit.statement: full),
// as each region's admin role, through erase_statements. Their salted
// commitments stay, so every chain, checkpoint and proof still verifies.
// Events appended and not yet chained (ingest_batches) would keep their
// text: Erase first waits, up to EraseWait, until the region's integrator
// has chained every such event of the account, and fails naming how many
// are left otherwise. It returns the number of events whose text was erased.
func Erase(ctx context.Context, regions map[string]config.Region, account string, before time.Time) (int64, error) {
	if account == "" {
		return 0, errors.New("erase: an account is required")
	}
	var total int64
	for _, name := range sortedRegions(regions) {
		conn, err := connectAdmin(ctx, name, regions[name])
		if err != nil {
			return total, fmt.Errorf("region %s: erase: %w", name, err)
		}
		if err := waitChained(ctx, conn, ChainFor(account), before); err != nil {
			conn.Close(context.Background())
			return total, fmt.Errorf("region %s: erase: %w", name, err)
		}
		var n int64
		err = conn.QueryRow(ctx, `SELECT pgtenant_audit.erase_statements($1, $2)`, ChainFor(account), before).Scan(&n)
		conn.Close(context.Background())
		if err != nil {
			return total, fmt.Errorf("region %s: erase: %w", name, err)
		}
		total += n
	}
	return total, nil
}

// EraseWait bounds how long Erase waits for the events it must erase to be
// chained: integration lags appends by at most about a second while a
// pgtenant of the region runs.
var EraseWait = 30 * time.Second

// waitChained returns once no event of chain older than before awaits
// integration in ingest_batches, or fails after EraseWait.
func waitChained(ctx context.Context, conn *pgx.Conn, chain string, before time.Time) error {
	deadline := time.Now().Add(EraseWait)
	for {
		var n int64
		err := conn.QueryRow(ctx, `SELECT count(*) FROM pgtenant_audit.ingest_batches b, unnest(b.events) x
			WHERE x.chain_id = $1 AND x.ts < $2`, chain, before).Scan(&n)
		if err != nil {
			return fmt.Errorf("pending events: %w", err)
		}
		if n == 0 {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%d events of the account older than %s still await integration after %s; "+
				"a running pgtenant of the region chains them (is one running?): erase again once they are",
				n, before.UTC().Format(time.RFC3339), EraseWait)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
}
