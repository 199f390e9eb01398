package metrics_test

import (
	"testing"
	"time"

	"github.com/pgtenant/pgtenant/metrics"
)

// The proxy calls these on every statement; they must stay cheap and
// allocation-free.

func BenchmarkStatementDone(b *testing.B) {
	m := newTestMetrics(metrics.Options{})
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			m.StatementDone("eu-west", 30*time.Microsecond, 2*time.Millisecond)
		}
	})
}

func BenchmarkStatementDecidedAllow(b *testing.B) {
	m := newTestMetrics(metrics.Options{})
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			m.StatementDecided("allow", "")
		}
	})
}

func BenchmarkStatementDecidedDenyUnknownReason(b *testing.B) {
	m := newTestMetrics(metrics.Options{})
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			m.StatementDecided("deny", "Some Free Text")
		}
	})
}
