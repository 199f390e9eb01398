package policy

import (
	"encoding/binary"
	"encoding/hex"
	"strings"
)

// OIDs of the parameter types a tenant value may be declared as.
const (
	oidInt8      = 20
	oidInt2      = 21
	oidInt4      = 23
	oidText      = 25
	oidVarchar   = 1043
	oidUUID      = 2950
	oidInt2Array = 1005
	oidInt4Array = 1007
	oidInt8Array = 1016
	oidTextArray = 1009
	oidVarArray  = 1015
	oidUUIDArray = 2951
	oidUnknown   = 705
	oidNumeric   = 1700
)

// parseInt8 reads s as PostgreSQL's int8in does for decimal input: optional
// surrounding whitespace, an optional sign and decimal digits (leading zeros allowed).
func parseInt8(s string) (int64, bool) {
	s = strings.Trim(s, " \t\n\r\f\v")
	if s == "" {
		return 0, false
	}
	neg := false
	switch s[0] {
	case '+':
		s = s[1:]
	case '-':
		neg = true
		s = s[1:]
	}
	if s == "" {
		return 0, false
	}
	var v uint64
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c < '0' || c > '9' {
			return 0, false
		}
		// checked before the step: v*10+d must stay <= 2^63, never wrap
		// (2^64+42 is out of range for int8, as PostgreSQL says, not 42)
		d := uint64(c - '0')
		if v > (1<<63-d)/10 {
			return 0, false
		}
		v = v*10 + d
	}
	if neg {
		return -int64(v), true
	}
	if v > 1<<63-1 {
		return 0, false
	}
	return int64(v), true
}

// normUUID returns the 32 lower-case hex digits of a UUID text, or "".
func normUUID(s string) string {
	s = strings.TrimSpace(s)
	if strings.HasPrefix(s, "{") && strings.HasSuffix(s, "}") {
		s = s[1 : len(s)-1]
	}
	s = strings.ToLower(strings.ReplaceAll(s, "-", ""))
	if len(s) != 32 {
		return ""
	}
	if _, err := hex.DecodeString(s); err != nil {
		return ""
	}
	return s
}

// account is the caller's account prepared for comparisons.
type account struct {
	text  string
	int   int64
	isInt bool
	uuid  string
}

func newAccount(s string) account {
	a := account{text: s}
	a.int, a.isInt = parseInt8(s)
	if a.isInt && strings.TrimSpace(s) != s {
		a.isInt = false
	}
	a.uuid = normUUID(s)
	return a
}

// matchText reports whether a text-form value equals the account as the column type reads it.
func (a account) matchText(v, typ string) bool {
	switch typ {
	case "text":
		return v == a.text && v != ""
	case "uuid":
		u := normUUID(v)
		return u != "" && u == a.uuid
	default:
		n, ok := parseInt8(v)
		return ok && a.isInt && n == a.int && fitsType(n, typ)
	}
}

func fitsType(n int64, typ string) bool {
	switch typ {
	case "smallint":
		return n >= -1<<15 && n < 1<<15
	case "integer":
		return n >= -1<<31 && n < 1<<31
	}
	return true
}

// matchArrayText reports whether an array text '{v,...}' has at least one
// element and every element equals the account.
func (a account) matchArrayText(v, typ string) bool {
	v = strings.TrimSpace(v)
	if len(v) < 2 || v[0] != '{' || v[len(v)-1] != '}' {
		return false
	}
	body := v[1 : len(v)-1]
	if strings.ContainsAny(body, "{}\\") {
		return false
	}
	parts := strings.Split(body, ",")
	for _, p := range parts {
		p = strings.TrimSpace(p)
		if len(p) >= 2 && p[0] == '"' && p[len(p)-1] == '"' {
			p = p[1 : len(p)-1]
			if strings.Contains(p, `"`) {
				return false
			}
		} else if strings.EqualFold(p, "null") {
			return false
		}
		if !a.matchText(p, typ) {
			return false
		}
	}
	return true
}

// oidOK reports whether a declared parameter type may carry a tenant value
// of typ. unknown (705, pg8000) is what 0 is: PostgreSQL infers the type
// from the comparison, i.e. the tenant column's. numeric (1700, pgjdbc's
// setBigDecimal) compares with an integer column by numeric value.
func oidOK(oid uint32, typ string, array bool) bool {
	if oid == 0 || (oid == oidUnknown && !array) {
		return true
	}
	if oid == oidNumeric && !array {
		return typ == "bigint" || typ == "integer" || typ == "smallint" || typ == "numeric"
	}
	switch typ {
	case "text":
		if array {
			return oid == oidTextArray || oid == oidVarArray
		}
		return oid == oidText || oid == oidVarchar
	case "uuid":
		if array {
			return oid == oidUUIDArray
		}
		return oid == oidUUID
	default:
		if array {
			return oid == oidInt8Array || oid == oidInt4Array || oid == oidInt2Array
		}
		return oid == oidInt8 || oid == oidInt4 || oid == oidInt2
	}
}

// matchParamText compares a text-format parameter declared as oid.
func (a account) matchParamText(v string, oid uint32, typ string) bool {
	if oid == oidNumeric {
		n, ok := parseNumericInt(v)
		return ok && a.isInt && n == a.int
	}
	return a.matchText(v, typ)
}

