package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/pgtenant/pgtenant/cluster"
	"github.com/pgtenant/pgtenant/demo"
	"github.com/pgtenant/pgtenant/test/pgtest"
)

// scrape returns the /metrics text of the admin endpoint at addr.
func scrape(t *testing.T, url string) string {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// seriesValue returns the value of the first sample of series (name plus
// labels as written, e.g. `pgtenant_audit_chains{region="eu-west"}`).
func seriesValue(text, series string) (float64, bool) {
	for _, line := range strings.Split(text, "\n") {
		if strings.HasPrefix(line, series+" ") {
			v, err := strconv.ParseFloat(strings.TrimSpace(strings.TrimPrefix(line, series)), 64)
			return v, err == nil
		}
	}
	return 0, false
}

// A running pgtenant exports every metric the Grafana dashboard queries,
// the audit ones with real values (batches, chains, last append), and
// /isolation-proof shows the last verification once `audit seal` ran.
func TestMetricsScrapeCoversTheDashboard(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a PostgreSQL cluster")
	}
	oldSample, oldSummary := auditSampleEvery, auditSummaryEvery
	auditSampleEvery, auditSummaryEvery = 50*time.Millisecond, 200*time.Millisecond
	defer func() { auditSampleEvery, auditSummaryEvery = oldSample, oldSummary }()

	c := pgtest.Start(t, cluster.Config{Name: "metrics-scrape"})
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	if err := demo.Install(ctx, c); err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	priv, pub := writeSealKeys(t, dir)
	listen, adminListen := freeLoopback(t), freeLoopback(t)
	cfgPath := filepath.Join(dir, "pgtenant.yaml")
	body := fmt.Sprintf(`listen: %s
admin_listen: %s
auth: { hs256_secret: %s }
regions:
  eu-west: { host: 127.0.0.1, port: %d, user: %s, password: %s, database: %s, admin_user: postgres }
policy: { global_tables: [public.countries] }
audit: { mode: spool, spool_dir: %s, checkpoint_dir: %s, seal_public_key: %s }
pool: { mode: transaction }
`, listen, adminListen, proveSecret, c.Port, c.ServiceUser, c.ServicePassword, c.Database,
		filepath.Join(dir, "spool"), filepath.Join(dir, "checkpoints"), pub)
	if err := os.WriteFile(cfgPath, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	var log syncBuffer
	sctx, stop := context.WithCancel(ctx)
	defer stop()
	done := make(chan error, 1)
	go func() { done <- runServe(sctx, cfgPath, &log) }()
	defer func() { stop(); <-done }()
	waitListening(t, listen, done, &log)

	tenant := tenantConn(t, listen, "42", c.Database)
	for i := 0; i < 5; i++ {
		if _, err := tenant.Exec(ctx, "SELECT * FROM orders WHERE account_id = 42"); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := tenant.Exec(ctx, "SELECT * FROM orders"); err == nil {
		t.Fatal("unscoped statement allowed")
	}

	metricsURL := "http://" + adminListen + "/metrics"
	var text string
	deadline := time.Now().Add(15 * time.Second)
	for {
		text = scrape(t, metricsURL)
		chains, ok1 := seriesValue(text, `pgtenant_audit_chains{region="eu-west"}`)
		batches, ok2 := seriesValue(text, `pgtenant_audit_batch_size_count{region="eu-west"}`)
		_, ok3 := seriesValue(text, `pgtenant_audit_last_append_timestamp_seconds{region="eu-west"}`)
		if ok1 && ok2 && ok3 && chains >= 2 && batches >= 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("audit metrics not filled in (chains %v/%v, batches %v/%v, last append %v):\n%s\nlog:\n%s", chains, ok1, batches, ok2, ok3, text, log.String())
		}
		time.Sleep(100 * time.Millisecond)
	}

	// Seal once the events are chained (the chains gauge above counts
	// chained heads): the writers batch for up to batchLinger and the
	// integrator paces its rounds, so a seal right after the statements
	// can find the tree still empty, and there is then nothing to verify.
	if out, code := runAuditCmd(t, "audit", "seal", "--config", cfgPath, "--key", priv); code != exitOK {
		t.Fatalf("audit seal: exit %d: %s", code, out)
	}

	dash, err := os.ReadFile("../../helm/pgtenant/dashboards/pgtenant.json")
	if err != nil {
		t.Fatal(err)
	}
	var d struct {
		Panels []struct {
			Title   string `json:"title"`
			Targets []struct {
				Expr string `json:"expr"`
			} `json:"targets"`
		} `json:"panels"`
	}
	if err := json.Unmarshal(dash, &d); err != nil {
		t.Fatal(err)
	}
	present := map[string]bool{}
	for _, line := range strings.Split(text, "\n") {
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		name := line
		if i := strings.IndexAny(line, "{ "); i >= 0 {
			name = line[:i]
		}
		present[name] = true
	}
	series := regexp.MustCompile(`\b(pgtenant_[a-z0-9_]+|process_[a-z0-9_]+)`)
	checked := 0
	for _, p := range d.Panels {
		for _, tg := range p.Targets {
			for _, name := range series.FindAllString(tg.Expr, -1) {
				checked++
				if !present[name] {
					t.Errorf("panel %q queries %s, which the running pgtenant does not export", p.Title, name)
				}
			}
		}
	}
	if checked < 10 {
		t.Fatalf("only %d series found in the dashboard", checked)
	}

	// the last verification appears once the summary has read the checkpoint
	proofURL := "http://" + adminListen + "/isolation-proof"
	for {
		b := scrape(t, proofURL)
		if strings.Contains(b, `"last_verification"`) && strings.Contains(b, `"intact"`) {
			break
		}
		if time.Now().After(deadline.Add(10 * time.Second)) {
			t.Fatalf("/isolation-proof has no last verification:\n%s", b)
		}
		time.Sleep(100 * time.Millisecond)
	}
}
