package main

import (
	"slices"

	"github.com/pgtenant/pgtenant/isolation"
	"github.com/pgtenant/pgtenant/prove"
)

// warnedBesidesFootguns counts rep's warnings other than RLS footgun
// warnings (the demo schema has documented ones: UNIQUE (id) on orders and
// its identity sequences).
func warnedBesidesFootguns(rep prove.Report) int {
	n := 0
	for _, r := range rep.Results {
		if r.Status == prove.Warn && !slices.Contains(isolation.FootgunChecks, r.Check) {
			n++
		}
	}
	return n
}
