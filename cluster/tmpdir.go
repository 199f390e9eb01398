package cluster

import (
	"os"
	"syscall"
)

// EnvTmpDir names the environment variable that sets the default parent
// directory of clusters (and of the initdb template cache).
const EnvTmpDir = "PGTENANT_PG_TMPDIR"

// ramDir is preferred as the default parent: clusters on tmpfs start
// several times faster than on a busy disk (initdb and the template copy
// are write-bound), and throw-away data needs no disk.
const ramDir = "/dev/shm"

// minRAMDirFree is the free space ramDir needs to be used (Docker's default
// /dev/shm is only 64 MiB).
const minRAMDirFree = 1 << 30

// defaultParent is the parent directory used when Config.Dir is empty:
// $PGTENANT_PG_TMPDIR, else /dev/shm when it is a shared tmpfs-like
// directory with at least 1 GiB free, else os.TempDir().
func defaultParent() string {
	if d := os.Getenv(EnvTmpDir); d != "" {
		return d
	}
	if ramDirUsable(ramDir) {
		return ramDir
	}
	return os.TempDir()
}

// ramDirUsable reports whether dir is a sticky, world-writable directory
// (like /tmp) with enough free space.
func ramDirUsable(dir string) bool {
	fi, err := os.Lstat(dir)
	if err != nil || !fi.IsDir() || fi.Mode()&os.ModeSticky == 0 || fi.Mode().Perm()&0o003 != 0o003 {
		return false
	}
	var st syscall.Statfs_t
	if err := syscall.Statfs(dir, &st); err != nil {
		return false
	}
	return uint64(st.Bavail)*uint64(st.Bsize) >= minRAMDirFree
}
