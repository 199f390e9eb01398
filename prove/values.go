package prove

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"math/big"
	"strconv"
	"strings"
)

// quoteLiteral renders s as a SQL string constant (standard_conforming_strings on).
func quoteLiteral(s string) string { return "'" + strings.ReplaceAll(s, "'", "''") + "'" }

// typed renders s as a constant of SQL type typ: 'value'::type.
func typed(s, typ string) string { return quoteLiteral(s) + "::" + typ }

// randomInt returns a uniformly random integer in [0, n).
func randomInt(n int64) int64 {
	v, err := rand.Int(rand.Reader, big.NewInt(n))
	if err != nil {
		panic(fmt.Sprintf("prove: crypto/rand: %v", err)) // the system's random source is broken
	}
	return v.Int64()
}

// randomUUID returns a random (version 4) UUID in canonical text form.
func randomUUID() string {
	b := make([]byte, 16)
	_, _ = rand.Read(b)
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	h := hex.EncodeToString(b)
	return h[0:8] + "-" + h[8:12] + "-" + h[12:16] + "-" + h[16:20] + "-" + h[20:]
}

// idKind is how synthetic tenant ids must look to fit every tenant column.
type idKind int

const (
	idBig   idKind = iota // bigint, numeric, text: 9e15 + random
	idInt                 // integer: 2e9 + random
	idSmall               // smallint: 30000 + random
	idUUID                // uuid
)

// kindOf classifies a tenant column type; ok is false for a type ids
// cannot be made for.
func kindOf(typ string) (idKind, bool) {
	switch t := baseName(typ); {
	case t == "bigint" || t == "numeric" || isTextType(t):
		return idBig, true
	case t == "integer":
		return idInt, true
	case t == "smallint":
		return idSmall, true
	case t == "uuid":
		return idUUID, true
	}
	return 0, false
}

// idKindFor picks the id shape that fits every type in types: the
// narrowest integer type wins; uuid cannot be mixed with integers.
func idKindFor(types []string) (idKind, error) {
	kind := idBig
	sawNumber, sawUUID := false, false
	for _, typ := range types {
		k, ok := kindOf(typ)
		if !ok {
			return 0, fmt.Errorf("tenant column type %s: cannot generate tenant ids for it (use --tenant-a and --tenant-b)", typ)
		}
		switch {
		case k == idUUID:
			sawUUID = true
		case isTextType(baseName(typ)):
		default:
			sawNumber = true
			kind = max(kind, k)
		}
	}
	switch {
	case sawUUID && sawNumber:
		return 0, fmt.Errorf("tenant columns mix uuid and integer types: no generated id fits both (use --tenant-a and --tenant-b)")
	case sawUUID:
		return idUUID, nil
	}
	return kind, nil
}

// newID returns a random id of kind k, unlikely to belong to a real tenant.
func newID(k idKind) string {
	switch k {
	case idInt:
		return strconv.FormatInt(2_000_000_000+randomInt(147_000_000), 10)
	case idSmall:
		return strconv.FormatInt(30_000+randomInt(2_700), 10)
	case idUUID:
		return randomUUID()
	}
	return strconv.FormatInt(9_000_000_000_000_000+randomInt(1_000_000_000_000_000), 10)
}

// baseName is a type name without modifiers or array brackets, lower-cased.
func baseName(typ string) string {
	t := strings.ToLower(strings.TrimSpace(typ))
	if i := strings.IndexByte(t, '('); i >= 0 {
		t = strings.TrimSpace(t[:i]) + strings.TrimSpace(t[strings.IndexByte(t, ')')+1:])
	}
	return t
}

// isTextType reports whether t (a baseName) is a character type.
func isTextType(t string) bool {
	switch t {
	case "text", "character varying", "character", "citext", "name", `"char"`:
		return true
	}
	return false
}

// maxLen is the (n) of character(n) / character varying(n), or 0.
func maxLen(typ string) int {
	i, j := strings.IndexByte(typ, '('), strings.IndexByte(typ, ')')
	if i < 0 || j < i {
		return 0
	}
	n, err := strconv.Atoi(strings.TrimSpace(typ[i+1 : j]))
	if err != nil {
		return 0
	}
	return n
}

// sampleValue returns a SQL constant for a required column, distinct per
// run and per n where the type allows, or an error for a type it does not
// know.
func sampleValue(c column, n int) (string, error) {
	if c.enumLabel != "" {
		return typed(c.enumLabel, c.typ), nil
	}
	base := baseName(c.baseType)
	var v string
	switch {
	case strings.HasSuffix(base, "[]"):
		v = "{}"
	case base == "smallint" || base == "integer" || base == "bigint" || base == "numeric" ||
		base == "real" || base == "double precision" || base == "money":
		v = strconv.FormatInt(1_000+randomInt(20_000)+int64(n), 10)
	case isTextType(base):
		v = "prove-" + hex.EncodeToString([]byte{byte(randomInt(256)), byte(randomInt(256)), byte(randomInt(256)), byte(n)})
		if l := maxLen(c.baseType); l > 0 && len(v) > l {
			v = v[len(v)-l:]
		}
		if base == `"char"` {
			v = "p"
		}
	case base == "boolean":
		v = "false"
	case base == "uuid":
		v = randomUUID()
	case base == "date":
		v = "2001-02-03"
	case strings.HasPrefix(base, "timestamp"):
		v = "2001-02-03 04:05:06"
	case strings.HasPrefix(base, "time"):
		v = "04:05:06"
	case base == "interval":
		v = "1 second"
	case base == "json" || base == "jsonb":
		v = "{}"
	case base == "bytea":
		v = `\x00`
	case base == "inet" || base == "cidr":
		v = "192.0.2.1"
	case base == "macaddr":
		v = "08:00:2b:01:02:03"
	default:
		return "", fmt.Errorf("column %s: no sample value for type %s", c.name, c.typ)
	}
	return typed(v, c.typ), nil
}
