package cluster

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
)

// EnvBinDir names the environment variable that overrides where the
// PostgreSQL server binaries (initdb, pg_ctl, postgres) are looked up.
const EnvBinDir = "PGTENANT_PG_BINDIR"

// ErrNoBinaries reports that no PostgreSQL server binaries were found.
var ErrNoBinaries = errors.New("cluster: no PostgreSQL server binaries found")

// debianPGRoot is where Debian/Ubuntu install versioned server binaries.
var debianPGRoot = "/usr/lib/postgresql"

// BinDir finds the PostgreSQL server binaries: $PGTENANT_PG_BINDIR, else
// `pg_config --bindir` if it holds initdb, else the newest
// /usr/lib/postgresql/*/bin. The error wraps ErrNoBinaries when nothing is
// found; a $PGTENANT_PG_BINDIR without the binaries is a different error.
func BinDir() (string, error) {
	if dir := os.Getenv(EnvBinDir); dir != "" {
		if !hasServerBinaries(dir) {
			// Not ErrNoBinaries: an explicit setting that is wrong must fail
			// loudly rather than make tests skip.
			return "", fmt.Errorf("cluster: $%s=%q has no executable initdb and pg_ctl", EnvBinDir, dir)
		}
		return dir, nil
	}
	if out, err := exec.Command("pg_config", "--bindir").Output(); err == nil {
		if dir := strings.TrimSpace(string(out)); dir != "" && hasServerBinaries(dir) {
			return dir, nil
		}
	}
	if dir := newestDebianBinDir(debianPGRoot); dir != "" {
		return dir, nil
	}
	return "", fmt.Errorf("%w: set $%s, put pg_config on PATH, or install the PostgreSQL server package", ErrNoBinaries, EnvBinDir)
}

// hasServerBinaries reports whether dir holds executable initdb and pg_ctl.
func hasServerBinaries(dir string) bool {
	for _, name := range []string{"initdb", "pg_ctl"} {
		fi, err := os.Stat(filepath.Join(dir, name))
		if err != nil || fi.IsDir() || fi.Mode().Perm()&0o111 == 0 {
			return false
		}
	}
	return true
}

// newestDebianBinDir returns root/<highest numeric version>/bin that holds the
// server binaries, or "".
func newestDebianBinDir(root string) string {
	entries, err := os.ReadDir(root)
	if err != nil {
		return ""
	}
	type cand struct {
		ver []int
		dir string
	}
	var cands []cand
	for _, e := range entries {
		ver, ok := parseVersion(e.Name())
		if !ok {
			continue
		}
		dir := filepath.Join(root, e.Name(), "bin")
		if hasServerBinaries(dir) {
			cands = append(cands, cand{ver, dir})
		}
	}
	if len(cands) == 0 {
		return ""
	}
	sort.Slice(cands, func(i, j int) bool { return versionLess(cands[j].ver, cands[i].ver) })
	return cands[0].dir
}

// parseVersion parses "15" or "9.6" into its numeric parts.
func parseVersion(s string) ([]int, bool) {
	parts := strings.Split(s, ".")
	ver := make([]int, 0, len(parts))
	for _, p := range parts {
		n, err := strconv.Atoi(p)
		if err != nil || n < 0 {
			return nil, false
		}
		ver = append(ver, n)
	}
	return ver, true
}

// versionLess orders versions numerically, part by part.
func versionLess(a, b []int) bool {
	for i := 0; i < len(a) && i < len(b); i++ {
		if a[i] != b[i] {
			return a[i] < b[i]
		}
	}
	return len(a) < len(b)
}
