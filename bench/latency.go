package bench

import (
	"bufio"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
)

// Latency summarises per-transaction latencies, in milliseconds.
type Latency struct {
	Count  int64   `json:"count"`   // successful transactions logged
	Failed int64   `json:"failed"`  // transactions logged as failed or skipped
	MeanMs float64 `json:"mean_ms"` // arithmetic mean
	P50Ms  float64 `json:"p50_ms"`  // median
	P99Ms  float64 `json:"p99_ms"`  // 99th percentile (nearest rank)
	MaxMs  float64 `json:"max_ms"`  // slowest transaction
}

// txLog accumulates per-transaction latencies in microseconds.
type txLog struct {
	us     []int64
	failed int64
}

// readTxLogs reads every pgbench per-transaction log file in dir (pgbench
// --log --log-prefix=dir/tx writes tx.<pid> and tx.<pid>.<thread>).
func readTxLogs(dir string) (Latency, error) {
	files, err := filepath.Glob(filepath.Join(dir, "tx.*"))
	if err != nil {
		return Latency{}, fmt.Errorf("list transaction logs: %w", err)
	}
	if len(files) == 0 {
		return Latency{}, fmt.Errorf("no pgbench transaction log in %s", dir)
	}
	var l txLog
	for _, name := range files {
		if err := l.readFile(name); err != nil {
			return Latency{}, err
		}
	}
	return l.summary(), nil
}

func (l *txLog) readFile(name string) error {
	f, err := os.Open(name)
	if err != nil {
		return fmt.Errorf("open transaction log: %w", err)
	}
	defer f.Close()
	if err := l.read(f); err != nil {
		return fmt.Errorf("%s: %w", filepath.Base(name), err)
	}
	return nil
}

// read parses lines of the form
//
//	client_id transaction_no time script_no time_epoch time_us [schedule_lag] [retries]
//
// where time is the latency in microseconds, or "skipped", "failed",
// "serialization" or "deadlock" for a transaction that did not complete.
func (l *txLog) read(r io.Reader) error {
	sc := bufio.NewScanner(r)
	line := 0
	for sc.Scan() {
		line++
		f := strings.Fields(sc.Text())
		if len(f) == 0 {
			continue
		}
		if len(f) < 6 {
			return fmt.Errorf("line %d: %d fields, want at least 6", line, len(f))
		}
		switch f[2] {
		case "skipped", "failed", "serialization", "deadlock":
			l.failed++
			continue
		}
		us, err := strconv.ParseInt(f[2], 10, 64)
		if err != nil || us < 0 {
			return fmt.Errorf("line %d: bad latency %q", line, f[2])
		}
		l.us = append(l.us, us)
	}
	if err := sc.Err(); err != nil {
		return fmt.Errorf("read: %w", err)
	}
	return nil
}

// summary computes the statistics; an empty log gives zeros.
func (l *txLog) summary() Latency {
	s := Latency{Count: int64(len(l.us)), Failed: l.failed}
	if len(l.us) == 0 {
		return s
	}
	slices.Sort(l.us)
	var sum float64
	for _, v := range l.us {
		sum += float64(v)
	}
	s.MeanMs = sum / float64(len(l.us)) / 1000
	s.P50Ms = float64(percentile(l.us, 50)) / 1000
	s.P99Ms = float64(percentile(l.us, 99)) / 1000
	s.MaxMs = float64(l.us[len(l.us)-1]) / 1000
	return s
}

// percentile returns the nearest-rank p-th percentile of sorted (ascending,
// non-empty) values: the smallest value with at least p% of values <= it.
func percentile(sorted []int64, p float64) int64 {
	rank := int(math.Ceil(p / 100 * float64(len(sorted))))
	rank = min(max(rank, 1), len(sorted))
	return sorted[rank-1]
}
