package bench

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/user"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// process is a child server process (PgBouncer or pgtenant) the harness
// started and must stop.
type process struct {
	name    string
	cmd     *exec.Cmd
	logFile string
	done    chan struct{} // closed when the process has exited
	err     error         // Wait's result, valid after done
}

// startProcess starts cmd with its output in logFile. The child gets
// SIGTERM if the harness dies, so an interrupted run leaves nothing behind.
func startProcess(name string, cmd *exec.Cmd, logFile string, cred *syscall.Credential) (*process, error) {
	f, err := os.OpenFile(logFile, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, fmt.Errorf("%s: open log: %w", name, err)
	}
	cmd.Stdout, cmd.Stderr = f, f
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGTERM, Setpgid: true, Credential: cred}
	if err := cmd.Start(); err != nil {
		f.Close()
		return nil, fmt.Errorf("%s: start: %w", name, err)
	}
	p := &process{name: name, cmd: cmd, logFile: logFile, done: make(chan struct{})}
	go func() {
		p.err = cmd.Wait()
		f.Close()
		close(p.done)
	}()
	return p, nil
}

// pid returns the process id.
func (p *process) pid() int { return p.cmd.Process.Pid }

// exited reports whether the process has ended.
func (p *process) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// stop sends SIGTERM, waits up to timeout, then kills the process.
func (p *process) stop(timeout time.Duration) error {
	if p.exited() {
		return nil
	}
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
		return nil
	case <-time.After(timeout):
	}
	_ = p.cmd.Process.Kill()
	<-p.done
	return fmt.Errorf("%s: did not stop within %s after SIGTERM; killed", p.name, timeout)
}

// quit sends SIGQUIT (a Go program prints every goroutine's stack and
// exits) and waits up to timeout, then kills the process.
func (p *process) quit(timeout time.Duration) {
	if p.exited() {
		return
	}
	_ = p.cmd.Process.Signal(syscall.SIGQUIT)
	select {
	case <-p.done:
	case <-time.After(timeout):
		_ = p.cmd.Process.Kill()
		<-p.done
	}
}

// errorf wraps err with the process name and the tail of its log.
func (p *process) errorf(format string, args ...any) error {
	tail := "(empty log)"
	if b, err := os.ReadFile(p.logFile); err == nil && len(b) > 0 {
		tail = lastLines(string(b), 8)
	}
	return fmt.Errorf("%s: %s; log: %s", p.name, fmt.Sprintf(format, args...), tail)
}

// waitReady polls probe until it succeeds, the process exits or timeout
// passes.
func (p *process) waitReady(ctx context.Context, timeout time.Duration, probe func(context.Context) error) error {
	deadline := time.Now().Add(timeout)
	var last error
	for {
		if p.exited() {
			return p.errorf("exited during start-up (%v)", p.err)
		}
		pctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		last = probe(pctx)
		cancel()
		if last == nil {
			return nil
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if time.Now().After(deadline) {
			return p.errorf("not ready after %s: %v", timeout, last)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// startOnFreePorts runs start, which starts a server on ports it takes
// from freePort, up to three times while it fails because one of them was
// taken between freePort and the server's bind: another process on this
// machine (a parallel test, another server) can take a port in that
// moment, and the server then exits with "address already in use".
func startOnFreePorts[T any](start func() (T, error)) (T, error) {
	var v T
	var err error
	for range 3 {
		v, err = start()
		if err == nil || !strings.Contains(strings.ToLower(err.Error()), "address already in use") {
			break
		}
	}
	return v, err
}

// freePort returns a TCP port on 127.0.0.1 that was free a moment ago.
func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("find a free port: %w", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// serverCredential returns the credential to run servers that refuse root
// (PgBouncer) with: the postgres OS user when we are root, else nil (run
// as ourselves). uid and gid are for chown.
func serverCredential() (cred *syscall.Credential, uid, gid int, err error) {
	if os.Geteuid() != 0 {
		return nil, -1, -1, nil
	}
	u, err := user.Lookup("postgres")
	if err != nil {
		return nil, 0, 0, fmt.Errorf("running as root and no postgres OS user to run PgBouncer as: %w", err)
	}
	uid, err1 := strconv.Atoi(u.Uid)
	gid, err2 := strconv.Atoi(u.Gid)
	if err := errors.Join(err1, err2); err != nil {
		return nil, 0, 0, fmt.Errorf("postgres OS user: %w", err)
	}
	if uid == 0 {
		return nil, 0, 0, errors.New("postgres OS user has uid 0")
	}
	return &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid), Groups: []uint32{}}, uid, gid, nil
}
