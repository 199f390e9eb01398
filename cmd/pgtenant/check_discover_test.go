package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/pgtenant/pgtenant/cluster"
	"github.com/pgtenant/pgtenant/test/pgtest"
)

// With policy.discover on and the region reachable, check reads the tables
// from the region's catalog: no --schema needed.
func TestCheckDiscoversRegionCatalog(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a PostgreSQL cluster")
	}
	c := pgtest.Start(t, cluster.Config{Name: "check-discover"})
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := c.Exec(ctx, c.Database, `CREATE TABLE orders (id bigint, account_id bigint, note text);
		CREATE TABLE countries (code text, name text);`); err != nil {
		t.Fatal(err)
	}
	cfg := fmt.Sprintf(`regions:
  eu-west: { host: 127.0.0.1, port: %d, user: %s, password: %s, database: %s }
policy:
  discover: true
  global_tables: [public.countries]
`, c.Port, c.ServiceUser, c.ServicePassword, c.Database)
	path := filepath.Join(t.TempDir(), "pgtenant.yaml")
	if err := os.WriteFile(path, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	code, out := runCheckArgs(t, "", "--config", path, "--account", "42",
		"--sql", "SELECT o.id, c.name FROM orders o JOIN countries c ON c.code = o.note WHERE account_id = 42")
	if code != exitOK {
		t.Fatalf("exit %d:\n%s", code, out)
	}
	code, out = runCheckArgs(t, "", "--config", path, "--account", "42", "--region", "eu-west", "--sql", "SELECT * FROM orders")
	if code != exitDenied || !strings.Contains(out, "unscoped_table") {
		t.Fatalf("exit %d:\n%s", code, out)
	}
}
