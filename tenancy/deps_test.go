package tenancy

import (
	"os/exec"
	"strings"
	"testing"
)

// TestLeaf keeps package tenancy a leaf: it imports only the standard
// library, so every package can share its types without pulling in another.
func TestLeaf(t *testing.T) {
	out, err := exec.Command("go", "list", "-deps", "-f", "{{if not .Standard}}{{.ImportPath}}{{end}}", ".").CombinedOutput()
	if err != nil {
		t.Fatalf("go list: %v\n%s", err, out)
	}
	for _, path := range strings.Fields(string(out)) {
		if path != "github.com/pgtenant/pgtenant/tenancy" {
			t.Errorf("package tenancy imports %s; it may import only the standard library", path)
		}
	}
}
