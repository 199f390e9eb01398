package isolation

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/pgtenant/pgtenant/config"
)

// ErrRLSNotActive is wrapped by CheckRLS's error when RLS is not in force.
var ErrRLSNotActive = errors.New("row level security is not active")

// CheckRLS inspects region name and returns nil only when row-level security
// is enabled, forced and scoped to the tenant setting on every tenant table
// and the service role cannot bypass it. Otherwise the error names each table
// at fault and why (policy.require_rls: serve refuses to start with it).
func CheckRLS(ctx context.Context, name string, r config.Region, p config.Policy) error {
	rep := Inspect(ctx, name, r, Options{Policy: p, ParserActive: true})
	if rep.Status == Unknown {
		return fmt.Errorf("check row level security: %s", rep.Error)
	}
	var faults []string
	for _, t := range rep.RLS.Tables {
		if t.Status != Active {
			faults = append(faults, t.Table+": "+strings.Join(t.Problems, "; "))
		}
	}
	if len(faults) == 0 {
		return nil
	}
	return fmt.Errorf("region %s: %w: %s", name, ErrRLSNotActive, strings.Join(faults, " | "))
}
