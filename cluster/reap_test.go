package cluster_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"github.com/pgtenant/pgtenant/cluster"
	"github.com/pgtenant/pgtenant/test/pgtest"
)

// envOrphanParent makes the test binary act as a process that starts a
// cluster and exits without closing it.
const envOrphanParent = "PGTENANT_TEST_ORPHAN_PARENT"

func TestStaleClusterOfDeadProcessIsReaped(t *testing.T) {
	if parent := os.Getenv(envOrphanParent); parent != "" {
		c, err := cluster.Start(context.Background(), cluster.Config{Name: "orphan", Dir: parent})
		if err != nil {
			fmt.Println("ERROR", err)
			os.Exit(3)
		}
		pid, _ := os.ReadFile(filepath.Join(c.DataDir, "postmaster.pid"))
		first, _, _ := strings.Cut(string(pid), "\n")
		fmt.Printf("DIR %s\nPID %s\n", c.Dir, first)
		os.Exit(0) // no Close: the cluster outlives its owner
	}
	pgtest.Start(t, cluster.Config{Name: "probe"}).Close() // skips without binaries

	parent, err := os.MkdirTemp(scratchParent(), "reap-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(parent) })
	if err := os.Chmod(parent, 0o755); err != nil { // the postgres OS user must traverse it
		t.Fatal(err)
	}
	cmd := exec.Command(os.Args[0], "-test.run=^TestStaleClusterOfDeadProcessIsReaped$", "-test.count=1")
	cmd.Env = append(os.Environ(), envOrphanParent+"="+parent)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		t.Fatalf("orphan helper: %v\n%s", err, out.String())
	}
	var dir string
	var pid int
	for _, line := range strings.Split(out.String(), "\n") {
		if v, ok := strings.CutPrefix(line, "DIR "); ok {
			dir = v
		}
		if v, ok := strings.CutPrefix(line, "PID "); ok {
			pid, _ = strconv.Atoi(strings.TrimSpace(v))
		}
	}
	if dir == "" || pid == 0 {
		t.Fatalf("orphan helper output:\n%s", out.String())
	}
	t.Cleanup(func() { _ = syscall.Kill(pid, syscall.SIGKILL) }) // if the reaper fails
	if err := syscall.Kill(pid, 0); err != nil {
		t.Fatalf("orphaned postmaster %d not running: %v", pid, err)
	}

	c := pgtest.Start(t, cluster.Config{Name: "reaper", Dir: parent})
	if _, err := os.Stat(dir); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("stale cluster dir %s still exists (err %v)", dir, err)
	}
	if st, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid)); err == nil && !strings.Contains(string(st), ") Z") {
		t.Errorf("orphaned postmaster %d still running: %s", pid, st)
	}
	if _, err := os.Stat(c.Dir); err != nil {
		t.Errorf("new cluster dir: %v", err)
	}
}
