package policy

import (
	"encoding/binary"
	"fmt"
	"testing"

	"github.com/pgtenant/pgtenant/auth"
	"github.com/pgtenant/pgtenant/config"
	"github.com/pgtenant/pgtenant/tenancy"
)

func session(t testing.TB, e *Engine, account string) *Session {
	t.Helper()
	return e.NewSession(auth.Principal{Account: account, Region: "eu-west"})
}

func be(n int64, size int) []byte {
	b := make([]byte, 8)
	binary.BigEndian.PutUint64(b, uint64(n))
	return b[8-size:]
}

func TestBindEveryExecution(t *testing.T) {
	e := newTestEngine(t)
	s := session(t, e, "42")
	if d := s.CheckParse("q", "SELECT * FROM orders WHERE account_id = $1 AND id = $2", []uint32{20, 20}); !d.Allow {
		t.Fatalf("parse denied: %+v", d)
	}
	cases := []struct {
		name    string
		formats []int16
		values  [][]byte
		allow   bool
	}{
		{"text", nil, [][]byte{[]byte("42"), []byte("1")}, true},
		{"text other", nil, [][]byte{[]byte("7"), []byte("1")}, false},
		{"text spaces sign zeros", nil, [][]byte{[]byte(" +0042 "), []byte("1")}, true},
		{"text junk", nil, [][]byte{[]byte("42abc"), []byte("1")}, false},
		{"null", nil, [][]byte{nil, []byte("1")}, false},
		{"binary all", []int16{1}, [][]byte{be(42, 8), be(1, 8)}, true},
		{"binary other", []int16{1}, [][]byte{be(7, 8), be(1, 8)}, false},
		{"binary short", []int16{1}, [][]byte{be(42, 4), be(1, 8)}, false},
		{"per param", []int16{1, 0}, [][]byte{be(42, 8), []byte("1")}, true},
		{"per param text first", []int16{0, 1}, [][]byte{[]byte("42"), be(1, 8)}, true},
		{"per param wrong", []int16{0, 1}, [][]byte{[]byte("7"), be(1, 8)}, false},
		{"bad format count", []int16{0, 0, 0}, [][]byte{[]byte("42"), []byte("1")}, false},
		{"missing value", nil, [][]byte{}, false},
		{"unknown format", []int16{2}, [][]byte{[]byte("42"), []byte("1")}, false},
	}
	for _, c := range cases {
		if d := s.CheckBind("q", c.formats, c.values); d.Allow != c.allow {
			t.Errorf("%s: allow=%v want %v (%s)", c.name, d.Allow, c.allow, d.Message)
		}
	}
	// 4- and 2-byte declared types
	for _, c := range []struct {
		oid  uint32
		size int
	}{{23, 4}, {21, 2}} {
		name := fmt.Sprint("p", c.oid)
		if d := s.CheckParse(name, "SELECT * FROM orders WHERE account_id = $1", []uint32{c.oid}); !d.Allow {
			t.Fatal(d.Message)
		}
		if d := s.CheckBind(name, []int16{1}, [][]byte{be(42, c.size)}); !d.Allow {
			t.Errorf("oid %d: %s", c.oid, d.Message)
		}
		if d := s.CheckBind(name, []int16{1}, [][]byte{be(7, c.size)}); d.Allow {
			t.Errorf("oid %d: 7 allowed", c.oid)
		}
	}
	// declared float and text types cannot carry the tenant value
	for _, oid := range []uint32{700, 701, 25} { // numeric (1700) compares by value: see TestBoundValuesAsTheServerReadsThem
		name := fmt.Sprint("f", oid)
		s.CheckParse(name, "SELECT * FROM orders WHERE account_id = $1", []uint32{oid})
		if d := s.CheckBind(name, nil, [][]byte{[]byte("42")}); d.Allow {
			t.Errorf("oid %d allowed", oid)
		}
	}
	// binary bytes of an undeclared type: the server's type is not known
	if d := s.CheckParse("p0", "SELECT * FROM orders WHERE account_id = $1", []uint32{0}); !d.Allow {
		t.Fatal(d.Message)
	}
	if d := s.CheckBind("p0", []int16{1}, [][]byte{be(42, 8)}); d.Allow {
		t.Errorf("binary value of an unknown type allowed")
	}
	// unknown statement: denied as PostgreSQL would (26000)
	if d := s.CheckBind("nope", nil, nil); d.Allow || d.SQLState != "26000" || d.Statement == "" {
		t.Errorf("unknown statement: %+v", d)
	}
	// a Close changes nothing until the server confirms it
	s.CloseStatement("q")
	if d := s.CheckBind("q", nil, [][]byte{[]byte("7"), []byte("1")}); d.Allow {
		t.Errorf("closed statement bound to 7 unchecked")
	}
}

