// Package bench is pgtenant's end-to-end benchmark harness: in one run it
// starts a real PostgreSQL cluster with a 1,000-tenant workload under forced
// row-level security, PgBouncer (session and transaction pooling) and the
// built pgtenant binary (audit modes async, spool and strict in turn), drives
// each target with pgbench over the simple, extended and prepared protocols
// at several client counts, and reports throughput, mean and p99 latency,
// the ratios pgtenant/direct and pgtenant/PgBouncer, the proxy's CPU time per
// 1,000 statements and its resident memory. A connection-scale run then holds
// N idle client connections through pgtenant and reports its memory per
// connection.
//
// The harness is split by job:
//
//	options.go   flags and their defaults, the --smoke preset
//	workload.go  the tuned cluster, the accounts table and the pgbench script
//	pgbouncer.go PgBouncer's configuration, auth_file and process
//	pgtenant.go  building pgtenant, its generated config and process
//	procstat.go  CPU time and RSS of a process from /proc
//	fstype.go    which file system holds the data (tmpfs makes fsync free)
//	process.go   starting, probing and stopping the child servers
//	pgbench.go   running pgbench and parsing its summary
//	latency.go   per-transaction logs: mean and percentiles
//	idle.go      the connection-scale run
//	report.go    result types, ratios, JSON and Markdown
//	ceiling.go   fdatasync and commit latency, the ceilings they set
//	run.go       the orchestration of one run
//
// The command is bench/cmd/pgtenant-bench; see bench/README.md.
package bench
