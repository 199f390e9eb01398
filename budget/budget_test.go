package budget_test

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pgtenant/pgtenant/budget"
	"github.com/pgtenant/pgtenant/test/redistest"
)

func newBudgets(t *testing.T, cfg budget.Config) *budget.Budgets {
	t.Helper()
	b, err := budget.New(context.Background(), cfg)
	if err != nil {
		t.Fatalf("budget.New: %v", err)
	}
	t.Cleanup(func() { _ = b.Close() })
	return b
}

// admitN tries n statements at once-ish and returns how many were admitted
// and the refusals seen; releases run after every try.
func admitN(t *testing.T, b *budget.Budgets, account string, n int) (admitted int, refusals []*budget.Exceeded) {
	t.Helper()
	var releases []func()
	for range n {
		rel, err := b.Admit(context.Background(), account)
		if err != nil {
			var ex *budget.Exceeded
			if !errors.As(err, &ex) {
				t.Fatalf("Admit: unexpected error %v", err)
			}
			refusals = append(refusals, ex)
			continue
		}
		admitted++
		releases = append(releases, rel)
	}
	for _, rel := range releases {
		rel()
	}
	return admitted, refusals
}

func TestRateBurstThenRefusal(t *testing.T) {
	b := newBudgets(t, budget.Config{Default: budget.Limits{StatementsPerSecond: 1, Burst: 5}})
	admitted, refusals := admitN(t, b, "42", 8)
	if admitted != 5 || len(refusals) != 3 {
		t.Fatalf("admitted %d refused %d, want 5 and 3 (burst 5, rate 1/s)", admitted, len(refusals))
	}
	ex := refusals[0]
	if ex.SQLState() != "53400" || ex.Limit != budget.LimitRate || ex.RetryAfter <= 0 {
		t.Fatalf("refusal = %+v sqlstate %s, want 53400 rate with a retry time", ex, ex.SQLState())
	}
	if ex.Hint() == "" || ex.Error() == "" {
		t.Fatal("a refusal needs a message and a hint")
	}
	// Another tenant has its own bucket.
	if n, _ := admitN(t, b, "7", 5); n != 5 {
		t.Fatalf("tenant 7 admitted %d, want its own full burst of 5", n)
	}
}

func TestOverridesReplaceDefault(t *testing.T) {
	b := newBudgets(t, budget.Config{
		Default:   budget.Limits{StatementsPerSecond: 1, Burst: 1},
		Overrides: map[string]budget.Limits{"42": {StatementsPerSecond: 100, Burst: 50}},
	})
	if n, _ := admitN(t, b, "42", 50); n != 50 {
		t.Fatalf("override: admitted %d of 50", n)
	}
	if n, _ := admitN(t, b, "7", 3); n != 1 {
		t.Fatalf("default: admitted %d of 3, want 1", n)
	}
}

func TestConcurrencyHeldUntilRelease(t *testing.T) {
	b := newBudgets(t, budget.Config{Default: budget.Limits{ConcurrentStatements: 2}})
	ctx := context.Background()
	r1, err1 := b.Admit(ctx, "42")
	r2, err2 := b.Admit(ctx, "42")
	if err1 != nil || err2 != nil {
		t.Fatalf("first two: %v %v", err1, err2)
	}
	_, err := b.Admit(ctx, "42")
	var ex *budget.Exceeded
	if !errors.As(err, &ex) || ex.Limit != budget.LimitConcurrency || ex.SQLState() != "53000" {
		t.Fatalf("third while two run: %v, want a 53000 concurrency refusal", err)
	}
	r1()
	r1() // a second call is harmless
	r3, err := b.Admit(ctx, "42")
	if err != nil {
		t.Fatalf("after a release: %v", err)
	}
	r2()
	r3()
	st := b.Stats()
	if len(st) != 1 || st[0].Running != 0 || st[0].Admitted != 3 || st[0].RefusedConcurrency != 1 {
		t.Fatalf("stats = %+v", st)
	}
}