func TestDeniedParseKeepsPrevious(t *testing.T) {
	e := newTestEngine(t)
	s := session(t, e, "42")
	if d := s.CheckParse("", "SELECT * FROM orders WHERE account_id = $1", nil); !d.Allow {
		t.Fatal(d.Message)
	}
	if d := s.CheckParse("", "SELECT * FROM orders", nil); d.Allow {
		t.Fatal("unscoped parse allowed")
	}
	// the server still holds the first unnamed statement: its slot is checked
	if d := s.CheckBind("", nil, [][]byte{[]byte("7")}); d.Allow {
		t.Fatal("bind of the previous statement with 7 allowed")
	}
	if d := s.CheckBind("", nil, [][]byte{[]byte("42")}); !d.Allow {
		t.Fatal(d.Message)
	}
	// a literal pinned to another account is refused at Parse already
	if d := s.CheckParse("x", "SELECT * FROM orders WHERE account_id = 7 OR account_id = $1", nil); d.Allow {
		t.Fatal("parse with 7 allowed")
	}
}

func TestSQLPrepareExecute(t *testing.T) {
	e := newTestEngine(t)
	s := session(t, e, "42")
	steps := []struct {
		sql   string
		allow bool
	}{
		{"PREPARE p3 (bigint) AS SELECT * FROM orders WHERE account_id = $1", true},
		{"EXECUTE p3(42)", true},
		{"EXECUTE p3(7)", false},
		{"EXECUTE p3('042')", true},
		{"EXECUTE p3((SELECT 42))", false},
		{"EXPLAIN EXECUTE p3(42)", true},
		{"EXPLAIN EXECUTE p3(7)", false},
		{"PREPARE p3 AS SELECT 1", true}, // exists: the server refuses it (42P05)
		{"DEALLOCATE p3", true},
		{"EXECUTE p3(42)", false},
		// a denied multi-statement message changes nothing
		{"PREPARE p4 AS SELECT * FROM orders WHERE account_id = 42; SELECT * FROM orders", false},
		{"EXECUTE p4", false},
		{"PREPARE p5 AS INSERT INTO orders (account_id, total) VALUES ($1, $2)", true},
		{"EXECUTE p5(42, 1)", true},
		{"EXECUTE p5(7, 1)", false},
		{"DEALLOCATE ALL", true},
		{"EXECUTE p5(42, 1)", false},
	}
	for i, st := range steps {
		if d := s.CheckQuery(st.sql); d.Allow != st.allow {
			t.Errorf("step %d %q: allow=%v want %v (%s)", i, st.sql, d.Allow, st.allow, d.Message)
		}
	}
}

