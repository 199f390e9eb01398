#!/usr/bin/env bash
# Installs what pgtenant's demo and tests need beyond Go, from Debian's
# packages, when it is missing: a C compiler (cgo), PostgreSQL server binaries, psql
# and pgbench, PgBouncer, Node.js with npm (for the node-postgres end-to-end test),
# python3 (the audit's independent verifier), Chromium (the report page's browser
# test) and Redis (shared tenant budgets); for `test`, also the client matrix's
# runtimes (test/clients/install.sh).
# Usage: scripts/deps.sh [demo|test]   (demo needs only the PostgreSQL server)
set -euo pipefail
what=${1:-test}

pg_bindir() {
  if command -v pg_config >/dev/null 2>&1 && [ -x "$(pg_config --bindir)/initdb" ]; then
    pg_config --bindir; return
  fi
  ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n1
}

missing=()
bindir=$(pg_bindir || true)
[ -n "$bindir" ] && [ -x "$bindir/initdb" ] || missing+=(postgresql)
# pg_query_go compiles PostgreSQL's parser with cgo: a C compiler is needed
command -v "${CC:-gcc}" >/dev/null 2>&1 || command -v cc >/dev/null 2>&1 || missing+=(gcc libc6-dev)
if [ "$what" = test ]; then
  command -v psql >/dev/null 2>&1 || missing+=(postgresql-client)
  command -v pgbench >/dev/null 2>&1 || [ -x "$bindir/pgbench" ] || missing+=(postgresql-contrib)
  command -v pgbouncer >/dev/null 2>&1 || missing+=(pgbouncer)
  command -v npm >/dev/null 2>&1 || missing+=(nodejs npm)
  command -v chromium >/dev/null 2>&1 || missing+=(chromium)
  command -v redis-server >/dev/null 2>&1 || missing+=(redis-server)
  command -v python3 >/dev/null 2>&1 || missing+=(python3) # the audit's independent verifier
fi
if [ "$what" = test ]; then
  # the OpenID provider of the identity tests (test/e2e/oidc_test.go builds
  # it the same way when this has not run): zitadel/oidc's example OP
  op_dir="${XDG_CACHE_HOME:-$HOME/.cache}/pgtenant-test/zitadel-oidc-v3.52.0"
  if [ ! -x "$op_dir/server" ] && command -v go >/dev/null 2>&1; then
    echo "deps: building the test OpenID provider" >&2
    (cd /tmp && GOBIN="$op_dir" GOFLAGS=-buildvcs=false go install github.com/zitadel/oidc/v3/example/server@v3.52.0)
  fi
fi
if [ ${#missing[@]} -eq 0 ]; then
  [ "$what" = test ] && exec "$(dirname "$0")/../test/clients/install.sh"
  exit 0
fi

echo "deps: installing ${missing[*]}" >&2
sudo=""
[ "$(id -u)" -eq 0 ] || sudo="sudo"
export DEBIAN_FRONTEND=noninteractive
$sudo apt-get update -qq
$sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
[ "$what" = test ] && exec "$(dirname "$0")/../test/clients/install.sh"
exit 0
