package bench

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/pgtenant/pgtenant/cluster"
)

// Endpoint is where and as whom pgbench connects.
type Endpoint struct {
	Host     string
	Port     int
	User     string
	Database string
	// Password goes to pgbench as PGPASSWORD (for pgtenant: the token).
	Password string
	// Options, when set, goes to pgbench as PGOPTIONS.
	Options string
}

// pgbenchRun is one pgbench invocation.
type pgbenchRun struct {
	Bin      string
	Endpoint Endpoint
	Script   string            // path of the custom script (-f)
	Vars     map[string]string // -D name=value
	Mode     string            // -M simple|extended|prepared
	Clients  int               // -c
	Threads  int               // -j
	Duration time.Duration     // -T, whole seconds (at least 1)
	LogDir   string            // when set: --log --log-prefix=LogDir/tx
}

// pgbenchGrace is how long pgbench may take beyond -T (connecting, the
// last transactions, disconnecting) before the target counts as hung.
const pgbenchGrace = 90 * time.Second

// ErrHung reports a target that stopped answering.
var ErrHung = errors.New("hung")

// pgbenchSummary is what pgbench prints at the end of a run.
type pgbenchSummary struct {
	Processed int64   // number of transactions actually processed
	Failed    int64   // number of failed transactions
	TPS       float64 // tps, without initial connection time
}

var (
	reProcessed = regexp.MustCompile(`(?m)^number of transactions actually processed: (\d+)`)
	reFailed    = regexp.MustCompile(`(?m)^number of failed transactions: (\d+)`)
	reTPS       = regexp.MustCompile(`(?m)^tps = ([0-9]+(?:\.[0-9]+)?) \(without initial connection time\)`)
)

// findPgbench returns pgbench from PATH or the PostgreSQL binary directory.
func findPgbench() (string, error) {
	if p, err := exec.LookPath("pgbench"); err == nil {
		return p, nil
	}
	if dir, err := cluster.BinDir(); err == nil {
		p := filepath.Join(dir, "pgbench")
		if fi, err := os.Stat(p); err == nil && !fi.IsDir() {
			return p, nil
		}
	}
	return "", errors.New("pgbench not found on PATH or in the PostgreSQL binary directory (Debian: apt-get install postgresql-contrib)")
}

// args returns pgbench's command line; the password is never in it.
func (r pgbenchRun) args() []string {
	secs := max(1, int(r.Duration.Round(time.Second)/time.Second))
	a := []string{"-n", "-f", r.Script, "-M", r.Mode,
		"-c", strconv.Itoa(r.Clients), "-j", strconv.Itoa(r.Threads), "-T", strconv.Itoa(secs)}
	for _, k := range sortedKeys(r.Vars) {
		a = append(a, "-D", k+"="+r.Vars[k])
	}
	if r.LogDir != "" {
		a = append(a, "--log", "--log-prefix="+filepath.Join(r.LogDir, "tx"))
	}
	return a
}

// env is the environment pgbench runs with: ours without any PG* variable,
// plus the endpoint's.
func (r pgbenchRun) env() []string {
	e := r.Endpoint
	env := append(withoutPG(os.Environ()), "PGHOST="+e.Host, "PGPORT="+strconv.Itoa(e.Port), "PGUSER="+e.User,
		"PGDATABASE="+e.Database, "PGPASSWORD="+e.Password, "PGSSLMODE=disable",
		"PGAPPNAME=pgtenant-bench", "PGCONNECT_TIMEOUT=10")
	if e.Options != "" {
		env = append(env, "PGOPTIONS="+e.Options)
	}
	return env
}

// run executes pgbench and parses its summary. A run in which any client
// aborted, or any transaction failed, is an error: its figures would be
// meaningless.
func (r pgbenchRun) run(ctx context.Context) (pgbenchSummary, error) {
	// Generous bound: the run itself, connection set-up and teardown.
	limit := r.Duration + pgbenchGrace
	rctx, cancel := context.WithTimeout(ctx, limit)
	defer cancel()
	cmd := exec.CommandContext(rctx, r.Bin, r.args()...)
	cmd.Env = r.env()
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	cmd.WaitDelay = 5 * time.Second
	err := cmd.Run()
	if err != nil && ctx.Err() == nil && errors.Is(rctx.Err(), context.DeadlineExceeded) {
		return pgbenchSummary{}, fmt.Errorf("pgbench -M %s -c %d -T %s: %w: still running after %s, the target stopped answering: %s",
			r.Mode, r.Clients, r.Duration, ErrHung, limit, lastLines(errb.String()+out.String(), 6))
	}
	if err != nil {
		return pgbenchSummary{}, fmt.Errorf("pgbench -M %s -c %d: %w: %s", r.Mode, r.Clients, err, lastLines(errb.String()+out.String(), 6))
	}
	s, err := parsePgbench(out.String())
	if err != nil {
		// stdout too: a summary without its tps line is the evidence
		return s, fmt.Errorf("pgbench -M %s -c %d: %w: %s", r.Mode, r.Clients, err, lastLines(errb.String()+out.String(), 12))
	}
	if s.Failed > 0 {
		return s, fmt.Errorf("pgbench -M %s -c %d: %d failed transactions: %s", r.Mode, r.Clients, s.Failed, lastLines(errb.String(), 6))
	}
	return s, nil
}

// parsePgbench extracts the summary from pgbench's standard output.
func parsePgbench(out string) (pgbenchSummary, error) {
	var s pgbenchSummary
	m := reProcessed.FindStringSubmatch(out)
	if m == nil {
		return s, errors.New("no 'number of transactions actually processed' line in pgbench output")
	}
	s.Processed, _ = strconv.ParseInt(m[1], 10, 64)
	if m := reFailed.FindStringSubmatch(out); m != nil {
		s.Failed, _ = strconv.ParseInt(m[1], 10, 64)
	}
	m = reTPS.FindStringSubmatch(out)
	if m == nil {
		return s, errors.New("no 'tps = ... (without initial connection time)' line in pgbench output")
	}
	tps, err := strconv.ParseFloat(m[1], 64)
	if err != nil {
		return s, fmt.Errorf("bad tps %q: %w", m[1], err)
	}
	s.TPS = tps
	return s, nil
}

// lastLines returns the last n non-empty lines of s, joined by " | ".
func lastLines(s string, n int) string {
	var lines []string
	for _, l := range strings.Split(s, "\n") {
		if l = strings.TrimSpace(l); l != "" {
			lines = append(lines, l)
		}
	}
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	if len(lines) == 0 {
		return "(no output)"
	}
	return strings.Join(lines, " | ")
}
