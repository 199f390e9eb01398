package policy

import (
	"context"
	"testing"
	"time"

	"github.com/pgtenant/pgtenant/cluster"
	"github.com/pgtenant/pgtenant/config"
	"github.com/pgtenant/pgtenant/test/pgtest"
)

// Discover against a real PostgreSQL: tables, partitions and views having the
// tenant column become tenant relations with their columns and types; quoted
// identifiers keep their case; other tables are known but unclassified.
func TestDiscoverRealCatalog(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a PostgreSQL cluster")
	}
	c := pgtest.Start(t, cluster.Config{Name: "policy-discover"})
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	ddl := `
CREATE TABLE orders (id bigint, account_id bigint, total numeric, note text);
CREATE TABLE "Invoices" ("Id" int, account_id integer, "Amount" numeric);
CREATE TABLE docs (id int, account_id uuid, body text);
CREATE TABLE countries (code text, name text);
CREATE TABLE events (id bigint, account_id bigint, at date) PARTITION BY RANGE (at);
CREATE TABLE events_2024 PARTITION OF events FOR VALUES FROM ('2024-01-01') TO ('2025-01-01');
CREATE VIEW orders_v WITH (security_invoker = true) AS SELECT id, account_id, total FROM orders;
CREATE VIEW orders_v2 WITH (security_invoker = true) AS SELECT id, account_id, total FROM orders;
CREATE SCHEMA audit;
CREATE TABLE audit.log (id bigint, account_id bigint);
GRANT USAGE ON SCHEMA audit TO app;
`
	if err := c.Exec(ctx, c.Database, ddl); err != nil {
		t.Fatal(err)
	}
	e := newTestEngine(t, func(p *config.Policy) {
		p.Discover = true
		p.TenantTables = []string{"public.orders_v2"}
	})
	conn := pgtest.Conn(t, c.ServiceDSN())
	if err := e.Discover(ctx, "eu-west", conn); err != nil {
		t.Fatal(err)
	}
	cat := e.Catalog("eu-west")
	want := map[string]struct {
		class Class
		typ   string
		ncols int
	}{
		"public.orders":      {ClassTenant, "bigint", 4},
		"public.Invoices":    {ClassTenant, "integer", 3},
		"public.docs":        {ClassTenant, "uuid", 3},
		"public.countries":   {ClassGlobal, "", 2}, // configured global, columns discovered
		"public.events":      {ClassTenant, "bigint", 3},
		"public.events_2024": {ClassUnknown, "", 3},
		"public.orders_v":    {ClassUnknown, "", 3},
		"public.orders_v2":   {ClassTenant, "bigint", 3}, // registered in the config
		"audit.log":          {ClassTenant, "bigint", 2},
	}
	for name, w := range want {
		tb := cat.Tables[name]
		if tb == nil {
			t.Errorf("%s not discovered", name)
			continue
		}
		if tb.Class != w.class || tb.TenantType != w.typ || len(tb.Columns) != w.ncols {
			t.Errorf("%s: %+v, want %+v", name, tb, w)
		}
	}
	if cat.Database != c.Database || !cat.NoRoleSchema {
		t.Errorf("database %q (want %q), no role schema %v (want true)", cat.Database, c.Database, cat.NoRoleSchema)
	}
	s := session(t, e, "42")
	for q, allow := range map[string]bool{
		`SELECT * FROM ` + c.Database + `.public.orders WHERE account_id = 42`:                true,
		`SELECT * FROM otherdb.public.orders WHERE account_id = 42`:                           false,
		`SET search_path = "$user", public`:                                                   true,
		`SELECT * FROM "Invoices" WHERE account_id = 42`:                                      true,
		`SELECT * FROM invoices WHERE account_id = 42`:                                        false,
		`SELECT "Amount" FROM "Invoices" i, countries WHERE code = 'x'`:                       false,
		`SELECT * FROM events WHERE account_id = 42`:                                          true,
		`SELECT * FROM events_2024 WHERE account_id = 42`:                                     false,
		`SELECT * FROM orders_v WHERE account_id = 42`:                                        false,
		`SELECT * FROM orders_v2 WHERE account_id = 42`:                                       true,
		`SELECT * FROM orders_v2`:                                                             false,
		`SELECT * FROM audit.log WHERE account_id = 42`:                                       false,
		`SELECT o.id FROM orders o JOIN countries c ON c.code = o.note WHERE account_id = 42`: true,
	} {
		if d := s.CheckQuery(q); d.Allow != allow {
			t.Errorf("%s: allow=%v (%s)", q, d.Allow, d.Message)
		}
	}
	// a schema named after the service role makes "$user" resolve to it
	if err := c.Exec(ctx, c.Database, `CREATE SCHEMA `+c.ServiceUser); err != nil {
		t.Fatal(err)
	}
	if err := e.Discover(ctx, "eu-west", conn); err != nil {
		t.Fatal(err)
	}
	if d := session(t, e, "42").CheckQuery(`SET search_path = "$user", public`); d.Allow {
		t.Error(`"$user", public allowed although a schema is named after the service role`)
	}
}
