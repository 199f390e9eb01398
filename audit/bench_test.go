package audit

import (
	"context"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pgtenant/pgtenant/config"
)

// BenchmarkRecord measures events/s into a real cluster per mode, with 64
// concurrent sessions over 16 tenants; Close (flush) is inside the timing.
func BenchmarkRecord(b *testing.B) {
	for _, mode := range []string{ModeStrict, ModeAsync, ModeSpool} {
		b.Run(mode, func(b *testing.B) {
			r, _ := initRegion(b, "eu-west")
			regions := map[string]config.Region{"eu-west": r}
			ctx := context.Background()
			cfg := testAuditConfig(b, mode)
			rec, err := NewRecorder(ctx, cfg, regions, "bench", nil)
			if err != nil {
				b.Fatal(err)
			}
			var next atomic.Int64
			b.SetParallelism(32)
			b.ResetTimer()
			start := time.Now()
			b.RunParallel(func(pb *testing.PB) {
				id := next.Add(1)
				acct := "t" + strconv.FormatInt(id%16, 10)
				i := 0
				for pb.Next() {
					if err := rec.Record(ctx, stmt(acct, "b", i)); err != nil {
						b.Error(err)
						return
					}
					i++
				}
			})
			if err := rec.Close(ctx); err != nil {
				b.Fatal(err)
			}
			b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "events/s")
			st := rec.Stats().Regions["eu-west"]
			if st.Batches > 0 {
				b.ReportMetric(float64(st.EventsWritten)/float64(st.Batches), "events/batch")
			}
		})
	}
}
