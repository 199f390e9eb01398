package policy

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"strconv"

	"github.com/pgtenant/pgtenant/tenancy"
)

// COPY ... FROM STDIN in rewrite mode.
//
// A COPY into a tenant table is allowed when its column list names the
// tenant column (or it has none and the catalog knows the columns); the proxy
// then runs every row the client sends through a CopyStream, which reads the
// rows as PostgreSQL will (text, CSV and binary formats) and checks the tenant
// field of each against the caller's account. The first row of another
// tenant (or NULL, or a row the stream cannot read) stops the COPY before
// CopyDone reaches the server: the proxy sends CopyFail, the server rolls the
// whole COPY back, and the client gets 42501. A COPY that omits the tenant
// column is refused: COPY has no expression to fill it with, and pgtenant does
// not change table defaults.

// maxCopyRow bounds the bytes a stream buffers for one row.
const maxCopyRow = 64 << 20

// CopyCheck is the per-row check of an allowed COPY ... FROM STDIN: the
// tenancy.CopyCheck of its Decision.
type CopyCheck struct {
	// Table is the target's qualified name.
	Table  string
	column string
	col    int // index of the tenant column in the row
	format string
	delim  byte
	quote  byte
	escape byte
	null   string
	header bool
	acc    account
	typ    string
	oid    uint32
}

// copyDecision decides a COPY ... FROM STDIN denied in deny mode.
func (s *Session) copyDecision(sql string, d tenancy.Decision) (tenancy.Decision, bool) {
	cf, ok := s.e.parser.CopyFromStdin(sql)
	if !ok {
		return d, false
	}
	refuse := func(msg, hint string) (tenancy.Decision, bool) {
		return deny("copy_from", msg, hint).decision(d.Tables, d.Statement), true
	}
	t := s.e.pinResolver(s.cat)
	pt, ok := t(cf.Schema, cf.Table)
	if !ok {
		return d, false // not a tenant table: the deny-mode verdict stands
	}
	name := cf.Schema + "." + cf.Table
	if cf.Schema == "" {
		for _, sp := range s.cat.SearchPath {
			if s.cat.Tables[sp+"."+cf.Table] != nil {
				name = sp + "." + cf.Table
				break
			}
		}
	}
	if cf.Unsupported != "" {
		return refuse("COPY ... FROM STDIN with "+cf.Unsupported+" cannot be checked row by row",
			"use FORMAT text, csv or binary with DELIMITER, NULL, QUOTE, ESCAPE or HEADER only")
	}
	cols := cf.Columns
	if cols == nil {
		cols = pt.Columns
	}
	pos := -1
	for i, c := range cols {
		if c == pt.Column {
			if pos >= 0 {
				return refuse("COPY into "+name+" lists "+pt.Column+" twice", "")
			}
			pos = i
		}
	}
	if pos < 0 {
		return refuse("COPY into "+name+" must include "+pt.Column+" (COPY cannot fill it)",
			"list "+pt.Column+" in the COPY column list and send your account id in every row")
	}
	c := &CopyCheck{Table: name, column: pt.Column, col: pos, format: cf.Format, null: cf.Null,
		header: cf.Header != "", acc: s.acc, typ: pt.Type}
	c.oid = map[string]uint32{"bigint": oidInt8, "integer": oidInt4, "smallint": oidInt2, "text": oidText, "uuid": oidUUID}[pt.Type]
	one := func(v, def string) (byte, bool) {
		if v == "" {
			return def[0], true
		}
		return v[0], len(v) == 1 && v[0] < 0x80
	}
	var ok1, ok2, ok3 bool
	switch cf.Format {
	case "text":
		c.delim, ok1 = one(cf.Delimiter, "\t")
		ok2, ok3 = cf.Quote == "" && cf.Escape == "", true
		if !cf.HasNull {
			c.null = `\N`
		}
	case "csv":
		c.delim, ok1 = one(cf.Delimiter, ",")
		c.quote, ok2 = one(cf.Quote, `"`)
		c.escape, ok3 = one(cf.Escape, string(c.quote))
	case "binary":
		ok1, ok2, ok3 = cf.Delimiter == "" && cf.Null == "" && cf.Quote == "" && cf.Escape == "" && cf.Header == "", true, true
	}
	if !ok1 || !ok2 || !ok3 || c.oid == 0 {
		return refuse("COPY ... FROM STDIN with these options cannot be checked row by row",
			"use single-byte ASCII DELIMITER, QUOTE and ESCAPE")
	}
	return tenancy.Decision{Allow: true, Tables: []string{name}, Statement: d.Statement, Copy: c}, true
}

// Stream starts checking one COPY's data (a *CopyStream).
func (c *CopyCheck) Stream() tenancy.CopyStream { return &CopyStream{c: c, skipHeader: c.header} }

// Interface guards: the proxy sees these through package tenancy.
var (
	_ tenancy.CopyCheck  = (*CopyCheck)(nil)
	_ tenancy.CopyStream = (*CopyStream)(nil)
)

