package audit

import (
	"bytes"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/pgtenant/pgtenant/tenancy"
)

func testResultRec(t testing.TB) *resultRec {
	t.Helper()
	ev := tenancy.Event{Kind: tenancy.KindResult, Time: time.Now(), AccountID: "42", Region: "eu-west",
		SessionID: "s-1", Rows: 7, DurationUS: 1234, SQLState: "22012", Ref: 9}
	r, err := newResultRec(ev, "inst-a")
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// A result spooled in format 4 reads back the same from the file as the
// shipper keeps it in memory, torn or padded payloads are refused, and the
// row built for a result whose statement was shipped without it keeps the
// spooled event id (a spool shipped again after a crash repeats the event,
// which the database then skips).
func TestSpoolResultRecord(t *testing.T) {
	r := testResultRec(t)
	buf := encodeResultRecord(nil, r, 9)
	rec, err := decodeRecord(buf[recordHeader:])
	if err != nil || rec.row != nil || rec.ref != 9 {
		t.Fatalf("decoded %+v, %v", rec, err)
	}
	want := *r
	want.ts = r.ts.Truncate(time.Microsecond).UTC()
	if !reflect.DeepEqual(*rec.res, want) {
		t.Fatalf("decoded %+v, want %+v", *rec.res, want)
	}
	for _, bad := range [][]byte{buf[recordHeader : len(buf)-1], append(bytes.Clone(buf[recordHeader:]), 0)} {
		if _, err := decodeRecord(bad); err == nil {
			t.Fatalf("a payload of %d bytes (want %d) decoded", len(bad), len(buf)-recordHeader)
		}
	}

	row, err := rec.res.row("eu-west", 9)
	if err != nil {
		t.Fatal(err)
	}
	if row.EventID != r.id || row.Kind != tenancy.KindResult || row.ChainID != "42" || *row.SessionID != "s-1" ||
		*row.Rows != 7 || *row.DurationUS != 1234 || *row.SQLState != "22012" || *row.ProxyInstance != "inst-a" {
		t.Fatalf("own row %+v", row)
	}

	stmtRow, err := NewRow(stmt("42", "s-1", 1), "eu-west", "inst-a", StatementNormalized)
	if err != nil {
		t.Fatal(err)
	}
	rec.res.mergeInto(stmtRow)
	if *stmtRow.Rows != 7 || *stmtRow.DurationUS != 1234 || *stmtRow.SQLState != "22012" {
		t.Fatalf("merged statement %+v", stmtRow)
	}
	if k, _ := keyOf(stmtRow, 9); k != rec.res.key(9) {
		t.Fatalf("the result's key %+v is not its statement's %+v", rec.res.key(9), k)
	}

	long := *r
	long.session = strings.Repeat("s", 1<<16)
	if long.spoolable() {
		t.Fatal("a session id longer than its length prefix counts as spoolable")
	}
}

// The shipper reads a result appended in format 4 from memory, and the same
// from the file once memory no longer holds it.
func TestSpoolResultFromMemoryAndFile(t *testing.T) {
	s, err := openSpool(t.TempDir(), 1<<30)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	r := testResultRec(t)
	if err := s.AppendResult(r, 9); err != nil {
		t.Fatal(err)
	}
	mem, _, err := s.nextRecs(nil, 10)
	if err != nil || len(mem) != 1 || mem[0].res != r {
		t.Fatalf("from memory: %+v, %v", mem, err)
	}
	s.Rewind(spoolPos{id: s.rID})
	file, _, err := s.nextRecs(nil, 10)
	if err != nil || len(file) != 1 || file[0].res == nil || file[0].res.id != r.id || file[0].end != mem[0].end {
		t.Fatalf("from the file: %+v, %v", file, err)
	}
}

func FuzzSpoolResultRecord(f *testing.F) {
	f.Add(encodeResultRecord(nil, testResultRec(f), 3)[recordHeader:])
	f.Add([]byte{spoolFormatResult})
	f.Fuzz(func(t *testing.T, payload []byte) {
		rec, err := decodeRecord(payload)
		if err != nil || rec.res == nil {
			return
		}
		again := encodeResultRecord(nil, rec.res, rec.ref)
		if !bytes.Equal(again[recordHeader:], payload) {
			t.Fatalf("a decoded result does not encode back to its payload")
		}
	})
}
