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
