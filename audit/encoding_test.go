package audit

import (
	"bytes"
	"encoding/hex"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/pgtenant/pgtenant/tenancy"
)

func sp(s string) *string { return &s }
func ip(v int64) *int64   { return &v }

// goldenRow is the fixed input of the golden vectors (also in README.md).
func goldenRow() *Row {
	return &Row{
		ChainID:       "acct-42",
		EventID:       uuid.MustParse("01890a5d-ac96-774b-bcce-b302099a8057"),
		TS:            time.Date(2026, 1, 2, 3, 4, 5, 123456000, time.UTC),
		Kind:          tenancy.KindStatement,
		AccountID:     sp("acct-42"),
		Subject:       sp("user@example.com"),
		ClientUser:    sp("app"),
		ClientAddr:    sp("10.0.0.7"),
		Region:        "eu-west",
		SessionID:     sp("s-1"),
		ProxyInstance: sp("proxy-a"),
		Statement:     sp("SELECT * FROM orders WHERE account_id = $1"),
		Tables:        []string{"public.orders"},
		Verdict:       sp(tenancy.VerdictAllow),
	}
}

// Golden vectors, computed independently from README.md's description (a
// short Python script, not this package). Changing the encoding breaks every stored chain, so these
// must only change together with HashVersion.
const (
	goldenGenesis = "00725cb545c9749e69e859ebeacec32d26f2726d3f59c16b884243797ac807c1"
	goldenContent = "76b44f39382f120403d8d4a92232d4232f6d32915b6cf49329328112a260c0ea"
	goldenEntry   = "5f054e06098299027f9a46b36264e44860763979fda92548277ed972abf887bb"
)

func TestGoldenVectors(t *testing.T) {
	r := goldenRow()
	g := GenesisHash(r.Region, r.ChainID)
	r.Seal(1, g)
	got := map[string]string{
		"genesis": hex.EncodeToString(g),
		"content": hex.EncodeToString(r.ContentHash),
		"entry":   hex.EncodeToString(r.EntryHash),
	}
	want := map[string]string{"genesis": goldenGenesis, "content": goldenContent, "entry": goldenEntry}
	for k := range want {
		if got[k] != want[k] {
			t.Errorf("%s hash = %s, want %s", k, got[k], want[k])
		}
	}
}

func contentOf(mut func(r *Row)) []byte {
	r := goldenRow()
	mut(r)
	return r.ComputeContentHash()
}

func TestNullDiffersFromEmpty(t *testing.T) {
	cases := map[string][2]func(r *Row){
		"reason":      {func(r *Row) { r.Reason = nil }, func(r *Row) { r.Reason = sp("") }},
		"subject":     {func(r *Row) { r.Subject = nil }, func(r *Row) { r.Subject = sp("") }},
		"tables":      {func(r *Row) { r.Tables = nil }, func(r *Row) { r.Tables = []string{} }},
		"tables elem": {func(r *Row) { r.Tables = []string{} }, func(r *Row) { r.Tables = []string{""} }},
		"rows":        {func(r *Row) { r.Rows = nil }, func(r *Row) { r.Rows = ip(0) }},
	}
	for name, c := range cases {
		if bytes.Equal(contentOf(c[0]), contentOf(c[1])) {
			t.Errorf("%s: NULL and empty hash the same", name)
		}
	}
}

func TestFieldBoundariesAreUnambiguous(t *testing.T) {
	cases := map[string][2]func(r *Row){
		"adjacent strings": {
			func(r *Row) { r.Subject, r.ClientUser = sp("ab"), sp("c") },
			func(r *Row) { r.Subject, r.ClientUser = sp("a"), sp("bc") },
		},
		"array elements": {
			func(r *Row) { r.Tables = []string{"ab", "c"} },
			func(r *Row) { r.Tables = []string{"a", "bc"} },
		},
		"string vs next null": {
			func(r *Row) { r.Reason, r.SQLState = sp("x"), nil },
			func(r *Row) { r.Reason, r.SQLState = nil, sp("x") },
		},
		"chain vs region": {
			func(r *Row) { r.ChainID, r.Region = "ab", "c" },
			func(r *Row) { r.ChainID, r.Region = "a", "bc" },
		},
	}
	for name, c := range cases {
		if bytes.Equal(contentOf(c[0]), contentOf(c[1])) {
			t.Errorf("%s: different fields hash the same", name)
		}
	}
	if bytes.Equal(GenesisHash("ab", "c"), GenesisHash("a", "bc")) {
		t.Error("genesis: region/chain boundary is ambiguous")
	}
}

