package audit

import (
	"context"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/pgtenant/pgtenant/config"
	"github.com/pgtenant/pgtenant/tenancy"
)

// BenchmarkWriter measures the v3 write path into a real cluster, flat
// out: 16 tenants, in async mode (a queue large enough not to throttle),
// in spool mode (the default interval fsync) and in strict mode (eight
// recording goroutines, each waiting for its event's commit, as eight
// clients' sessions do: many small ingest batches, so the per-batch costs
// of the writer and of the integrator's rounds show). It reports the rate at
// which events are appended (events/s, Record until the queue or the spool
// is empty) and, separately, the rate at which the region's integrator
// chains them (chained/s, from the first event to the last one integrated).
func BenchmarkWriter(b *testing.B) {
	for _, mode := range []string{ModeAsync, ModeSpool, ModeStrict} {
		b.Run(mode, func(b *testing.B) { benchWriter(b, mode) })
	}
}

func benchWriter(b *testing.B, mode string) {
	rec, dataDir := benchRecorder(b, mode)
	if mode == ModeStrict {
		b.SetParallelism(max(1, 8/runtime.GOMAXPROCS(0)))
	}
	ctx := context.Background()
	evs := make([]tenancy.Event, 16)
	for i := range evs {
		evs[i] = stmt("t"+strconv.Itoa(i), "s"+strconv.Itoa(i), i)
	}
	var next atomic.Int64
	b.ResetTimer()
	server0, self0 := clusterCPU(b, dataDir), selfCPU()
	start := time.Now()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if err := rec.Record(ctx, evs[next.Add(1)%16]); err != nil {
				b.Error(err)
				return
			}
		}
	})
	w := rec.writers["eu-west"]
	for w.queued.Load() > 0 || w.spool != nil && w.spool.Pending() > 0 {
		time.Sleep(time.Millisecond)
	}
	appended := time.Since(start)
	if err := rec.Close(ctx); err != nil {
		b.Fatal(err)
	}
	chained := time.Since(start)
	server, self := clusterCPU(b, dataDir)-server0, selfCPU()-self0
	b.StopTimer()
	// CPU per event is what the machine's load does not distort: the rate
	// two idle cores could sustain is 2 s / (server + proxy CPU per event).
	b.ReportMetric(float64(server.Microseconds())/float64(b.N), "server-cpu-us/event")
	b.ReportMetric(float64(self.Microseconds())/float64(b.N), "proxy-cpu-us/event")
	b.ReportMetric(2e6/(float64((server+self).Microseconds())/float64(b.N)), "2core-capacity-events/s")
	b.ReportMetric(float64(b.N)/appended.Seconds(), "events/s")
	b.ReportMetric(float64(b.N)/chained.Seconds(), "chained/s")
	st := rec.Stats().Regions["eu-west"]
	if st.Batches > 0 {
		b.ReportMetric(float64(st.EventsWritten)/float64(st.Batches), "events/batch")
	}
}

// selfCPU is this process's user+system CPU time.
func selfCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// clusterCPU is the user+system CPU time of the postmaster in dataDir, of
// its live children (backends, background workers) and of those it
// reaped, from /proc.
func clusterCPU(tb testing.TB, dataDir string) time.Duration {
	b, err := os.ReadFile(filepath.Join(dataDir, "postmaster.pid"))
	if err != nil {
		tb.Fatal(err)
	}
	pm := strings.SplitN(string(b), "\n", 2)[0]
	entries, err := os.ReadDir("/proc")
	if err != nil {
		tb.Fatal(err)
	}
	var total time.Duration
	for _, e := range entries {
		if _, err := strconv.Atoi(e.Name()); err != nil {
			continue
		}
		stat, err := os.ReadFile(filepath.Join("/proc", e.Name(), "stat"))
		if err != nil {
			continue
		}
		s := string(stat)
		i := strings.LastIndexByte(s, ')')
		if i < 0 {
			continue
		}
		// f[0] state, f[1] ppid, f[11] utime, f[12] stime, f[13] cutime,
		// f[14] cstime (of children reaped).
		f := strings.Fields(s[i+1:])
		if len(f) < 15 || (f[1] != pm && e.Name() != pm) {
			continue
		}
		ticks := int64(0)
		fields := f[11:13]
		if e.Name() == pm {
			// Backends that exited (the recorder's, once closed) count
			// through the postmaster, which reaped them.
			fields = f[11:15]
		}
		for _, v := range fields {
			n, _ := strconv.ParseInt(v, 10, 64)
			ticks += n
		}
		total += time.Duration(ticks) * time.Second / 100 // USER_HZ
	}
	return total
}

// BenchmarkWriterPaced measures what the audit costs at the rate the bench
// harness drives, not flat out: 16 sessions' statements and their results
// (merged into one row each) recorded at 12,000 statements/s, b.N
// statements in all, in async mode and in spool mode with the default
// interval fsync. At that rate the writer ships what its linger gathered,
// so the per-batch and per-round costs that BenchmarkWriter's full batches
// hide show in the database's CPU per statement, and the spool's own costs
// (encoding, the mapped segment, its fsyncs) in the proxy's.
func BenchmarkWriterPaced(b *testing.B) {
	for _, mode := range []string{ModeAsync, ModeSpool} {
		b.Run(mode, func(b *testing.B) { benchWriterPaced(b, mode) })
	}
}

func benchWriterPaced(b *testing.B, mode string) {
	const rate = 12000 // statements/s
	rec, dataDir := benchRecorder(b, mode)
	ctx := context.Background()
	b.ResetTimer()
	server0, self0 := clusterCPU(b, dataDir), selfCPU()
	start := time.Now()
	tick := time.NewTicker(time.Millisecond)
	for i := 0; i < b.N; {
		<-tick.C
		due := min(b.N, int(time.Since(start).Seconds()*rate)+1)
		for ; i < due; i++ {
			ev := stmt("t"+strconv.Itoa(i%16), "s"+strconv.Itoa(i%16), i)
			ev.Ref = uint64(i + 1)
			if err := rec.Record(ctx, ev); err != nil {
				b.Fatal(err)
			}
			res := ev
			res.Kind, res.Verdict, res.Rows, res.SQLState = tenancy.KindResult, "", 1, "00000"
			if err := rec.Record(ctx, res); err != nil {
				b.Fatal(err)
			}
		}
	}
	tick.Stop()
	if err := rec.Close(ctx); err != nil {
		b.Fatal(err)
	}
	server, self := clusterCPU(b, dataDir)-server0, selfCPU()-self0
	b.StopTimer()
	st := rec.Stats().Regions["eu-west"]
	b.ReportMetric(float64(server.Microseconds())/float64(b.N), "server-cpu-us/stmt")
	b.ReportMetric(float64(self.Microseconds())/float64(b.N), "proxy-cpu-us/stmt")
	if st.Batches > 0 {
		b.ReportMetric(float64(st.EventsWritten)/float64(st.Batches), "rows/batch")
	}
}

// benchRecorder starts a recorder in mode (spool: the default interval
// fsync), with a queue large enough not to throttle, on a fresh region; it
// returns the recorder and the region cluster's data directory (for
// clusterCPU).
func benchRecorder(b *testing.B, mode string) (*Recorder, string) {
	r, c := initRegion(b, "eu-west")
	cfg := testAuditConfig(b, mode)
	cfg.QueueSize = 1 << 16
	rec, err := NewRecorder(context.Background(), cfg, map[string]config.Region{"eu-west": r}, "bench", nil)
	if err != nil {
		b.Fatal(err)
	}
	return rec, c.DataDir
}
