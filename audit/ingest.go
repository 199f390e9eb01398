package audit

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
)

// ingestColumns are the columns a writer fills in pgtenant_audit.ingest, in
// the order encodeCopy writes them. xid takes its default (the appending
// transaction).
const ingestColumns = `event_id, chain_id, ts, kind, account_id, subject, client_user, client_addr,
	region, session_id, proxy_instance, statement, tables, verdict, reason, sqlstate, rows, duration_us,
	hash_version, content_hash, statement_salt, statement_commitment, role, actor, purpose, ticket, rewritten`

const ingestFields = 27

// copyIngestSQL appends rows in PostgreSQL's binary COPY format.
const copyIngestSQL = `COPY pgtenant_audit.ingest (` + ingestColumns + `) FROM STDIN (FORMAT binary)`

// ingestRows appends rows (all of one region, content hashes computed) to
// pgtenant_audit.ingest in one COPY: no chain lock, no sequence, nothing
// shared with other writers but the table. A batch that repeats an event
// already appended (a spool batch re-shipped after a crash) fails the COPY
// on the event_id index; it is then appended through a temporary table,
// skipping the rows already present. It returns the rows inserted and the
// duplicates skipped; on error nothing was written.
func ingestRows(ctx context.Context, pool *pgxpool.Pool, rows []*Row) (inserted, dups int, err error) {
	data := encodeCopy(make([]byte, 0, 256*len(rows)), rows)
	conn, err := pool.Acquire(ctx)
	if err != nil {
		return 0, 0, fmt.Errorf("ingest: %w", err)
	}
	defer conn.Release()
	tag, err := conn.Conn().PgConn().CopyFrom(ctx, bytes.NewReader(data), copyIngestSQL)
	if err == nil {
		return int(tag.RowsAffected()), 0, nil
	}
	var pe *pgconn.PgError
	if !errors.As(err, &pe) || pe.Code != "23505" {
		return 0, 0, fmt.Errorf("ingest: copy %d rows: %w", len(rows), err)
	}
	n, err := ingestSkippingDuplicates(ctx, conn.Conn(), data)
	if err != nil {
		return 0, 0, err
	}
	return n, len(rows) - n, nil
}

// ingestSkippingDuplicates is the slow path of ingestRows.
func ingestSkippingDuplicates(ctx context.Context, conn *pgx.Conn, data []byte) (int, error) {
	n := 0
	err := pgx.BeginFunc(ctx, conn, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `CREATE TEMP TABLE pgtenant_ingest_retry (
			event_id uuid, chain_id text, ts timestamptz, kind text, account_id text, subject text,
			client_user text, client_addr inet, region text, session_id text, proxy_instance text,
			statement text, tables text[], verdict text, reason text, sqlstate text, rows bigint,
			duration_us bigint, hash_version smallint, content_hash bytea, statement_salt bytea,
			statement_commitment bytea, role text, actor text, purpose text, ticket text,
			rewritten boolean) ON COMMIT DROP`); err != nil {
			return err
		}
		if _, err := tx.Conn().PgConn().CopyFrom(ctx, bytes.NewReader(data),
			`COPY pgtenant_ingest_retry FROM STDIN (FORMAT binary)`); err != nil {
			return err
		}
		tag, err := tx.Exec(ctx, `INSERT INTO pgtenant_audit.ingest (`+ingestColumns+`)
			SELECT `+ingestColumns+` FROM pgtenant_ingest_retry ON CONFLICT DO NOTHING`)
		n = int(tag.RowsAffected())
		return err
	})
	if err != nil {
		return 0, fmt.Errorf("ingest: append skipping duplicates: %w", err)
	}
	return n, nil
}

// pgEpoch is the zero of PostgreSQL's binary timestamps.
var pgEpoch = time.Date(2000, 1, 1, 0, 0, 0, 0, time.UTC)

// Type OIDs written into binary arrays.
const oidText = 25

