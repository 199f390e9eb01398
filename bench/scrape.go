package bench

import (
	"bufio"
	"context"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// auditLatency is what a pgtenant's metrics say of the audit's durability
// work so far: the spool's fdatasyncs and the audit database's batch writes
// (what a strict statement waits for), each a count and the seconds spent,
// and what pgtenant added to the statements in all.
// Two samples around a run give the latency the disk and the database gave
// under that run's load, where the ceiling's probes (ceiling.go) time them
// on an idle machine.
type auditLatency struct {
	fsyncs, fsyncSeconds float64
	writes, writeSeconds float64
	// statements and overheadSeconds: the time pgtenant itself added to
	// the statements (parse, policy, and the audit's wait)
	statements, overheadSeconds float64
}

// The metric families auditLatency reads (metrics/audit.go, metrics.go).
const (
	metricFsyncs       = "pgtenant_audit_spool_fsyncs_total"
	metricFsyncSeconds = "pgtenant_audit_spool_fsync_seconds_total"
	metricWrites       = "pgtenant_audit_write_duration_seconds_count"
	metricWriteSeconds = "pgtenant_audit_write_duration_seconds_sum"
	metricStatements   = "pgtenant_statement_overhead_seconds_count"
	metricOverhead     = "pgtenant_statement_overhead_seconds_sum"
)

// scrapeAuditLatency reads url (a pgtenant /metrics), summing each family
// over its labels.
func scrapeAuditLatency(ctx context.Context, url string) (auditLatency, error) {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return auditLatency{}, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return auditLatency{}, fmt.Errorf("scrape %s: %w", url, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return auditLatency{}, fmt.Errorf("scrape %s: %s", url, resp.Status)
	}
	var l auditLatency
	sums := map[string]*float64{
		metricFsyncs: &l.fsyncs, metricFsyncSeconds: &l.fsyncSeconds,
		metricWrites: &l.writes, metricWriteSeconds: &l.writeSeconds,
		metricStatements: &l.statements, metricOverhead: &l.overheadSeconds,
	}
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		line := sc.Text()
		if line == "" || line[0] == '#' {
			continue
		}
		name, rest, ok := strings.Cut(line, " ")
		if i := strings.IndexByte(line, '{'); i >= 0 && i < len(name) {
			name = line[:i]
			_, rest, ok = strings.Cut(line[strings.IndexByte(line, '}')+1:], " ")
		}
		if !ok {
			continue
		}
		v, err := strconv.ParseFloat(strings.TrimSpace(rest), 64)
		if err != nil {
			continue
		}
		if sum, ok := sums[name]; ok {
			*sum += v
		}
	}
	if err := sc.Err(); err != nil {
		return auditLatency{}, fmt.Errorf("scrape %s: %w", url, err)
	}
	return l, nil
}

// inRunMs returns the mean fdatasync latency, batch write latency and
// overhead per statement in ms between two samples, nil where there were
// none.
func inRunMs(before, after auditLatency) (fsync, write, overhead *float64) {
	mean := func(n, secs float64) *float64 {
		if n <= 0 {
			return nil
		}
		v := secs / n * 1000
		return &v
	}
	return mean(after.fsyncs-before.fsyncs, after.fsyncSeconds-before.fsyncSeconds),
		mean(after.writes-before.writes, after.writeSeconds-before.writeSeconds),
		mean(after.statements-before.statements, after.overheadSeconds-before.overheadSeconds)
}
