package helmtest

import (
	"slices"
	"strings"
	"testing"

	"helm.sh/helm/v3/pkg/chart"
	corev1 "k8s.io/api/core/v1"
)

func TestSidecarModeRendersOnlyConfig(t *testing.T) {
	m := render(t, `mode: sidecar`)
	// the configuration, and the database setup Job with its own copy (a hook)
	if !slices.Equal(m.kinds, []string{"ConfigMap", "ConfigMap", "Job"}) {
		t.Fatalf("sidecar mode renders %v, want only the ConfigMaps and the setup Job", m.kinds)
	}
	cfg := loadRenderedConfig(t, m)
	if cfg.Listen != "127.0.0.1:6432" || cfg.AdminListen != "0.0.0.0:9187" {
		t.Fatalf("sidecar listens on %q (admin %q): clients must be the pod itself, probes come from the kubelet", cfg.Listen, cfg.AdminListen)
	}
}

// exampleChart loads the sidecar example with the pgtenant chart as its
// dependency, as `helm dependency build` would arrange it.
func exampleChart(t *testing.T) *chart.Chart {
	t.Helper()
	app := loadChart(t, exampleDir)
	app.SetDependencies(loadChart(t, chartDir))
	return app
}

func TestSidecarHelperInExampleApp(t *testing.T) {
	for _, native := range []bool{false, true} {
		name := "container"
		if native {
			name = "native"
		}
		t.Run(name, func(t *testing.T) {
			doc := `pgtenant: {sidecar: {native: false}}`
			if native {
				doc = `pgtenant: {sidecar: {native: true}}`
			}
			out, err := renderChart(exampleChart(t), parseValues(t, doc))
			if err != nil {
				t.Fatalf("render example: %v", err)
			}
			m := decode(t, out)
			d := m.deployment(t)
			pod := d.Spec.Template.Spec
			if len(pod.Containers) != 2 {
				t.Fatalf("containers %d, want the app and pgtenant", len(pod.Containers))
			}
			c := container(t, pod, "pgtenant")
			checkContainerSidecar(t, c)
			if native != (c.RestartPolicy != nil && *c.RestartPolicy == corev1.ContainerRestartPolicyAlways) {
				t.Errorf("native=%v but restartPolicy %v", native, c.RestartPolicy)
			}
			// The volumes point at the ConfigMap the dependency renders.
			var cmName string
			for _, v := range pod.Volumes {
				if v.Name == "pgtenant-config" && v.ConfigMap != nil {
					cmName = v.ConfigMap.Name
				}
			}
			cm := m.configMap(t, cmName)
			cfgText := cm.Data["config.yaml"]
			if !strings.Contains(cfgText, "listen: 127.0.0.1:6432") || !strings.Contains(cfgText, "password_env: PGTENANT_REGION_EU_WEST_PASSWORD") {
				t.Errorf("sidecar config:\n%s", cfgText)
			}
			ann := d.Spec.Template.Annotations
			if ann["checksum/pgtenant-config"] == "" || ann["prometheus.io/port"] != "9187" || ann["prometheus.io/scrape"] != "true" {
				t.Errorf("pod annotations %v", ann)
			}
			if slices.Contains(m.kinds, "Service") || slices.Contains(m.kinds, "PodDisruptionBudget") {
				t.Errorf("sidecar mode rendered standalone objects: %v", m.kinds)
			}
		})
	}
}

// checkContainerSidecar is checkContainer for the example's single region.
func checkContainerSidecar(t *testing.T, c corev1.Container) {
	t.Helper()
	sc := c.SecurityContext
	if sc == nil || !*sc.ReadOnlyRootFilesystem || *sc.AllowPrivilegeEscalation || !*sc.RunAsNonRoot ||
		!slices.Equal(sc.Capabilities.Drop, []corev1.Capability{"ALL"}) {
		t.Errorf("sidecar securityContext %+v", sc)
	}
	if c.LivenessProbe == nil || c.LivenessProbe.HTTPGet.Path != "/healthz" || c.ReadinessProbe == nil || c.ReadinessProbe.HTTPGet.Path != "/readyz" {
		t.Errorf("sidecar probes %+v %+v", c.LivenessProbe, c.ReadinessProbe)
	}
	var pw *corev1.EnvVar
	for i := range c.Env {
		if c.Env[i].Name == "PGTENANT_REGION_EU_WEST_PASSWORD" {
			pw = &c.Env[i]
		}
	}
	if pw == nil || pw.Value != "" || pw.ValueFrom.SecretKeyRef.Name != "pgtenant-eu-west" {
		t.Errorf("sidecar region password env %+v", pw)
	}
}

func TestSidecarHelperRefusesStandaloneValues(t *testing.T) {
	_, err := renderChart(exampleChart(t), parseValues(t, `pgtenant: {mode: standalone}`))
	if err == nil || !strings.Contains(err.Error(), "set pgtenant.mode to sidecar") {
		t.Fatalf("render with mode standalone: %v", err)
	}
}
