// Package cluster starts throw-away local PostgreSQL clusters: a private
// directory with a data directory, a generated pg_hba.conf and settings
// file, pg_ctl to start and stop the server, and a non-superuser service
// role with a SCRAM-SHA-256 password.
//
// It is used by the tests (through test/pgtest) and by `pgtenant demo`, so it
// is ordinary (non-test) code. A cluster listens on 127.0.0.1 only, on a free
// port chosen at start (picked again when another process takes the port
// first), and on a Unix socket in its own directory.
//
// Authentication as set up by Start:
//
//	<Config.HBA lines, in order>
//	local all all                   trust
//	host  all postgres 127.0.0.1/32 trust
//	host  all all      127.0.0.1/32 scram-sha-256
//
// # Where and how fast
//
// With Config.Dir empty, clusters go to $PGTENANT_PG_TMPDIR, else /dev/shm
// when it has at least 1 GiB free (tmpfs: no disk writes), else
// os.TempDir(). The data directory is a copy of an initdb template cached
// per user and server binaries in <that directory>/pgtenant_initdb_<uid>
// (built once, under a file lock); a cluster is then ready in about 0.2 s
// instead of 1-2 s. Copies share the template's system identifier; set
// $PGTENANT_PG_NO_TEMPLATE=1 to run initdb for every cluster instead.
//
// # Processes
//
// PostgreSQL refuses to run as root. When the calling process is root, the
// cluster directory is owned by the `postgres` operating-system user and
// initdb/pg_ctl run as that user; otherwise they run as the current user.
//
// Each cluster directory records the process that created it. A later Start
// in the same parent directory stops and removes clusters whose creator is
// gone (a test binary killed by its timeout, a demo killed with SIGKILL), so
// crashed runs do not leave servers behind.
//
// The server binaries are found by BinDir: $PGTENANT_PG_BINDIR, else
// `pg_config --bindir` when it holds initdb, else the newest
// /usr/lib/postgresql/*/bin.
//
// A Cluster's lifecycle methods (Stop, Restart, Kill, Close) are safe for
// concurrent use; Close is idempotent and removes the cluster directory.
package cluster
