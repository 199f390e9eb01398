package helmtest

import (
	"testing"

	"helm.sh/helm/v3/pkg/lint"
	"helm.sh/helm/v3/pkg/lint/support"
)

// TestLint runs `helm lint` (strict: warnings fail too) for both modes.
func TestLint(t *testing.T) {
	for name, doc := range map[string]string{
		"standalone": ``,
		"sidecar":    `mode: sidecar`,
		"everything": `{metrics: {serviceMonitor: {enabled: true}}, networkPolicy: {enabled: true}, grafanaDashboard: {enabled: true}}`,
	} {
		t.Run(name, func(t *testing.T) {
			linter := lint.All(chartDir, parseValues(t, baseValues, doc), namespace, false)
			for _, msg := range linter.Messages {
				if msg.Severity >= support.WarningSev {
					t.Errorf("lint: %s", msg)
				} else {
					t.Logf("lint: %s", msg)
				}
			}
		})
	}
}