func TestEveryFieldIsHashed(t *testing.T) {
	base := contentOf(func(*Row) {})
	muts := map[string]func(r *Row){
		"event_id":       func(r *Row) { r.EventID[15] ^= 1 },
		"chain_id":       func(r *Row) { r.ChainID = "acct-43" },
		"region":         func(r *Row) { r.Region = "us-east" },
		"ts":             func(r *Row) { r.TS = r.TS.Add(time.Microsecond) },
		"kind":           func(r *Row) { r.Kind = tenancy.KindResult },
		"account_id":     func(r *Row) { r.AccountID = sp("acct-43") },
		"subject":        func(r *Row) { r.Subject = sp("x") },
		"client_user":    func(r *Row) { r.ClientUser = sp("x") },
		"client_addr":    func(r *Row) { r.ClientAddr = sp("10.0.0.8") },
		"session_id":     func(r *Row) { r.SessionID = sp("x") },
		"proxy_instance": func(r *Row) { r.ProxyInstance = sp("x") },
		"statement":      func(r *Row) { r.Statement = sp("SELECT 2") },
		"tables":         func(r *Row) { r.Tables = []string{"public.other"} },
		"verdict":        func(r *Row) { r.Verdict = sp(tenancy.VerdictDeny) },
		"reason":         func(r *Row) { r.Reason = sp("x") },
		"sqlstate":       func(r *Row) { r.SQLState = sp("42501") },
		"rows":           func(r *Row) { r.Rows = ip(1) },
		"duration_us":    func(r *Row) { r.DurationUS = ip(1) },
	}
	for name, m := range muts {
		if bytes.Equal(base, contentOf(m)) {
			t.Errorf("changing %s does not change content_hash", name)
		}
	}
}

func TestIPv6AddressFormsHashAlike(t *testing.T) {
	a := contentOf(func(r *Row) { r.ClientAddr = sp("2001:db8::1") })
	b := contentOf(func(r *Row) { r.ClientAddr = sp("2001:0db8:0:0:0:0:0:1") })
	if !bytes.Equal(a, b) {
		t.Error("two spellings of one IPv6 address hash differently")
	}
}

func TestNewRowCanonicalizes(t *testing.T) {
	ev := tenancy.Event{Kind: tenancy.KindStatement, Time: time.Date(2026, 1, 1, 0, 0, 0, 1999, time.FixedZone("x", 3600)),
		AccountID: "a1", ClientAddr: "[::ffff:10.1.2.3]:5555", Statement: "SELECT $1\x00\xff",
		Tables: []string{"b.t", "a.t", "b.t"}, Verdict: tenancy.VerdictAllow}
	r, err := NewRow(ev, "eu-west", "i1", StatementNormalized)
	if err != nil {
		t.Fatal(err)
	}
	if r.TS.Nanosecond() != 1000 || r.TS.Location() != time.UTC {
		t.Errorf("ts %v not truncated to microseconds in UTC", r.TS)
	}
	if r.ClientAddr == nil || *r.ClientAddr != "10.1.2.3" {
		t.Errorf("client_addr = %v, want 10.1.2.3", r.ClientAddr)
	}
	if *r.Statement != "SELECT $1\uFFFD\uFFFD" {
		t.Errorf("statement = %q", *r.Statement)
	}
	if len(r.Tables) != 2 || r.Tables[0] != "a.t" || r.Tables[1] != "b.t" {
		t.Errorf("tables = %v, want sorted and unique", r.Tables)
	}
	if r.Subject != nil || r.Rows != nil || r.DurationUS != nil {
		t.Error("empty optional fields must be NULL")
	}
	if r.EventID.Version() != 7 {
		t.Errorf("event id version %d, want 7", r.EventID.Version())
	}
	fp, _ := NewRow(tenancy.Event{Kind: tenancy.KindStatement, AccountID: "a1", Statement: "SELECT 1"}, "eu-west", "i1", StatementFingerprint)
	if fp.Statement == nil || len(*fp.Statement) != 64 {
		t.Errorf("fingerprint statement = %v", fp.Statement)
	}
	full, _ := NewRow(tenancy.Event{Kind: tenancy.KindStatement, AccountID: "a1", Statement: "SELECT $1", FullStatement: "SELECT 7"}, "eu-west", "i1", StatementFull)
	if *full.Statement != "SELECT 7" {
		t.Errorf("full statement = %q", *full.Statement)
	}
	if _, err := NewRow(tenancy.Event{Kind: tenancy.KindStatement, AccountID: NoTenantChain}, "eu-west", "i1", StatementNormalized); err == nil {
		t.Error("the reserved chain id was accepted as an account")
	}
	if _, err := NewRow(tenancy.Event{Kind: "bogus"}, "eu-west", "i1", StatementNormalized); err == nil {
		t.Error("an unknown kind was accepted")
	}
}

func BenchmarkHashEvent(b *testing.B) {
	r := goldenRow()
	g := GenesisHash(r.Region, r.ChainID)
	b.ReportAllocs()
	for b.Loop() {
		r.Seal(1, g)
	}
}

