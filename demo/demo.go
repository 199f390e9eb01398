package demo

import (
	"context"
	_ "embed"
	"fmt"
	"strings"

	"github.com/pgtenant/pgtenant/cluster"
)

var (
	//go:embed schema.sql
	schemaSQL string
	//go:embed seed.sql
	seedSQL string
	//go:embed corpus_extra.sql
	corpusExtraSQL string
)

// Tenants seeded by seed.sql.
const (
	TenantA int64 = 42
	TenantB int64 = 7
)

// TenantTables are the demo's tenant tables (tenant column account_id).
var TenantTables = []string{"orders", "customers", "line_items"}

// GlobalTables are the demo's global (shared, read-only) tables.
var GlobalTables = []string{"countries"}

// SchemaSQL returns schema.sql: tables, RLS policies, revokes and grants.
func SchemaSQL() string { return schemaSQL }

// SeedSQL returns seed.sql: rows for tenants 42 and 7 and a few countries.
func SeedSQL() string { return seedSQL }

// CorpusExtraSQL returns corpus_extra.sql: the `audit` schema and the
// functions the tenancy corpus refers to, for tests that run the corpus.
func CorpusExtraSQL() string { return corpusExtraSQL }

// InstallSQL returns schema.sql followed by seed.sql, to run as the
// superuser (e.g. with psql). Grants go to the role named by the setting
// pgtenant.service_role, default "app".
func InstallSQL() string { return schemaSQL + "\n" + seedSQL }

// Install runs the schema and the seed in c's database as the superuser,
// granting to c's service role, in one transaction. It is idempotent.
func Install(ctx context.Context, c *cluster.Cluster) error {
	if err := c.Exec(ctx, c.Database, withServiceRole(c.ServiceUser, InstallSQL())); err != nil {
		return fmt.Errorf("demo: install schema: %w", err)
	}
	return nil
}

// InstallCorpusExtra runs corpus_extra.sql in c's database (after Install).
func InstallCorpusExtra(ctx context.Context, c *cluster.Cluster) error {
	if err := c.Exec(ctx, c.Database, corpusExtraSQL); err != nil {
		return fmt.Errorf("demo: install corpus extras: %w", err)
	}
	return nil
}

// withServiceRole prefixes sql with a transaction-local setting naming the
// role that schema.sql grants to.
func withServiceRole(role, sql string) string {
	lit := "'" + strings.ReplaceAll(role, "'", "''") + "'"
	return "SELECT set_config('pgtenant.service_role', " + lit + ", true);\n" + sql
}
