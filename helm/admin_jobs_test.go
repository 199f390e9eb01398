package helmtest

import (
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/yaml"

	"github.com/pgtenant/pgtenant/config"
)

const sealingValues = `
sealing:
  enabled: true
  schedule: "*/5 * * * *"
  keySecret: {name: seal-key, key: seal.pem}
  publicKeySecret: {name: seal-pub, key: seal.pub}
  checkpoints: {existingClaim: pgtenant-checkpoints}
`

// envNames lists the names of a container's environment variables.
func envNames(c corev1.Container) []string {
	var out []string
	for _, e := range c.Env {
		out = append(out, e.Name)
	}
	slices.Sort(out)
	return out
}

// secretRefs maps a container's environment variables to secret/key.
func secretRefs(c corev1.Container) map[string]string {
	out := map[string]string{}
	for _, e := range c.Env {
		if e.ValueFrom != nil && e.ValueFrom.SecretKeyRef != nil {
			out[e.Name] = e.ValueFrom.SecretKeyRef.Name + "/" + e.ValueFrom.SecretKeyRef.Key
		}
	}
	return out
}

// configEnvVars lists every *_env key's value in a rendered config.yaml.
func configEnvVars(t *testing.T, data string) []string {
	t.Helper()
	var m map[string]any
	if err := yaml.Unmarshal([]byte(data), &m); err != nil {
		t.Fatal(err)
	}
	var out []string
	var walk func(v any)
	walk = func(v any) {
		switch x := v.(type) {
		case map[string]any:
			for k, val := range x {
				if s, ok := val.(string); ok && strings.HasSuffix(k, "_env") && s != "" {
					out = append(out, s)
				}
				walk(val)
			}
		case []any:
			for _, e := range x {
				walk(e)
			}
		}
	}
	walk(m)
	slices.Sort(out)
	return out
}

// withoutAdminPasswords is the config with each region's admin_password_env removed.
func withoutAdminPasswords(t *testing.T, data string) map[string]any {
	t.Helper()
	var m map[string]any
	if err := yaml.Unmarshal([]byte(data), &m); err != nil {
		t.Fatal(err)
	}
	for _, r := range m["regions"].(map[string]any) {
		delete(r.(map[string]any), "admin_password_env")
	}
	return m
}

// loadWithEnv loads data as pgtenant would in a pod whose environment has
// exactly names set (the admin commands with LoadAdmin, the proxy with Load).
func loadWithEnv(t *testing.T, data string, names []string, admin bool) *config.Config {
	t.Helper()
	for _, v := range []string{"PGTENANT_JWT_SECRET", "PGTENANT_REGION_EU_WEST_PASSWORD", "PGTENANT_REGION_US_EAST_PASSWORD",
		"PGTENANT_REGION_EU_WEST_ADMIN_PASSWORD", "PGTENANT_REGION_US_EAST_ADMIN_PASSWORD"} {
		t.Setenv(v, "")
		os.Unsetenv(v)
	}
	for _, n := range names {
		t.Setenv(n, "value-of-"+n+"-0123456789abcdef0123456789")
	}
	path := filepath.Join(t.TempDir(), "config.yaml")
	if err := os.WriteFile(path, []byte(data), 0o600); err != nil {
		t.Fatal(err)
	}
	load := config.Load
	if admin {
		load = config.LoadAdmin
	}
	cfg, err := load(path)
	if err != nil {
		t.Fatalf("pgtenant cannot load the config with env %v: %v\n%s", names, err, data)
	}
	return cfg
}