// CopyStream reads the rows of one COPY ... FROM STDIN as they arrive.
type CopyStream struct {
	c          *CopyCheck
	buf        []byte
	rows       int
	skipHeader bool
	// text/CSV: the scan of the current row resumes at pos
	pos     int
	inQuote bool
	// binary
	sawHeader, trailer bool
	failed             *tenancy.Decision
}

// Write consumes the payload of CopyData messages; it returns the denial
// of the first row that is not the caller's (and keeps returning it).
func (s *CopyStream) Write(p []byte) *tenancy.Decision {
	if s.failed != nil {
		return s.failed
	}
	s.buf = append(s.buf, p...)
	if s.c.format == "binary" {
		s.binary()
	} else {
		s.lines(false)
	}
	if s.failed == nil && len(s.buf) > maxCopyRow {
		s.fail("a row longer than %d bytes", maxCopyRow)
	}
	return s.failed
}

// Close checks what remains at CopyDone (a last row without a newline).
func (s *CopyStream) Close() *tenancy.Decision {
	if s.failed != nil {
		return s.failed
	}
	if s.c.format == "binary" {
		// PostgreSQL accepts the end of data at a tuple boundary without
		// the trailer (pgx sends none)
		if len(s.buf) > 0 {
			s.fail("the binary COPY data ends inside a row")
		}
		return s.failed
	}
	s.lines(true)
	return s.failed
}

// Rows is the number of rows checked.
func (s *CopyStream) Rows() int { return s.rows }

func (s *CopyStream) fail(format string, args ...any) {
	msg := fmt.Sprintf("COPY into %s row %d: ", s.c.Table, s.rows+1) + fmt.Sprintf(format, args...)
	d := deny("wrong_account", msg+"; nothing was written",
		"send your own account id as "+s.c.column+" in every row").decision([]string{s.c.Table}, "")
	s.failed = &d
}

// lines splits complete rows off the buffer (at eof, the rest is one row).
func (s *CopyStream) lines(eof bool) {
	for s.failed == nil {
		end, next := s.rowEnd(eof)
		if end < 0 {
			return
		}
		row := s.buf[:end]
		s.buf = s.buf[next:]
		s.pos, s.inQuote = 0, false
		s.row(row)
	}
}

// rowEnd finds the end of the first row: its length and where the next
// starts, or -1 when the row is not complete yet.
func (s *CopyStream) rowEnd(eof bool) (int, int) {
	b, csv := s.buf, s.c.format == "csv"
	i := s.pos
	for i < len(b) {
		c := b[i]
		switch {
		case csv && s.inQuote:
			if c == s.c.escape && s.c.escape != s.c.quote && i+1 < len(b) && (b[i+1] == s.c.quote || b[i+1] == s.c.escape) {
				i += 2
				continue
			}
			if c == s.c.escape && s.c.escape != s.c.quote && i+1 == len(b) && !eof {
				s.pos = i
				return -1, 0
			}
			if c == s.c.quote {
				if s.c.escape == s.c.quote && i+1 < len(b) && b[i+1] == s.c.quote {
					i += 2
					continue
				}
				if s.c.escape == s.c.quote && i+1 == len(b) && !eof {
					s.pos = i
					return -1, 0
				}
				s.inQuote = false
			}
		case csv && c == s.c.quote:
			s.inQuote = true
		case !csv && c == '\\':
			if i+1 == len(b) && !eof {
				s.pos = i
				return -1, 0
			}
			i += 2
			continue
		case c == '\n':
			return i, i + 1
		case c == '\r':
			if i+1 == len(b) && !eof {
				s.pos = i
				return -1, 0
			}
			if i+1 < len(b) && b[i+1] == '\n' {
				return i, i + 2
			}
			return i, i + 1
		}
		i++
	}
	s.pos = i
	if eof && len(b) > 0 {
		return len(b), len(b) // a last row without a newline
	}
	return -1, 0
}

// row checks one text or CSV row.
func (s *CopyStream) row(line []byte) {
	if s.skipHeader {
		s.skipHeader = false
		return
	}
	if s.c.format == "text" && string(line) == `\.` {
		// the end-of-data marker: PostgreSQL ignores what follows, and
		// pgtenant still checks it
		return
	}
	var v []byte
	var null, ok bool
	if s.c.format == "csv" {
		v, null, ok = s.csvField(line)
	} else {
		v, null, ok = s.textField(line)
	}
	switch {
	case !ok:
		s.fail("the row has no %s field", s.c.column)
	case null:
		s.fail("%s is NULL", s.c.column)
	case !s.c.acc.matchText(string(v), s.c.typ):
		s.fail("%s is not your account id", s.c.column)
	}
	if s.failed == nil {
		s.rows++
	}
}

