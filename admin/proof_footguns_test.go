package admin_test

import (
	"context"
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/pgtenant/pgtenant/admin"
	"github.com/pgtenant/pgtenant/config"
	"github.com/pgtenant/pgtenant/isolation"
	"github.com/pgtenant/pgtenant/test/pgtest"
)

// TestIsolationProofListsFootguns: /isolation-proof lists an RLS footgun
// (a definer view over a tenant table) with its object and fix, reports the
// RLS layer missing, and active again once the view is security_invoker (the
// database has no audit schema, so the region as a whole stays missing).
func TestIsolationProofListsFootguns(t *testing.T) {
	c := pgtest.Shared(t, "admin")
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	const db = "proof_footguns"
	exec := func(db, sql string) {
		t.Helper()
		if err := c.Exec(ctx, db, sql); err != nil {
			t.Fatal(err)
		}
	}
	exec("postgres", "CREATE DATABASE "+db)
	t.Cleanup(func() { _ = c.Exec(context.Background(), "postgres", "DROP DATABASE IF EXISTS "+db+" WITH (FORCE)") })
	exec(db, `
CREATE TABLE public.invoices (id bigint, account_id bigint NOT NULL, PRIMARY KEY (account_id, id));
ALTER TABLE public.invoices ENABLE ROW LEVEL SECURITY;
ALTER TABLE public.invoices FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant ON public.invoices USING (account_id = NULLIF(current_setting('app.current_account_id', true), '')::bigint);
GRANT SELECT, INSERT ON public.invoices TO `+c.ServiceUser+`;
CREATE VIEW public.all_invoices AS SELECT * FROM public.invoices;
GRANT SELECT ON public.all_invoices TO `+c.ServiceUser)
	r := regionOf(c)
	r.Database = db
	base := start(t, admin.Options{
		Regions: map[string]config.Region{"eu-west": r},
		Proof:   isolation.Options{Policy: config.Default().Policy, ParserActive: true},
	})
	proof := func() isolation.Report {
		t.Helper()
		code, body := get(t, base+"/isolation-proof")
		if code != http.StatusOK {
			t.Fatalf("/isolation-proof: %d %s", code, body)
		}
		var p admin.Proof
		if err := json.Unmarshal([]byte(body), &p); err != nil || len(p.Regions) != 1 {
			t.Fatalf("decode %s: %v", body, err)
		}
		if !strings.Contains(body, `"findings":`) {
			t.Fatalf("no findings field in %s", body)
		}
		return p.Regions[0]
	}
	rep := proof()
	var found *isolation.Finding
	for i, f := range rep.RLS.Findings {
		if f.Check == isolation.CheckViewDefiner && f.Object == "view public.all_invoices" {
			found = &rep.RLS.Findings[i]
		}
	}
	if found == nil || found.Severity != isolation.SeverityLeak || found.Table != "public.invoices" ||
		found.Fix != "ALTER VIEW public.all_invoices SET (security_invoker = true)" {
		t.Fatalf("findings %+v: want the definer view as a leak with its fix", rep.RLS.Findings)
	}
	if rep.RLS.Status != isolation.Missing || rep.RLS.Tables[0].Status != isolation.Missing {
		t.Fatalf("rls %+v, want the layer and the table missing", rep.RLS)
	}
	exec(db, "ALTER VIEW public.all_invoices SET (security_invoker = true)")
	rep = proof()
	if rep.RLS.Status != isolation.Active || len(rep.RLS.Findings) != 0 {
		t.Fatalf("after security_invoker: rls %s findings %+v", rep.RLS.Status, rep.RLS.Findings)
	}
}
