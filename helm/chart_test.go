package helmtest

import (
	"crypto/sha256"
	"encoding/hex"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/util/intstr"

	"github.com/pgtenant/pgtenant/config"
)

func TestStandaloneObjects(t *testing.T) {
	m := render(t)
	// the proxy's ConfigMap, the setup Job's (a hook) and the Job
	want := []string{"ConfigMap", "ConfigMap", "Deployment", "Job", "PodDisruptionBudget", "Service", "ServiceAccount"}
	got := slices.Clone(m.kinds)
	slices.Sort(got)
	if !slices.Equal(got, want) {
		t.Fatalf("kinds %v, want %v", got, want)
	}
	d := m.deployment(t)
	if d.Name != fullname() || d.Namespace != namespace || *d.Spec.Replicas != 2 {
		t.Errorf("deployment %s/%s replicas %d", d.Namespace, d.Name, *d.Spec.Replicas)
	}
	pod := d.Spec.Template.Spec
	if pod.AutomountServiceAccountToken == nil || *pod.AutomountServiceAccountToken {
		t.Error("service account token is mounted")
	}
	if pod.TerminationGracePeriodSeconds == nil || *pod.TerminationGracePeriodSeconds <= 30 {
		t.Error("terminationGracePeriodSeconds must exceed the 30s shutdown_timeout")
	}
	for k, v := range d.Spec.Selector.MatchLabels {
		if d.Spec.Template.Labels[k] != v {
			t.Errorf("selector %s=%s does not match the pod labels", k, v)
		}
	}
	checkPodSecurity(t, pod)
	c := container(t, pod, "pgtenant")
	checkContainer(t, c)

	pdb := m.pdbs[0]
	if pdb.Spec.MinAvailable == nil || pdb.Spec.MinAvailable.IntValue() != 1 || pdb.Spec.Selector.MatchLabels["app.kubernetes.io/name"] != "pgtenant" {
		t.Errorf("pdb %+v", pdb.Spec)
	}
	svc := m.services[0]
	ports := map[string]corev1.ServicePort{}
	for _, p := range svc.Spec.Ports {
		ports[p.Name] = p
	}
	if ports["postgres"].Port != 6432 || ports["postgres"].TargetPort != intstr.FromString("pgtenant-pg") ||
		ports["admin"].Port != 9187 || ports["admin"].TargetPort != intstr.FromString("pgtenant-admin") {
		t.Errorf("service ports %+v", svc.Spec.Ports)
	}
	for k, v := range svc.Spec.Selector {
		if d.Spec.Template.Labels[k] != v {
			t.Errorf("service selector %s=%s does not match the pods", k, v)
		}
	}
	if m.serviceAccounts[0].AutomountServiceAccountToken == nil || *m.serviceAccounts[0].AutomountServiceAccountToken {
		t.Error("service account automounts its token")
	}
}

// checkPodSecurity asserts the pod-level hardening.
func checkPodSecurity(t *testing.T, pod corev1.PodSpec) {
	t.Helper()
	sc := pod.SecurityContext
	if sc == nil || sc.RunAsNonRoot == nil || !*sc.RunAsNonRoot || sc.RunAsUser == nil || *sc.RunAsUser == 0 ||
		sc.SeccompProfile == nil || sc.SeccompProfile.Type != corev1.SeccompProfileTypeRuntimeDefault {
		t.Errorf("pod securityContext %+v", sc)
	}
}

