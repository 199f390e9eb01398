// Package cluster starts throw-away local PostgreSQL clusters: initdb into a
// private directory, a generated postgresql.conf and pg_hba.conf, pg_ctl to
// start and stop the server, and a non-superuser service role with a
// SCRAM-SHA-256 password.
//
// It is used by the tests (through test/pgtest) and by `pgtenant demo`, so it
// is ordinary (non-test) code. A cluster listens on 127.0.0.1 only, on a free
// port chosen at start (with a retry when another process takes the port
// first), and on a Unix socket in its own directory.
//
// Authentication as set up by Start:
//
//	<Config.HBA lines, in order>
//	local all all                 trust
//	host  all postgres 127.0.0.1/32 trust
//	host  all all      127.0.0.1/32 scram-sha-256
//
// PostgreSQL refuses to run as root. When the calling process is root, the
// cluster directory is owned by the `postgres` operating-system user and
// initdb/pg_ctl run as that user; otherwise they run as the current user.
//
// The server binaries are found by BinDir: $PGTENANT_PG_BINDIR, else
// `pg_config --bindir` when it holds initdb, else the newest
// /usr/lib/postgresql/*/bin.
//
// A Cluster's lifecycle methods (Stop, Restart, Kill, Close) are safe for
// concurrent use; Close is idempotent and removes the cluster directory.
package cluster
