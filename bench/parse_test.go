package bench

import (
	"os"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/pgtenant/pgtenant/cluster"
)

func TestParseStatCPU(t *testing.T) {
	// utime (14) = 250 ticks, stime (15) = 50 ticks; the command holds
	// spaces and a parenthesis.
	line := "1234 (pg tenant) x) S 1 1234 1234 0 -1 4194560 100 0 0 0 250 50 0 0 20 0 8 0 100 1000000 500 18446744073709551615\n"
	got, err := parseStatCPU([]byte(line))
	if err != nil {
		t.Fatal(err)
	}
	if want := 3 * time.Second; got != want {
		t.Errorf("cpu = %s, want %s", got, want)
	}
	st, err := parseStat([]byte(line))
	if err != nil {
		t.Fatal(err)
	}
	// ppid (4) = 1; cutime and cstime (16, 17) = 0 here.
	if st.ppid != 1 || st.self != 3*time.Second || st.reaped != 0 {
		t.Errorf("parseStat = %+v, want ppid 1, self 3s, reaped 0", st)
	}
	// A postmaster that reaped children: cutime 700, cstime 300 ticks.
	pm := "77 (postgres) S 1 77 77 0 -1 4194560 100 0 0 0 20 10 700 300 20 0 1 0 100 1000000 500 0\n"
	if st, err := parseStat([]byte(pm)); err != nil || st.self != 300*time.Millisecond || st.reaped != 10*time.Second {
		t.Errorf("parseStat(postmaster) = %+v, %v; want self 300ms, reaped 10s", st, err)
	}
	for _, bad := range []string{"", "1234 no parens", "1 (x) S 1 2", "1 (x) S 1 1 1 0 -1 0 0 0 0 0 -5 1 0 0 0",
		"1 (x) S one 1 1 0 -1 0 0 0 0 0 5 1 0 0 0"} {
		if _, err := parseStatCPU([]byte(bad)); err == nil {
			t.Errorf("parseStatCPU(%q): no error", bad)
		}
	}
}

func TestParseStatusMemory(t *testing.T) {
	status := "Name:\tpgtenant\nVmPeak:\t  900 kB\nVmHWM:\t    4096 kB\nVmRSS:\t    2048 kB\nThreads:\t8\n"
	rss, hwm, err := parseStatusMemory([]byte(status))
	if err != nil {
		t.Fatal(err)
	}
	if rss != 2048*1024 || hwm != 4096*1024 {
		t.Errorf("rss %d hwm %d", rss, hwm)
	}
	for _, bad := range []string{"Name:\tkthreadd\n", "VmRSS:\t12 MB\nVmHWM:\t1 kB\n", "VmRSS:\tx kB\nVmHWM:\t1 kB\n"} {
		if _, _, err := parseStatusMemory([]byte(bad)); err == nil {
			t.Errorf("parseStatusMemory(%q): no error", bad)
		}
	}
}

