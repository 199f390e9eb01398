package cluster

import (
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
)

// ownerFile, in a cluster's directory, records the process that created the
// cluster: "<pid> <start time>\n<socket dir>\n". A cluster whose owner is
// gone (a test binary killed by a timeout, a demo killed with SIGKILL) is
// stale: the next Start in the same parent directory stops and removes it.
const ownerFile = "pgtenant-owner"

// dirPrefix starts the name of every cluster directory.
const dirPrefix = "pgtenant-"

// reaped remembers the parent directories already swept by this process.
var reaped sync.Map

// writeOwner records this process as the owner of the cluster in dir.
func writeOwner(dir, socketDir string) error {
	start, err := procStartTime(os.Getpid())
	if err != nil {
		start = "?"
	}
	content := fmt.Sprintf("%d %s\n%s\n", os.Getpid(), start, socketDir)
	if err := os.WriteFile(filepath.Join(dir, ownerFile), []byte(content), 0o600); err != nil {
		return fmt.Errorf("write owner file: %w", err)
	}
	return nil
}

// procStartTime returns field 22 of /proc/<pid>/stat (start time in clock
// ticks since boot), which tells a live process from a reused PID.
func procStartTime(pid int) (string, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return "", err
	}
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return "", errors.New("malformed stat")
	}
	fields := strings.Fields(s[i+1:]) // fields[0] is field 3 (state)
	if len(fields) < 20 {
		return "", errors.New("short stat")
	}
	return fields[19], nil
}

// ownerAlive reports whether the process recorded in dir's owner file still
// runs; true when in doubt (unreadable file, no /proc).
func ownerAlive(dir string) (alive bool, socketDir string) {
	b, err := os.ReadFile(filepath.Join(dir, ownerFile))
	if err != nil {
		return true, ""
	}
	first, rest, _ := strings.Cut(string(b), "\n")
	socketDir = strings.TrimSpace(rest)
	pidStr, start, _ := strings.Cut(strings.TrimSpace(first), " ")
	pid, err := strconv.Atoi(pidStr)
	if err != nil || pid <= 0 {
		return true, socketDir
	}
	if pid == os.Getpid() {
		return true, socketDir
	}
	if _, err := os.Stat("/proc/self/stat"); err != nil {
		return true, socketDir // cannot tell
	}
	got, err := procStartTime(pid)
	if err != nil {
		return false, socketDir // no such process
	}
	return start == "?" || got == start, socketDir
}

// reapStale stops and removes stale clusters in parent (once per process
// and parent). Only directories named pgtenant-*, owned by us, holding an
// owner file whose process is gone are touched.
func reapStale(parent string) {
	if _, done := reaped.LoadOrStore(parent, true); done {
		return
	}
	entries, err := os.ReadDir(parent)
	if err != nil {
		return
	}
	for _, e := range entries {
		if !e.IsDir() || !strings.HasPrefix(e.Name(), dirPrefix) {
			continue
		}
		dir := filepath.Join(parent, e.Name())
		// The directory may belong to the postgres OS user (when we run as
		// root); the owner file is always written by the creating process.
		if !ownedByUs(dir, true) || !ownedByUs(filepath.Join(dir, ownerFile), false) {
			continue
		}
		alive, sockDir := ownerAlive(dir)
		if alive {
			continue
		}
		dataDir := filepath.Join(dir, "data")
		if pid, err := readPostmasterPID(dataDir); err == nil && isPostmasterOf(pid, dataDir) {
			seg := readShmSeg(dataDir)
			if err := killServer(pid); err != nil {
				slog.Warn("cluster: stale cluster server did not die", "dir", dir, "error", err)
				continue
			}
			seg.remove()
		}
		if err := os.RemoveAll(dir); err != nil {
			slog.Warn("cluster: remove stale cluster", "dir", dir, "error", err)
			continue
		}
		if sockDir != "" && sockDir != filepath.Join(dir, "sock") && strings.HasPrefix(filepath.Base(sockDir), "pgsock-") {
			_ = os.RemoveAll(sockDir)
		}
		slog.Info("cluster: removed stale cluster of a dead process", "dir", dir)
	}
}

// ownedByUs reports whether path (not followed if a symlink) is a
// directory or regular file owned by this process's user or, if
// orServerUser and running as root, by the postgres OS user.
func ownedByUs(path string, orServerUser bool) bool {
	fi, err := os.Lstat(path)
	if err != nil || !(fi.IsDir() || fi.Mode().IsRegular()) {
		return false
	}
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return false
	}
	if int(st.Uid) == os.Geteuid() {
		return true
	}
	if !orServerUser {
		return false
	}
	u, err := serverUser()
	return err == nil && u.cred != nil && int(st.Uid) == u.uid
}

// isPostmasterOf reports whether pid is a live process serving dataDir, so
// a PID reused by an unrelated process is never signalled.
func isPostmasterOf(pid int, dataDir string) bool {
	if processGone(pid) {
		return false
	}
	if _, err := os.Stat("/proc/self/cmdline"); err != nil {
		return true // no /proc (not Linux): the live PID from the lock file is all we have
	}
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
	if err != nil {
		return false
	}
	for _, arg := range strings.Split(string(b), "\x00") {
		if arg == dataDir {
			return true
		}
	}
	return false
}