// The setup Job, the sealing CronJob and the proxy share one configuration;
// each gets exactly the secrets it uses: the proxy the JWT secret and the
// service passwords, the Job the admin and service passwords, the CronJob
// the admin passwords and the signing key. The proxy never gets an admin
// password or the signing key.
func TestAdminJobsShareTheConfigAndGetTheirSecrets(t *testing.T) {
	m := render(t, sealingValues)
	proxyCfg := m.configMap(t, fullname()).Data["config.yaml"]
	jobCfg := m.configMap(t, fullname()+"-admin").Data["config.yaml"]
	sealCfg := m.configMap(t, fullname()+"-seal").Data["config.yaml"]
	if strings.TrimSpace(jobCfg) != strings.TrimSpace(sealCfg) {
		t.Fatalf("setup Job and sealing CronJob configs differ:\n%s\n---\n%s", jobCfg, sealCfg)
	}
	if !reflect.DeepEqual(withoutAdminPasswords(t, jobCfg), withoutAdminPasswords(t, proxyCfg)) || strings.Contains(proxyCfg, "admin_password") {
		t.Fatalf("the admin config is not the proxy's plus admin passwords:\nproxy:\n%s\nadmin:\n%s", proxyCfg, jobCfg)
	}

	// the Job: a pre-install/pre-upgrade hook after its ConfigMap, setup --apply
	if len(m.jobs) != 1 {
		t.Fatalf("%d Jobs", len(m.jobs))
	}
	job := m.jobs[0]
	if job.Annotations["helm.sh/hook"] != "pre-install,pre-upgrade" || job.Annotations["helm.sh/hook-weight"] != "0" {
		t.Errorf("job annotations %v", job.Annotations)
	}
	if cm := m.configMap(t, fullname()+"-admin"); cm.Annotations["helm.sh/hook"] != "pre-install,pre-upgrade" || cm.Annotations["helm.sh/hook-weight"] != "-10" {
		t.Errorf("the Job's ConfigMap must be a hook created before it: %v", cm.Annotations)
	}
	jc := job.Spec.Template.Spec.Containers[0]
	if strings.Join(jc.Args, " ") != "setup --config /etc/pgtenant/config.yaml --apply" {
		t.Errorf("job args %v", jc.Args)
	}
	wantJob := []string{"PGTENANT_REGION_EU_WEST_ADMIN_PASSWORD", "PGTENANT_REGION_EU_WEST_PASSWORD", "PGTENANT_REGION_US_EAST_ADMIN_PASSWORD", "PGTENANT_REGION_US_EAST_PASSWORD"}
	if got := envNames(jc); !slices.Equal(got, wantJob) {
		t.Errorf("job env %v, want %v", got, wantJob)
	}
	refs := secretRefs(jc)
	for name, want := range map[string]string{
		"PGTENANT_REGION_EU_WEST_ADMIN_PASSWORD": "pg-eu-admin/password", "PGTENANT_REGION_US_EAST_ADMIN_PASSWORD": "pg-us-admin/password",
		"PGTENANT_REGION_EU_WEST_PASSWORD": "pg-eu/password", "PGTENANT_REGION_US_EAST_PASSWORD": "pg-us/pw",
	} {
		if refs[name] != want {
			t.Errorf("job %s from %q, want %q", name, refs[name], want)
		}
	}
	if v := job.Spec.Template.Spec.Volumes[0]; v.ConfigMap == nil || v.ConfigMap.Name != fullname()+"-admin" {
		t.Errorf("job config volume %+v", v)
	}
	cfg := loadWithEnv(t, jobCfg, envNames(jc), true)
	if eu := cfg.Regions["eu-west"]; eu.AdminUser != "postgres" || eu.AdminPassword == "" || eu.Password == "" {
		t.Errorf("job config region %+v", eu)
	}

	// the CronJob: audit seal with the key, the checkpoint PVC at checkpoint_dir
	if len(m.cronJobs) != 1 {
		t.Fatalf("%d CronJobs", len(m.cronJobs))
	}
	cj := m.cronJobs[0]
	pod := cj.Spec.JobTemplate.Spec.Template.Spec
	sc := pod.Containers[0]
	if cj.Spec.Schedule != "*/5 * * * *" || strings.Join(sc.Args, " ") != "audit seal --config /etc/pgtenant/config.yaml --key /etc/pgtenant/seal/seal.pem" {
		t.Errorf("cronjob %q %v", cj.Spec.Schedule, sc.Args)
	}
	wantSeal := []string{"PGTENANT_REGION_EU_WEST_ADMIN_PASSWORD", "PGTENANT_REGION_US_EAST_ADMIN_PASSWORD"}
	if got := envNames(sc); !slices.Equal(got, wantSeal) {
		t.Errorf("cronjob env %v, want %v", got, wantSeal)
	}
	scfg := loadWithEnv(t, sealCfg, envNames(sc), true)
	mounts := map[string]string{}
	for _, vm := range sc.VolumeMounts {
		mounts[vm.Name] = vm.MountPath
	}
	vols := map[string]corev1.Volume{}
	for _, v := range pod.Volumes {
		vols[v.Name] = v
	}
	if scfg.Audit.CheckpointDir != "/var/lib/pgtenant/checkpoints" || mounts["pgtenant-checkpoints"] != scfg.Audit.CheckpointDir ||
		vols["pgtenant-checkpoints"].PersistentVolumeClaim == nil || vols["pgtenant-checkpoints"].PersistentVolumeClaim.ClaimName != "pgtenant-checkpoints" {
		t.Errorf("checkpoint dir %q mounted at %q from %+v", scfg.Audit.CheckpointDir, mounts["pgtenant-checkpoints"], vols["pgtenant-checkpoints"])
	}
	if vols["pgtenant-seal-key"].Secret == nil || vols["pgtenant-seal-key"].Secret.SecretName != "seal-key" || mounts["pgtenant-seal-key"] != "/etc/pgtenant/seal" {
		t.Errorf("seal key volume %+v at %q", vols["pgtenant-seal-key"], mounts["pgtenant-seal-key"])
	}
	if scfg.Audit.SealPublicKey != "/etc/pgtenant/seal-public/seal.pub" || mounts["pgtenant-seal-public"] != "/etc/pgtenant/seal-public" {
		t.Errorf("seal_public_key %q, public key mounted at %q", scfg.Audit.SealPublicKey, mounts["pgtenant-seal-public"])
	}
	if vols["pgtenant-config"].ConfigMap == nil || vols["pgtenant-config"].ConfigMap.Name != fullname()+"-seal" {
		t.Errorf("cronjob config volume %+v", vols["pgtenant-config"])
	}

	// the proxy: JWT and service passwords only, no admin secret, no key
	d := m.deployment(t)
	pc := container(t, d.Spec.Template.Spec, "pgtenant")
	wantProxy := []string{"PGTENANT_JWT_SECRET", "PGTENANT_REGION_EU_WEST_PASSWORD", "PGTENANT_REGION_US_EAST_PASSWORD"}
	if got := envNames(pc); !slices.Equal(got, wantProxy) {
		t.Errorf("proxy env %v, want %v", got, wantProxy)
	}
	if got := configEnvVars(t, proxyCfg); !slices.Equal(got, wantProxy) {
		t.Errorf("proxy config names env vars %v, want exactly the pod's %v", got, wantProxy)
	}
	for _, v := range d.Spec.Template.Spec.Volumes {
		if v.Secret != nil && (v.Secret.SecretName == "seal-key" || strings.Contains(v.Secret.SecretName, "admin")) {
			t.Errorf("proxy mounts secret %s", v.Secret.SecretName)
		}
	}
	pcfg := loadWithEnv(t, proxyCfg, envNames(pc), false)
	if pcfg.Audit.Init {
		t.Error("proxy config has audit.init on: it would need the admin password the Job holds")
	}
	if pcfg.Regions["us-east"].AdminUser != "dba" || pcfg.Regions["us-east"].AdminPassword != "" {
		t.Errorf("proxy region %+v", pcfg.Regions["us-east"])
	}
}

