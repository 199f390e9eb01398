#!/usr/bin/env bash
# Builds the pgtenant binary with cgo (pg_query is C) and the version stamped in.
#
#   scripts/build.sh [OUTPUT]        default OUTPUT: bin/pgtenant
#
# Environment: VERSION and COMMIT override what git reports (the Docker build
# passes them as build arguments because .git is not in the build context);
# GOFLAGS, GOOS/GOARCH and CC pass through to go build.
# The Dockerfile and CI both call this script, so every build is made the same way.
set -euo pipefail

cd "$(dirname "$0")/.."
out=${1:-bin/pgtenant}

if [[ -z ${VERSION:-} ]]; then
	VERSION=$(git describe --tags --always --dirty 2>/dev/null || echo dev)
fi
if [[ -z ${COMMIT:-} ]]; then
	COMMIT=$(git rev-parse HEAD 2>/dev/null || echo unknown)
fi

mkdir -p "$(dirname "$out")"
CGO_ENABLED=1 go build \
	-trimpath \
	-buildvcs=false \
	-ldflags "-s -w -X main.version=${VERSION} -X main.commit=${COMMIT}" \
	-o "$out" \
	./cmd/pgtenant
echo "built $out (version ${VERSION}, commit ${COMMIT})" >&2
