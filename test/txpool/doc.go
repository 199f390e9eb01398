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
// TestScale is the 2,000-client, 50-tenant, 20-backend run; TestCancel*
// check that a CancelRequest reaches only the backend running the
// cancelling client's transaction; FuzzTransactions interleaves
// transactions, errors, cancels and disconnects of many tenants on a pool of
// two or three backends. `go test -short` scales TestScale down.
package txpool
