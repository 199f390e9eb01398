package isolation_test

import (
	"context"
	"slices"
	"testing"
	"time"

	"github.com/pgtenant/pgtenant/audit"
	"github.com/pgtenant/pgtenant/config"
	"github.com/pgtenant/pgtenant/demo"
	"github.com/pgtenant/pgtenant/isolation"
	"github.com/pgtenant/pgtenant/test/pgtest"
)

// TestDemoSchemaIsFullyActive inspects what `pgtenant demo` installs: the
// demo schema plus `audit init`. Every layer must be active.
func TestDemoSchemaIsFullyActive(t *testing.T) {
	c := pgtest.Shared(t, "isolation")
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := demo.Install(ctx, c); err != nil {
		t.Fatal(err)
	}
	r := config.Region{Host: "127.0.0.1", Port: c.Port, User: c.ServiceUser, Password: c.ServicePassword,
		Database: c.Database, AdminUser: c.Superuser, SSLMode: "disable", ConnectTimeout: 5 * time.Second}
	if err := audit.InitRegion(ctx, "eu-west", r, nil); err != nil {
		t.Fatal(err)
	}
	rep := isolation.Inspect(ctx, "eu-west", r, isolation.Options{Policy: config.Default().Policy, ParserActive: true, PolicyVersion: "demo"})
	if rep.Status != isolation.Active {
		t.Fatalf("demo region status %s: %+v", rep.Status, rep)
	}
	var tables []string
	for _, tr := range rep.RLS.Tables {
		tables = append(tables, tr.Table)
	}
	want := []string{}
	for _, tt := range demo.TenantTables {
		want = append(want, "public."+tt)
	}
	slices.Sort(tables)
	slices.Sort(want)
	if !slices.Equal(tables, want) {
		t.Fatalf("tenant tables %v, want %v", tables, want)
	}
	if err := isolation.CheckRLS(ctx, "eu-west", r, config.Default().Policy); err != nil {
		t.Fatalf("CheckRLS on the demo schema: %v", err)
	}
}
