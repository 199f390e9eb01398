// Package deploy checks the build and container artifacts: the Dockerfile's
// stages and runtime properties, and scripts/build.sh's version stamping.
// (The Helm chart has its own tests in helm/.)
package deploy
