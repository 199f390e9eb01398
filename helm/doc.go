// Package helmtest tests the Helm chart in helm/pgtenant (and the sidecar
// example in helm/examples): it renders the chart with Helm's own Go packages
// in both modes, decodes every manifest strictly into typed Kubernetes
// objects and checks them, runs `helm lint`, loads the rendered config.yaml
// with pgtenant's own config.Load, and checks that the Grafana dashboard only
// queries metrics that package metrics exports.
//
// It lives in its own package so that Helm's and Kubernetes' dependencies
// never reach the pgtenant binary.
package helmtest
