package bench

import (
	"context"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/pgtenant/pgtenant/cluster"
	"github.com/pgtenant/pgtenant/test/pgtest"
)

// The durability bound is clients / (latency × statements per
// transaction), capped by pgtenant-noaudit's TPS; the serial bound adds the
// latency to noaudit's time per statement; async and spool rows get only
// their ratio to noaudit; failed rows and references get nothing.
func TestComputeCeilings(t *testing.T) {
	res := &Results{
		Settings:   Settings{StatementsPerTx: 2},
		Durability: &Durability{Samples: 10, SpoolFS: "ext4", FdatasyncMeanMs: 0.5, CommitMeanMs: 2},
		Rows: []Row{
			{Target: TargetPgtenantNoAudit, Mode: "simple", Clients: 8, TPS: 6000},
			{Target: TargetPgtenantNoAudit, Mode: "simple", Clients: 64, TPS: 7000},
			// 8 / 0.5 ms / 2 = 8000 TPS allowed; noaudit's 6000 is lower.
			// In the run: 8 / 1 ms / 2 = 4000.
			{Target: TargetPgtenantSpoolGroup, Mode: "simple", Clients: 8, TPS: 4800, InRunFsyncMs: ptr(1.0), InRunWriteMs: ptr(9.0), InRunOverheadMs: ptr(1.25)},
			// 8 / 2 ms / 2 = 2000 TPS allowed; in the run the batch write: 8 / 4 ms / 2 = 1000.
			{Target: TargetPgtenantStrict, Mode: "simple", Clients: 8, TPS: 1700, InRunWriteMs: ptr(4.0)},
			// 64 / 2 ms / 2 = 16000: noaudit's 7000 is the ceiling.
			{Target: TargetPgtenantStrict, Mode: "simple", Clients: 64, TPS: 3500},
			{Target: TargetPgtenantAsync, Mode: "simple", Clients: 8, TPS: 5400},
			{Target: TargetPgtenantSpool, Mode: "extended", Clients: 8, TPS: 5000}, // no noaudit row for extended
			{Target: TargetPgtenantStrict, Mode: "simple", Clients: 1, Error: "hung"},
			{Target: TargetDirect, Mode: "simple", Clients: 8, TPS: 9000},
			{Target: TargetPgtenantTx, Mode: "simple", Clients: 8, TPS: 5900}, // pooling, not an audit mode
		}}
	res.computeCeilings()
	check := func(i int, name string, got *float64, want float64) {
		t.Helper()
		if got == nil || *got < want-1e-9 || *got > want+1e-9 {
			t.Errorf("row %d %s = %v, want %v", i, name, deref(got), want)
		}
	}
	none := func(i int, name string, got *float64) {
		t.Helper()
		if got != nil {
			t.Errorf("row %d %s = %v, want none", i, name, *got)
		}
	}
	r := res.Rows
	check(2, "bound", r[2].DurabilityBoundTPS, 8000)
	check(2, "ceiling", r[2].CeilingTPS, 6000)
	check(2, "vs ceiling", r[2].TPSvsCeiling, 0.8)
	check(2, "vs noaudit", r[2].TPSvsNoAudit, 0.8)
	check(3, "bound", r[3].DurabilityBoundTPS, 2000)
	check(3, "ceiling", r[3].CeilingTPS, 2000)
	check(3, "vs ceiling", r[3].TPSvsCeiling, 0.85)
	check(2, "in-run bound", r[2].InRunBoundTPS, 4000)
	check(3, "in-run bound", r[3].InRunBoundTPS, 1000)
	none(4, "in-run bound", r[4].InRunBoundTPS)
	check(4, "ceiling", r[4].CeilingTPS, 7000)
	check(4, "vs ceiling", r[4].TPSvsCeiling, 0.5)
	// 8 / (8 / 6000 + 2 ms × 2) = 1500; 64 / (64 / 7000 + 4 ms) = 64 × 7000 / 92.
	check(3, "serial bound", r[3].SerialBoundTPS, 1500)
	check(4, "serial bound", r[4].SerialBoundTPS, 64*7000.0/92)
	check(4, "vs serial bound", r[4].TPSvsSerialBound, 0.71875)
	none(5, "serial bound", r[5].SerialBoundTPS)
	check(5, "vs noaudit", r[5].TPSvsNoAudit, 0.9)
	none(5, "ceiling", r[5].CeilingTPS)
	none(6, "vs noaudit", r[6].TPSvsNoAudit)
	none(6, "ceiling", r[6].CeilingTPS)
	none(7, "ceiling", r[7].CeilingTPS)
	none(8, "vs noaudit", r[8].TPSvsNoAudit)
	none(0, "vs noaudit", r[0].TPSvsNoAudit)
	none(9, "vs noaudit", r[9].TPSvsNoAudit)

	var md strings.Builder
	res.Markdown(&md)
	for _, want := range []string{
		"## Audit modes against the audit disabled and their durability ceiling",
		"(ext4) mean 0.500 ms",
		"| pgtenant-spool-group | simple | 8 | 4800 | 0.80 | 8000 | 6000 | 0.80 | 3429 | 1.40 | 1.000 | 9.000 | 4000 | 1.250 |",
		"| pgtenant-strict | simple | 64 | 3500 | 0.50 | 16000 | 7000 | 0.50 | 4870 | 0.72 | – | – | – | – |",
		"| pgtenant-async | simple | 8 | 5400 | 0.90 | – | – | – | – | – | – | – | – | – |",
	} {
		if !strings.Contains(md.String(), want) {
			t.Errorf("results.md lacks %q:\n%s", want, md.String())
		}
	}
}

// The fdatasync probe times real syncs of appended data and cleans up.
func TestTimeFdatasyncs(t *testing.T) {
	dir := t.TempDir()
	ds, err := timeFdatasyncs(dir, 5)
	if err != nil {
		t.Fatal(err)
	}
	if len(ds) != 5 || meanMs(ds) <= 0 || p50Ms(ds) <= 0 {
		t.Fatalf("fdatasync samples: %v", ds)
	}
	if left, _ := filepath.Glob(filepath.Join(dir, "*")); len(left) != 0 {
		t.Fatalf("probe file left behind: %v", left)
	}
}

// Both probes run against a real cluster and file system, and the commit
// probe leaves no table behind.
func TestMeasureDurability(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a cluster")
	}
	c := pgtest.Start(t, cluster.Config{Name: "bench-durability"})
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	d, err := measureDurability(ctx, t.TempDir(), c.SuperuserDSN(c.Database))
	if err != nil {
		t.Fatal(err)
	}
	if d.Samples != durabilitySamples || d.FdatasyncMeanMs <= 0 || d.CommitMeanMs <= 0 || d.CommitP50Ms <= 0 || d.SpoolFS == "" {
		t.Fatalf("durability: %+v", d)
	}
	conn := pgtest.Conn(t, c.SuperuserDSN(c.Database))
	var left bool
	if err := conn.QueryRow(ctx, `SELECT to_regclass('pgtenant_bench_commit_probe') IS NOT NULL`).Scan(&left); err != nil || left {
		t.Fatalf("probe table left behind: %v %v", left, err)
	}
}
