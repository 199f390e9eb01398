package policy

import (
	"testing"

	"github.com/pgtenant/pgtenant/auth"
	"github.com/pgtenant/pgtenant/config"
)

const (
	benchOLTP = `SELECT "orders"."id", "orders"."total" FROM "orders" WHERE "orders"."account_id" = 42 AND "orders"."id" = 1001 LIMIT 1`
	benchJoin = `WITH recent AS (SELECT id, account_id FROM orders WHERE account_id = 42 AND total > 10)
SELECT r.id, li.sku, c.name FROM recent r JOIN line_items li ON li.order_id = r.id AND li.account_id = 42
JOIN customers c ON c.account_id = li.account_id WHERE c.email = 'a@example.com' ORDER BY r.id LIMIT 50`
)

func benchDecide(b *testing.B, sql string, cacheEntries int) {
	e := newTestEngine(b, func(p *config.Policy) { p.CacheEntries = cacheEntries })
	s := session(b, e, "42")
	if d := s.CheckQuery(sql); !d.Allow {
		b.Fatal(d.Message)
	}
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if d := s.CheckQuery(sql); !d.Allow {
			b.Fatal(d.Message)
		}
	}
}

// BenchmarkCacheHitOLTP: a repeated ORM statement (the common case).
func BenchmarkCacheHitOLTP(b *testing.B) { benchDecide(b, benchOLTP, 1000) }

// BenchmarkCacheHitJoinCTE: a 3-way join with a CTE, cached.
func BenchmarkCacheHitJoinCTE(b *testing.B) { benchDecide(b, benchJoin, 1000) }

// BenchmarkMissOLTP: guard + pg_query parse + analysis + decision.
func BenchmarkMissOLTP(b *testing.B) { benchDecide(b, benchOLTP, 0) }

// BenchmarkMissJoinCTE: the same for the 3-way join with a CTE.
func BenchmarkMissJoinCTE(b *testing.B) { benchDecide(b, benchJoin, 0) }

// BenchmarkBind: a Bind of a remembered statement (text parameter).
func BenchmarkBind(b *testing.B) {
	e := newTestEngine(b)
	s := session(b, e, "42")
	if d := s.CheckParse("q", "SELECT * FROM orders WHERE account_id = $1 AND id = $2", nil); !d.Allow {
		b.Fatal(d.Message)
	}
	vals := [][]byte{[]byte("42"), []byte("7")}
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if d := s.CheckBind("q", nil, vals); !d.Allow {
			b.Fatal(d.Message)
		}
	}
}

// BenchmarkCacheHitOLTPReadOnly: the same statement in a read-only session
// (the read-only verdict on top of the cached analysis).
func BenchmarkCacheHitOLTPReadOnly(b *testing.B) {
	e := newTestEngine(b)
	s := e.NewSession(auth.Principal{Account: "42", Region: "eu-west", Roles: []string{"viewer"}, ReadOnly: true})
	b.ReportAllocs()
	for b.Loop() {
		if d := s.CheckQuery(benchOLTP); !d.Allow {
			b.Fatal(d.Message)
		}
	}
}
