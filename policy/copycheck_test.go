package policy

import (
	"encoding/binary"
	"strings"
	"sync"
	"testing"

	"github.com/pgtenant/pgtenant/config"
	"github.com/pgtenant/pgtenant/tenancy"
)

func copyCheck(t *testing.T, sql string) *CopyCheck {
	t.Helper()
	e := newTestEngine(t, func(p *config.Policy) { p.Unscoped = "rewrite" })
	d := session(t, e, "42").CheckQuery(sql)
	if !d.Allow || d.Copy == nil {
		t.Fatalf("%s: %v %s", sql, d.Allow, d.Message)
	}
	return d.Copy.(*CopyCheck)
}

// verdict feeds data in chunks of every size and requires the same verdict.
func copyVerdict(t *testing.T, c *CopyCheck, data []byte) bool {
	t.Helper()
	var first *bool
	for size := 1; size <= len(data)+1; size++ {
		s := c.Stream()
		var d *tenancy.Decision
		for i := 0; i < len(data) && d == nil; i += size {
			d = s.Write(data[i:min(i+size, len(data))])
		}
		if d == nil {
			d = s.Close()
		}
		ok := d == nil
		if first == nil {
			first = &ok
		} else if *first != ok {
			t.Fatalf("chunk size %d changes the verdict on %q", size, data)
		}
		if d != nil && (d.SQLState != "42501" || !strings.HasPrefix(d.Message, "pgtenant: ")) {
			t.Fatalf("bad denial %+v", d)
		}
	}
	return *first
}

func TestCopyTextRows(t *testing.T) {
	c := copyCheck(t, `COPY orders (id, account_id, note) FROM STDIN`)
	for _, tc := range []struct {
		data string
		ok   bool
	}{
		{"1\t42\tx\n2\t42\ty\n", true},
		{"1\t42\tx\n2\t42\ty", true},
		{"1\t42\tx\r\n2\t42\ty\r\n", true},
		{"1\t 42\ta\\tb\n", true},
		{"1\t\\x34\\x32\tx\n", true},
		{"1\t\\06442\tx\n", false},
		{"1\t42\tx\n2\t7\ty\n", false},
		{"1\t\\N\tx\n", false},
		{"1\\\t42\t7\n", false}, // the escaped tab is data: the tenant field is 7
		{"1\t4\\\n2\tx\n", false},
		{"1\t42\tx\n\\.\n", true},
		{"1\t42\tx\n\\.\n2\t7\tx\n", false},
		{"1\n", false},
		{"", true},
	} {
		if got := copyVerdict(t, c, []byte(tc.data)); got != tc.ok {
			t.Errorf("%q: got %v want %v", tc.data, got, tc.ok)
		}
	}
	h := copyCheck(t, `COPY orders (account_id) FROM STDIN WITH (FORMAT text, HEADER true, DELIMITER '|', NULL 'nil')`)
	if !copyVerdict(t, h, []byte("account_id\n42\n")) || copyVerdict(t, h, []byte("x\nnil\n")) {
		t.Errorf("header/null options")
	}
}

func TestCopyCSVRows(t *testing.T) {
	c := copyCheck(t, `COPY orders (note, account_id) FROM STDIN WITH (FORMAT csv)`)
	for _, tc := range []struct {
		data string
		ok   bool
	}{
		{"a,42\nb,42\n", true},
		{"\"a,b\",42\n", true},
		{"\"a\n7,b\",42\n", true},
		{"\"a\"\",\",\"42\"\n", true},
		{"a,42\n\"x\n\",7\n", false},
		{"a,\n", false},
		{"a,\"\"\n", false},
		{"a,7\n", false},
		{"\\.\n", false},
	} {
		if got := copyVerdict(t, c, []byte(tc.data)); got != tc.ok {
			t.Errorf("%q: got %v want %v", tc.data, got, tc.ok)
		}
	}
	e := copyCheck(t, `COPY orders (note, account_id) FROM STDIN WITH (FORMAT csv, QUOTE '''', ESCAPE '\', HEADER)`)
	if !copyVerdict(t, e, []byte("note,account_id\n'a\\',7',42\n")) || copyVerdict(t, e, []byte("h\n'a\\\\',7\n")) {
		t.Errorf("quote/escape options")
	}
}

func binCopy(rows ...[][]byte) []byte {
	b := append([]byte(nil), copySignature...)
	b = append(b, 0, 0, 0, 0, 0, 0, 0, 0)
	for _, r := range rows {
		b = binary.BigEndian.AppendUint16(b, uint16(len(r)))
		for _, f := range r {
			if f == nil {
				b = binary.BigEndian.AppendUint32(b, 0xffffffff)
				continue
			}
			b = binary.BigEndian.AppendUint32(b, uint32(len(f)))
			b = append(b, f...)
		}
	}
	return binary.BigEndian.AppendUint16(b, 0xffff)
}

