package bench

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"
)

// clockTicks is USER_HZ, the unit of utime and stime in /proc/<pid>/stat.
// It is 100 on every Linux architecture Go supports (the kernel exports
// it to user space as a constant, independent of CONFIG_HZ).
const clockTicks = 100

// ProcSample is one reading of a process's resource use.
type ProcSample struct {
	CPU      time.Duration // utime + stime so far
	RSSBytes int64         // VmRSS
	HWMBytes int64         // VmHWM: peak RSS
}

// sampleProc reads /proc/<pid>/stat and /proc/<pid>/status.
func sampleProc(pid int) (ProcSample, error) {
	cpu, err := procCPU(pid)
	if err != nil {
		return ProcSample{}, err
	}
	status, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return ProcSample{}, fmt.Errorf("read status of pid %d: %w", pid, err)
	}
	rss, hwm, err := parseStatusMemory(status)
	if err != nil {
		return ProcSample{}, fmt.Errorf("pid %d: %w", pid, err)
	}
	return ProcSample{CPU: cpu, RSSBytes: rss, HWMBytes: hwm}, nil
}

// procCPU returns utime+stime of pid.
func procCPU(pid int) (time.Duration, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, fmt.Errorf("read stat of pid %d: %w", pid, err)
	}
	return parseStatCPU(b)
}

// parseStatCPU extracts utime (field 14) and stime (field 15) from a
// /proc/<pid>/stat line.
func parseStatCPU(b []byte) (time.Duration, error) {
	st, err := parseStat(b)
	return st.self, err
}

// procStat is what the harness reads from a /proc/<pid>/stat line.
type procStat struct {
	ppid   int
	self   time.Duration // utime + stime (fields 14, 15)
	reaped time.Duration // cutime + cstime (16, 17): children waited for
}

// parseStat parses a /proc/<pid>/stat line. The command name (field 2) may
// hold spaces and parentheses, so fields are counted after its last ')'.
func parseStat(b []byte) (procStat, error) {
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return procStat{}, fmt.Errorf("stat: no command field in %q", truncate(string(b), 80))
	}
	fields := strings.Fields(string(b[i+1:]))
	// fields[0] is field 3 (state), fields[1] the ppid; utime is field 14.
	if len(fields) < 15 {
		return procStat{}, fmt.Errorf("stat: %d fields after the command, want at least 15", len(fields))
	}
	var ticks [4]int64
	for k, f := range fields[11:15] {
		n, err := strconv.ParseInt(f, 10, 64)
		if err != nil || n < 0 {
			return procStat{}, fmt.Errorf("stat: bad cpu time %q", f)
		}
		ticks[k] = n
	}
	ppid, err := strconv.Atoi(fields[1])
	if err != nil {
		return procStat{}, fmt.Errorf("stat: bad ppid %q", fields[1])
	}
	tick := func(n int64) time.Duration { return time.Duration(n) * time.Second / clockTicks }
	return procStat{ppid: ppid, self: tick(ticks[0] + ticks[1]), reaped: tick(ticks[2] + ticks[3])}, nil
}

// parseStatusMemory extracts VmRSS and VmHWM (in bytes) from /proc/<pid>/status.
func parseStatusMemory(b []byte) (rss, hwm int64, err error) {
	found := 0
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		key, val, ok := strings.Cut(sc.Text(), ":")
		if !ok || (key != "VmRSS" && key != "VmHWM") {
			continue
		}
		f := strings.Fields(val)
		if len(f) != 2 || f[1] != "kB" {
			return 0, 0, fmt.Errorf("status: unexpected %s value %q", key, val)
		}
		kb, perr := strconv.ParseInt(f[0], 10, 64)
		if perr != nil || kb < 0 {
			return 0, 0, fmt.Errorf("status: bad %s value %q", key, val)
		}
		if key == "VmRSS" {
			rss = kb * 1024
		} else {
			hwm = kb * 1024
		}
		found++
	}
	if found != 2 {
		return 0, 0, fmt.Errorf("status: VmRSS or VmHWM missing (process gone or a kernel thread?)")
	}
	return rss, hwm, nil
}

// truncate shortens s to at most n bytes for error messages.
func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "..."
}
