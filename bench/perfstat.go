package bench

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// Syscall and context-switch counts of a proxy during a measured run come
// from `perf stat` attached to its process (the raw_syscalls:sys_enter
// tracepoint and the context-switches software event), which costs the
// proxy far less than strace. Without a usable perf the figures are absent.

// perfEvents are the events counted, in the order perfCounts reads them.
var perfEvents = []string{"raw_syscalls:sys_enter", "context-switches"}

// perfCounter is a running `perf stat -p`.
type perfCounter struct {
	cmd *exec.Cmd
	out string
}

// PerfCounts are the counts of one measured run.
type PerfCounts struct {
	Syscalls        int64
	ContextSwitches int64
}

// perfUsable reports whether perf can count the tracepoint here (it needs
// the binary, and root or a permissive perf_event_paranoid).
func perfUsable() bool {
	path, err := exec.LookPath("perf")
	if err != nil {
		return false
	}
	out, err := exec.Command(path, "stat", "-x,", "-e", strings.Join(perfEvents, ","), "--", "true").CombinedOutput()
	if err != nil {
		return false
	}
	_, err = parsePerfCSV(out)
	return err == nil
}

// startPerf attaches perf stat to pid (all its threads) until stop.
func startPerf(pid int, dir string) (*perfCounter, error) {
	f, err := os.CreateTemp(dir, "perf-*.csv")
	if err != nil {
		return nil, fmt.Errorf("perf: %w", err)
	}
	out := f.Name()
	_ = f.Close()
	cmd := exec.Command("perf", "stat", "-x,", "-e", strings.Join(perfEvents, ","), "-p", strconv.Itoa(pid), "-o", out)
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("perf: %w", err)
	}
	return &perfCounter{cmd: cmd, out: out}, nil
}

// stop ends the count (perf writes its totals on SIGINT) and returns it.
func (p *perfCounter) stop() (PerfCounts, error) {
	defer os.Remove(p.out)
	_ = p.cmd.Process.Signal(syscall.SIGINT)
	done := make(chan error, 1)
	go func() { done <- p.cmd.Wait() }()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		_ = p.cmd.Process.Kill()
		<-done
		return PerfCounts{}, fmt.Errorf("perf stat did not stop")
	}
	b, err := os.ReadFile(p.out)
	if err != nil {
		return PerfCounts{}, fmt.Errorf("perf: %w", err)
	}
	return parsePerfCSV(b)
}

// parsePerfCSV reads perf stat -x, output: "count,unit,event,...". An event
// perf could not count shows "<not supported>" or "<not counted>".
func parsePerfCSV(b []byte) (PerfCounts, error) {
	got := map[string]int64{}
	for _, line := range bytes.Split(b, []byte("\n")) {
		f := strings.Split(string(line), ",")
		if len(f) < 3 || strings.HasPrefix(f[0], "#") {
			continue
		}
		n, err := strconv.ParseInt(strings.TrimSpace(f[0]), 10, 64)
		if err != nil {
			continue
		}
		got[f[2]] = n
	}
	sys, ok1 := got[perfEvents[0]]
	cs, ok2 := got[perfEvents[1]]
	if !ok1 || !ok2 {
		return PerfCounts{}, fmt.Errorf("perf stat: no counts in %q", truncate(string(b), 200))
	}
	return PerfCounts{Syscalls: sys, ContextSwitches: cs}, nil
}