// audit-only init, and the refusals that name the missing value.
func TestAdminJobsOptionsAndRefusals(t *testing.T) {
	m := render(t, `init: {command: audit}`)
	if args := strings.Join(m.jobs[0].Spec.Template.Spec.Containers[0].Args, " "); args != "audit init --config /etc/pgtenant/config.yaml" {
		t.Errorf("audit-only init args %q", args)
	}
	m = render(t, `init: {enabled: false}`)
	if len(m.jobs) != 0 || loadRenderedConfig(t, m).Audit.Init != true {
		t.Errorf("init disabled: %d jobs, the proxy must init the audit itself", len(m.jobs))
	}
	ch := loadChart(t, chartDir)
	noAdmin := "regions: {eu-west: {host: h, user: u, passwordSecret: {name: s}}}\njwt: {hs256Secret: {name: j}}\n"
	for _, tc := range []struct {
		docs []string
		want string
	}{
		{[]string{noAdmin}, "regions.eu-west.admin_user and regions.eu-west.adminPasswordSecret"},
		{[]string{noAdmin, "init: {enabled: false}\nsealing: {enabled: true, keySecret: {name: k}, checkpoints: {existingClaim: c}}"}, "sealing runs as each region's admin role"},
		{[]string{baseValues, "sealing: {enabled: true, checkpoints: {existingClaim: c}}"}, "sealing.keySecret.name"},
		{[]string{baseValues, "sealing: {enabled: true, keySecret: {name: k}}"}, "sealing.checkpoints.existingClaim"},
		{[]string{baseValues, "regions: {eu-west: {admin_password_env: X}}"}, "admin_password_env"},
		{[]string{baseValues, "config: {audit: {checkpoint_dir: /x}}"}, "config.audit.checkpoint_dir is set by the chart"},
	} {
		_, err := renderChart(ch, parseValues(t, tc.docs...))
		values, want := strings.Join(tc.docs[1:], ""), tc.want
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: %v, want an error naming %s", values, err, want)
		}
	}
}
