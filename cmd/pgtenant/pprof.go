package main

import (
	"log/slog"
	"net/http"
	"net/http/pprof"
	"os"
	"runtime"
)

// mutexProfileFraction is the share of lock contention events the profiler
// samples (1 in 100) while it is on, for /debug/pprof/mutex: where sessions
// wait for each other.
const mutexProfileFraction = 100

// pprofEnv names an address on which serve exposes Go's profiler
// (/debug/pprof/), for finding costs under load. Unset, nothing listens.
// Bind it to a loopback address: profiles reveal internals.
const pprofEnv = "PGTENANT_PPROF_ADDR"

// startPprof serves the profiler when PGTENANT_PPROF_ADDR is set.
func startPprof(log *slog.Logger) {
	addr := os.Getenv(pprofEnv)
	if addr == "" {
		return
	}
	runtime.SetMutexProfileFraction(mutexProfileFraction)
	mux := http.NewServeMux()
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	go func() {
		log.Warn("profiler listening", "addr", addr)
		if err := http.ListenAndServe(addr, mux); err != nil { //nolint:gosec // opt-in debugging endpoint
			log.Error("profiler stopped", "error", err)
		}
	}()
}
