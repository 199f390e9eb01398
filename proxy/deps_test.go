package proxy

import (
	"os/exec"
	"strings"
	"testing"
)

// TestNoCgoOrPoolDependency keeps the proxy free of cgo and of the audit's
// connection pool: it reaches the statement checker and the audit only
// through its interfaces and package tenancy (see doc.go), so it builds and
// is tested with CGO_ENABLED=0. The test's own dependencies count too.
func TestNoCgoOrPoolDependency(t *testing.T) {
	out, err := exec.Command("go", "list", "-deps", "-test",
		"-f", "{{if not .Standard}}{{.ImportPath}} {{len .CgoFiles}}{{end}}", ".").CombinedOutput()
	if err != nil {
		t.Fatalf("go list: %v\n%s", err, out)
	}
	forbidden := []string{
		"github.com/pgtenant/pgtenant/policy",
		"github.com/pgtenant/pgtenant/audit",
		"github.com/pgtenant/pgtenant/parser",
		"github.com/pganalyze/pg_query_go",
		"github.com/jackc/pgx/v5/pgxpool",
	}
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		f := strings.Fields(line) // "path n", or "path [q.test] n" for path compiled for q's test
		path, cgoFiles := f[0], f[len(f)-1]
		for _, bad := range forbidden {
			if path == bad || strings.HasPrefix(path, bad+"/") {
				t.Errorf("proxy depends on %s: use the types of package tenancy and an interface the proxy declares", path)
			}
		}
		if cgoFiles != "0" {
			t.Errorf("proxy depends on %s, which uses cgo", path)
		}
	}
}