// TestSharedRateAcrossInstances runs three Budgets against one real Redis,
// as three sidecars would: together they admit exactly the tenant's burst.
func TestSharedRateAcrossInstances(t *testing.T) {
	srv := redistest.Start(t)
	cfg := budget.Config{SharedStore: srv.URL(), Default: budget.Limits{StatementsPerSecond: 0.001, Burst: 30}, StoreTimeout: 5 * time.Second}
	inst := []*budget.Budgets{newBudgets(t, cfg), newBudgets(t, cfg), newBudgets(t, cfg)}
	var admitted atomic.Int64
	var wg sync.WaitGroup
	for i := range 12 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			n, _ := admitN(t, inst[i%len(inst)], "42", 10)
			admitted.Add(int64(n))
		}()
	}
	wg.Wait()
	if got := admitted.Load(); got != 30 {
		t.Fatalf("admitted %d of 120 statements across three instances, want exactly the shared burst of 30", got)
	}
	if n, _ := admitN(t, inst[0], "7", 30); n != 30 {
		t.Fatalf("tenant 7 admitted %d, want its own burst of 30", n)
	}
	for _, b := range inst {
		if b.Fallbacks() != 0 {
			t.Fatal("an instance fell back to local budgets with Redis up")
		}
	}
}

// TestSharedConcurrencyAcrossInstances: 12 workers on three instances each
// run 5 statements, retrying refusals; never more than the cap run at once.
func TestSharedConcurrencyAcrossInstances(t *testing.T) {
	srv := redistest.Start(t)
	// A store timeout far above any delay of a loaded machine: a local
	// fallback would let each instance run 3 and hide the shared cap.
	cfg := budget.Config{SharedStore: srv.URL(), Default: budget.Limits{ConcurrentStatements: 3}, StoreTimeout: 5 * time.Second}
	inst := []*budget.Budgets{newBudgets(t, cfg), newBudgets(t, cfg), newBudgets(t, cfg)}
	var peak, running, refused atomic.Int64
	var wg sync.WaitGroup
	for i := range 12 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			b := inst[i%len(inst)]
			for done := 0; done < 5; {
				rel, err := b.Admit(context.Background(), "42")
				if err != nil {
					refused.Add(1)
					time.Sleep(time.Millisecond)
					continue
				}
				now := running.Add(1)
				for {
					p := peak.Load()
					if now <= p || peak.CompareAndSwap(p, now) {
						break
					}
				}
				time.Sleep(3 * time.Millisecond)
				running.Add(-1)
				rel()
				done++
			}
		}()
	}
	wg.Wait()
	if p := peak.Load(); p > 3 {
		t.Fatalf("%d statements ran at once across instances, cap is 3", p)
	}
	if refused.Load() == 0 {
		t.Fatal("12 workers on a cap of 3 were never refused: the cap was not applied")
	}
	for _, b := range inst {
		if b.Fallbacks() != 0 {
			t.Fatal("an instance fell back to local budgets with Redis up")
		}
	}
	// Every slot came back: a fresh instance can take all three.
	b := newBudgets(t, cfg)
	var rels []func()
	for range 3 {
		rel, err := b.Admit(context.Background(), "42")
		if err != nil {
			t.Fatalf("slots leaked: %v", err)
		}
		rels = append(rels, rel)
	}
	for _, rel := range rels {
		rel()
	}
}

func TestSharedStoreOutageFallsBackLocally(t *testing.T) {
	srv := redistest.Start(t)
	b := newBudgets(t, budget.Config{SharedStore: srv.URL(), Default: budget.Limits{StatementsPerSecond: 0.001, Burst: 2}})
	srv.Stop()
	n, refusals := admitN(t, b, "42", 4)
	if n != 2 || len(refusals) != 2 {
		t.Fatalf("with Redis down: admitted %d refused %d, want the local budget (2 and 2)", n, len(refusals))
	}
	if b.Fallbacks() == 0 {
		t.Fatal("fallbacks not counted")
	}
	srv.Restart(t)
	// Back on the shared store, which starts empty after the restart.
	if n, _ := admitN(t, b, "42", 2); n != 2 {
		t.Fatalf("after Redis came back: admitted %d of 2", n)
	}
}

func TestNewRejectsUnreachableStore(t *testing.T) {
	_, err := budget.New(context.Background(), budget.Config{SharedStore: "redis://127.0.0.1:1/0"})
	if err == nil {
		t.Fatal("New with an unreachable store succeeded")
	}
	if _, err := budget.New(context.Background(), budget.Config{SharedStore: "http://x"}); err == nil {
		t.Fatal("New with a non-redis URL succeeded")
	}
}

func TestEnabled(t *testing.T) {
	if (budget.Config{}).Enabled() {
		t.Fatal("empty config reports enabled")
	}
	if !(budget.Config{Overrides: map[string]budget.Limits{"1": {ConcurrentStatements: 1}}}).Enabled() {
		t.Fatal("an override alone must enable budgets")
	}
}