// The cache shares analyses between texts differing only in literals, yet
// re-checks the values every time.
func TestCacheKeysOnShapeAndRechecksValues(t *testing.T) {
	e := newTestEngine(t)
	s := session(t, e, "42")
	h0, m0 := e.CacheStats()
	if d := s.CheckQuery("SELECT * FROM orders WHERE account_id IN (42)"); !d.Allow {
		t.Fatal(d.Message)
	}
	if d := s.CheckQuery("SELECT * FROM orders WHERE account_id IN (7)"); d.Allow {
		t.Fatal("IN (7) allowed from the cache")
	}
	if d := s.CheckQuery("SELECT * FROM orders WHERE account_id IN (42, 7)"); d.Allow {
		t.Fatal("IN (42, 7) allowed")
	}
	h1, m1 := e.CacheStats()
	if h1-h0 != 1 || m1-m0 != 2 {
		t.Errorf("hits %d misses %d, want 1 and 2", h1-h0, m1-m0)
	}
	// another tenant shares the analysis but not the verdict
	s7 := session(t, e, "7")
	if d := s7.CheckQuery("SELECT * FROM orders WHERE account_id IN (42)"); d.Allow {
		t.Fatal("tenant 7 read tenant 42 via the cache")
	}
	if d := s7.CheckQuery("SELECT * FROM orders WHERE account_id IN (7)"); !d.Allow {
		t.Fatal(d.Message)
	}
	// values the analysis read (setting names) are not abstracted away
	if d := s.CheckQuery("SELECT set_config('application_name', 'x', false)"); !d.Allow {
		t.Fatal(d.Message)
	}
	if d := s.CheckQuery("SELECT set_config('app.current_account_id', '7', false)"); d.Allow {
		t.Fatal("set_config of the tenant setting allowed from the cache")
	}
	if d := s.CheckQuery("SET search_path = 'public'"); !d.Allow {
		t.Fatal(d.Message)
	}
	if d := s.CheckQuery("SET search_path = 'audit'"); d.Allow {
		t.Fatal("search_path change allowed from the cache")
	}
	if d := s.CheckQuery("SELECT * FROM orders WHERE account_id = current_setting('app.current_account_id')::bigint"); !d.Allow {
		t.Fatal(d.Message)
	}
	if d := s.CheckQuery("SELECT * FROM orders WHERE account_id = current_setting('app.other_setting')::bigint"); d.Allow {
		t.Fatal("other setting allowed from the cache")
	}
	// bounded
	small := newTestEngine(t, func(p *config.Policy) { p.CacheEntries = 2 })
	ss := session(t, small, "42")
	for _, q := range []string{"SELECT 1", "SELECT 1 AS a", "SELECT 1 AS b", "SELECT 1"} {
		ss.CheckQuery(q)
	}
	if h, m := small.CacheStats(); h != 0 || m != 4 || small.cache.entries.len() != 2 {
		t.Errorf("bounded cache: hits %d misses %d len %d", h, m, small.cache.entries.len())
	}
}

func TestDecisionFields(t *testing.T) {
	e := newTestEngine(t)
	s := session(t, e, "42")
	d := s.CheckQuery("SELECT o.id FROM orders o JOIN countries c ON c.code = o.note WHERE o.account_id = 42 AND o.note = 'secret'")
	if !d.Allow || d.Statement != "SELECT o.id FROM orders o JOIN countries c ON c.code = o.note WHERE o.account_id = $1 AND o.note = $2" {
		t.Errorf("%+v", d)
	}
	if len(d.Tables) != 2 || d.Tables[0] != "public.orders" || d.Tables[1] != "public.countries" {
		t.Errorf("tables %v", d.Tables)
	}
	d = s.CheckQuery("SELECT * FROM line_items WHERE qty = 1")
	if d.Allow || d.SQLState != "42501" || d.Reason != "unscoped_table" || d.Hint == "" || d.Tables[0] != "public.line_items" {
		t.Errorf("%+v", d)
	}
	d = s.CheckQuery("SELECT 1" + string(make([]byte, 0)) + repeat("+1", 30000))
	if d.Allow || d.SQLState != "54001" {
		t.Errorf("%+v", d)
	}
	d = s.CheckQuery("SELEC 1")
	if d.Allow || d.Reason != "parse_error" {
		t.Errorf("%+v", d)
	}
}

