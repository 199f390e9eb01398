package audit

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pgtenant/pgtenant/config"
)

// BenchmarkRecordOneChain: every event on one tenant's chain (one busy tenant).
func BenchmarkRecordOneChain(b *testing.B) {
	r, _ := initRegion(b, "eu-west")
	regions := map[string]config.Region{"eu-west": r}
	ctx := context.Background()
	rec, err := NewRecorder(ctx, testAuditConfig(b, ModeAsync), regions, "bench", nil)
	if err != nil {
		b.Fatal(err)
	}
	var n atomic.Int64
	b.SetParallelism(8)
	b.ResetTimer()
	start := time.Now()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if err := rec.Record(ctx, stmt("42", "b", int(n.Add(1)))); err != nil {
				b.Error(err)
				return
			}
		}
	})
	if err := rec.Close(ctx); err != nil {
		b.Fatal(err)
	}
	b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "events/s")
}
