package clients

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"
)

// fakeT collects what the judging reports, so these tests can check that
// each rule fails when it must.
type fakeT struct{ errs []string }

func (f *fakeT) Helper()                        {}
func (f *fakeT) Error(args ...any)              { f.errs = append(f.errs, fmt.Sprint(args...)) }
func (f *fakeT) Errorf(format string, a ...any) { f.errs = append(f.errs, fmt.Sprintf(format, a...)) }
func (f *fakeT) Logf(string, ...any)            {}

func op(name, kind string, ok bool, state, rows string) opResult {
	return opResult{Name: name, Kind: kind, OK: ok, SQLState: state, Rows: json.RawMessage(rows)}
}

func TestJudge(t *testing.T) {
	refused := denial{Statement: "SELECT * FROM orders", SQLState: "42501", Reason: "unscoped_table"}
	with := func(d denial, opName string) denial { d.Op = opName; return d }
	cases := []struct {
		name    string
		mode    string
		ops     []opResult
		denials []denial
		fail    string // substring of an expected failure; empty: must pass
		false_  int
	}{
		{"clean deny run", "deny", []opResult{
			op("connect", "app", true, "", "null"),
			op("read", "app", true, "", `[{"id":1,"account_id":42}]`),
			op("unpinned", "unpinned", false, "42501", "null"),
			op("unscoped", "unscoped", false, "42501", "null"),
			op("cross", "cross", false, "42501", "null"),
		}, []denial{with(refused, "unpinned"), with(refused, "unscoped"), with(refused, "cross")}, "", 0},
		{"a non-pin denial during an unpinned op is false", "deny", []opResult{op("copy", "unpinned", false, "42501", "null")},
			[]denial{{Op: "copy", Statement: "SELECT pg_advisory_unlock_all()", SQLState: "42501", Reason: "function"}, with(refused, "copy")},
			"not for a missing pin", 1},
		{"false deny of an app op", "deny", []opResult{op("read", "app", false, "42501", "null")},
			[]denial{with(refused, "read")}, "false deny", 1},
		{"denial swallowed by the driver still counts", "deny", []opResult{op("pool", "app", true, "", "[]")},
			[]denial{with(refused, "pool")}, "false deny", 1},
		{"denial outside any op", "deny", []opResult{op("read", "app", true, "", "[]")},
			[]denial{with(refused, "gone")}, "outside any reported operation", 1},
		{"missing refusal of unscoped access", "deny", []opResult{op("unscoped", "unscoped", true, "", "[]")},
			nil, "expected a refusal", 0},
		{"cross refusal must come from the proxy", "deny", []opResult{op("cross", "cross", false, "42501", "null")},
			nil, "expected a refusal", 0},
		{"rewrite must still refuse cross-tenant access", "rewrite", []opResult{op("cross", "cross", true, "", "[]")},
			nil, "expected a refusal", 0},
		{"rewrite runs unpinned statements", "rewrite", []opResult{op("save", "unpinned", false, "42501", "null")},
			[]denial{with(refused, "save")}, "false deny", 1},
		{"another tenant's row returned", "deny", []opResult{op("read", "app", true, "", `[{"id":2001,"accountId":"7"}]`)},
			nil, "another tenant's row", 0},
		{"other error of an app op", "deny", []opResult{op("read", "app", false, "42P01", "null")},
			nil, "failed with 42P01", 0},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			ft := &fakeT{}
			res := &runResult{mode: c.mode}
			judge(ft, res, report{Ops: c.ops}, c.denials, c.mode)
			all := strings.Join(ft.errs, "\n")
			if c.fail == "" && len(ft.errs) > 0 {
				t.Fatalf("want a pass, got:\n%s", all)
			}
			if c.fail != "" && !strings.Contains(all, c.fail) {
				t.Fatalf("want a failure containing %q, got:\n%s", c.fail, all)
			}
			if len(res.falseDenies) != c.false_ {
				t.Errorf("false denies = %d, want %d", len(res.falseDenies), c.false_)
			}
		})
	}
}