func TestTextAndUUIDTenantColumns(t *testing.T) {
	e := newTestEngine(t)
	cat := e.Catalog("eu-west")
	if err := cat.AddSchemaSQL(`CREATE TABLE docs (id int, account_id uuid, body text);
		CREATE TABLE notes (id int, account_id text);`, "account_id"); err != nil {
		t.Fatal(err)
	}
	e.SetCatalog("eu-west", cat)
	u := session(t, e, "6F9619FF-8B86-D011-B42D-00C04FC964FF")
	for q, want := range map[string]bool{
		"SELECT * FROM docs WHERE account_id = '6f9619ff-8b86-d011-b42d-00c04fc964ff'": true,
		"SELECT * FROM docs WHERE account_id = '{6F9619FF8B86D011B42D00C04FC964FF}'":   true,
		"SELECT * FROM docs WHERE account_id = '6f9619ff-8b86-d011-b42d-00c04fc964fe'": false,
		"SELECT * FROM docs WHERE account_id = 42":                                     false,
	} {
		if d := u.CheckQuery(q); d.Allow != want {
			t.Errorf("%s: %v (%s)", q, d.Allow, d.Message)
		}
	}
	s := session(t, e, "acme")
	if d := s.CheckQuery("SELECT * FROM notes WHERE account_id = 'acme'"); !d.Allow {
		t.Error(d.Message)
	}
	if d := s.CheckQuery("SELECT * FROM notes WHERE account_id = 'Acme'"); d.Allow {
		t.Error("case-folded text tenant allowed")
	}
	s.CheckParse("b", "SELECT * FROM docs WHERE account_id = $1", nil)
	uuidBytes := []byte{0x6f, 0x96, 0x19, 0xff, 0x8b, 0x86, 0xd0, 0x11, 0xb4, 0x2d, 0x00, 0xc0, 0x4f, 0xc9, 0x64, 0xff}
	if d := u.CheckParse("b", "SELECT * FROM docs WHERE account_id = $1", nil); !d.Allow {
		t.Fatal(d.Message)
	}
	// binary bytes of an undeclared type: refused until the server's type is known
	if d := u.CheckBind("b", []int16{1}, [][]byte{uuidBytes}); d.Allow {
		t.Error("binary value of an undeclared type allowed")
	}
	if d := u.CheckParse("bu", "SELECT * FROM docs WHERE account_id = $1", []uint32{oidUUID}); !d.Allow {
		t.Fatal(d.Message)
	}
	if d := u.CheckBind("bu", []int16{1}, [][]byte{uuidBytes}); !d.Allow {
		t.Error(d.Message)
	}
}

func repeat(s string, n int) string {
	b := make([]byte, 0, len(s)*n)
	for i := 0; i < n; i++ {
		b = append(b, s...)
	}
	return string(b)
}

// SQL PREPARE / EXECUTE / DEALLOCATE sent through the extended protocol.
func TestSQLPrepareExecuteViaParseBind(t *testing.T) {
	e := newTestEngine(t)
	s := session(t, e, "42")
	must := func(what string, d tenancy.Decision, allow bool) {
		t.Helper()
		if d.Allow != allow {
			t.Errorf("%s: allow=%v want %v (%s)", what, d.Allow, allow, d.Message)
		}
	}
	must("PREPARE", s.CheckQuery("PREPARE p3 (bigint) AS SELECT * FROM orders WHERE account_id = $1"), true)
	must("parse EXECUTE 42", s.CheckParse("", "EXECUTE p3(42)", nil), true)
	must("bind EXECUTE 42", s.CheckBind("", nil, nil), true)
	must("parse EXECUTE 7", s.CheckParse("", "EXECUTE p3(7)", nil), false)
	must("parse EXECUTE $1", s.CheckParse("x", "EXECUTE p3($1)", nil), true)
	must("bind $1=42", s.CheckBind("x", nil, [][]byte{[]byte("42")}), true)
	must("bind $1=7", s.CheckBind("x", nil, [][]byte{[]byte("7")}), false)
	must("bind $1 binary", s.CheckBind("x", []int16{1}, [][]byte{be(42, 8)}), false)
	must("bind $1 null", s.CheckBind("x", nil, [][]byte{nil}), false)
	must("parse EXPLAIN EXECUTE $1", s.CheckParse("y", "EXPLAIN EXECUTE p3($1)", nil), true)
	must("bind EXPLAIN 7", s.CheckBind("y", nil, [][]byte{[]byte("7")}), false)
	must("parse EXECUTE unknown", s.CheckParse("", "EXECUTE nope(42)", nil), false)

	must("parse PREPARE q", s.CheckParse("pp", "PREPARE q (int8) AS SELECT * FROM orders WHERE account_id = $1", nil), true)
	must("EXECUTE q before its Bind", s.CheckQuery("EXECUTE q(42)"), false)
	must("bind PREPARE q", s.CheckBind("pp", nil, nil), true)
	must("EXECUTE q before its portal ran", s.CheckQuery("EXECUTE q(42)"), false)
	s.confirmAll()
	must("EXECUTE q(42)", s.CheckQuery("EXECUTE q(42)"), true)
	must("EXECUTE q(7)", s.CheckQuery("EXECUTE q(7)"), false)
	must("parse PREPARE unscoped", s.CheckParse("", "PREPARE bad AS SELECT * FROM orders", nil), false)
	must("parse PREPARE pinned to 7", s.CheckParse("", "PREPARE bad AS SELECT * FROM orders WHERE account_id = 7", nil), false)

	must("parse DEALLOCATE q", s.CheckParse("d", "DEALLOCATE q", nil), true)
	must("bind DEALLOCATE q", s.CheckBind("d", nil, nil), true)
	s.confirmAll()
	must("EXECUTE q after DEALLOCATE", s.CheckQuery("EXECUTE q(42)"), false)
	s.CloseStatement("d")
	must("parse DEALLOCATE ALL", s.CheckParse("d", "DEALLOCATE ALL", nil), true)
	must("bind DEALLOCATE ALL", s.CheckBind("d", nil, nil), true)
	s.confirmAll()
	must("EXECUTE p3 after DEALLOCATE ALL", s.CheckQuery("EXECUTE p3(42)"), false)
}

