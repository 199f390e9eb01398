package audit

import (
	"context"
	"fmt"
	"net/netip"
	"time"

	"github.com/jackc/pgx/v5"
)

// rowColumns selects an events row in Row's field order.
// purged and the statement salt and commitment are read through to_jsonb
// so that regions not yet at schema versions 4 and 5 (no such columns)
// still verify; so are role, actor, purpose, ticket and rewritten
// (schema version 6).
const rowColumns = `chain_id, seq, event_id, ts, kind, account_id, subject, client_user,
	client_addr::text, region, session_id, proxy_instance, statement, tables, verdict, reason,
	sqlstate, rows, duration_us, hash_version, content_hash, prev_hash, entry_hash,
	coalesce((to_jsonb(e) ->> 'purged')::boolean, false),
	decode(substr(to_jsonb(e) ->> 'statement_salt', 3), 'hex'),
	decode(substr(to_jsonb(e) ->> 'statement_commitment', 3), 'hex'),
	to_jsonb(e) ->> 'role', to_jsonb(e) ->> 'actor', to_jsonb(e) ->> 'purpose', to_jsonb(e) ->> 'ticket',
	(to_jsonb(e) ->> 'rewritten')::boolean`

func scanRow(rows pgx.Rows) (*Row, error) {
	r := &Row{}
	err := rows.Scan(&r.ChainID, &r.Seq, &r.EventID, &r.TS, &r.Kind, &r.AccountID, &r.Subject, &r.ClientUser,
		&r.ClientAddr, &r.Region, &r.SessionID, &r.ProxyInstance, &r.Statement, &r.Tables, &r.Verdict, &r.Reason,
		&r.SQLState, &r.Rows, &r.DurationUS, &r.HashVersion, &r.ContentHash, &r.PrevHash, &r.EntryHash, &r.Purged,
		&r.StatementSalt, &r.StatementCommitment, &r.Role, &r.Actor, &r.Purpose, &r.Ticket, &r.Rewritten)
	if err != nil {
		return nil, err
	}
	r.TS = r.TS.UTC()
	r.ClientAddr = hostAddr(r.ClientAddr)
	return r, nil
}

// hostAddr turns inet text of a single host ("10.0.0.7/32") into the plain
// address the Recorder hashed; any other value (a network) is kept as is,
// so that it fails verification.
func hostAddr(s *string) *string {
	if s == nil {
		return nil
	}
	p, err := netip.ParsePrefix(*s)
	if err != nil || p.Bits() != p.Addr().BitLen() {
		return s
	}
	a := p.Addr().String()
	return &a
}

// streamChain calls fn for each row of chain with minSeq <= seq <= maxSeq
// (maxSeq 0 = no bound), in seq order.
func streamChain(ctx context.Context, conn *pgx.Conn, chain string, minSeq, maxSeq int64, fn func(*Row) error) error {
	q := `SELECT ` + rowColumns + ` FROM pgtenant_audit.events e WHERE chain_id = $1 AND seq >= $2`
	args := []any{chain, minSeq}
	if maxSeq > 0 {
		q += ` AND seq <= $3`
		args = append(args, maxSeq)
	}
	rows, err := conn.Query(ctx, q+` ORDER BY seq`, args...)
	if err != nil {
		return fmt.Errorf("read chain %q: %w", chain, err)
	}
	defer rows.Close()
	for rows.Next() {
		r, err := scanRow(rows)
		if err != nil {
			return fmt.Errorf("read chain %q: %w", chain, err)
		}
		if err := fn(r); err != nil {
			return err
		}
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("read chain %q: %w", chain, err)
	}
	return nil
}

// dbCheckpoints returns chain's checkpoints in insertion order.
func dbCheckpoints(ctx context.Context, conn *pgx.Conn, chain string) ([]Checkpoint, error) {
	rows, err := conn.Query(ctx, `SELECT chain_id, region, size, head, ts, key_id, signature
		FROM pgtenant_audit.checkpoints WHERE chain_id = $1 ORDER BY id`, chain)
	if err != nil {
		return nil, fmt.Errorf("read checkpoints of %q: %w", chain, err)
	}
	return pgx.CollectRows(rows, func(row pgx.CollectableRow) (Checkpoint, error) {
		var c Checkpoint
		var head, sig []byte
		var ts time.Time
		err := row.Scan(&c.ChainID, &c.Region, &c.Size, &head, &ts, &c.KeyID, &sig)
		c.Head, c.Signature, c.TS = head, sig, ts.UTC()
		return c, err
	})
}

// headOf returns chain's chain_heads row; ok is false when there is none.
func headOf(ctx context.Context, conn *pgx.Conn, chain string) (seq int64, head []byte, ok bool, err error) {
	err = conn.QueryRow(ctx, `SELECT seq, head FROM pgtenant_audit.chain_heads WHERE chain_id = $1`, chain).Scan(&seq, &head)
	if err == pgx.ErrNoRows {
		return 0, nil, false, nil
	}
	if err != nil {
		return 0, nil, false, fmt.Errorf("read head of %q: %w", chain, err)
	}
	return seq, head, true, nil
}

// chainIDs lists every chain that has rows, a head or a checkpoint.
func chainIDs(ctx context.Context, conn *pgx.Conn) ([]string, error) {
	rows, err := conn.Query(ctx, `SELECT chain_id FROM pgtenant_audit.chain_heads
		UNION SELECT DISTINCT chain_id FROM pgtenant_audit.events
		UNION SELECT chain_id FROM pgtenant_audit.checkpoints ORDER BY 1`)
	if err != nil {
		return nil, fmt.Errorf("list chains: %w", err)
	}
	return pgx.CollectRows(rows, pgx.RowTo[string])
}
