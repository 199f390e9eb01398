package admin

import (
	"context"
	"net/http"
	"sort"
	"sync"
	"time"

	"github.com/pgtenant/pgtenant/config"
	"github.com/pgtenant/pgtenant/isolation"
)

// Proof is the /isolation-proof document.
type Proof struct {
	// GeneratedAt is when the attestation was computed.
	GeneratedAt time.Time `json:"generated_at"`
	// Status is the worst status over all regions.
	Status string `json:"status"`
	// ParserEnforcement and PolicyVersion describe the proxy itself.
	ParserEnforcement string `json:"parser_enforcement"`
	PolicyVersion     string `json:"policy_version,omitempty"`
	// Legend explains the status words.
	Legend map[string]string `json:"legend"`
	// Regions holds one report per configured region, by name.
	Regions []isolation.Report `json:"regions"`
}

var legend = map[string]string{
	isolation.Active:        "the protection is present and enforcing",
	isolation.DeployedInert: "the protection is present but something makes it ineffective (see problems)",
	isolation.Missing:       "the protection is absent or incomplete (see problems)",
	isolation.Unknown:       "the region could not be inspected (see error)",
}

// BuildProof inspects every region concurrently.
func BuildProof(ctx context.Context, regions map[string]config.Region, o isolation.Options) Proof {
	p := Proof{GeneratedAt: timeNow(), ParserEnforcement: isolation.Missing, PolicyVersion: o.PolicyVersion, Legend: legend, Regions: []isolation.Report{}}
	if o.ParserActive {
		p.ParserEnforcement = isolation.Active
	}
	var mu sync.Mutex
	var wg sync.WaitGroup
	for name, r := range regions {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rep := isolation.Inspect(ctx, name, r, o)
			mu.Lock()
			p.Regions = append(p.Regions, rep)
			mu.Unlock()
		}()
	}
	wg.Wait()
	sort.Slice(p.Regions, func(i, j int) bool { return p.Regions[i].Region < p.Regions[j].Region })
	statuses := []string{p.ParserEnforcement}
	for _, r := range p.Regions {
		statuses = append(statuses, r.Status)
	}
	p.Status = isolation.Worst(statuses...)
	return p
}

func (s *Server) isolationProof(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := context.WithTimeout(r.Context(), s.o.ProofTimeout)
	defer cancel()
	select { // one inspection at a time: probes must not pile up connections
	case s.proofMu <- struct{}{}:
		defer func() { <-s.proofMu }()
	case <-ctx.Done():
		writeJSON(w, http.StatusServiceUnavailable, map[string]string{"error": "another isolation proof is still being computed"})
		return
	}
	p := BuildProof(ctx, s.o.Regions, s.o.Proof)
	for _, rep := range p.Regions {
		if rep.Status != isolation.Active {
			s.o.Logger.Warn("isolation not fully active", "region", rep.Region, "status", rep.Status)
		}
	}
	writeJSON(w, http.StatusOK, p)
}