// checkContainer asserts the pgtenant container's hardening, probes, ports,
// mounts and secret references.
func checkContainer(t *testing.T, c corev1.Container) {
	t.Helper()
	sc := c.SecurityContext
	if sc == nil || sc.RunAsNonRoot == nil || !*sc.RunAsNonRoot || sc.ReadOnlyRootFilesystem == nil || !*sc.ReadOnlyRootFilesystem ||
		sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation || sc.Privileged == nil || *sc.Privileged ||
		sc.Capabilities == nil || !slices.Equal(sc.Capabilities.Drop, []corev1.Capability{"ALL"}) || len(sc.Capabilities.Add) != 0 {
		t.Errorf("container securityContext %+v", sc)
	}
	if !slices.Equal(c.Args, []string{"serve", "--config", "/etc/pgtenant/config.yaml"}) {
		t.Errorf("args %v", c.Args)
	}
	ports := map[string]int32{}
	for _, p := range c.Ports {
		ports[p.Name] = p.ContainerPort
	}
	if ports["pgtenant-pg"] != 6432 || ports["pgtenant-admin"] != 9187 {
		t.Errorf("container ports %+v", c.Ports)
	}
	probe := func(name string, p *corev1.Probe, path string) {
		if p == nil || p.HTTPGet == nil || p.HTTPGet.Path != path || p.HTTPGet.Port != intstr.FromString("pgtenant-admin") {
			t.Errorf("%s probe %+v, want GET %s on the admin port", name, p, path)
		}
	}
	probe("liveness", c.LivenessProbe, "/healthz")
	probe("readiness", c.ReadinessProbe, "/readyz")
	probe("startup", c.StartupProbe, "/healthz")
	if c.Resources.Requests.Cpu().IsZero() || c.Resources.Requests.Memory().IsZero() || c.Resources.Limits.Memory().IsZero() {
		t.Errorf("resources %+v", c.Resources)
	}
	mounts := map[string]corev1.VolumeMount{}
	for _, vm := range c.VolumeMounts {
		mounts[vm.Name] = vm
	}
	if m := mounts["pgtenant-config"]; m.MountPath != "/etc/pgtenant/config.yaml" || !m.ReadOnly {
		t.Errorf("config mount %+v", m)
	}
	if m := mounts["pgtenant-spool"]; m.MountPath != "/var/lib/pgtenant/spool" || m.ReadOnly {
		t.Errorf("spool mount %+v", m)
	}
	// Secrets only by reference.
	env := map[string]corev1.EnvVar{}
	for _, e := range c.Env {
		env[e.Name] = e
		if e.Value != "" && strings.Contains(strings.ToLower(e.Name), "password") {
			t.Errorf("env %s carries an inline value", e.Name)
		}
	}
	ref := func(name, secret, key string) {
		e, ok := env[name]
		if !ok || e.Value != "" || e.ValueFrom == nil || e.ValueFrom.SecretKeyRef == nil ||
			e.ValueFrom.SecretKeyRef.Name != secret || e.ValueFrom.SecretKeyRef.Key != key {
			t.Errorf("env %s = %+v, want a reference to secret %s key %s", name, e, secret, key)
		}
	}
	ref("PGTENANT_JWT_SECRET", "jwt-secret", "secret")
	ref("PGTENANT_REGION_EU_WEST_PASSWORD", "pg-eu", "password")
	ref("PGTENANT_REGION_US_EAST_PASSWORD", "pg-us", "pw")
}

func TestVolumes(t *testing.T) {
	m := render(t, `
jwt:
  keysSecret: jwt-keys
  publicKeyFiles: [issuer.pem]
  jwksFile: jwks.json
spool: {sizeLimit: 2Gi, medium: Memory}
`)
	pod := m.deployment(t).Spec.Template.Spec
	vols := map[string]corev1.Volume{}
	for _, v := range pod.Volumes {
		vols[v.Name] = v
	}
	if v := vols["pgtenant-config"]; v.ConfigMap == nil || v.ConfigMap.Name != fullname() {
		t.Errorf("config volume %+v", v)
	}
	if v := vols["pgtenant-spool"]; v.EmptyDir == nil || v.EmptyDir.Medium != corev1.StorageMediumMemory || v.EmptyDir.SizeLimit.String() != "2Gi" {
		t.Errorf("spool volume %+v", v)
	}
	if v := vols["pgtenant-jwt"]; v.Secret == nil || v.Secret.SecretName != "jwt-keys" {
		t.Errorf("jwt keys volume %+v", v)
	}
	cfg := loadRenderedConfig(t, m)
	if !slices.Equal(cfg.Auth.PublicKeys, []string{"/etc/pgtenant/jwt/issuer.pem"}) || cfg.Auth.JWKSFile != "/etc/pgtenant/jwt/jwks.json" {
		t.Errorf("auth keys in config: %v %q", cfg.Auth.PublicKeys, cfg.Auth.JWKSFile)
	}
}

