package admin

import (
	"context"
	"encoding/json"
	"net/http"
	"sort"
	"sync"
	"time"
)

// checkResult is one readiness check in the /readyz body.
type checkResult struct {
	Name  string `json:"name"`
	OK    bool   `json:"ok"`
	Error string `json:"error,omitempty"`
}

// readiness is the /readyz body.
type readiness struct {
	Ready  bool          `json:"ready"`
	Checks []checkResult `json:"checks"`
}

func (s *Server) healthz(w http.ResponseWriter, _ *http.Request) {
	writeJSON(w, http.StatusOK, map[string]string{"status": "ok"})
}

// readyz runs every check concurrently, each within CheckTimeout.
func (s *Server) readyz(w http.ResponseWriter, r *http.Request) {
	type named struct {
		name, region string
		fn           CheckFunc
	}
	var checks []named
	for region, fn := range s.o.RegionChecks {
		checks = append(checks, named{"region:" + region, region, fn})
	}
	if s.o.AuditCheck != nil {
		checks = append(checks, named{"audit", "", s.o.AuditCheck})
	}
	results := make([]checkResult, len(checks))
	var wg sync.WaitGroup
	for i, c := range checks {
		wg.Add(1)
		go func() {
			defer wg.Done()
			ctx, cancel := context.WithTimeout(r.Context(), s.o.CheckTimeout)
			defer cancel()
			err := runCheck(ctx, c.fn)
			results[i] = checkResult{Name: c.name, OK: err == nil}
			if err != nil {
				results[i].Error = err.Error()
			}
			if c.region != "" && s.o.OnRegionProbe != nil {
				s.o.OnRegionProbe(c.region, err == nil)
			}
		}()
	}
	wg.Wait()
	sort.Slice(results, func(i, j int) bool { return results[i].Name < results[j].Name })
	body := readiness{Ready: true, Checks: results}
	for _, res := range results {
		if !res.OK {
			body.Ready = false
			s.o.Logger.Warn("not ready", "check", res.Name, "error", res.Error)
		}
	}
	code := http.StatusOK
	if !body.Ready {
		code = http.StatusServiceUnavailable
	}
	writeJSON(w, code, body)
}

// runCheck calls fn, turning a panic or a check that ignores its deadline
// into an error instead of a hung probe.
func runCheck(ctx context.Context, fn CheckFunc) error {
	done := make(chan error, 1)
	go func() {
		defer func() {
			if p := recover(); p != nil {
				done <- errPanicked
			}
		}()
		done <- fn(ctx)
	}()
	select {
	case err := <-done:
		return err
	case <-ctx.Done():
		return ctx.Err()
	}
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(code)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(v)
}

// timeNow is time.Now, in UTC.
func timeNow() time.Time { return time.Now().UTC() }
