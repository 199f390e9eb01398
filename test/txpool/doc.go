// Package txpool holds the black-box tests of pgtenant's transaction pooling
// (`pool.mode: transaction`): many client connections of many tenants
// multiplexed onto a small pool of backends of a real PostgreSQL cluster.
//
// The tests configure the proxy only through the configuration keys of the
// specification (pool.mode, pool.size, pool.max_wait, ...), written as YAML
// and read with config.Load, so they judge whatever internals implement
// them. Every check is made observable in the database itself:
//
//   - tx_probe records, per inserted row, the tenant setting the row's
//     transaction ran under (a column default of current_setting), the
//     backend pid and the transaction id; a row whose recorded setting is not
//     its account_id, or a transaction id shared by two clients, is a
//     tenant context that crossed over;
//   - reads of tx_probe and of the demo's orders go through forced,
//     fail-closed row-level security, so a wrong or missing tenant setting
//     shows as rows of another tenant or as missing own rows;
//   - the procedure tx_probe_outside commits in its middle, so it reads what
//     the backend holds outside any transaction: in transaction mode that
//     must be no tenant at all.
//
// TestScale is the 2,000-client, 50-tenant, 20-backend run (TestScalePolicy
// the same scripts, smaller, with the statement policy on); TestCancel*
// check that a CancelRequest reaches only the backend running the
// cancelling client's transaction; TestStatementAfterError that a failed
// implicit transaction does not cost the next one its tenant;
// TestNodePipelines runs postgres.js pipelines; the TestPool* and
// TestSession* tests check the other pool keys and session state;
// FuzzTransactions interleaves transactions, errors, cancels and
// disconnects of many tenants on a pool of two or three backends, and its
// seeds (testdata/fuzz/FuzzTransactions) run as a regular test. `go test
// -short` scales TestScale down; under the race detector it runs fewer
// iterations. The whole package takes about a minute on two cores.
//
// To fuzz, one worker is enough (each worker starts its own cluster):
//
//	go test ./test/txpool -run '^$' -fuzz FuzzTransactions -fuzztime 5m -parallel 1
//
// (building with coverage instrumentation compiles the cgo parser too, which
// takes minutes the first time.) The scale, cancel and fuzz scripts also
// run in session mode, `-run 'TestScale$|TestCancel|Fuzz' -args
// -pool.mode=session` (TestScale with 60 clients then), where the checks
// that only transaction mode promises are skipped.
package txpool
