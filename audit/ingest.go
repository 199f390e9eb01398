package audit

import (
	"context"
	"encoding/binary"
	"fmt"
	"net/netip"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

// insertBatchSQL appends one batch: one ingest_batches row whose events
// column packs the batch's events as an array of the composite
// pgtenant_audit.ingest_event (schema version 7), sent in binary. One
// round trip (Parse, Bind, Execute, Sync), where a COPY takes two (the
// COPY statement, then its data): a strict statement waits for it.
const insertBatchSQL = `INSERT INTO pgtenant_audit.ingest_batches (region, n, events) VALUES ($1, $2, $3)`

// ingestEventFields is the number of fields of pgtenant_audit.ingest_event.
const ingestEventFields = 27

// ingestRows appends rows (all of region, content hashes computed) as one
// pgtenant_audit.ingest_batches row in one INSERT: no chain lock, no sequence,
// one heap row and one index entry per batch rather than per event, nothing
// shared with other writers but the table. A batch may repeat events
// already appended (a spool batch re-shipped after a crash): the integrator
// skips them by event_id. elemOID is the OID of type
// pgtenant_audit.ingest_event (ingestEventOID). On error nothing was written.
func ingestRows(ctx context.Context, pool *pgxpool.Pool, region string, elemOID uint32, rows []*Row) error {
	_, err := ingestRowsBuf(ctx, pool, region, elemOID, rows, nil)
	return err
}

// ingestRowsBuf is ingestRows encoding into buf's storage (a writer reuses
// one buffer for every batch rather than allocating and zeroing a few
// hundred kilobytes each time); it returns the buffer for the next batch.
func ingestRowsBuf(ctx context.Context, pool *pgxpool.Pool, region string, elemOID uint32, rows []*Row, buf []byte) ([]byte, error) {
	data := encodeEventArray(buf[:0], elemOID, rows)
	conn, err := pool.Acquire(ctx)
	if err != nil {
		return data, fmt.Errorf("ingest: %w", err)
	}
	defer conn.Release()
	if err := insertBatch(ctx, conn.Conn(), region, len(rows), data); err != nil {
		return data, fmt.Errorf("ingest: a batch of %d events: %w", len(rows), err)
	}
	return data, nil
}

// ingestStatement is the name insertBatchSQL is prepared under on the
// connections that append batches.
const ingestStatement = "pgtenant_ingest_batch"

// insertBatch appends one batch of n events, events being their binary
// ingest_event[] (encodeEventArray), through a statement prepared once per
// connection (the server takes the array's type from the column): a writer
// in strict mode inserts a batch every few statements, and parsing and
// planning the INSERT each time took about a fifth of its backend's CPU.
// After a failure the statement is dropped, so the next batch prepares it
// again: a schema upgrade may have replaced the type it was planned with.
func insertBatch(ctx context.Context, conn *pgx.Conn, region string, n int, events []byte) error {
	if _, err := conn.Prepare(ctx, ingestStatement, insertBatchSQL); err != nil {
		return fmt.Errorf("prepare: %w", err)
	}
	err := conn.PgConn().ExecPrepared(ctx, ingestStatement,
		[][]byte{[]byte(region), binary.BigEndian.AppendUint32(nil, uint32(n)), events},
		[]int16{1, 1, 1}, nil).Read().Err
	if err != nil && !conn.IsClosed() {
		_ = conn.Deallocate(ctx, ingestStatement) // a failed connection is closed, and forgets it with the rest
	}
	return err
}

// rowQuerier is what ingestEventOID asks: a pool, a connection or a
// transaction.
type rowQuerier interface {
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
}

// ingestEventOID looks up the OID of the composite type
// pgtenant_audit.ingest_event, which binary arrays of it must name.
func ingestEventOID(ctx context.Context, q rowQuerier) (uint32, error) {
	var oid uint32
	if err := q.QueryRow(ctx, `SELECT coalesce(to_regtype('pgtenant_audit.ingest_event')::oid, 0)`).Scan(&oid); err != nil {
		return 0, fmt.Errorf("ingest: look up type pgtenant_audit.ingest_event (schema version 7): %w", err)
	}
	if oid == 0 {
		return 0, fmt.Errorf("ingest: %w", ErrSchemaOutdated)
	}
	return oid, nil
}

// pgEpoch is the zero of PostgreSQL's binary timestamps.
var pgEpoch = time.Date(2000, 1, 1, 0, 0, 0, 0, time.UTC)

// Type OIDs of the fields of a binary record (record_recv checks each one
// against the composite type's attribute).
const (
	oidBool        = 16
	oidInt2        = 21
	oidInt4        = 23
	oidText        = 25
	oidInet        = 869
	oidTextArray   = 1009
	oidTimestamptz = 1184
)

// encodeEventArray appends rows as a binary one-dimensional array of the
// composite pgtenant_audit.ingest_event (elemOID): what an ingest batch
// stores and what integrate_round takes as its own events. It writes each
// type's binary form directly: no reflection, no per-value planning.
func encodeEventArray(buf []byte, elemOID uint32, rows []*Row) []byte {
	buf = appendArrayHeader(buf, elemOID, len(rows), 0)
	for _, r := range rows {
		buf = appendEventRecord(buf, r)
	}
	return buf
}

// appendEventRecord appends r as one length-prefixed binary record of
// type pgtenant_audit.ingest_event: field count, then per field its type
// OID and its value as a length-prefixed binary field (length, bytes; -1 =
// NULL), the form binary COPY also uses.
func appendEventRecord(buf []byte, r *Row) []byte {
	at := len(buf)
	buf = binary.BigEndian.AppendUint32(buf, 0) // the record's length, patched below
	buf = binary.BigEndian.AppendUint32(buf, ingestEventFields)
	f := func(oid uint32) { buf = binary.BigEndian.AppendUint32(buf, oid) }
	f(oidUUID)
	buf = copyBytes(buf, r.EventID[:])
	f(oidText)
	buf = copyText(buf, r.ChainID)
	f(oidTimestamptz)
	buf = binary.BigEndian.AppendUint32(buf, 8)
	buf = binary.BigEndian.AppendUint64(buf, uint64(r.TS.Sub(pgEpoch).Microseconds()))
	f(oidText)
	buf = copyText(buf, r.Kind)
	f(oidText)
	buf = copyOptText(buf, r.AccountID)
	f(oidText)
	buf = copyOptText(buf, r.Subject)
	f(oidText)
	buf = copyOptText(buf, r.ClientUser)
	f(oidInet)
	buf = copyInet(buf, r.ClientAddr)
	f(oidText)
	buf = copyText(buf, r.Region)
	f(oidText)
	buf = copyOptText(buf, r.SessionID)
	f(oidText)
	buf = copyOptText(buf, r.ProxyInstance)
	f(oidText)
	buf = copyOptText(buf, r.Statement)
	f(oidTextArray)
	buf = copyTextArray(buf, r.Tables)
	f(oidText)
	buf = copyOptText(buf, r.Verdict)
	f(oidText)
	buf = copyOptText(buf, r.Reason)
	f(oidText)
	buf = copyOptText(buf, r.SQLState)
	f(oidInt8)
	buf = copyOptInt64(buf, r.Rows)
	f(oidInt8)
	buf = copyOptInt64(buf, r.DurationUS)
	f(oidInt2)
	buf = binary.BigEndian.AppendUint32(buf, 2)
	buf = binary.BigEndian.AppendUint16(buf, uint16(r.HashVersion))
	f(oidBytea)
	buf = copyBytes(buf, r.ContentHash)
	f(oidBytea)
	buf = copyOptBytes(buf, r.StatementSalt)
	f(oidBytea)
	buf = copyOptBytes(buf, r.StatementCommitment)
	f(oidText)
	buf = copyOptText(buf, r.Role)
	f(oidText)
	buf = copyOptText(buf, r.Actor)
	f(oidText)
	buf = copyOptText(buf, r.Purpose)
	f(oidText)
	buf = copyOptText(buf, r.Ticket)
	f(oidBool)
	buf = copyOptBool(buf, r.Rewritten)
	binary.BigEndian.PutUint32(buf[at:], uint32(len(buf)-at-4))
	return buf
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
	buf = appendArrayHeader(buf, oidText, len(a), 0)
	for _, s := range a {
		buf = copyText(buf, s)
	}
	return buf
}
