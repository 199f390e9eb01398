package parser

import (
	"encoding/json"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

var update = flag.Bool("update", false, "rewrite golden files")

// Each testdata/golden/*.sql is summarised and compared with the .json beside it.
func TestGoldenSummaries(t *testing.T) {
	p := newTestParser(t)
	files, err := filepath.Glob("testdata/golden/*.sql")
	if err != nil || len(files) == 0 {
		t.Fatalf("no golden inputs: %v", err)
	}
	for _, f := range files {
		t.Run(filepath.Base(f), func(t *testing.T) {
			sql, err := os.ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			sum, _, err := p.Parse(string(sql))
			if err != nil {
				t.Fatal(err)
			}
			got, err := json.MarshalIndent(sum, "", "  ")
			if err != nil {
				t.Fatal(err)
			}
			want := strings.TrimSuffix(f, ".sql") + ".json"
			if *update {
				if err := os.WriteFile(want, append(got, '\n'), 0o644); err != nil {
					t.Fatal(err)
				}
				return
			}
			exp, err := os.ReadFile(want)
			if err != nil {
				t.Fatalf("%v (run go test -update)", err)
			}
			if strings.TrimSpace(string(exp)) != strings.TrimSpace(string(got)) {
				t.Errorf("summary of %s changed:\n%s", f, got)
			}
		})
	}
}
