package audit

import (
	"context"
	"fmt"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/pgtenant/pgtenant/config"
	"github.com/pgtenant/pgtenant/tenancy"
)

// BenchmarkStatementPipeline measures what the proxy's sessions see: each of
// clients sessions records a statement (waiting as its mode promises) and
// then its result, in a closed loop, as a proxy session does per statement.
// It reports the mean wait per statement and statements/s, and the rows per
// database write (spool, strict) so that group formation shows.
func BenchmarkStatementPipeline(b *testing.B) {
	type mode struct{ name, mode, fsync string }
	for _, m := range []mode{{"strict", ModeStrict, ""}, {"spool-group", ModeSpool, SpoolFsyncGroup}, {"spool-interval", ModeSpool, SpoolFsyncInterval}} {
		for _, clients := range []int{8, 64} {
			b.Run(fmt.Sprintf("%s/clients=%d", m.name, clients), func(b *testing.B) {
				r, _ := initRegion(b, "eu-west")
				regions := map[string]config.Region{"eu-west": r}
				ctx := context.Background()
				cfg := testAuditConfig(b, m.mode)
				cfg.SpoolFsync = m.fsync
				cfg.QueueSize = 65536
				rec, err := NewRecorder(ctx, cfg, regions, "bench", nil)
				if err != nil {
					b.Fatal(err)
				}
				per := b.N/clients + 1
				var wg sync.WaitGroup
				b.ResetTimer()
				start := time.Now()
				for c := range clients {
					wg.Add(1)
					go func() {
						defer wg.Done()
						acct, sess := "t"+strconv.Itoa(c%16), "s"+strconv.Itoa(c)
						for i := range per {
							ev := stmt(acct, sess, i)
							ev.Ref = uint64(i + 1)
							if err := rec.Record(ctx, ev); err != nil {
								b.Error(err)
								return
							}
							res := ev
							res.Kind, res.Verdict, res.Rows, res.SQLState = tenancy.KindResult, "", 1, "00000"
							if err := rec.Record(ctx, res); err != nil {
								b.Error(err)
								return
							}
						}
					}()
				}
				wg.Wait()
				elapsed := time.Since(start)
				b.StopTimer()
				st := rec.Stats().Regions["eu-west"]
				if err := rec.Close(ctx); err != nil {
					b.Fatal(err)
				}
				n := float64(per * clients)
				b.ReportMetric(n/elapsed.Seconds(), "stmts/s")
				b.ReportMetric(float64(elapsed.Microseconds())*float64(clients)/n, "µs/stmt")
				if st.Batches > 0 {
					b.ReportMetric(float64(st.EventsWritten)/float64(st.Batches), "rows/write")
				}
				if st.SpoolFsyncs > 0 {
					// What a group waits for at least: the disk's latency
					// under this load.
					b.ReportMetric(st.SpoolFsyncSeconds*1e6/float64(st.SpoolFsyncs), "µs/fsync")
				}
			})
		}
	}
}
