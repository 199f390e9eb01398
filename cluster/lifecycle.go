package cluster

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// maxPortTries bounds how often Start picks a new port after losing a race
// for one to another process.
const maxPortTries = 8

// startOnFreePort starts the server on port, or on a free port when port is
// 0, retrying with another port while the server reports the address in use.
func (c *Cluster) startOnFreePort(ctx context.Context, port int) error {
	if port != 0 {
		c.Port = port
		if err := writeSettings(c.DataDir, c.SocketDir, port, c.settings, c.owner); err != nil {
			return err
		}
		return c.pgctlStart(ctx)
	}
	var err error
	for range maxPortTries {
		if c.portReserve {
			releasePort(c.Port)
			c.portReserve = false
		}
		if c.Port, err = nextPort(); err != nil {
			return err
		}
		c.portReserve = true
		if err = writeSettings(c.DataDir, c.SocketDir, c.Port, c.settings, c.owner); err != nil {
			return err
		}
		err = c.pgctlStart(ctx)
		if err == nil || !errors.Is(err, errAddrInUse) || ctx.Err() != nil {
			return err
		}
	}
	return err
}

// errAddrInUse marks a start that failed because the port was taken.
var errAddrInUse = errors.New("address already in use")

// pgctlStart runs pg_ctl start and waits until the server accepts
// connections. Errors carry the new part of the server log.
func (c *Cluster) pgctlStart(ctx context.Context) error {
	offset := fileSize(c.logFile)
	err := c.owner.run(ctx, c.Dir, filepath.Join(c.BinDir, "pg_ctl"),
		"-D", c.DataDir, "-l", c.logFile, "-w", "-t", "30", "start")
	if err == nil {
		c.running = true
		return nil
	}
	tail := logTail(c.logFile, offset)
	if strings.Contains(tail, "Address already in use") || strings.Contains(tail, "could not bind") {
		err = fmt.Errorf("%w: %w", errAddrInUse, err)
	}
	// A failed pg_ctl -w may leave a server starting up; make sure it is gone.
	if pid, perr := readPostmasterPID(c.DataDir); perr == nil && isPostmasterOf(pid, c.DataDir) {
		_ = killServer(pid)
		_ = c.removeLockFiles()
	}
	return fmt.Errorf("start server on port %d: %w\nserver log:\n%s", c.Port, err, tail)
}

// Stop shuts the server down (pg_ctl stop -m fast) and keeps its data, so
// Restart can start it again. Stopping a stopped cluster is a no-op.
func (c *Cluster) Stop(ctx context.Context) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return ErrClosed
	}
	if !c.running {
		return nil
	}
	return c.pgctlStop(ctx, "fast")
}

// pgctlStop runs pg_ctl stop with the given mode; the caller holds c.mu.
func (c *Cluster) pgctlStop(ctx context.Context, mode string) error {
	offset := fileSize(c.logFile)
	err := c.owner.run(ctx, c.Dir, filepath.Join(c.BinDir, "pg_ctl"),
		"-D", c.DataDir, "-m", mode, "-w", "-t", "30", "stop")
	if err != nil {
		return fmt.Errorf("cluster %s: stop (%s): %w\nserver log:\n%s", c.Name, mode, err, logTail(c.logFile, offset))
	}
	c.running = false
	return nil
}

// Restart starts the server again after Stop or Kill, on the same port and
// with the same data. It fails if the server is running.
func (c *Cluster) Restart(ctx context.Context) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return ErrClosed
	}
	if c.running {
		return fmt.Errorf("cluster %s: restart: server is running", c.Name)
	}
	if err := c.pgctlStart(ctx); err != nil {
		return fmt.Errorf("cluster %s: restart: %w", c.Name, err)
	}
	c.killedShm = shmSeg{} // the new server took over or removed it
	return nil
}

