package main

import (
	"os"
	"runtime/debug"
)

// gcPercentDefault is serve's GOGC when the environment sets none. The
// proxy keeps a small live heap (relay buffers are pooled) and allocates
// per statement, so at Go's default of 100 the collector ran often enough
// to take 8-14% of the proxy's CPU per statement in the bench harness
// (GOGC=400 against 100, same run); at 400 it runs a quarter as often for
// about 10 MiB more resident memory at 64 clients. GOMEMLIMIT, when set,
// still bounds the heap: the runtime collects sooner as it nears the limit.
const gcPercentDefault = 400

// tuneGC applies gcPercentDefault unless GOGC is set.
func tuneGC() {
	if _, set := os.LookupEnv("GOGC"); !set {
		debug.SetGCPercent(gcPercentDefault)
	}
}