// parseNumericInt reads s as numeric_in does and returns its value when it
// is an integer in int8 range (42, 42.00, 4.2E1, +42.0e0); 42.5, NaN and
// Infinity are not.
func parseNumericInt(s string) (int64, bool) {
	s = strings.Trim(s, " \t\n\r\f\v")
	if s == "" {
		return 0, false
	}
	neg := false
	switch s[0] {
	case '+':
		s = s[1:]
	case '-':
		neg, s = true, s[1:]
	}
	mant, exp := s, 0
	if i := strings.IndexAny(s, "eE"); i >= 0 {
		e, ok := parseInt8(s[i+1:])
		if !ok || e > 1000 || e < -1000 {
			return 0, false
		}
		mant, exp = s[:i], int(e)
	}
	intPart, frac, _ := strings.Cut(mant, ".")
	if intPart == "" && frac == "" {
		return 0, false
	}
	digits := intPart + frac
	for i := 0; i < len(digits); i++ {
		if digits[i] < '0' || digits[i] > '9' {
			return 0, false
		}
	}
	// value = digits * 10^(exp - len(frac)); drop trailing zeros of the fraction part
	shift := exp - len(frac)
	for shift < 0 && strings.HasSuffix(digits, "0") {
		digits, shift = digits[:len(digits)-1], shift+1
	}
	if shift < 0 {
		return 0, false // a fraction remains
	}
	if shift > 19 {
		return 0, false
	}
	digits += strings.Repeat("0", shift)
	if neg {
		digits = "-" + digits
	}
	return parseInt8(digits)
}

// matchBinaryNumeric decodes numeric's binary form (ndigits, weight, sign,
// dscale, base-10000 digits) and compares an integer value.
func (a account) matchBinaryNumeric(v []byte) bool {
	if len(v) < 8 || !a.isInt {
		return false
	}
	nd := int(binary.BigEndian.Uint16(v[0:]))
	weight := int(int16(binary.BigEndian.Uint16(v[2:])))
	sign := binary.BigEndian.Uint16(v[4:])
	if len(v) != 8+2*nd || (sign != 0 && sign != 0x4000) {
		return false // NaN, infinities or a malformed value
	}
	var n int64
	for i := 0; i < nd; i++ {
		d := int64(binary.BigEndian.Uint16(v[8+2*i:]))
		if d >= 10000 {
			return false
		}
		if i > weight {
			if d != 0 {
				return false // a fractional digit
			}
			continue
		}
		if n > (1<<62)/10000 {
			return false
		}
		n = n*10000 + d
	}
	for i := nd; i <= weight; i++ {
		if n > (1<<62)/10000 {
			return false
		}
		n *= 10000
	}
	if sign == 0x4000 {
		n = -n
	}
	return n == a.int
}

// matchBinaryArray decodes a binary-format array parameter (ndim, flags,
// element type, dimensions, elements) and reports whether it has at least
// one element, no NULL, and every element equals the account.
func (a account) matchBinaryArray(v []byte, oid uint32, typ string) bool {
	if len(v) < 12 {
		return false
	}
	ndim := int(int32(binary.BigEndian.Uint32(v[0:])))
	elem := binary.BigEndian.Uint32(v[8:])
	want := map[uint32]uint32{oidInt8Array: oidInt8, oidInt4Array: oidInt4, oidInt2Array: oidInt2,
		oidTextArray: oidText, oidVarArray: oidVarchar, oidUUIDArray: oidUUID}[oid]
	if oid == 0 {
		want = map[string]uint32{"bigint": oidInt8, "integer": oidInt4, "smallint": oidInt2, "text": oidText, "uuid": oidUUID}[typ]
	}
	if ndim < 1 || ndim > 6 || want == 0 || elem != want {
		return false
	}
	count := 1
	p := 12
	for i := 0; i < ndim; i++ {
		if len(v) < p+8 {
			return false
		}
		dim := int(int32(binary.BigEndian.Uint32(v[p:])))
		if dim < 1 || dim > 1<<20 || count > (1<<20)/dim {
			return false
		}
		count *= dim
		p += 8
	}
	for i := 0; i < count; i++ {
		if len(v) < p+4 {
			return false
		}
		n := int(int32(binary.BigEndian.Uint32(v[p:])))
		p += 4
		if n < 0 || len(v) < p+n {
			return false // NULL element or truncated
		}
		if !a.matchBinary(v[p:p+n], elem, typ) {
			return false
		}
		p += n
	}
	return p == len(v)
}

// matchBinary decodes a binary-format scalar parameter and compares it.
func (a account) matchBinary(v []byte, oid uint32, typ string) bool {
	if oid == oidNumeric {
		return a.matchBinaryNumeric(v)
	}
	if oid == oidUnknown {
		// PostgreSQL infers an unknown parameter's type as it does an
		// unspecified one's and reads binary bytes with that type's
		// receive function: unknown to pgtenant here, so no match
		return false
	}
	switch typ {
	case "text":
		return a.matchText(string(v), typ)
	case "uuid":
		return len(v) == 16 && hex.EncodeToString(v) == a.uuid
	}
	size := 0
	switch oid {
	case oidInt8:
		size = 8
	case oidInt4:
		size = 4
	case oidInt2:
		size = 2
	case 0:
		size = map[string]int{"bigint": 8, "integer": 4, "smallint": 2}[typ]
	}
	if size == 0 || len(v) != size || !a.isInt {
		return false
	}
	var n int64
	switch size {
	case 8:
		n = int64(binary.BigEndian.Uint64(v))
	case 4:
		n = int64(int32(binary.BigEndian.Uint32(v)))
	case 2:
		n = int64(int16(binary.BigEndian.Uint16(v)))
	}
	return n == a.int
}