// encodeCopy appends rows in PostgreSQL's binary COPY format (header,
// tuples, trailer) to buf. It writes each type's binary form directly: no
// reflection, no per-value planning.
func encodeCopy(buf []byte, rows []*Row) []byte {
	buf = append(buf, "PGCOPY\n\xff\r\n\x00"...)
	buf = binary.BigEndian.AppendUint32(buf, 0) // flags
	buf = binary.BigEndian.AppendUint32(buf, 0) // header extension
	for _, r := range rows {
		buf = binary.BigEndian.AppendUint16(buf, ingestFields)
		buf = copyBytes(buf, r.EventID[:])
		buf = copyText(buf, r.ChainID)
		buf = binary.BigEndian.AppendUint32(buf, 8)
		buf = binary.BigEndian.AppendUint64(buf, uint64(r.TS.Sub(pgEpoch).Microseconds()))
		buf = copyText(buf, r.Kind)
		buf = copyOptText(buf, r.AccountID)
		buf = copyOptText(buf, r.Subject)
		buf = copyOptText(buf, r.ClientUser)
		buf = copyInet(buf, r.ClientAddr)
		buf = copyText(buf, r.Region)
		buf = copyOptText(buf, r.SessionID)
		buf = copyOptText(buf, r.ProxyInstance)
		buf = copyOptText(buf, r.Statement)
		buf = copyTextArray(buf, r.Tables)
		buf = copyOptText(buf, r.Verdict)
		buf = copyOptText(buf, r.Reason)
		buf = copyOptText(buf, r.SQLState)
		buf = copyOptInt64(buf, r.Rows)
		buf = copyOptInt64(buf, r.DurationUS)
		buf = binary.BigEndian.AppendUint32(buf, 2)
		buf = binary.BigEndian.AppendUint16(buf, uint16(r.HashVersion))
		buf = copyBytes(buf, r.ContentHash)
		buf = copyOptBytes(buf, r.StatementSalt)
		buf = copyOptBytes(buf, r.StatementCommitment)
		buf = copyOptText(buf, r.Role)
		buf = copyOptText(buf, r.Actor)
		buf = copyOptText(buf, r.Purpose)
		buf = copyOptText(buf, r.Ticket)
		buf = copyOptBool(buf, r.Rewritten)
	}
	return binary.BigEndian.AppendUint16(buf, 0xffff)
}

func copyNull(buf []byte) []byte { return binary.BigEndian.AppendUint32(buf, 0xffffffff) }

func copyBytes(buf, b []byte) []byte {
	buf = binary.BigEndian.AppendUint32(buf, uint32(len(b)))
	return append(buf, b...)
}

func copyOptBytes(buf, b []byte) []byte {
	if b == nil {
		return copyNull(buf)
	}
	return copyBytes(buf, b)
}

func copyOptBool(buf []byte, b *bool) []byte {
	if b == nil {
		return copyNull(buf)
	}
	buf = binary.BigEndian.AppendUint32(buf, 1)
	if *b {
		return append(buf, 1)
	}
	return append(buf, 0)
}

func copyText(buf []byte, s string) []byte {
	buf = binary.BigEndian.AppendUint32(buf, uint32(len(s)))
	return append(buf, s...)
}

func copyOptText(buf []byte, s *string) []byte {
	if s == nil {
		return copyNull(buf)
	}
	return copyText(buf, *s)
}

func copyOptInt64(buf []byte, v *int64) []byte {
	if v == nil {
		return copyNull(buf)
	}
	buf = binary.BigEndian.AppendUint32(buf, 8)
	return binary.BigEndian.AppendUint64(buf, uint64(*v))
}

// copyInet writes an inet host address (family, bits, is_cidr, length,
// address); text that is not an address (never written by the Recorder)
// is NULL.
func copyInet(buf []byte, s *string) []byte {
	if s == nil {
		return copyNull(buf)
	}
	a, err := netip.ParseAddr(*s)
	if err != nil {
		return copyNull(buf)
	}
	a = a.Unmap()
	family := byte(2) // PGSQL_AF_INET
	if a.Is6() {
		family = 3 // PGSQL_AF_INET6
	}
	addr := a.AsSlice()
	buf = binary.BigEndian.AppendUint32(buf, uint32(4+len(addr)))
	buf = append(buf, family, byte(8*len(addr)), 0, byte(len(addr)))
	return append(buf, addr...)
}

// copyTextArray writes a one-dimensional text[] (nil = NULL, empty = '{}').
func copyTextArray(buf []byte, a []string) []byte {
	if a == nil {
		return copyNull(buf)
	}
	if len(a) == 0 {
		buf = binary.BigEndian.AppendUint32(buf, 12)
		buf = binary.BigEndian.AppendUint32(buf, 0) // ndim
		buf = binary.BigEndian.AppendUint32(buf, 0) // no nulls
		return binary.BigEndian.AppendUint32(buf, oidText)
	}
	size := 20
	for _, s := range a {
		size += 4 + len(s)
	}
	buf = binary.BigEndian.AppendUint32(buf, uint32(size))
	buf = binary.BigEndian.AppendUint32(buf, 1) // ndim
	buf = binary.BigEndian.AppendUint32(buf, 0) // no nulls
	buf = binary.BigEndian.AppendUint32(buf, oidText)
	buf = binary.BigEndian.AppendUint32(buf, uint32(len(a)))
	buf = binary.BigEndian.AppendUint32(buf, 1) // lower bound
	for _, s := range a {
		buf = copyText(buf, s)
	}
	return buf
}
