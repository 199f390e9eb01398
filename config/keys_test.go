package config

import (
	"strings"
	"testing"
)

// An unknown key is reported with file, line, full path and the nearest known key.
func TestUnknownKeyNamesFileAndLine(t *testing.T) {
	t.Setenv("TEST_JWT_SECRET", strings.Repeat("k", 40))
	t.Setenv("TEST_EU_PW", "pw")
	for _, tc := range []struct{ body, want string }{
		{minimal + "bogus_key: 1\n", ":6: unknown key bogus_key"},
		{minimal + "audit:\n  mode: async\n  chekpoint_dir: /x\n", ":8: unknown key audit.chekpoint_dir (did you mean audit.checkpoint_dir?)"},
		{"regions:\n  eu-west:\n    host: h\n    user: app\n    admin_usr: postgres\n", ":5: unknown key regions.eu-west.admin_usr (did you mean regions.eu-west.admin_user?)"},
		{"regions:\n  eu-west: { host: h, user: app, prot: 5 }\n", ":2: unknown key regions.eu-west.prot (did you mean regions.eu-west.port?)"},
	} {
		path := writeConfig(t, tc.body)
		_, err := Load(path)
		if err == nil || !strings.Contains(err.Error(), path+tc.want) {
			t.Errorf("error %v, want %q", err, path+tc.want)
		}
	}
}

// A YAML syntax error names the file and line too.
func TestYAMLSyntaxErrorNamesLine(t *testing.T) {
	path := writeConfig(t, "listen: a\n  bad: [\n")
	_, err := Load(path)
	if err == nil || !strings.Contains(err.Error(), path) || !strings.Contains(err.Error(), "line") {
		t.Fatalf("error %v", err)
	}
}

// FuzzCheckKeys: any document gets a clean error or none, never a panic, and
// an error always names the file.
func FuzzCheckKeys(f *testing.F) {
	for _, s := range []string{minimal, "regions:\n  x: &a {host: h}\n  y: *a\n", "audit: [1, 2]\n", "<<: {listen: x}\n", "policy:\n  tenant_tables: {a: b}\n", "regions: {x: {bogus: 1}}"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, doc string) {
		if err := checkKeys("f.yaml", []byte(doc)); err != nil && !strings.Contains(err.Error(), "f.yaml") {
			t.Fatalf("error without the file name: %v", err)
		}
	})
}