// Kill sends SIGKILL to the postmaster and all its processes, as a crash
// would, and waits until they are gone. The data is kept; Restart recovers.
func (c *Cluster) Kill() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return ErrClosed
	}
	if !c.running {
		return fmt.Errorf("cluster %s: kill: server is not running", c.Name)
	}
	pid, err := readPostmasterPID(c.DataDir)
	if err != nil {
		return fmt.Errorf("cluster %s: kill: %w", c.Name, err)
	}
	if !isPostmasterOf(pid, c.DataDir) {
		return fmt.Errorf("cluster %s: kill: postmaster %d is not running", c.Name, pid)
	}
	seg := readShmSeg(c.DataDir)
	if err := killServer(pid); err != nil {
		return fmt.Errorf("cluster %s: kill: %w", c.Name, err)
	}
	c.running = false
	c.killedShm = seg
	if err := c.removeLockFiles(); err != nil {
		return fmt.Errorf("cluster %s: kill: %w", c.Name, err)
	}
	return nil
}

// removeLockFiles deletes the lock files of a killed postmaster. It cannot
// remove them itself, and a zombie left with the same PID (when nothing
// reaps it) would make the next start believe it still runs.
func (c *Cluster) removeLockFiles() error {
	sock := filepath.Join(c.SocketDir, ".s.PGSQL."+strconv.Itoa(c.Port))
	for _, p := range []string{filepath.Join(c.DataDir, "postmaster.pid"), sock + ".lock", sock} {
		if err := os.Remove(p); err != nil && !errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("remove stale %s: %w", filepath.Base(p), err)
		}
	}
	return nil
}

// killServer SIGKILLs the postmaster pid and its child processes, as a
// crash would, and waits until all of them are gone. The postmaster is
// stopped first so it cannot fork while its children are listed.
func killServer(pid int) error {
	_ = syscall.Kill(pid, syscall.SIGSTOP)
	pids := append([]int{pid}, childrenOf(pid)...)
	for _, p := range pids {
		_ = syscall.Kill(p, syscall.SIGKILL)
	}
	return waitGone(pids, 10*time.Second)
}

// Close stops the server immediately and removes the cluster directory.
// It is idempotent; later calls return nil.
func (c *Cluster) Close() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return nil
	}
	c.closed = true
	var errs []error
	if !c.running {
		// A server we lost track of (a pg_ctl interrupted by its context)
		// must not outlive its directory.
		if pid, err := readPostmasterPID(c.DataDir); err == nil && isPostmasterOf(pid, c.DataDir) {
			seg := readShmSeg(c.DataDir)
			if err := killServer(pid); err != nil {
				errs = append(errs, err)
			}
			seg.remove()
		}
		c.killedShm.remove()
	}
	if c.running {
		ctx, cancel := context.WithTimeout(context.Background(), 40*time.Second)
		err := c.pgctlStop(ctx, "immediate")
		cancel()
		if err != nil {
			// Last resort: the directory must not be removed under a live server.
			if pid, perr := readPostmasterPID(c.DataDir); perr == nil && isPostmasterOf(pid, c.DataDir) {
				seg := readShmSeg(c.DataDir)
				if kerr := killServer(pid); kerr != nil {
					errs = append(errs, err, kerr)
				}
				seg.remove()
			} else {
				errs = append(errs, err)
			}
			c.running = false
		}
	}
	if c.portReserve {
		releasePort(c.Port)
		c.portReserve = false
	}
	if c.Dir != "" {
		if err := os.RemoveAll(c.Dir); err != nil {
			errs = append(errs, fmt.Errorf("remove %s: %w", c.Dir, err))
		}
	}
	if c.ownSockDir {
		if err := os.RemoveAll(c.SocketDir); err != nil {
			errs = append(errs, fmt.Errorf("remove %s: %w", c.SocketDir, err))
		}
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("cluster %s: close: %w", c.Name, err)
	}
	return nil
}

// String describes the cluster for logs (no secrets).
func (c *Cluster) String() string {
	return "cluster " + c.Name + " at " + c.Addr() + " (" + strconv.Quote(c.Dir) + ")"
}
