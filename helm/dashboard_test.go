package helmtest

import (
	"encoding/json"
	"errors"
	"os"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/pgtenant/pgtenant/metrics"
)

// dashboard is the part of a Grafana dashboard the test reads.
type dashboard struct {
	Title  string `json:"title"`
	UID    string `json:"uid"`
	Panels []struct {
		Type    string `json:"type"`
		Title   string `json:"title"`
		Targets []struct {
			Expr string `json:"expr"`
		} `json:"targets"`
	} `json:"panels"`
}

func TestGrafanaDashboardConfigMap(t *testing.T) {
	if m := render(t); m.configMaps[fullname()+"-dashboard"] != nil {
		t.Fatalf("dashboard rendered while disabled: %v", keys(m.configMaps))
	}
	m := render(t, `grafanaDashboard: {enabled: true}`)
	cm := m.configMap(t, fullname()+"-dashboard")
	if cm.Labels["grafana_dashboard"] != "1" {
		t.Errorf("labels %v, want grafana_dashboard=1 for Grafana's sidecar", cm.Labels)
	}
	file, err := os.ReadFile(chartDir + "/dashboards/pgtenant.json")
	if err != nil {
		t.Fatal(err)
	}
	if strings.TrimSpace(cm.Data["pgtenant.json"]) != strings.TrimSpace(string(file)) {
		t.Error("ConfigMap data differs from dashboards/pgtenant.json")
	}
	var d dashboard
	if err := json.Unmarshal(file, &d); err != nil {
		t.Fatalf("dashboard JSON: %v", err)
	}
	if d.UID == "" || d.Title == "" {
		t.Errorf("dashboard title %q uid %q", d.Title, d.UID)
	}
}

// TestDashboardQueriesExistingMetrics checks every pgtenant_* series the
// dashboard queries against what package metrics actually exports, and that
// every exported family appears on the dashboard.
func TestDashboardQueriesExistingMetrics(t *testing.T) {
	file, err := os.ReadFile(chartDir + "/dashboards/pgtenant.json")
	if err != nil {
		t.Fatal(err)
	}
	var d dashboard
	if err := json.Unmarshal(file, &d); err != nil {
		t.Fatal(err)
	}
	m := metrics.New(metrics.Options{
		Regions: []string{"eu-west"},
		AuditStats: func() metrics.AuditStats {
			return metrics.AuditStats{Chains: map[string]metrics.ChainHeads{"eu-west": {Chains: 1, Entries: 1, LastAppend: time.Now()}}}
		},
		CacheStats: func() (uint64, uint64) { return 1, 1 },
		PoolStats:  func() []metrics.PoolStats { return []metrics.PoolStats{{Region: "eu-west", Database: "app"}} },
	})
	// Touch every vector so that its family is gathered.
	m.ClientRejected("auth_bad_signature")
	m.StatementDecided("deny", "ddl")
	m.StatementDone("eu-west", time.Microsecond, time.Millisecond)
	m.BackendDialed("eu-west", nil)
	m.ObserveAuditBatch("eu-west", 1, time.Millisecond, errors.New("write failed"))
	fams, err := m.Registry().Gather()
	if err != nil {
		t.Fatal(err)
	}
	exported := map[string]string{} // series name -> family
	for _, f := range fams {
		name := f.GetName()
		exported[name] = name
		if f.GetType().String() == "HISTOGRAM" {
			for _, s := range []string{"_bucket", "_sum", "_count"} {
				exported[name+s] = name
			}
		}
	}
	used := map[string]bool{}
	series := regexp.MustCompile(`\b(pgtenant_[a-z0-9_]+|process_[a-z0-9_]+)`)
	for _, p := range d.Panels {
		for _, tg := range p.Targets {
			for _, name := range series.FindAllString(tg.Expr, -1) {
				fam, ok := exported[name]
				if !ok {
					t.Errorf("panel %q queries %s, which package metrics does not export", p.Title, name)
				}
				used[fam] = true
			}
		}
	}
	var unused []string
	for _, f := range fams {
		if n := f.GetName(); strings.HasPrefix(n, "pgtenant_") && !used[n] {
			unused = append(unused, n)
		}
	}
	slices.Sort(unused)
	if len(unused) > 0 {
		t.Errorf("metrics not on the dashboard: %v", unused)
	}
}
