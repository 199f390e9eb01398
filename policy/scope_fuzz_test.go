package policy

import (
	"context"
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"
	"time"
)

// scopeGen builds random statements whose verdict hinges on name resolution:
// FROM lists mixing tenant tables, LATERAL subqueries, functions in FROM,
// joins with ON (and subqueries in ON), USING ... AS aliases and join aliases,
// nested under an outer decoy x whose account_id is tenant 7's, with pins
// that name aliases at every level.
type scopeGen struct {
	r      *rand.Rand
	n      int
	names  []string // aliases introduced so far (any level)
	tables []string // aliases of tenant tables, to pin most of them
}

func (g *scopeGen) alias(prefix string) string {
	g.n++
	a := fmt.Sprintf("%s%d", prefix, g.n)
	g.names = append(g.names, a)
	return a
}

// ref picks an alias to reference: one introduced so far, or the decoy x.
func (g *scopeGen) ref() string {
	if len(g.names) == 0 || g.r.IntN(4) == 0 {
		return "x"
	}
	return g.names[g.r.IntN(len(g.names))]
}

func (g *scopeGen) pick(list ...string) string { return list[g.r.IntN(len(list))] }

// pred is a conjunct that may pin (or seem to pin) something.
func (g *scopeGen) pred() string {
	switch g.r.IntN(5) {
	case 0:
		return g.ref() + ".account_id = " + g.pick("42", "7")
	case 1:
		return g.ref() + ".account_id = " + g.ref() + ".account_id"
	case 2:
		return "account_id = 42"
	case 3:
		return g.ref() + ".account_id IN (SELECT l2.account_id FROM line_items l2 WHERE l2.account_id = " + g.ref() + ".account_id)"
	default:
		return "true"
	}
}

func (g *scopeGen) preds() string {
	var p []string
	for i := g.r.IntN(3) + 1; i > 0; i-- {
		p = append(p, g.pred())
	}
	return strings.Join(p, " AND ")
}

// item is one FROM item.
func (g *scopeGen) item(depth int) string {
	switch k := g.r.IntN(7); {
	case k <= 1:
		t := g.pick("orders", "line_items", "customers")
		if g.r.IntN(3) == 0 {
			g.tables = append(g.tables, "x")
			return t + " x" // shadows the decoy: which x a reference means is the question
		}
		a := g.alias("t")
		g.tables = append(g.tables, a)
		return t + " " + a
	case k == 2:
		ref := g.ref()
		a := g.alias("s")
		return fmt.Sprintf("%sLATERAL (SELECT l.* FROM line_items l WHERE l.account_id = %s.account_id) %s",
			g.pick("", ""), ref, a)
	case k == 3:
		ref := g.ref()
		a := g.alias("u")
		return fmt.Sprintf("unnest((SELECT array_agg(l.sku) FROM line_items l WHERE l.account_id = %s.account_id)) %s(sku)", ref, a)
	case depth < 2 && k == 4:
		l, r := g.item(depth+1), g.item(depth+1)
		return fmt.Sprintf("%s %s JOIN %s ON %s", l, g.pick("", "LEFT"), r, g.preds())
	case depth < 2 && k == 5:
		l := g.pick("orders", "line_items") + " " + g.alias("t")
		r := g.pick("orders", "line_items") + " " + g.alias("t")
		return fmt.Sprintf("%s JOIN %s USING (account_id) AS %s", l, r, g.alias("j"))
	case depth < 2:
		l, r := g.item(depth+1), g.item(depth+1)
		return fmt.Sprintf("(%s JOIN %s ON %s) AS %s", l, r, g.preds(), g.alias("a"))
	}
	return "customers " + g.alias("t")
}

func (g *scopeGen) statement() string {
	var items []string
	for i := g.r.IntN(3) + 1; i > 0; i-- {
		items = append(items, g.item(0))
	}
	where := []string{g.preds()}
	for _, a := range g.tables {
		if g.r.IntN(5) != 0 {
			where = append(where, a+".account_id = 42")
		}
	}
	inner := "SELECT * FROM " + strings.Join(items, ", ") + " WHERE " + strings.Join(where, " AND ")
	switch g.r.IntN(3) {
	case 0:
		return "SELECT q.* FROM (SELECT 7 AS account_id) x, LATERAL (" + inner + ") q"
	case 1:
		return "SELECT (SELECT string_agg(z::text, ',') FROM (" + inner + ") z) FROM (SELECT 7 AS account_id) x"
	}
	return strings.Replace(inner, "SELECT * FROM ", "SELECT * FROM (SELECT 7 AS account_id) x, ", 1)
}

// FuzzScopeRules generates statements from scopeGen: whenever the policy
// allows one for account 42, it runs on a real PostgreSQL with RLS off
// (the server resolves the names) and must not return tenant 7's data.
// Statements the server rejects (invalid references) did nothing.
func FuzzScopeRules(f *testing.F) {
	for i := uint64(0); i < 64; i++ {
		f.Add(i)
	}
	f.Fuzz(func(t *testing.T, seed uint64) {
		if testing.Short() {
			t.Skip("runs statements on a PostgreSQL cluster")
		}
		tw, e := sharedTripwire(t)
		g := &scopeGen{r: rand.New(rand.NewPCG(seed, 3))}
		for i := 0; i < 8; i++ {
			g.n, g.names, g.tables = 0, nil, nil
			sql := g.statement()
			if d := session(t, e, "42").CheckQuery(sql); !d.Allow {
				continue
			}
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			o := tw.run(ctx, sql)
			cancel()
			if o.leaked() {
				t.Fatalf("allowed statement reached tenant 7 (returned %q): %s", o.out, sql)
			}
		}
	})
}

// TestScopeGenerator keeps the generator honest: among its statements some
// are allowed, some refused, and some allowed ones run on the server.
func TestScopeGenerator(t *testing.T) {
	if testing.Short() {
		t.Skip("runs statements on a PostgreSQL cluster")
	}
	tw, e := sharedTripwire(t)
	allowed, denied, ran := 0, 0, 0
	for seed := uint64(0); seed < 300; seed++ {
		g := &scopeGen{r: rand.New(rand.NewPCG(seed, 3))}
		sql := g.statement()
		if d := session(t, e, "42").CheckQuery(sql); !d.Allow {
			denied++
			continue
		}
		allowed++
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		o := tw.run(ctx, sql)
		cancel()
		if o.err == nil {
			ran++
		}
		if o.leaked() {
			t.Errorf("allowed statement reached tenant 7 (returned %q): %s", o.out, sql)
		}
	}
	t.Logf("%d allowed (%d ran on the server), %d denied", allowed, ran, denied)
	if allowed < 10 || denied < 10 || ran < 5 {
		t.Fatalf("generator too one-sided: %d allowed (%d ran), %d denied", allowed, ran, denied)
	}
}
