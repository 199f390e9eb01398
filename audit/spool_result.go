package audit

import (
	"encoding/binary"
	"errors"
	"hash/crc32"
	"time"

	"github.com/google/uuid"

	"github.com/pgtenant/pgtenant/tenancy"
)

// spoolFormatResult (4) is a statement's result in the spool, as little as
// merging it needs: u8 4 || u64 BE ref || the event id (16 bytes) || i64
// BE time (µs since the Unix epoch) || i64 BE rows (-1 unknown) || i64 BE
// duration_us || u8 length || sqlstate || u16 BE length || session id ||
// u16 BE length || account id || u8 length || proxy instance. The shipper
// merges it into the statement it answers (one row per statement); only a
// result whose statement was shipped without waiting for it (a query longer
// than holdMax) becomes a row of its own, built then (resultRec.row): kind
// result, its account, session and outcome, no statement text (its
// statement's row has it). Building the full row and its content encoding
// per result cost the spool mode 4 µs of proxy CPU per statement.
const spoolFormatResult = 4

// resultRec is a result event as spooled in format 4.
type resultRec struct {
	id       uuid.UUID
	ts       time.Time
	rows     int64
	duration int64
	sqlstate string
	session  string
	account  string
	instance string
}

// newResultRec keeps what the spool needs of result event ev.
func newResultRec(ev tenancy.Event, instance string) (*resultRec, error) {
	id, err := newEventID()
	if err != nil {
		return nil, err
	}
	ts := ev.Time
	if ts.IsZero() {
		ts = time.Now()
	}
	return &resultRec{id: id, ts: ts, rows: ev.Rows, duration: ev.DurationUS, sqlstate: ev.SQLState,
		session: ev.SessionID, account: ev.AccountID, instance: instance}, nil
}

// spoolable reports whether the fields fit format 4's length prefixes.
func (r *resultRec) spoolable() bool {
	return len(r.sqlstate) < 1<<8 && len(r.session) < 1<<16 && len(r.account) < 1<<16 && len(r.instance) < 1<<8
}

// encodeResultRecord appends r as a framed format-4 record with ref.
func encodeResultRecord(buf []byte, r *resultRec, ref uint64) []byte {
	hdr := len(buf)
	buf = append(buf, 0, 0, 0, 0, 0, 0, 0, 0, spoolFormatResult)
	buf = binary.BigEndian.AppendUint64(buf, ref)
	buf = append(buf, r.id[:]...)
	buf = binary.BigEndian.AppendUint64(buf, uint64(r.ts.UnixMicro()))
	buf = binary.BigEndian.AppendUint64(buf, uint64(r.rows))
	buf = binary.BigEndian.AppendUint64(buf, uint64(r.duration))
	buf = append(buf, byte(len(r.sqlstate)))
	buf = append(buf, r.sqlstate...)
	buf = binary.BigEndian.AppendUint16(buf, uint16(len(r.session)))
	buf = append(buf, r.session...)
	buf = binary.BigEndian.AppendUint16(buf, uint16(len(r.account)))
	buf = append(buf, r.account...)
	buf = append(buf, byte(len(r.instance)))
	buf = append(buf, r.instance...)
	payload := buf[hdr+recordHeader:]
	binary.BigEndian.PutUint32(buf[hdr:], uint32(len(payload)))
	binary.BigEndian.PutUint32(buf[hdr+4:], crc32.Checksum(payload, crcTable))
	return buf
}

var errTornResult = errors.New("torn result record")

// decodeResultRecord decodes a format-4 payload.
func decodeResultRecord(p []byte) (*resultRec, uint64, error) {
	const fixed = 1 + 8 + 16 + 8 + 8 + 8
	if len(p) < fixed || p[0] != spoolFormatResult {
		return nil, 0, errTornResult
	}
	r := &resultRec{}
	ref := binary.BigEndian.Uint64(p[1:])
	copy(r.id[:], p[9:25])
	r.ts = time.UnixMicro(int64(binary.BigEndian.Uint64(p[25:]))).UTC()
	r.rows = int64(binary.BigEndian.Uint64(p[33:]))
	r.duration = int64(binary.BigEndian.Uint64(p[41:]))
	rest := p[fixed:]
	str := func(width int) (string, bool) {
		if len(rest) < width {
			return "", false
		}
		n := int(rest[0])
		if width == 2 {
			n = int(binary.BigEndian.Uint16(rest))
		}
		if len(rest) < width+n {
			return "", false
		}
		s := string(rest[width : width+n])
		rest = rest[width+n:]
		return s, true
	}
	var ok [4]bool
	r.sqlstate, ok[0] = str(1)
	r.session, ok[1] = str(2)
	r.account, ok[2] = str(2)
	r.instance, ok[3] = str(1)
	if ok != [4]bool{true, true, true, true} || len(rest) != 0 {
		return nil, 0, errTornResult
	}
	return r, ref, nil
}

// key is the statement the result answers.
func (r *resultRec) key(ref uint64) stmtKey { return stmtKey{clean(r.session), ref} }

// mergeInto copies the outcome into its statement's row, as mergeEvent does.
func (r *resultRec) mergeInto(stmt *Row) {
	mergeEvent(stmt, tenancy.Event{Rows: r.rows, DurationUS: r.duration, SQLState: r.sqlstate})
}

// row is the result's own row, for a result whose statement was shipped
// without it.
func (r *resultRec) row(region string, ref uint64) (*Row, error) {
	ev := tenancy.Event{Kind: tenancy.KindResult, Time: r.ts, AccountID: r.account, Region: region,
		SessionID: r.session, SQLState: r.sqlstate, Rows: r.rows, DurationUS: r.duration, Ref: ref}
	row, err := newRow(ev, ChainFor(r.account), region, r.instance, StatementNormalized)
	if err != nil {
		return nil, err
	}
	row.EventID = r.id // the same event when the spool is shipped again
	return row, nil
}