// BenchmarkNewStatementRow is what the proxy pays per audited statement
// before the writer: the canonical row of a statement event and of its
// result, and the statement's content hash.
func BenchmarkNewStatementRow(b *testing.B) {
	ev := stmt("42", "s-1", 1)
	res := tenancy.Event{Kind: tenancy.KindResult, Time: time.Now(), AccountID: "42", Region: "eu-west", SessionID: "s-1",
		ClientAddr: "127.0.0.1", Rows: 1, DurationUS: 120}
	b.ReportAllocs()
	for b.Loop() {
		r, err := NewRow(ev, "eu-west", "proxy-a", StatementNormalized)
		if err != nil {
			b.Fatal(err)
		}
		if _, err := NewRow(res, "eu-west", "proxy-a", StatementNormalized); err != nil {
			b.Fatal(err)
		}
		r.ContentHash = r.ComputeContentHash()
	}
}

// Hash version 3 vector (README.md): the golden row with role, actor,
// purpose, ticket and rewritten set, printed by the Python verifier's
// --vectors from its own implementation.
const (
	goldenV3Content = "6d9b3d3749a6481607c8abc398769b5899477daae6475f53bd7e3cc08e1a8ec2"
	goldenV3Entry   = "f08edc5c2cff630e8eee32a76cd9fb12a31944835954a32c2c3b9799390e7cc5"
)

func goldenV3Row() *Row {
	r := goldenRow()
	yes := true
	r.Role, r.Actor, r.Purpose, r.Ticket, r.Rewritten = sp("support"), sp("alice@vendor.example"), sp("debug invoice export"), sp("SUP-7"), &yes
	return r
}

func TestGoldenVectorsV3(t *testing.T) {
	r := goldenV3Row()
	g := GenesisHash(r.Region, r.ChainID)
	r.Seal(1, g)
	if r.HashVersion != HashVersionAttributed {
		t.Fatalf("a row with role and actor sealed as hash version %d, want 3", r.HashVersion)
	}
	if got := hex.EncodeToString(r.ContentHash); got != goldenV3Content {
		t.Errorf("v3 content hash = %s, want %s", got, goldenV3Content)
	}
	if got := hex.EncodeToString(r.EntryHash); got != goldenV3Entry {
		t.Errorf("v3 entry hash = %s, want %s", got, goldenV3Entry)
	}
	// Without the five fields a row stays version 1 with the old vector.
	plain := goldenRow()
	plain.Seal(1, g)
	if plain.HashVersion != HashVersion || hex.EncodeToString(plain.ContentHash) != goldenContent {
		t.Errorf("a row without attribution: version %d hash %x", plain.HashVersion, plain.ContentHash)
	}
}

// Every version-3 field is covered, NULL differs from empty and false
// differs from NULL and true.
func TestV3FieldsAreHashed(t *testing.T) {
	no, yes := false, true
	base := func(r *Row) { r.HashVersion = HashVersionAttributed }
	muts := map[string]func(r *Row){
		"none":            func(r *Row) {},
		"role":            func(r *Row) { r.Role = sp("viewer") },
		"role empty":      func(r *Row) { r.Role = sp("") },
		"actor":           func(r *Row) { r.Actor = sp("viewer") },
		"purpose":         func(r *Row) { r.Purpose = sp("viewer") },
		"ticket":          func(r *Row) { r.Ticket = sp("viewer") },
		"rewritten false": func(r *Row) { r.Rewritten = &no },
		"rewritten true":  func(r *Row) { r.Rewritten = &yes },
	}
	seen := map[string]string{}
	for name, m := range muts {
		h := hex.EncodeToString(contentOf(func(r *Row) { base(r); m(r) }))
		if other, dup := seen[h]; dup {
			t.Errorf("%s and %s hash the same", name, other)
		}
		seen[h] = name
	}
	// Moving a value to the neighbouring field changes the hash.
	if bytes.Equal(contentOf(func(r *Row) { base(r); r.Role = sp("x") }), contentOf(func(r *Row) { base(r); r.Actor = sp("x") })) {
		t.Error("role and actor are not separated")
	}
}

// canonAddr stores every form of one address alike, whether or not it
// takes the path for an address already in inet's text form.
func TestCanonAddr(t *testing.T) {
	for in, want := range map[string]string{
		"10.0.0.7":           "10.0.0.7",
		"10.0.0.7:5432":      "10.0.0.7",
		"::1":                "::1",
		"[::1]:5432":         "::1",
		"[::1]":              "::1",
		"::ffff:10.1.2.3":    "10.1.2.3",
		"[::ffff:10.1.2.3]":  "10.1.2.3",
		"fe80::1%eth0":       "fe80::1",
		"2001:DB8::0001":     "2001:db8::1",
		"2001:db8::1":        "2001:db8::1",
		"":                   "",
		"/tmp/.s.PGSQL.5432": "",
	} {
		got, ok := canonAddr(in)
		if got != want || ok != (want != "") {
			t.Errorf("canonAddr(%q) = %q, %v; want %q", in, got, ok, want)
		}
	}
}