// A large bulk INSERT is analysed (not refused as too complex) and every row is checked.
func TestBulkInsert(t *testing.T) {
	e := newTestEngine(t)
	s := session(t, e, "42")
	var b []byte
	b = append(b, "INSERT INTO orders (account_id, total) VALUES "...)
	for i := 0; i < 30000; i++ {
		if i > 0 {
			b = append(b, ", "...)
		}
		b = append(b, "(42, 1)"...)
	}
	if d := s.CheckQuery(string(b)); !d.Allow {
		t.Fatalf("bulk insert denied: %s", d.Message)
	}
	bad := string(b) + ", (7, 1)"
	if d := s.CheckQuery(bad); d.Allow {
		t.Fatal("bulk insert with one foreign row allowed")
	}
}

// policy.tenant_tables may name another tenant column; its type comes from the schema.
func TestConfiguredTenantColumn(t *testing.T) {
	e := newTestEngine(t, func(p *config.Policy) { p.TenantTables = []string{"public.invoices:tenant"} })
	cat := e.Catalog("eu-west")
	if err := cat.AddSchemaSQL(`CREATE TABLE invoices (id int, account_id bigint, tenant text)`, "account_id"); err != nil {
		t.Fatal(err)
	}
	e.SetCatalog("eu-west", cat)
	tb := e.Catalog("eu-west").Tables["public.invoices"]
	if tb.TenantColumn != "tenant" || tb.TenantType != "text" {
		t.Fatalf("%+v", tb)
	}
	s := session(t, e, "42")
	if d := s.CheckQuery("SELECT * FROM invoices WHERE tenant = '42'"); !d.Allow {
		t.Error(d.Message)
	}
	if d := s.CheckQuery("SELECT * FROM invoices WHERE account_id = 42"); d.Allow {
		t.Error("pinned on the wrong column")
	}
}

// Account ids beyond int4 (and beyond int8) share the analysis of small ones.
func TestBigAccountIDs(t *testing.T) {
	e := newTestEngine(t)
	big := session(t, e, "3000000000")
	if d := big.CheckQuery("SELECT * FROM orders WHERE account_id = 3000000000"); !d.Allow {
		t.Fatal(d.Message)
	}
	small := session(t, e, "42")
	if d := small.CheckQuery("SELECT * FROM orders WHERE account_id = 42"); !d.Allow {
		t.Fatal(d.Message)
	}
	if d := small.CheckQuery("SELECT * FROM orders WHERE account_id = 3000000000"); d.Allow {
		t.Fatal("42 read 3000000000")
	}
	huge := session(t, e, "99999999999999999999")
	if d := huge.CheckQuery("SELECT * FROM orders WHERE account_id = 99999999999999999999"); d.Allow {
		t.Fatal("out-of-range id allowed for a bigint column")
	}
	if d := small.CheckQuery("SELECT * FROM orders WHERE account_id = 99999999999999999999"); d.Allow {
		t.Fatal("out-of-range id allowed")
	}
}