func TestCopyBinaryRows(t *testing.T) {
	c := copyCheck(t, `COPY orders (id, account_id) FROM STDIN (FORMAT binary)`)
	if !copyVerdict(t, c, binCopy([][]byte{be(1, 8), be(42, 8)}, [][]byte{be(2, 8), be(42, 8)})) {
		t.Error("own rows refused")
	}
	if copyVerdict(t, c, binCopy([][]byte{be(1, 8), be(42, 8)}, [][]byte{be(2, 8), be(7, 8)})) {
		t.Error("another tenant's row allowed")
	}
	if copyVerdict(t, c, binCopy([][]byte{be(1, 8), nil})) {
		t.Error("NULL tenant allowed")
	}
	if copyVerdict(t, c, binCopy([][]byte{be(1, 8), be(42, 4)})) {
		t.Error("int4-sized tenant allowed for an int8 column")
	}
	if copyVerdict(t, c, append(binCopy([][]byte{be(1, 8), be(42, 8)}), 0, 2)) {
		t.Error("data after the trailer allowed")
	}
	if copyVerdict(t, c, binCopy([][]byte{be(1, 8), be(42, 8)})[:30]) {
		t.Error("truncated data allowed")
	}
}

func TestCopyFromDecisions(t *testing.T) {
	e := newTestEngine(t, func(p *config.Policy) { p.Unscoped = "rewrite" })
	for sql, allow := range map[string]bool{
		`COPY orders (id, account_id) FROM STDIN`:                                        true,
		`COPY orders FROM STDIN`:                                                         true, // columns known from the schema
		`COPY orders (id, total) FROM STDIN`:                                             false,
		`COPY orders (account_id, account_id) FROM STDIN`:                                false,
		`COPY orders (account_id) FROM STDIN WITH (FORCE_NULL (account_id), FORMAT csv)`: false,
		`COPY orders (account_id) FROM STDIN WHERE account_id = 42`:                      false,
		`COPY orders (account_id) FROM '/tmp/x'`:                                         false,
		`COPY countries FROM STDIN`:                                                      false,
		`COPY audit.log FROM STDIN`:                                                      false,
		`COPY orders (account_id) FROM STDIN WITH (ENCODING 'LATIN1')`:                   false,
	} {
		d := session(t, e, "42").CheckQuery(sql)
		if d.Allow != allow || (allow && d.Copy == nil) {
			t.Errorf("%s: allow %v (%s), want %v", sql, d.Allow, d.Message, allow)
		}
	}
	if d := session(t, newTestEngine(t), "42").CheckQuery(`COPY orders (id, account_id) FROM STDIN`); d.Allow {
		t.Error("COPY FROM allowed in deny mode")
	}
}

var copyFuzzChecks struct {
	once sync.Once
	c    []*CopyCheck
}

// FuzzCopyStream feeds arbitrary COPY data (text, CSV, binary) to the row
// check: it never panics, and the verdict never depends on how the data is
// split into CopyData messages.
func FuzzCopyStream(f *testing.F) {
	f.Add([]byte("1\t42\tx\n2\t7\ty\n"), uint16(5), uint8(0))
	f.Add([]byte("\"a\n,b\",42\r\nc,7\n"), uint16(3), uint8(1))
	f.Add(binCopy([][]byte{be(1, 8), be(42, 8)}), uint16(20), uint8(2))
	f.Add([]byte("1\t4\\\n2\tx\n\\.\n"), uint16(4), uint8(0))
	f.Fuzz(func(t *testing.T, data []byte, split uint16, format uint8) {
		copyFuzzChecks.once.Do(func() {
			for _, sql := range []string{
				`COPY orders (id, account_id, note) FROM STDIN`,
				`COPY orders (note, account_id) FROM STDIN WITH (FORMAT csv, ESCAPE '\')`,
				`COPY orders (id, account_id) FROM STDIN (FORMAT binary)`,
			} {
				copyFuzzChecks.c = append(copyFuzzChecks.c, copyCheck(t, sql))
			}
		})
		c := copyFuzzChecks.c[int(format)%3]
		whole := c.Stream().(*CopyStream)
		d1 := whole.Write(data)
		if d1 == nil {
			d1 = whole.Close()
		}
		at := 0
		if len(data) > 0 {
			at = int(split) % (len(data) + 1)
		}
		parts := c.Stream().(*CopyStream)
		d2 := parts.Write(data[:at])
		if d2 == nil {
			d2 = parts.Write(data[at:])
		}
		if d2 == nil {
			d2 = parts.Close()
		}
		if (d1 == nil) != (d2 == nil) || whole.Rows() != parts.Rows() {
			t.Fatalf("split at %d changes the verdict (%v/%v, %d/%d rows) on %q", at, d1 == nil, d2 == nil, whole.Rows(), parts.Rows(), data)
		}
	})
}