// loadRenderedConfig loads the ConfigMap's config.yaml with pgtenant's own
// config.Load, with the secrets the pod would get from its env.
func loadRenderedConfig(t *testing.T, m *manifests) *config.Config {
	t.Helper()
	data := m.configMap(t, fullname()).Data["config.yaml"]
	path := filepath.Join(t.TempDir(), "config.yaml")
	if err := os.WriteFile(path, []byte(data), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv("PGTENANT_JWT_SECRET", "test-hmac-secret-of-sufficient-length-0123456789")
	t.Setenv("PGTENANT_REGION_EU_WEST_PASSWORD", "eu-pw")
	t.Setenv("PGTENANT_REGION_US_EAST_PASSWORD", "us-pw")
	cfg, err := config.Load(path)
	if err != nil {
		t.Fatalf("pgtenant cannot load the chart's config: %v\n%s", err, data)
	}
	return cfg
}

func TestRenderedConfigLoads(t *testing.T) {
	cfg := loadRenderedConfig(t, render(t, `
config:
  policy: {unknown_tables: allow, global_tables: [public.countries]}
  audit: {mode: strict}
`))
	if cfg.Listen != "0.0.0.0:6432" || cfg.AdminListen != "0.0.0.0:9187" {
		t.Errorf("listen %q admin %q", cfg.Listen, cfg.AdminListen)
	}
	eu, us := cfg.Regions["eu-west"], cfg.Regions["us-east"]
	if eu.Host != "pg-eu.db.svc" || eu.Port != 5432 || eu.Password != "eu-pw" || eu.Database != "app" || eu.SSLMode != "require" {
		t.Errorf("eu-west %+v", eu)
	}
	if us.Port != 5433 || us.Password != "us-pw" {
		t.Errorf("us-east %+v", us)
	}
	if string(cfg.Auth.Secret) != "test-hmac-secret-of-sufficient-length-0123456789" {
		t.Error("JWT secret not read from PGTENANT_JWT_SECRET")
	}
	if cfg.Audit.SpoolDir != "/var/lib/pgtenant/spool" || cfg.Audit.Mode != "strict" {
		t.Errorf("audit %+v", cfg.Audit)
	}
	if cfg.Policy.UnknownTables != "allow" || !cfg.Policy.RequireRLS || !slices.Equal(cfg.Policy.GlobalTables, []string{"public.countries"}) {
		t.Errorf("policy %+v", cfg.Policy)
	}
}

func TestChecksumAnnotationFollowsConfig(t *testing.T) {
	checksum := func(m *manifests) string {
		return m.deployment(t).Spec.Template.Annotations["checksum/pgtenant-config"]
	}
	base := render(t)
	sum := checksum(base)
	data := base.configMap(t, fullname()).Data["config.yaml"]
	h := sha256.Sum256([]byte(strings.TrimSuffix(data, "\n")))
	if sum != hex.EncodeToString(h[:]) {
		t.Fatalf("checksum %q is not the sha256 of the ConfigMap's config.yaml", sum)
	}
	if got := checksum(render(t, `config: {policy: {unknown_tables: allow}}`)); got == sum || got == "" {
		t.Error("checksum did not change with the policy")
	}
	if got := checksum(render(t, `regions: {eu-west: {host: pg-eu-2.db.svc}}`)); got == sum {
		t.Error("checksum did not change with a region host")
	}
	if got := checksum(render(t, `replicaCount: 5`)); got != sum {
		t.Error("checksum changed with an unrelated value")
	}
}

func TestInlineSecretsRefused(t *testing.T) {
	ch := loadChart(t, chartDir)
	for name, doc := range map[string]string{
		"region password":     `regions: {eu-west: {password: hunter2}}`,
		"region password_env": `regions: {eu-west: {password_env: X}}`,
		"hmac secret":         `config: {auth: {hs256_secret: hunter2}}`,
		"regions in config":   `config: {regions: {x: {host: h}}}`,
		"missing secret ref":  `regions: {ap-south: {host: h, user: u}}`,
	} {
		t.Run(name, func(t *testing.T) {
			_, err := renderChart(ch, parseValues(t, baseValues, doc))
			if err == nil {
				t.Fatalf("rendered with %s", doc)
			}
			if strings.Contains(err.Error(), "hunter2") {
				t.Fatalf("error echoes the secret: %v", err)
			}
		})
	}
	// No Secret object is ever rendered; nothing secret-looking is inlined.
	m := render(t)
	if slices.Contains(m.kinds, "Secret") {
		t.Error("chart renders a Secret")
	}
	for name, text := range m.raw {
		if strings.Contains(text, "hs256_secret:") || strings.Contains(text, "password:") {
			t.Errorf("%s inlines a secret key:\n%s", name, text)
		}
	}
}

func TestSingleReplicaHasNoPDB(t *testing.T) {
	if m := render(t, `replicaCount: 1`); len(m.pdbs) != 0 {
		t.Fatal("PodDisruptionBudget with one replica would block node drains")
	}
}

func TestServiceMonitorAndNetworkPolicy(t *testing.T) {
	m := render(t, `
metrics: {serviceMonitor: {enabled: true, labels: {release: kube-prometheus}}}
networkPolicy:
  enabled: true
  clientPodSelector: {matchLabels: {pgtenant-client: "true"}}
  adminFrom: [{namespaceSelector: {matchLabels: {kubernetes.io/metadata.name: monitoring}}}]
  egress: [{to: [{ipBlock: {cidr: 10.20.0.0/16}}], ports: [{port: 5432, protocol: TCP}]}]
`)
	if len(m.serviceMonitors) != 1 {
		t.Fatalf("kinds %v", m.kinds)
	}
	sm := m.serviceMonitors[0]
	if sm.APIVersion != "monitoring.coreos.com/v1" || sm.Labels["release"] != "kube-prometheus" || len(sm.Spec.Endpoints) != 1 ||
		sm.Spec.Endpoints[0].Port != "admin" || sm.Spec.Endpoints[0].Path != "/metrics" || sm.Spec.NamespaceSelector.MatchNames[0] != namespace {
		t.Errorf("servicemonitor %+v", sm)
	}
	np := m.networkPolicies[0]
	if len(np.Spec.Ingress) != 2 || np.Spec.Ingress[0].Ports[0].Port.IntValue() != 6432 ||
		np.Spec.Ingress[0].From[0].PodSelector.MatchLabels["pgtenant-client"] != "true" ||
		np.Spec.Ingress[1].Ports[0].Port.IntValue() != 9187 {
		t.Errorf("networkpolicy ingress %+v", np.Spec.Ingress)
	}
	if len(np.Spec.Egress) != 2 || np.Spec.Egress[0].Ports[0].Port.IntValue() != 53 || np.Spec.Egress[1].To[0].IPBlock.CIDR != "10.20.0.0/16" {
		t.Errorf("networkpolicy egress %+v", np.Spec.Egress)
	}
	if !slices.Contains(np.Spec.PolicyTypes, "Egress") {
		t.Errorf("policy types %v", np.Spec.PolicyTypes)
	}
}

func TestDefaultTagMatchesAppVersion(t *testing.T) {
	ch := loadChart(t, chartDir)
	c := container(t, render(t).deployment(t).Spec.Template.Spec, "pgtenant")
	if want := "ghcr.io/pgtenant/pgtenant:" + ch.Metadata.AppVersion; c.Image != want {
		t.Fatalf("image %q, want %q (update pgtenant.defaultTag with appVersion)", c.Image, want)
	}
	c = container(t, render(t, `image: {digest: "sha256:0123"}`).deployment(t).Spec.Template.Spec, "pgtenant")
	if c.Image != "ghcr.io/pgtenant/pgtenant@sha256:0123" {
		t.Fatalf("image by digest %q", c.Image)
	}
}

func TestValuesSchemaRejectsMistakes(t *testing.T) {
	ch := loadChart(t, chartDir)
	for name, doc := range map[string]string{
		"typo":          `replicaCont: 3`,
		"mode":          `mode: sidecars`,
		"port":          `ports: {postgres: 70000}`,
		"region typo":   `regions: {eu-west: {hots: x}}`,
		"key file path": `jwt: {keysSecret: k, publicKeyFiles: [../../etc/passwd]}`,
	} {
		t.Run(name, func(t *testing.T) {
			if _, err := renderChart(ch, parseValues(t, baseValues, doc)); err == nil || !strings.Contains(err.Error(), "schema") {
				t.Fatalf("values %s: err = %v, want a schema error", doc, err)
			}
		})
	}
}
