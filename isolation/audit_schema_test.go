package isolation_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/pgtenant/pgtenant/audit"
	"github.com/pgtenant/pgtenant/isolation"
)

// TestRealAuditSchema inspects the schema `pgtenant audit init` creates,
// in a database of its own (regions.*.audit_database).
func TestRealAuditSchema(t *testing.T) {
	f := newFixture(t)
	auditDB := f.db + "_audit"
	f.exec("postgres", "CREATE DATABASE "+auditDB)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		_ = f.c.Exec(ctx, "postgres", "DROP DATABASE IF EXISTS "+auditDB+" WITH (FORCE)")
	})
	r := f.region
	r.AuditDatabase = auditDB
	r.AdminUser = f.c.Superuser
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := audit.InitRegion(ctx, "eu-west", r, nil); err != nil {
		t.Fatalf("audit init: %v", err)
	}

	rep := isolation.Inspect(ctx, "eu-west", r, isolation.Options{Policy: f.policy, ParserActive: true})
	if rep.Status != isolation.Active || rep.Audit.Status != isolation.Active || rep.AuditDatabase != auditDB || rep.Database != f.db {
		t.Fatalf("status %s audit %+v (databases %s / %s)", rep.Status, rep.Audit, rep.Database, rep.AuditDatabase)
	}
	if rep.Audit.Owner != audit.OwnerRole {
		t.Errorf("audit table owner %q, want %s", rep.Audit.Owner, audit.OwnerRole)
	}
	if p := rep.Audit.Pending; p == nil || p.Status != isolation.Active || p.Table != "pgtenant_audit.ingest_batches" || len(p.Triggers) < 2 {
		t.Fatalf("rows awaiting integration: %+v", p)
	}

	// A trigger of ingest_batches that is only ENABLE (origin) lets a
	// replica-role session delete appended rows before they are chained.
	f.exec(auditDB, "ALTER TABLE pgtenant_audit.ingest_batches ENABLE TRIGGER ingest_batches_append_only")
	rep = isolation.Inspect(ctx, "eu-west", r, isolation.Options{Policy: f.policy, ParserActive: true})
	if rep.Audit.Status != isolation.DeployedInert || rep.Audit.Pending == nil || rep.Audit.Pending.Status != isolation.DeployedInert ||
		!strings.Contains(strings.Join(rep.Audit.Problems, ";"), "ingest_batches") {
		t.Fatalf("ingest_batches trigger not ENABLE ALWAYS: %+v / %+v", rep.Audit, rep.Audit.Pending)
	}
	f.exec(auditDB, "ALTER TABLE pgtenant_audit.ingest_batches ENABLE ALWAYS TRIGGER ingest_batches_append_only")
	// The service role may not read the audit tables, so the heads come from the hook.
	if rep.ChainHeads != nil || !strings.Contains(rep.ChainHeadsError, "Options.ChainHeads") {
		t.Errorf("chain heads %+v, error %q", rep.ChainHeads, rep.ChainHeadsError)
	}
	rep = isolation.Inspect(ctx, "eu-west", r, isolation.Options{Policy: f.policy, ParserActive: true,
		ChainHeads: func(_ context.Context, region string) (isolation.ChainHeads, error) {
			if region != "eu-west" {
				return isolation.ChainHeads{}, errors.New("unexpected region " + region)
			}
			return isolation.ChainHeads{Chains: 4, Entries: 99}, nil
		}})
	if rep.ChainHeads == nil || rep.ChainHeads.Entries != 99 || rep.ChainHeadsError != "" {
		t.Errorf("chain heads from hook %+v (%q)", rep.ChainHeads, rep.ChainHeadsError)
	}

	// Granting the service role the owner role makes the triggers removable by it.
	f.exec("postgres", "GRANT "+audit.OwnerRole+" TO "+f.c.ServiceUser)
	t.Cleanup(func() {
		_ = f.c.Exec(context.Background(), "postgres", "REVOKE "+audit.OwnerRole+" FROM "+f.c.ServiceUser)
	})
	rep = isolation.Inspect(ctx, "eu-west", r, isolation.Options{Policy: f.policy, ParserActive: true})
	if rep.Audit.Status != isolation.DeployedInert || !strings.Contains(strings.Join(rep.Audit.Problems, ";"), "disable its triggers") {
		t.Fatalf("service role in the owner role: %+v", rep.Audit)
	}
	// With the owner role the service role can read the heads itself.
	if rep.ChainHeads == nil || rep.ChainHeads.Chains != 0 {
		t.Errorf("chain heads read directly: %+v (%q)", rep.ChainHeads, rep.ChainHeadsError)
	}
}
