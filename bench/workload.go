package bench

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/pgtenant/pgtenant/cluster"
)

// TenantSetting is the setting RLS reads the caller's tenant from.
const TenantSetting = "app.current_account_id"

// Script is the read-write mix pgbench runs against every target: one
// transaction reads an account, updates it and reads another, all scoped to
// the connection's tenant (:t) as the application would write them. The
// \gset makes a transaction fail (and pgbench abort) when the row is not
// visible, so a target that loses the tenant context cannot post figures.
const Script = `\set aid random(1, :rows)
\set aid2 random(1, :rows)
\set delta random(-5000, 5000)
BEGIN;
SELECT abalance FROM accounts WHERE account_id = :t AND aid = :aid \gset
UPDATE accounts SET abalance = abalance + :delta WHERE account_id = :t AND aid = :aid;
SELECT abalance, filler FROM accounts WHERE account_id = :t AND aid = :aid2;
END;
`

// SelectScript is the relay workload: one tenant-scoped point select per
// transaction, so the figures are dominated by the round trip through the
// proxy rather than by commits. The \gset fails the transaction when the row
// is not visible, as in Script.
const SelectScript = `\set aid random(1, :rows)
SELECT abalance FROM accounts WHERE account_id = :t AND aid = :aid \gset
`

// Workloads names the scripts --workload chooses from.
var Workloads = map[string]string{"rw": Script, "select": SelectScript}

// workloadTitles describes each workload in the report.
var workloadTitles = map[string]string{
	"rw":     "read-write mix: BEGIN; SELECT; UPDATE; SELECT; END",
	"select": "tenant-scoped point select",
}

// statementsPerTx counts the SQL commands of a pgbench script: every line
// that is neither blank nor a meta-command (multi-line commands are not
// used by Script).
func statementsPerTx(script string) int {
	n := 0
	for _, l := range strings.Split(script, "\n") {
		l = strings.TrimSpace(l)
		if l != "" && !strings.HasPrefix(l, `\`) && !strings.HasPrefix(l, "--") {
			n++
		}
	}
	return n
}

// clusterSettings tunes the cluster for a benchmark: durable commits (fsync
// and synchronous_commit on, as in production), a buffer cache that holds
// the table, WAL sized so checkpoints do not fire every few seconds, and
// connection slots for the largest pgbench run plus the idle connections
// (pgtenant in session mode opens one backend per client). Pools outlive
// their runs: PgBouncer's session pool keeps up to one idle server
// connection per client of its largest run (server_idle_timeout) while the
// next target runs as many, and the transaction pools of PgBouncer and
// pgtenant keep --pool-size each.
func clusterSettings(o *Options) map[string]string {
	conns := 2*o.maxClients() + 2*o.PoolSize + o.IdleConns + 50
	return map[string]string{
		"fsync":                     "on",
		"synchronous_commit":        "on",
		"full_page_writes":          "on",
		"shared_buffers":            "256MB",
		"max_connections":           strconv.Itoa(max(conns, 200)),
		"max_wal_size":              "2GB",
		"checkpoint_timeout":        "15min",
		"wal_buffers":               "16MB",
		"work_mem":                  "4MB",
		"huge_pages":                "off",
		"log_min_messages":          "warning",
		"log_connections":           "off",
		"log_disconnections":        "off",
		"track_io_timing":           "off",
		"max_locks_per_transaction": "64",
	}
}

// startCluster starts the tuned cluster under parent. The parent is set
// explicitly: the cluster package's default is tmpfs, where fsync is free.
func startCluster(ctx context.Context, o *Options, parent string) (*cluster.Cluster, error) {
	c, err := cluster.Start(ctx, cluster.Config{Name: "bench", Dir: parent, Settings: clusterSettings(o)})
	if err != nil {
		return nil, fmt.Errorf("start cluster: %w", err)
	}
	return c, nil
}

// schemaSQL creates and fills accounts: like pgbench's table, keyed by
// tenant, with forced RLS on the tenant setting (failing closed when it is
// unset) and the service role granted what the script needs.
func schemaSQL(o *Options, serviceRole string) string {
	role := `"` + strings.ReplaceAll(serviceRole, `"`, `""`) + `"`
	return fmt.Sprintf(`
DROP TABLE IF EXISTS public.accounts;
CREATE TABLE public.accounts (
    aid        bigint NOT NULL,
    account_id bigint NOT NULL,
    abalance   int    NOT NULL DEFAULT 0,
    filler     char(84)
) WITH (fillfactor = 90);
INSERT INTO public.accounts (aid, account_id, abalance)
    SELECT a, t, 0 FROM generate_series(1, %[1]d) AS t, generate_series(1, %[2]d) AS a;
ALTER TABLE public.accounts ADD PRIMARY KEY (account_id, aid);
ALTER TABLE public.accounts ENABLE ROW LEVEL SECURITY;
ALTER TABLE public.accounts FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON public.accounts
    USING (account_id = NULLIF(current_setting('%[3]s', true), '')::bigint)
    WITH CHECK (account_id = NULLIF(current_setting('%[3]s', true), '')::bigint);
REVOKE ALL ON public.accounts FROM PUBLIC;
GRANT SELECT, INSERT, UPDATE, DELETE ON public.accounts TO %[4]s;
`, o.Tenants, o.RowsPerTenant, TenantSetting, role)
}

// installWorkload creates the accounts table, vacuums and checkpoints so
// every target starts from the same clean state.
func installWorkload(ctx context.Context, c *cluster.Cluster, o *Options) error {
	if err := c.Exec(ctx, c.Database, schemaSQL(o, c.ServiceUser)); err != nil {
		return fmt.Errorf("install workload: %w", err)
	}
	for _, sql := range []string{"VACUUM (FREEZE, ANALYZE) public.accounts", "CHECKPOINT"} {
		if err := c.Exec(ctx, c.Database, sql); err != nil {
			return fmt.Errorf("install workload: %w", err)
		}
	}
	return nil
}

// writeScript writes the workload's script into dir and returns its path.
func writeScript(dir, workload string) (string, error) {
	path := filepath.Join(dir, "tenant_"+workload+".sql")
	if err := os.WriteFile(path, []byte(Workloads[workload]), 0o644); err != nil {
		return "", fmt.Errorf("write pgbench script: %w", err)
	}
	return path, nil
}

// scriptVars are the pgbench -D variables: the tenant and its row count.
func scriptVars(o *Options) map[string]string {
	return map[string]string{"t": strconv.FormatInt(o.Tenant, 10), "rows": strconv.Itoa(o.RowsPerTenant)}
}
