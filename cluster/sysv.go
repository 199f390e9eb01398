package cluster

import (
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// shmSeg identifies the small System V shared memory segment a postmaster
// keeps (line 7 of postmaster.pid: "<key> <shmid>"). A SIGKILLed postmaster
// cannot remove it; a restart in the same data directory reuses it, but a
// cluster that is closed or reaped after a kill must remove it itself.
type shmSeg struct {
	key, id int
	ok      bool
}

// readShmSeg reads the segment from dataDir/postmaster.pid.
func readShmSeg(dataDir string) shmSeg {
	b, err := os.ReadFile(filepath.Join(dataDir, "postmaster.pid"))
	if err != nil {
		return shmSeg{}
	}
	lines := strings.Split(string(b), "\n")
	if len(lines) < 7 {
		return shmSeg{}
	}
	f := strings.Fields(lines[6])
	if len(f) != 2 {
		return shmSeg{}
	}
	key, err1 := strconv.Atoi(f[0])
	id, err2 := strconv.Atoi(f[1])
	if err1 != nil || err2 != nil || id < 0 {
		return shmSeg{}
	}
	return shmSeg{key: key, id: id, ok: true}
}

// remove deletes the segment if it still has the recorded key and no
// process is attached to it (so a reused id is never touched).
func (s shmSeg) remove() {
	if !s.ok {
		return
	}
	var ds unix.SysvShmDesc
	if _, err := unix.SysvShmCtl(s.id, unix.IPC_STAT, &ds); err != nil {
		return
	}
	if int(int32(ds.Perm.Key)) != s.key || ds.Nattch != 0 {
		return
	}
	_, _ = unix.SysvShmCtl(s.id, unix.IPC_RMID, nil)
}