func TestCompareOracle(t *testing.T) {
	proxy := report{Ops: []opResult{
		op("read", "app", true, "", `[{"id":1}]`),
		op("save", "unpinned", false, "42501", "null"),
		op("after", "app", true, "", `[{"id":2}]`),
		op("cross", "cross", false, "42501", "null"),
	}}
	oracle := report{Ops: []opResult{
		op("read", "app", true, "", `[{"id":1}]`),
		op("save", "unpinned", true, "", `[{"id":1}]`),
		op("after", "app", true, "", `[{"id":3}]`),
		op("cross", "cross", true, "", "[]"),
	}}
	ft := &fakeT{}
	compareOracle(ft, &runResult{mode: "deny"}, proxy, oracle)
	if len(ft.errs) != 0 {
		t.Errorf("deny mode compares only up to the first refusal; got %v", ft.errs)
	}
	ft = &fakeT{}
	res := &runResult{mode: "rewrite"}
	compareOracle(ft, res, proxy, oracle)
	if strings.Join(res.oracleDiffs, ",") != "save,after" {
		t.Errorf("rewrite oracle differences = %v, want [save after] (cross-tenant ops are not compared)", res.oracleDiffs)
	}
	ft = &fakeT{}
	compareOracle(ft, &runResult{mode: "deny"}, report{Ops: []opResult{op("read", "app", true, "", `[{"id":1}]`)}},
		report{Ops: []opResult{op("read", "app", true, "", `[{"id":1},{"id":2001}]`)}})
	if len(ft.errs) != 1 {
		t.Errorf("a row-set difference must fail in deny mode too; got %v", ft.errs)
	}
}

func TestForeignTenant(t *testing.T) {
	for rows, want := range map[string]bool{
		`[{"account_id":42}]`:                               false,
		`[{"account_id":"42"}]`:                             false,
		`[{"AccountID":7}]`:                                 true,
		`[{"items":[{"account_id":7}]}]`:                    true,
		`[[1,2,3]]`:                                         false,
		`[{"account_id":null,"other":"x"}]`:                 false,
		`{"order":{"accountId":42},"x":[{"account_id":8}]}`: true,
	} {
		if got := foreignTenant(json.RawMessage(rows)) != ""; got != want {
			t.Errorf("foreignTenant(%s) = %v, want %v", rows, got, want)
		}
	}
}

func TestSetDiff(t *testing.T) {
	a, b := setDiff(`[{"id":1},{"id":2}]`, `[{"id":2},{"id":3}]`)
	if len(a) != 1 || a[0] != `{"id":1}` || len(b) != 1 || b[0] != `{"id":3}` {
		t.Errorf("setDiff = %v, %v", a, b)
	}
}

// FuzzJudge feeds arbitrary program output to the report parser and the
// judging rules: a broken or hostile program must give failures, never a
// panic.
func FuzzJudge(f *testing.F) {
	f.Add([]byte(`{"client":"x","version":"1","ops":[{"name":"connect","kind":"app","ok":true,"rows":null}]}`), "deny")
	f.Add([]byte(`{"ops":[{"name":"a","kind":"cross","ok":false,"sqlstate":"42501","rows":[{"account_id":7,"x":[{"AccountId":"42"}]}]}]}`), "rewrite")
	f.Add([]byte(`{"ops":[{"name":"","kind":"unpinned","ok":true,"rows":{"account_id":[1,{"account_id":null}]}}]}`), "deny")
	f.Fuzz(func(t *testing.T, out []byte, mode string) {
		var rep report
		if err := json.Unmarshal(lastLine(append([]byte("\n"), out...)), &rep); err != nil {
			return
		}
		ds := []denial{{Op: "connect", Statement: "SET x = 1", SQLState: "42501", Reason: "setting"}}
		for _, op := range rep.Ops {
			ds = append(ds, denial{Op: op.Name, SQLState: "42501", Reason: missingPin})
		}
		res := &runResult{mode: mode}
		judge(&fakeT{}, res, rep, ds, mode)
		compareOracle(&fakeT{}, res, rep, rep)
		if len(res.oracleDiffs) != 0 {
			t.Fatalf("a report differs from itself: %v", res.oracleDiffs)
		}
		m := &matrix{runs: []*runResult{res}}
		_ = m.markdown()
	})
}
