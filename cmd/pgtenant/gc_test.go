package main

import (
	"os"
	"runtime/debug"
	"testing"
)

// serve collects at gcPercentDefault unless GOGC says otherwise.
func TestTuneGCDefaultsUnlessGOGCIsSet(t *testing.T) {
	prev := debug.SetGCPercent(100)
	defer debug.SetGCPercent(prev)

	t.Setenv("GOGC", "150") // restored after the test
	tuneGC()
	if got := debug.SetGCPercent(100); got != 100 {
		t.Fatalf("with GOGC set, tuneGC changed the collector to %d", got)
	}

	os.Unsetenv("GOGC")
	tuneGC()
	if got := debug.SetGCPercent(100); got != gcPercentDefault {
		t.Fatalf("without GOGC, the collector runs at %d, want %d", got, gcPercentDefault)
	}
}
