package prove

import (
	"strconv"
	"strings"
	"testing"
)

func TestIDKindFor(t *testing.T) {
	for _, tc := range []struct {
		types []string
		want  idKind
		err   string
	}{
		{types: []string{"bigint", "bigint"}, want: idBig},
		{types: []string{"bigint", "integer", "text"}, want: idInt},
		{types: []string{"smallint", "bigint"}, want: idSmall},
		{types: []string{"numeric(20,0)", "character varying(40)"}, want: idBig},
		{types: []string{"uuid", "text"}, want: idUUID},
		{types: []string{"uuid", "bigint"}, err: "mix uuid"},
		{types: []string{"point"}, err: "cannot generate"},
	} {
		got, err := idKindFor(tc.types)
		switch {
		case tc.err != "" && (err == nil || !strings.Contains(err.Error(), tc.err)):
			t.Errorf("%v: error %v, want %q", tc.types, err, tc.err)
		case tc.err == "" && (err != nil || got != tc.want):
			t.Errorf("%v: %v %v, want %v", tc.types, got, err, tc.want)
		}
	}
}

func TestNewIDFitsItsType(t *testing.T) {
	for kind, limit := range map[idKind]int64{idBig: 1<<63 - 1, idInt: 1<<31 - 1, idSmall: 1<<15 - 1} {
		for range 100 {
			n, err := strconv.ParseInt(newID(kind), 10, 64)
			if err != nil || n > limit || n < 30_000 {
				t.Fatalf("kind %d: id %d (%v) out of range", kind, n, err)
			}
		}
	}
	if id := newID(idUUID); len(id) != 36 || id[14] != '4' {
		t.Fatalf("uuid %q", id)
	}
	if newID(idBig) == newID(idBig) {
		t.Fatal("two generated ids are equal")
	}
}

func TestSampleValue(t *testing.T) {
	for _, tc := range []struct {
		c    column
		want string // a prefix of the SQL constant, or an error fragment
		err  bool
	}{
		{c: column{name: "n", typ: "integer", baseType: "integer"}, want: "'"},
		{c: column{name: "s", typ: "character(3)", baseType: "character(3)"}, want: "'"},
		{c: column{name: "e", typ: "mood", baseType: "mood", enumLabel: "it's ok"}, want: "'it''s ok'::mood"},
		{c: column{name: "d", typ: "positive", baseType: "integer"}, want: "'"},
		{c: column{name: "a", typ: "text[]", baseType: "text[]"}, want: "'{}'::text[]"},
		{c: column{name: "p", typ: "point", baseType: "point"}, want: "no sample value for type point", err: true},
	} {
		got, err := sampleValue(tc.c, 0)
		if tc.err {
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("%s: %q %v, want error %q", tc.c.typ, got, err, tc.want)
			}
			continue
		}
		if err != nil || !strings.HasPrefix(got, tc.want) || !strings.HasSuffix(got, "::"+tc.c.typ) {
			t.Errorf("%s: %q %v", tc.c.typ, got, err)
		}
	}
	s, _ := sampleValue(column{name: "s", typ: "character varying(3)", baseType: "character varying(3)"}, 0)
	if len(s) != len("'abc'::character varying(3)") {
		t.Errorf("varchar(3) sample %q does not fit", s)
	}
}

func TestSeedOrderPutsParentsFirst(t *testing.T) {
	orders := &table{oid: 1, display: "orders"}
	items := &table{oid: 2, display: "items", fks: []foreignKey{{refOID: 1}, {refOID: 2}}}  // and a self-reference
	notes := &table{oid: 3, display: "notes", fks: []foreignKey{{refOID: 2}, {refOID: 99}}} // 99: not a tenant table
	a := &table{oid: 4, display: "a", fks: []foreignKey{{refOID: 5}}}
	b := &table{oid: 5, display: "b", fks: []foreignKey{{refOID: 4}}} // a cycle
	var got []string
	for _, tb := range seedOrder([]*table{notes, a, items, b, orders}) {
		got = append(got, tb.display)
	}
	if strings.Join(got, ",") != "orders,items,notes,a,b" {
		t.Fatalf("order %v", got)
	}
}
