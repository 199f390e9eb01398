package cluster

import (
	"fmt"
	"os"
	"os/user"
	"path/filepath"
	"strconv"
	"syscall"
)

// osUser is the operating-system account that owns a cluster's files and
// runs its server processes.
type osUser struct {
	name     string
	uid, gid int
	cred     *syscall.Credential // nil: run as the current process's user
}

// serverUser picks the account to run PostgreSQL as: the `postgres` user
// when this process is root (PostgreSQL refuses root), else ourselves.
func serverUser() (osUser, error) {
	if os.Geteuid() != 0 {
		return osUser{name: "", uid: os.Geteuid(), gid: os.Getegid()}, nil
	}
	u, err := user.Lookup("postgres")
	if err != nil {
		return osUser{}, fmt.Errorf("running as root and cannot find the postgres OS user to run the server as: %w", err)
	}
	uid, err := strconv.Atoi(u.Uid)
	if err != nil {
		return osUser{}, fmt.Errorf("postgres OS user: uid %q: %w", u.Uid, err)
	}
	gid, err := strconv.Atoi(u.Gid)
	if err != nil {
		return osUser{}, fmt.Errorf("postgres OS user: gid %q: %w", u.Gid, err)
	}
	if uid == 0 {
		return osUser{}, fmt.Errorf("postgres OS user has uid 0; PostgreSQL cannot run as root")
	}
	return osUser{
		name: u.Username, uid: uid, gid: gid,
		cred: &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid), Groups: []uint32{}},
	}, nil
}

// own makes path belong to the server user (a no-op when not switching users).
func (u osUser) own(path string) error {
	if u.cred == nil {
		return nil
	}
	if err := os.Lchown(path, u.uid, u.gid); err != nil {
		return fmt.Errorf("chown %s to %s: %w", path, u.name, err)
	}
	return nil
}

// checkTraversable verifies that the server user can reach dir: every
// ancestor must grant it search (x) permission. Only checked when switching
// users, where a 0700 parent owned by root (e.g. t.TempDir()) would make
// initdb fail with an obscure error.
func (u osUser) checkTraversable(dir string) error {
	if u.cred == nil {
		return nil
	}
	for p := filepath.Dir(dir); ; p = filepath.Dir(p) {
		fi, err := os.Stat(p)
		if err != nil {
			return fmt.Errorf("stat %s: %w", p, err)
		}
		st, ok := fi.Sys().(*syscall.Stat_t)
		perm := fi.Mode().Perm()
		canSearch := perm&0o001 != 0 ||
			(ok && int(st.Uid) == u.uid && perm&0o100 != 0) ||
			(ok && int(st.Gid) == u.gid && perm&0o010 != 0)
		if !canSearch {
			return fmt.Errorf("directory %s (mode %v) is not searchable by the %s OS user that runs the server; use a parent directory it can traverse (e.g. leave Config.Dir empty)", p, perm, u.name)
		}
		if p == filepath.Dir(p) {
			return nil
		}
	}
}
