package bench

import (
	"errors"
	"fmt"
	"slices"
	"sort"
	"strings"
	"time"
)

// Target names, in the order they run.
const (
	TargetDirect        = "direct"
	TargetPgBouncerSess = "pgbouncer-session"
	TargetPgBouncerTx   = "pgbouncer-transaction"
	// TargetPgtenantNoAudit is pgtenant with the policy on and the audit
	// disabled: the relay and the policy alone, what PgBouncer is compared
	// with, and the reference the audit modes are compared with.
	TargetPgtenantNoAudit = "pgtenant-noaudit"
	// TargetPgtenantTx is pgtenant-noaudit in pool.mode: transaction, with
	// pool.size equal to PgBouncer's transaction-mode pool (--pool-size):
	// what pgbouncer-transaction is compared with.
	TargetPgtenantTx     = "pgtenant-transaction"
	TargetPgtenantAsync  = "pgtenant-async"
	TargetPgtenantSpool  = "pgtenant-spool"
	TargetPgtenantStrict = "pgtenant-strict"
	// TargetPgtenantSpoolGroup is spool mode with audit.spool_fsync: group.
	TargetPgtenantSpoolGroup = "pgtenant-spool-group"
)

// AllTargets lists every target in run order.
var AllTargets = []string{TargetDirect, TargetPgBouncerSess, TargetPgBouncerTx, TargetPgtenantNoAudit,
	TargetPgtenantTx, TargetPgtenantAsync, TargetPgtenantSpool, TargetPgtenantSpoolGroup, TargetPgtenantStrict}

// AllModes lists pgbench's query modes.
var AllModes = []string{"simple", "extended", "prepared"}

// Options configures one harness run. DefaultOptions and SmokeOptions give
// complete values; Validate checks them.
type Options struct {
	Duration      time.Duration // pgbench -T per measured run (whole seconds)
	Rounds        int           // measured runs per target, mode and client count; the report keeps each target's median (run.go, measureCell)
	Warmup        time.Duration // an unmeasured pgbench run per target first; 0 skips it
	Clients       []int         // pgbench -c values
	PoolSize      int           // backends of the transaction-mode pools: PgBouncer's default_pool_size and pgtenant's pool.size
	Modes         []string      // pgbench -M values
	Targets       []string      // subset of AllTargets, run in AllTargets order
	IdleConns     int           // connection-scale run: idle connections through pgtenant; 0 skips it
	Tenants       int           // tenants in the accounts table
	RowsPerTenant int           // accounts rows per tenant
	Tenant        int64         // the tenant pgbench connects as (1..Tenants)
	Workload      string        // key of Workloads: "rw" (Script) or "select" (SelectScript)
	OutDir        string        // where results.json and results.md go
	DataDir       string        // parent of the cluster's data directory; "" = the run's work directory under $TMPDIR (on disk, so fsync costs what it costs)
	PgtenantBin   string        // a prebuilt pgtenant binary; "" builds ./cmd/pgtenant
	KeepLogs      bool          // keep pgbench's per-transaction logs under OutDir
	Smoke         bool          // recorded in the results; SmokeOptions sets it
}

// DefaultOptions is a full run.
func DefaultOptions() Options {
	return Options{
		Duration:      20 * time.Second,
		Rounds:        1,
		Warmup:        5 * time.Second,
		Clients:       []int{1, 8, 64},
		PoolSize:      20,
		Modes:         slices.Clone(AllModes),
		Targets:       slices.Clone(AllTargets),
		IdleConns:     5000,
		Tenants:       1000,
		RowsPerTenant: 1000,
		Tenant:        42,
		Workload:      "rw",
		OutDir:        "bench/results",
	}
}

// SmokeOptions is a run of a few seconds for CI: every target, one client,
// one mode, one second each, a tiny table and a tiny idle count.
func SmokeOptions() Options {
	o := DefaultOptions()
	o.Duration = time.Second
	o.Warmup = time.Second
	o.Clients = []int{1}
	o.Modes = []string{"extended"}
	o.IdleConns = 20
	o.RowsPerTenant = 10
	o.Smoke = true
	return o
}

// Validate reports the first invalid option, naming its flag.
func (o *Options) Validate() error {
	var errs []error
	if o.Duration < time.Second {
		errs = append(errs, fmt.Errorf("--duration %s: at least 1s", o.Duration))
	}
	if o.Rounds < 1 || o.Rounds > 20 {
		errs = append(errs, fmt.Errorf("--rounds %d: want 1-20", o.Rounds))
	}
	if o.Warmup < 0 {
		errs = append(errs, fmt.Errorf("--warmup %s: must not be negative", o.Warmup))
	}
	if len(o.Clients) == 0 {
		errs = append(errs, errors.New("--clients: at least one value"))
	}
	for _, c := range o.Clients {
		if c < 1 || c > 10000 {
			errs = append(errs, fmt.Errorf("--clients %d: want 1-10000", c))
		}
	}
	if o.PoolSize < 1 || o.PoolSize > 1000 {
		errs = append(errs, fmt.Errorf("--pool-size %d: want 1-1000", o.PoolSize))
	}
	if len(o.Modes) == 0 {
		errs = append(errs, errors.New("--modes: at least one value"))
	}
	for _, m := range o.Modes {
		if !slices.Contains(AllModes, m) {
			errs = append(errs, fmt.Errorf("--modes %q: want one of %s", m, strings.Join(AllModes, ",")))
		}
	}
	if len(o.Targets) == 0 {
		errs = append(errs, errors.New("--targets: at least one value"))
	}
	for _, t := range o.Targets {
		if !slices.Contains(AllTargets, t) {
			errs = append(errs, fmt.Errorf("--targets %q: want one of %s", t, strings.Join(AllTargets, ",")))
		}
	}
	if o.IdleConns < 0 || o.IdleConns > 60000 {
		errs = append(errs, fmt.Errorf("--idle-conns %d: want 0-60000", o.IdleConns))
	}
	if o.Tenants < 1 || o.RowsPerTenant < 1 || int64(o.Tenants)*int64(o.RowsPerTenant) > 100_000_000 {
		errs = append(errs, fmt.Errorf("--tenants %d × --rows-per-tenant %d: each at least 1, at most 100M rows in all", o.Tenants, o.RowsPerTenant))
	}
	if o.Tenant < 1 || o.Tenant > int64(o.Tenants) {
		errs = append(errs, fmt.Errorf("--tenant %d: want 1-%d", o.Tenant, o.Tenants))
	}
	if _, ok := Workloads[o.Workload]; !ok {
		errs = append(errs, fmt.Errorf("--workload %q: want rw or select", o.Workload))
	}
	if o.OutDir == "" {
		errs = append(errs, errors.New("--out: must not be empty"))
	}
	if len(errs) > 0 {
		return errors.Join(errs...)
	}
	o.normalize()
	return nil
}

// normalize sorts and de-duplicates the lists; targets and modes follow
// their canonical order.
func (o *Options) normalize() {
	sort.Ints(o.Clients)
	o.Clients = slices.Compact(o.Clients)
	o.Modes = inOrder(AllModes, o.Modes)
	o.Targets = inOrder(AllTargets, o.Targets)
}

// inOrder returns the members of all that are in chosen, in all's order.
func inOrder(all, chosen []string) []string {
	var out []string
	for _, v := range all {
		if slices.Contains(chosen, v) {
			out = append(out, v)
		}
	}
	return out
}

// maxClients returns the largest client count.
func (o *Options) maxClients() int { return slices.Max(o.Clients) }

// sortedKeys returns m's keys in order.
func sortedKeys(m map[string]string) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}
