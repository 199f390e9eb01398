package helmtest

import (
	"fmt"
	"sort"
	"strings"
	"testing"

	"helm.sh/helm/v3/pkg/chart"
	"helm.sh/helm/v3/pkg/chart/loader"
	"helm.sh/helm/v3/pkg/chartutil"
	"helm.sh/helm/v3/pkg/engine"
	appsv1 "k8s.io/api/apps/v1"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	policyv1 "k8s.io/api/policy/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/yaml"
)

const (
	chartDir   = "pgtenant"
	exampleDir = "examples/sidecar-app"
	release    = "prod"
	namespace  = "db-proxy"
)

// baseValues is a complete standalone configuration with two regions.
const baseValues = `
regions:
  eu-west:
    host: pg-eu.db.svc
    user: pgtenant
    database: app
    sslmode: require
    passwordSecret: {name: pg-eu, key: password}
    admin_user: postgres
    adminPasswordSecret: {name: pg-eu-admin, key: password}
  us-east:
    host: pg-us.db.svc
    port: 5433
    user: pgtenant
    passwordSecret: {name: pg-us, key: pw}
    admin_user: dba
    adminPasswordSecret: {name: pg-us-admin}
jwt:
  hs256Secret: {name: jwt-secret, key: secret}
`

// manifests is a rendered chart, decoded strictly into typed objects.
type manifests struct {
	raw             map[string]string // template path -> rendered text
	configMaps      map[string]*corev1.ConfigMap
	deployments     []*appsv1.Deployment
	services        []*corev1.Service
	serviceAccounts []*corev1.ServiceAccount
	pdbs            []*policyv1.PodDisruptionBudget
	networkPolicies []*networkingv1.NetworkPolicy
	serviceMonitors []*serviceMonitor
	jobs            []*batchv1.Job
	cronJobs        []*batchv1.CronJob
	kinds           []string
}

// serviceMonitor is the part of monitoring.coreos.com/v1 ServiceMonitor the chart uses.
type serviceMonitor struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata"`
	Spec              struct {
		Selector          metav1.LabelSelector `json:"selector"`
		NamespaceSelector struct {
			MatchNames []string `json:"matchNames"`
		} `json:"namespaceSelector"`
		Endpoints []struct {
			Port          string `json:"port"`
			Path          string `json:"path"`
			Interval      string `json:"interval"`
			ScrapeTimeout string `json:"scrapeTimeout"`
		} `json:"endpoints"`
	} `json:"spec"`
}

func parseValues(t *testing.T, docs ...string) map[string]any {
	t.Helper()
	vals := map[string]any{}
	for _, d := range docs {
		var m map[string]any
		if err := yaml.Unmarshal([]byte(d), &m); err != nil {
			t.Fatalf("values %q: %v", d, err)
		}
		vals = chartutil.MergeTables(m, vals)
	}
	return vals
}

func loadChart(t *testing.T, dir string) *chart.Chart {
	t.Helper()
	ch, err := loader.Load(dir)
	if err != nil {
		t.Fatalf("load chart %s: %v", dir, err)
	}
	return ch
}

// renderChart renders ch with vals as `helm template` would.
func renderChart(ch *chart.Chart, vals map[string]any) (map[string]string, error) {
	opts := chartutil.ReleaseOptions{Name: release, Namespace: namespace, Revision: 1, IsInstall: true, IsUpgrade: false}
	rv, err := chartutil.ToRenderValues(ch, vals, opts, chartutil.DefaultCapabilities)
	if err != nil {
		return nil, err
	}
	return engine.Render(ch, rv)
}

// render renders the pgtenant chart and decodes every manifest.
func render(t *testing.T, docs ...string) *manifests {
	t.Helper()
	out, err := renderChart(loadChart(t, chartDir), parseValues(t, append([]string{baseValues}, docs...)...))
	if err != nil {
		t.Fatalf("render: %v", err)
	}
	return decode(t, out)
}

// decode splits rendered templates into documents and unmarshals each one
// strictly (unknown fields are errors) into its typed object.
func decode(t *testing.T, out map[string]string) *manifests {
	t.Helper()
	m := &manifests{raw: out, configMaps: map[string]*corev1.ConfigMap{}}
	names := make([]string, 0, len(out))
	for name := range out {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		if !strings.HasSuffix(name, ".yaml") {
			continue
		}
		for i, doc := range strings.Split(out[name], "\n---") {
			if strings.TrimSpace(doc) == "" {
				continue
			}
			var tm metav1.TypeMeta
			if err := yaml.Unmarshal([]byte(doc), &tm); err != nil {
				t.Fatalf("%s #%d: %v\n%s", name, i, err, doc)
			}
			var obj any
			switch tm.Kind {
			case "ConfigMap":
				obj = &corev1.ConfigMap{}
			case "Deployment":
				o := &appsv1.Deployment{}
				obj = o
				m.deployments = append(m.deployments, o)
			case "Service":
				o := &corev1.Service{}
				obj = o
				m.services = append(m.services, o)
			case "ServiceAccount":
				o := &corev1.ServiceAccount{}
				obj = o
				m.serviceAccounts = append(m.serviceAccounts, o)
			case "PodDisruptionBudget":
				o := &policyv1.PodDisruptionBudget{}
				obj = o
				m.pdbs = append(m.pdbs, o)
			case "NetworkPolicy":
				o := &networkingv1.NetworkPolicy{}
				obj = o
				m.networkPolicies = append(m.networkPolicies, o)
			case "Job":
				o := &batchv1.Job{}
				obj = o
				m.jobs = append(m.jobs, o)
			case "CronJob":
				o := &batchv1.CronJob{}
				obj = o
				m.cronJobs = append(m.cronJobs, o)
			case "ServiceMonitor":
				o := &serviceMonitor{}
				obj = o
				m.serviceMonitors = append(m.serviceMonitors, o)
			default:
				t.Fatalf("%s: unexpected kind %q (add it to decode)", name, tm.Kind)
			}
			if err := yaml.UnmarshalStrict([]byte(doc), obj); err != nil {
				t.Fatalf("%s: strict decode of %s: %v\n%s", name, tm.Kind, err, doc)
			}
			if cm, ok := obj.(*corev1.ConfigMap); ok {
				m.configMaps[cm.Name] = cm
			}
			m.kinds = append(m.kinds, tm.Kind)
		}
	}
	return m
}

func (m *manifests) deployment(t *testing.T) *appsv1.Deployment {
	t.Helper()
	if len(m.deployments) != 1 {
		t.Fatalf("%d Deployments, want 1 (kinds %v)", len(m.deployments), m.kinds)
	}
	return m.deployments[0]
}

func (m *manifests) configMap(t *testing.T, name string) *corev1.ConfigMap {
	t.Helper()
	cm, ok := m.configMaps[name]
	if !ok {
		t.Fatalf("no ConfigMap %s (have %v)", name, keys(m.configMaps))
	}
	return cm
}

func container(t *testing.T, spec corev1.PodSpec, name string) corev1.Container {
	t.Helper()
	for _, c := range append(append([]corev1.Container{}, spec.InitContainers...), spec.Containers...) {
		if c.Name == name {
			return c
		}
	}
	t.Fatalf("no container %s in pod", name)
	return corev1.Container{}
}

func keys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

func fullname() string { return fmt.Sprintf("%s-pgtenant", release) }
