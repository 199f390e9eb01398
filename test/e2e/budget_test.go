package e2e

import (
	"context"
	"errors"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/pgtenant/pgtenant/config"
	"github.com/pgtenant/pgtenant/test/proxytest"
	"github.com/pgtenant/pgtenant/test/redistest"
)

func budgetEnv(t *testing.T, limits config.Limits) *proxytest.Env {
	t.Helper()
	return proxytest.Start(t, proxytest.Options{Regions: []string{"eu-west"}, Policy: true,
		Configure: func(cfg *config.Config) {
			cfg.Limits.Tenant, cfg.Limits.SharedStore = limits.Tenant, limits.SharedStore
		}})
}

func pgErr(err error) *pgconn.PgError {
	var pe *pgconn.PgError
	if errors.As(err, &pe) {
		return pe
	}
	return nil
}

const pinned42 = "SELECT count(*) FROM orders WHERE account_id = 42"

func TestBudgetRateRefusesWith53400(t *testing.T) {
	env := budgetEnv(t, config.Limits{Tenant: config.TenantBudget{
		BudgetLimits: config.BudgetLimits{StatementsPerSecond: 0.01, Burst: 3},
		Overrides:    map[string]config.BudgetLimits{"7": {StatementsPerSecond: 1000}},
	}})
	ctx := ctxT(t)
	conn := connect(t, env.DSN(t, "42", "eu-west"))
	// pgx sends a statement through the extended protocol: Parse, Bind, Execute.
	for i := range 3 {
		if _, err := conn.Exec(ctx, pinned42); err != nil {
			t.Fatalf("statement %d within the burst: %v", i+1, err)
		}
	}
	_, err := conn.Exec(ctx, pinned42)
	pe := pgErr(err)
	if pe == nil || pe.Code != "53400" || !strings.HasPrefix(pe.Message, "pgtenant: ") || !strings.Contains(pe.Hint, "retry after") {
		t.Fatalf("4th statement: %v, want 53400 with a retry hint", err)
	}
	// The simple protocol is refused the same way, and a transaction fails.
	_, err = conn.Exec(ctx, pinned42, pgx.QueryExecModeSimpleProtocol)
	if pe := pgErr(err); pe == nil || pe.Code != "53400" {
		t.Fatalf("simple protocol: %v, want 53400", err)
	}
	// Another tenant has its own budget.
	other := connect(t, env.DSN(t, "7", "eu-west"))
	for range 10 {
		if _, err := other.Exec(ctx, "SELECT count(*) FROM orders WHERE account_id = 7"); err != nil {
			t.Fatalf("tenant 7: %v", err)
		}
	}
}

func TestBudgetConcurrencyRefusesWith53000(t *testing.T) {
	env := budgetEnv(t, config.Limits{Tenant: config.TenantBudget{BudgetLimits: config.BudgetLimits{ConcurrentStatements: 1}}})
	ctx := ctxT(t)
	a := connect(t, env.DSN(t, "42", "eu-west"))
	b := connect(t, env.DSN(t, "42", "eu-west"))
	started := make(chan struct{})
	done := make(chan error, 1)
	go func() {
		close(started)
		_, err := a.Exec(ctx, "SELECT pg_sleep(1.5), count(*) FROM orders WHERE account_id = 42")
		done <- err
	}()
	<-started
	// Wait until the server runs a's statement, so that b comes second.
	c := env.Clusters["eu-west"]
	super := connect(t, c.SuperuserDSN(c.Database))
	for deadline := time.Now().Add(10 * time.Second); ; {
		var n int
		if err := super.QueryRow(ctx, `SELECT count(*) FROM pg_stat_activity WHERE state = 'active' AND query LIKE 'SELECT pg_sleep(1.5)%'`).Scan(&n); err != nil {
			t.Fatal(err)
		}
		if n == 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the first statement never started")
		}
		time.Sleep(10 * time.Millisecond)
	}
	var refused *pgconn.PgError
	_, err := b.Exec(ctx, pinned42)
	refused = pgErr(err)
	if refused == nil || refused.Code != "53000" {
		select {
		case err := <-done:
			t.Logf("the first statement ended with %v", err)
		default:
		}
		t.Fatalf("a second statement while one runs: %v, want 53000", refused)
	}
	if err := <-done; err != nil {
		t.Fatalf("the running statement: %v", err)
	}
	// The slot came back when the statement ended.
	if _, err := b.Exec(ctx, pinned42); err != nil {
		t.Fatalf("after the first statement ended: %v", err)
	}
}

func TestBudgetStatementTimeout(t *testing.T) {
	env := budgetEnv(t, config.Limits{Tenant: config.TenantBudget{BudgetLimits: config.BudgetLimits{StatementTimeout: 300 * time.Millisecond}}})
	ctx := ctxT(t)
	conn := connect(t, env.DSN(t, "42", "eu-west"))
	start := time.Now()
	_, err := conn.Exec(ctx, "SELECT pg_sleep(5), count(*) FROM orders WHERE account_id = 42")
	pe := pgErr(err)
	if pe == nil || pe.Code != "57014" || !strings.Contains(pe.Message, "statement timeout") || !strings.HasPrefix(pe.Message, "pgtenant: ") {
		t.Fatalf("a statement over the timeout: %v, want 57014 from pgtenant", err)
	}
	if el := time.Since(start); el > 4*time.Second {
		t.Fatalf("the statement ran %v: it was not cancelled", el)
	}
	// The session goes on.
	if _, err := conn.Exec(ctx, pinned42); err != nil {
		t.Fatalf("after the timeout: %v", err)
	}
}

// TestBudgetSharedAcrossProxies runs two proxies against one real Redis, as
// two sidecars would: together they admit the tenant's burst once.
func TestBudgetSharedAcrossProxies(t *testing.T) {
	redis := redistest.Start(t)
	limits := config.Limits{SharedStore: redis.URL(), Tenant: config.TenantBudget{
		BudgetLimits: config.BudgetLimits{StatementsPerSecond: 0.01, Burst: 20}}}
	envs := []*proxytest.Env{budgetEnv(t, limits), budgetEnv(t, limits)}
	var admitted, refused atomic.Int64
	var wg sync.WaitGroup
	for i := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			conn := connect(t, envs[i%2].DSN(t, "42", "eu-west"))
			for range 10 {
				_, err := conn.Exec(context.Background(), pinned42, pgx.QueryExecModeSimpleProtocol)
				switch pe := pgErr(err); {
				case err == nil:
					admitted.Add(1)
				case pe != nil && pe.Code == "53400":
					refused.Add(1)
				default:
					t.Errorf("unexpected: %v", err)
				}
			}
		}()
	}
	wg.Wait()
	if admitted.Load() != 20 || refused.Load() != 20 {
		t.Fatalf("two proxies admitted %d and refused %d of 40, want the shared burst: 20 and 20", admitted.Load(), refused.Load())
	}
}
