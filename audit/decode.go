package audit

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	"time"

	"github.com/google/uuid"
)

// errContent is returned for bytes that are not a content encoding.
var errContent = errors.New("malformed content encoding")

// decoder reads the encoding written by encoder.
type decoder struct {
	b   []byte
	err error
}

func (d *decoder) fail() {
	if d.err == nil {
		d.err = errContent
	}
}

func (d *decoder) take(n int) []byte {
	if d.err != nil || n < 0 || len(d.b) < n {
		d.fail()
		return nil
	}
	v := d.b[:n:n]
	d.b = d.b[n:]
	return v
}

func (d *decoder) u32() int {
	b := d.take(4)
	if b == nil {
		return 0
	}
	v := binary.BigEndian.Uint32(b)
	if v > maxRecordBytes {
		d.fail()
		return 0
	}
	return int(v)
}

// present reads the presence byte: false for NULL.
func (d *decoder) present() bool {
	b := d.take(1)
	if b == nil {
		return false
	}
	switch b[0] {
	case 0:
		return false
	case 1:
		return true
	}
	d.fail()
	return false
}

func (d *decoder) bytes() []byte {
	if !d.present() {
		d.fail()
		return nil
	}
	return d.take(d.u32())
}

func (d *decoder) str() string { return string(d.bytes()) }

func (d *decoder) optStr() *string {
	if !d.present() {
		return nil
	}
	s := string(d.take(d.u32()))
	return &s
}

func (d *decoder) int64() int64 {
	if !d.present() {
		d.fail()
		return 0
	}
	b := d.take(8)
	if b == nil {
		return 0
	}
	return int64(binary.BigEndian.Uint64(b))
}

func (d *decoder) optInt64() *int64 {
	if !d.present() {
		return nil
	}
	b := d.take(8)
	if b == nil {
		return nil
	}
	v := int64(binary.BigEndian.Uint64(b))
	return &v
}

func (d *decoder) optBool() *bool {
	if !d.present() {
		return nil
	}
	b := d.take(1)
	if b == nil || b[0] > 1 {
		d.fail()
		return nil
	}
	v := b[0] == 1
	return &v
}

func (d *decoder) strArray() []string {
	if !d.present() {
		return nil
	}
	n := d.u32()
	if n > len(d.b) {
		d.fail()
		return nil
	}
	out := make([]string, 0, n)
	for range n {
		out = append(out, d.str())
	}
	return out
}

func (d *decoder) addr() *string {
	if !d.present() {
		return nil
	}
	b := d.take(d.u32())
	if a, ok := netip.AddrFromSlice(b); ok && (len(b) == 4 || len(b) == 16) {
		s := a.String()
		return &s
	}
	s := string(b)
	return &s
}

// decodeContent parses a version-1 or version-3 content encoding with the
// statement text (as the spool writes it) back into a row without seq and
// hashes.
func decodeContent(b []byte) (*Row, error) {
	d := &decoder{b: b}
	hdr := d.take(2)
	if hdr == nil || hdr[0] != tagContent || (hdr[1] != HashVersion && hdr[1] != HashVersionAttributed) {
		return nil, fmt.Errorf("%w: bad header", errContent)
	}
	r := &Row{}
	id := d.bytes()
	if len(id) != 16 {
		d.fail()
	} else {
		r.EventID = uuid.UUID(id)
	}
	r.ChainID = d.str()
	r.Region = d.str()
	r.TS = time.UnixMicro(d.int64()).UTC()
	r.Kind = d.str()
	r.AccountID = d.optStr()
	r.Subject = d.optStr()
	r.ClientUser = d.optStr()
	r.ClientAddr = d.addr()
	r.SessionID = d.optStr()
	r.ProxyInstance = d.optStr()
	r.Statement = d.optStr()
	r.Tables = d.strArray()
	r.Verdict = d.optStr()
	r.Reason = d.optStr()
	r.SQLState = d.optStr()
	r.Rows = d.optInt64()
	r.DurationUS = d.optInt64()
	if hdr[1] == HashVersionAttributed {
		r.Role = d.optStr()
		r.Actor = d.optStr()
		r.Purpose = d.optStr()
		r.Ticket = d.optStr()
		r.Rewritten = d.optBool()
	}
	if d.err == nil && len(d.b) != 0 {
		d.fail()
	}
	if d.err != nil {
		return nil, d.err
	}
	return r, nil
}