// textField returns the tenant field of a text-format row, de-escaped.
func (s *CopyStream) textField(line []byte) (v []byte, null, ok bool) {
	field, start := 0, 0
	for i := 0; i <= len(line); i++ {
		if i < len(line) && line[i] == '\\' {
			i++
			continue
		}
		if i < len(line) && line[i] != s.c.delim {
			continue
		}
		if field == s.c.col {
			raw := line[start:min(i, len(line))]
			if string(raw) == s.c.null {
				return nil, true, true
			}
			return unescapeText(raw), false, true
		}
		field++
		start = i + 1
	}
	return nil, false, false
}

// unescapeText decodes COPY text-format backslash sequences.
func unescapeText(raw []byte) []byte {
	if bytes.IndexByte(raw, '\\') < 0 {
		return raw
	}
	out := make([]byte, 0, len(raw))
	for i := 0; i < len(raw); i++ {
		c := raw[i]
		if c != '\\' || i+1 == len(raw) {
			out = append(out, c)
			continue
		}
		i++
		switch c = raw[i]; c {
		case 'b':
			out = append(out, '\b')
		case 'f':
			out = append(out, '\f')
		case 'n':
			out = append(out, '\n')
		case 'r':
			out = append(out, '\r')
		case 't':
			out = append(out, '\t')
		case 'v':
			out = append(out, '\v')
		case 'x':
			j := i + 1
			for j < len(raw) && j < i+3 && isHex(raw[j]) {
				j++
			}
			if j == i+1 {
				out = append(out, 'x')
				continue
			}
			n, _ := strconv.ParseUint(string(raw[i+1:j]), 16, 8)
			out = append(out, byte(n))
			i = j - 1
		case '0', '1', '2', '3', '4', '5', '6', '7':
			j := i
			for j < len(raw) && j < i+3 && raw[j] >= '0' && raw[j] <= '7' {
				j++
			}
			n, _ := strconv.ParseUint(string(raw[i:j]), 8, 16)
			out = append(out, byte(n))
			i = j - 1
		default:
			out = append(out, c)
		}
	}
	return out
}

func isHex(c byte) bool {
	return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F')
}

// csvField returns the tenant field of a CSV row with its quotes removed.
func (s *CopyStream) csvField(line []byte) (v []byte, null, ok bool) {
	q, e, d := s.c.quote, s.c.escape, s.c.delim
	field := 0
	var cur []byte
	quoted, in := false, false
	for i := 0; i <= len(line); i++ {
		if i == len(line) || (!in && line[i] == d) {
			if field == s.c.col {
				if !quoted && string(cur) == s.c.null {
					return nil, true, true
				}
				return cur, false, true
			}
			field++
			cur, quoted = cur[:0], false
			continue
		}
		c := line[i]
		switch {
		case in && c == e && i+1 < len(line) && (line[i+1] == q || line[i+1] == e) && (e != q || line[i+1] == q):
			cur = append(cur, line[i+1])
			i++
		case in && c == q:
			in = false
		case !in && c == q:
			in, quoted = true, true
		default:
			cur = append(cur, c)
		}
	}
	return nil, false, false
}

var copySignature = []byte("PGCOPY\n\xff\r\n\x00")

// binary reads complete tuples of the binary format off the buffer.
func (s *CopyStream) binary() {
	for s.failed == nil {
		b := s.buf
		if !s.sawHeader {
			if len(b) < len(copySignature)+8 {
				return
			}
			if !bytes.Equal(b[:len(copySignature)], copySignature) {
				s.fail("not a binary COPY header")
				return
			}
			ext := int(binary.BigEndian.Uint32(b[len(copySignature)+4:]))
			n := len(copySignature) + 8 + ext
			if ext < 0 || ext > maxCopyRow {
				s.fail("bad binary COPY header")
				return
			}
			if len(b) < n {
				return
			}
			s.buf, s.sawHeader = b[n:], true
			continue
		}
		if len(b) == 0 {
			return
		}
		if s.trailer {
			s.fail("data after the end of the binary COPY")
			return
		}
		if len(b) < 2 {
			return
		}
		nf := int(int16(binary.BigEndian.Uint16(b)))
		if nf == -1 {
			s.trailer, s.buf = true, b[2:]
			continue
		}
		pos := 2
		var tenant []byte
		isNull, found := false, false
		for f := 0; f < nf; f++ {
			if len(b) < pos+4 {
				return
			}
			l := int(int32(binary.BigEndian.Uint32(b[pos:])))
			pos += 4
			if l < -1 || l > maxCopyRow {
				s.fail("bad field length")
				return
			}
			if l == -1 {
				if f == s.c.col {
					isNull, found = true, true
				}
				continue
			}
			if len(b) < pos+l {
				return
			}
			if f == s.c.col {
				tenant, found = b[pos:pos+l], true
			}
			pos += l
		}
		switch {
		case !found:
			s.fail("the row has no %s field", s.c.column)
		case isNull:
			s.fail("%s is NULL", s.c.column)
		case !s.c.acc.matchBinary(tenant, s.c.oid, s.c.typ):
			s.fail("%s is not your account id", s.c.column)
		}
		if s.failed != nil {
			return
		}
		s.rows++
		s.buf = b[pos:]
	}
}
