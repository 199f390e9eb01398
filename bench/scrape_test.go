package bench

import (
	"context"
	"net/http"
	"net/http/httptest"
	"testing"
)

// The scrape sums each family over its labels and ignores the rest; the
// in-run means come from the differences between two scrapes.
func TestScrapeAuditLatency(t *testing.T) {
	body := `# HELP pgtenant_audit_spool_fsyncs_total fdatasyncs of the local audit spool.
# TYPE pgtenant_audit_spool_fsyncs_total counter
pgtenant_audit_spool_fsyncs_total 40
pgtenant_audit_spool_fsync_seconds_total 0.02
pgtenant_audit_write_duration_seconds_bucket{region="eu-west",le="0.001"} 3
pgtenant_audit_write_duration_seconds_sum{region="eu-west"} 0.5
pgtenant_audit_write_duration_seconds_count{region="eu-west"} 100
pgtenant_audit_write_duration_seconds_sum{region="us-east"} 0.25
pgtenant_audit_write_duration_seconds_count{region="us-east"} 25
pgtenant_audit_spool_fsyncs_totalx 7
pgtenant_statement_overhead_seconds_sum{region="eu-west"} 2
pgtenant_statement_overhead_seconds_count{region="eu-west"} 1000
`
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write([]byte(body)) }))
	defer srv.Close()
	after, err := scrapeAuditLatency(context.Background(), srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	want := auditLatency{fsyncs: 40, fsyncSeconds: 0.02, writes: 125, writeSeconds: 0.75, statements: 1000, overheadSeconds: 2}
	if after != want {
		t.Fatalf("scraped %+v, want %+v", after, want)
	}
	fsync, write, overhead := inRunMs(auditLatency{fsyncs: 20, fsyncSeconds: 0.01, writes: 125, writeSeconds: 0.75, statements: 500, overheadSeconds: 1.5}, after)
	if fsync == nil || *fsync != 0.5 {
		t.Errorf("in-run fdatasync = %v ms, want 0.5", deref(fsync))
	}
	if write != nil {
		t.Errorf("in-run write = %v ms with no write in the run, want none", *write)
	}
	if overhead == nil || *overhead != 1 {
		t.Errorf("in-run overhead = %v ms per statement, want 1", deref(overhead))
	}
	if _, err := scrapeAuditLatency(context.Background(), srv.URL+"/missing\x7f"); err == nil {
		t.Error("a bad URL scraped")
	}
}
