package policy

import (
	"context"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/pgtenant/pgtenant/test/pgtest"
)

var (
	fuzzTripOnce   sync.Once
	fuzzTrip       *tripwire
	fuzzTripErr    error
	fuzzTripEngine *Engine
)

// FuzzTripwire is the differential check as a fuzzer: any statement the
// policy allows for account 42 (mutations of every committed case, the
// hostile ones included, so scope rules, pins and value forms are all
// explored) is run on a real PostgreSQL with RLS off and must neither
// return tenant 7's data nor change a row that is not tenant 42's.
func FuzzTripwire(f *testing.F) {
	for _, sql := range fuzzSeeds(f) {
		f.Add(sql)
	}
	for _, sql := range hostileCases {
		f.Add(sql)
	}
	f.Fuzz(func(t *testing.T, sql string) {
		if testing.Short() {
			t.Skip("runs statements on a PostgreSQL cluster")
		}
		low := strings.ToLower(sql)
		if strings.Contains(low, "pg_sleep") || strings.Contains(sql, "-- bind:") {
			return
		}
		tw, e := sharedTripwire(t)
		if d := session(t, e, "42").CheckQuery(sql); !d.Allow {
			return
		}
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if o := tw.run(ctx, sql); o.leaked() {
			t.Fatalf("allowed statement reached tenant 7 (returned %q, changed other rows: %v): %s", o.out, o.touched, sql)
		}
	})
}

// sharedTripwire returns the test binary's tripwire session (on a shared
// cluster, so fuzz iterations reuse it) and an engine, bound to t.
func sharedTripwire(t *testing.T) (*tripwire, *Engine) {
	t.Helper()
	fuzzTripOnce.Do(func() {
		c := pgtest.Shared(t, "policy-fuzz-tripwire")
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		if fuzzTripErr = c.Exec(ctx, c.Database, tripwireSetup+tripwireData); fuzzTripErr != nil {
			return
		}
		pc, err := pgconn.Connect(ctx, c.ServiceDSN())
		if fuzzTripErr = err; err != nil {
			return
		}
		fuzzTrip = &tripwire{t: t, c: c, pc: pc}
		fuzzTrip.reset(ctx)
		fuzzTrip.others, fuzzTrip.all = fuzzTrip.sum(ctx, othersSum), fuzzTrip.sum(ctx, allSum)
		fuzzTripEngine = newTestEngine(t)
	})
	if fuzzTripErr != nil {
		t.Fatal(fuzzTripErr)
	}
	fuzzTrip.t = t
	return fuzzTrip, fuzzTripEngine
}