func TestSampleOwnProcess(t *testing.T) {
	// Burn some CPU so the reading cannot be zero, then read ourselves.
	x := 0
	for i := range 50_000_000 {
		x ^= i
	}
	s, err := sampleProc(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	if s.RSSBytes <= 0 || s.HWMBytes < s.RSSBytes || s.CPU <= 0 {
		t.Errorf("sample %+v (x=%d)", s, x)
	}
	if _, err := sampleProc(1 << 30); err == nil {
		t.Error("sampleProc of a pid that cannot exist: no error")
	}
}

func TestTxLogSummary(t *testing.T) {
	// client_id transaction_no time script_no time_epoch time_us [lag] [retries]
	var b strings.Builder
	for i := 1; i <= 100; i++ {
		b.WriteString("0 ")
		b.WriteString(itoa(i))
		b.WriteString(" ")
		b.WriteString(itoa(i * 1000)) // 1..100 ms
		b.WriteString(" 0 1700000000 123456\n")
	}
	b.WriteString("1 7 failed 0 1700000000 123456\n1 8 skipped 0 1700000000 123456 10\n\n")
	var l txLog
	if err := l.read(strings.NewReader(b.String())); err != nil {
		t.Fatal(err)
	}
	s := l.summary()
	want := Latency{Count: 100, Failed: 2, MeanMs: 50.5, P50Ms: 50, P99Ms: 99, MaxMs: 100}
	if s != want {
		t.Errorf("summary %+v, want %+v", s, want)
	}
	for _, bad := range []string{"0 1 12\n", "0 1 -3 0 1 2\n", "0 1 12ms 0 1 2\n"} {
		var l txLog
		if err := l.read(strings.NewReader(bad)); err == nil {
			t.Errorf("read(%q): no error", bad)
		}
	}
	var empty txLog
	if s := empty.summary(); s != (Latency{}) {
		t.Errorf("empty summary %+v", s)
	}
}

func TestPercentileNearestRank(t *testing.T) {
	cases := []struct {
		vals []int64
		p    float64
		want int64
	}{
		{[]int64{7}, 99, 7},
		{[]int64{1, 2}, 50, 1},
		{[]int64{1, 2}, 99, 2},
		{[]int64{1, 2, 3, 4, 5, 6, 7, 8, 9, 10}, 90, 9},
		{[]int64{1, 2, 3, 4, 5, 6, 7, 8, 9, 10}, 91, 10},
		{[]int64{1, 2, 3}, 0, 1},
	}
	for _, c := range cases {
		if got := percentile(c.vals, c.p); got != c.want {
			t.Errorf("percentile(%v, %v) = %d, want %d", c.vals, c.p, got, c.want)
		}
	}
}

// pgbench15Output is pgbench 15's summary for a custom script.
const pgbench15Output = `pgbench (15.20 (Debian 15.20-0+deb12u1))
transaction type: /tmp/pgtenant-bench-1/tenant_rw.sql
scaling factor: 1
query mode: prepared
number of clients: 8
number of threads: 2
maximum number of tries: 1
duration: 20 s
number of transactions actually processed: 41234
number of failed transactions: 0 (0.000%)
latency average = 3.880 ms
initial connection time = 12.345 ms
tps = 2061.712345 (without initial connection time)
`

func TestParsePgbench(t *testing.T) {
	s, err := parsePgbench(pgbench15Output)
	if err != nil {
		t.Fatal(err)
	}
	if s != (pgbenchSummary{Processed: 41234, Failed: 0, TPS: 2061.712345}) {
		t.Errorf("summary %+v", s)
	}
	failed := strings.Replace(pgbench15Output, "failed transactions: 0 (0.000%)", "failed transactions: 3 (0.007%)", 1)
	if s, err := parsePgbench(failed); err != nil || s.Failed != 3 {
		t.Errorf("failed count: %+v %v", s, err)
	}
	for _, cut := range []string{"number of transactions actually processed", "tps = "} {
		broken := strings.Replace(pgbench15Output, cut, "something else", 1)
		if _, err := parsePgbench(broken); err == nil {
			t.Errorf("output without %q: no error", cut)
		}
	}
}

func TestPgbenchArgsKeepTheSecretOut(t *testing.T) {
	r := pgbenchRun{Bin: "pgbench", Script: "/s.sql", Mode: "prepared", Clients: 8, Threads: 2,
		Duration: 1500 * time.Millisecond, LogDir: "/logs", Vars: map[string]string{"t": "42", "rows": "10"},
		Endpoint: Endpoint{Host: "127.0.0.1", Port: 6432, User: "u", Database: "app", Password: "tok.en.sig", Options: "-c a=b"}}
	want := []string{"-n", "-f", "/s.sql", "-M", "prepared", "-c", "8", "-j", "2", "-T", "2",
		"-D", "rows=10", "-D", "t=42", "--log", "--log-prefix=/logs/tx"}
	if got := r.args(); !slices.Equal(got, want) {
		t.Errorf("args %q\nwant %q", got, want)
	}
	t.Setenv("PGHOST", "elsewhere")
	env := r.env()
	for _, kv := range []string{"PGPASSWORD=tok.en.sig", "PGOPTIONS=-c a=b", "PGPORT=6432", "PGHOST=127.0.0.1"} {
		if !slices.Contains(env, kv) {
			t.Errorf("env lacks %s", kv)
		}
	}
	if slices.Contains(env, "PGHOST=elsewhere") {
		t.Error("the caller's PGHOST leaked into pgbench's environment")
	}
}

func TestScriptStatements(t *testing.T) {
	if n := statementsPerTx(SelectScript); n != 1 {
		t.Errorf("SelectScript has %d statements, want 1", n)
	}
	if n := statementsPerTx(Script); n != 5 {
		t.Errorf("Script has %d statements, want 5 (BEGIN, SELECT, UPDATE, SELECT, END)", n)
	}
	for _, want := range []string{"account_id = :t AND aid = :aid", `\gset`, "BEGIN;", "END;"} {
		if !strings.Contains(Script, want) {
			t.Errorf("Script lacks %q", want)
		}
	}
}

func itoa(i int) string { return strconv.Itoa(i) }

func TestPgBouncerConfig(t *testing.T) {
	if got := authFileLine(`we"ird`, "SCRAM-SHA-256$4096:c2FsdA==$a2V5:c2Vy"); got != `"we""ird" "SCRAM-SHA-256$4096:c2FsdA==$a2V5:c2Vy"`+"\n" {
		t.Errorf("auth file line %q", got)
	}
	ini := pgbouncerIni("/d", 6500, "transaction", &cluster.Cluster{Port: 5999, Database: "app"}, 42, 500, 20)
	for _, want := range []string{
		"app = host=127.0.0.1 port=5999 dbname=app connect_query='SET app.current_account_id = 42'\n",
		"listen_port = 6500\n", "pool_mode = transaction\n", "auth_type = scram-sha-256\n",
		"auth_file = /d/userlist.txt\n", "server_reset_query = DEALLOCATE ALL\n",
		// the transaction pool is --pool-size, the size pgtenant-transaction gets
		"default_pool_size = 20\n", "max_client_conn = 600\n",
	} {
		if !strings.Contains(ini, want) {
			t.Errorf("pgbouncer.ini lacks %q:\n%s", want, ini)
		}
	}
	// In session mode every client holds a server connection.
	if ini := pgbouncerIni("/d", 6500, "session", &cluster.Cluster{Port: 5999, Database: "app"}, 42, 500, 20); !strings.Contains(ini, "default_pool_size = 500\n") {
		t.Errorf("session-mode pgbouncer.ini:\n%s", ini)
	}
}

func TestPgtenantConfig(t *testing.T) {
	c := &cluster.Cluster{Port: 5999, Database: "app", ServiceUser: "app"}
	tx := pgtenantConfig(6501, 6502, "transaction", "/spool", "", c, 700, 20)
	pool, ok := tx["pool"].(map[string]any)
	if !ok || pool["mode"] != "transaction" || pool["size"] != 20 {
		t.Errorf("transaction target's pool = %v, want mode transaction, size 20", tx["pool"])
	}
	if tx["admin_listen"] != "127.0.0.1:6502" {
		t.Errorf("admin_listen = %v, want 127.0.0.1:6502 (the audit's in-run latencies are scraped there)", tx["admin_listen"])
	}
	if audit := tx["audit"].(map[string]any); audit["disabled"] != true {
		t.Errorf("transaction target's audit = %v, want disabled (as pgtenant-noaudit)", audit)
	}
	if _, ok := pgtenantConfig(6501, 6502, "noaudit", "/spool", "", c, 700, 20)["pool"]; ok {
		t.Error("pgtenant-noaudit has a pool section: it must stay in session mode")
	}
}

func TestParsePerfCSV(t *testing.T) {
	out := "# started on Wed Dec  2 12:00:00 2026\n\n123456,,raw_syscalls:sys_enter,992930,100.00,,\n789,,context-switches,992930,100.00,,\n"
	c, err := parsePerfCSV([]byte(out))
	if err != nil || c.Syscalls != 123456 || c.ContextSwitches != 789 {
		t.Errorf("parsePerfCSV = %+v, %v", c, err)
	}
	if _, err := parsePerfCSV([]byte("<not supported>,,raw_syscalls:sys_enter,0,100.00,,\n")); err == nil {
		t.Error("an uncounted event parsed")
	}
}

// One integrator per region: audited targets sharing an audit database
// would make the first of them chain the others' events, so each has its
// own, and its config names it; targets without an audit have none.
func TestEachAuditedTargetHasItsOwnAuditDatabase(t *testing.T) {
	dbs := auditDatabases(AllTargets)
	audited := 0
	for _, name := range AllTargets {
		if isAudited(name) {
			audited++
		} else if db := auditDatabase(name); db != "" {
			t.Errorf("%s has audit database %q, want none", name, db)
		}
	}
	if len(dbs) != audited || len(slices.Compact(slices.Sorted(slices.Values(dbs)))) != audited {
		t.Fatalf("audit databases %v, want %d distinct ones", dbs, audited)
	}
	c := &cluster.Cluster{Port: 5999, Database: "app", ServiceUser: "app"}
	region := func(cfg map[string]any) map[string]any {
		return cfg["regions"].(map[string]any)[benchRegion].(map[string]any)
	}
	if got := region(pgtenantConfig(6501, 6502, "spool", "/spool", "audit_spool", c, 700, 20))["audit_database"]; got != "audit_spool" {
		t.Errorf("spool target's audit_database = %v, want audit_spool", got)
	}
	if got, ok := region(pgtenantConfig(6501, 6502, "noaudit", "/spool", "", c, 700, 20))["audit_database"]; ok {
		t.Errorf("noaudit target's audit_database = %v, want none (its region's database)", got)
	}
}
