package bench

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// clusterCPU returns the CPU time the cluster in dataDir has used: the
// postmaster's own and that of the children it reaped (backends that
// exited during a run count too), plus every live child's (backends and
// background workers). Around a run it is PostgreSQL's cost of the run,
// the audit's writes included.
func clusterCPU(dataDir string) (time.Duration, error) {
	b, err := os.ReadFile(filepath.Join(dataDir, "postmaster.pid"))
	if err != nil {
		return 0, fmt.Errorf("cluster cpu: %w", err)
	}
	pm, err := strconv.Atoi(strings.TrimSpace(strings.SplitN(string(b), "\n", 2)[0]))
	if err != nil {
		return 0, fmt.Errorf("cluster cpu: postmaster.pid: %w", err)
	}
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return 0, fmt.Errorf("cluster cpu: %w", err)
	}
	var total time.Duration
	found := false
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		stat, err := os.ReadFile(filepath.Join("/proc", e.Name(), "stat"))
		if err != nil {
			continue // exited meanwhile: the postmaster's reaped time has it
		}
		st, err := parseStat(stat)
		if err != nil {
			continue
		}
		switch {
		case pid == pm:
			total += st.self + st.reaped
			found = true
		case st.ppid == pm:
			total += st.self
		}
	}
	if !found {
		return 0, fmt.Errorf("cluster cpu: postmaster %d is not running", pm)
	}
	return total, nil
}
