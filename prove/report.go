package prove

import (
	"encoding/json"
	"fmt"
	"io"
	"text/tabwriter"
)

// Result statuses.
const (
	// Pass means the check held.
	Pass = "pass"
	// Fail means isolation is broken (or could not be shown) for this check.
	Fail = "fail"
	// Warn means the check could not be carried out fully (e.g. a table could
	// not be seeded); it does not fail the gate.
	Warn = "warn"
)

// Layers a Result belongs to.
const (
	// LayerSetup is discovery and seeding.
	LayerSetup = "setup"
	// LayerProxy is an attack through pgtenant (parser layer and RLS together).
	LayerProxy = "proxy"
	// LayerRLS is a check with the parser layer bypassed (RLS alone).
	LayerRLS = "rls"
	// LayerCleanup is the removal of the synthetic tenants' rows.
	LayerCleanup = "cleanup"
)

// Result is the outcome of one check.
type Result struct {
	// Region is the configured region name.
	Region string `json:"region"`
	// Table is the schema-qualified tenant table, empty for region-wide checks.
	Table string `json:"table"`
	// Layer is setup, proxy, rls or cleanup.
	Layer string `json:"layer"`
	// Check names what was tried (stable, snake_case).
	Check string `json:"check"`
	// Status is pass, fail or warn.
	Status string `json:"status"`
	// Detail says what happened (the error, the rows affected, the fix).
	Detail string `json:"detail"`
}

// Report is the outcome of a whole run.
type Report struct {
	// OK is true when no Result failed.
	OK bool `json:"ok"`
	// TenantA owns the seeded rows; TenantB is the attacker.
	TenantA string `json:"tenant_a"`
	TenantB string `json:"tenant_b"`
	// Regions are the regions proven, in order.
	Regions []string `json:"regions"`
	// Passed, Failed and Warned count the Results by status.
	Passed int `json:"passed"`
	Failed int `json:"failed"`
	Warned int `json:"warned"`
	// Results lists every check in the order they ran.
	Results []Result `json:"results"`
}

// add records one result and keeps the counters and OK current.
func (r *Report) add(res Result) {
	r.Results = append(r.Results, res)
	switch res.Status {
	case Pass:
		r.Passed++
	case Fail:
		r.Failed++
	case Warn:
		r.Warned++
	}
	r.OK = r.Failed == 0
}

// Failures returns the failed results.
func (r *Report) Failures() []Result {
	var out []Result
	for _, res := range r.Results {
		if res.Status == Fail {
			out = append(out, res)
		}
	}
	return out
}

// WriteJSON writes r as one indented JSON document.
func (r *Report) WriteJSON(w io.Writer) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(r)
}

// WriteTable writes r as an aligned table followed by a one-line summary.
func (r *Report) WriteTable(w io.Writer) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "REGION\tTABLE\tLAYER\tCHECK\tRESULT\tDETAIL")
	for _, res := range r.Results {
		table := res.Table
		if table == "" {
			table = "-"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", res.Region, table, res.Layer, res.Check, res.Status, oneLine(res.Detail))
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	verdict := "PASS"
	if !r.OK {
		verdict = "FAIL"
	}
	_, err := fmt.Fprintf(w, "\n%s: %d passed, %d failed, %d warnings (tenant A %s, tenant B %s)\n",
		verdict, r.Passed, r.Failed, r.Warned, r.TenantA, r.TenantB)
	return err
}

// oneLine keeps a detail on one table row.
func oneLine(s string) string {
	out := make([]rune, 0, len(s))
	for _, c := range s {
		if c == '\n' || c == '\r' || c == '\t' {
			c = ' '
		}
		out = append(out, c)
	}
	return string(out)
}
