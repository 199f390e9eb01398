#!/usr/bin/env bash
# Installs what pgtenant's demo and tests need beyond Go, from Debian's
# packages, when it is missing: PostgreSQL server binaries, psql and pgbench,
# PgBouncer, Node.js with npm (for the node-postgres end-to-end test), and
# python3 (the audit's independent verifier, audit/verifier).
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
if [ "$what" = test ]; then
  command -v psql >/dev/null 2>&1 || missing+=(postgresql-client)
  command -v pgbench >/dev/null 2>&1 || [ -x "$bindir/pgbench" ] || missing+=(postgresql-contrib)
  command -v pgbouncer >/dev/null 2>&1 || missing+=(pgbouncer)
  command -v npm >/dev/null 2>&1 || missing+=(nodejs npm)
  command -v python3 >/dev/null 2>&1 || missing+=(python3) # the audit's independent verifier
fi
[ ${#missing[@]} -eq 0 ] && exit 0

echo "deps: installing ${missing[*]}" >&2
sudo=""
[ "$(id -u)" -eq 0 ] || sudo="sudo"
export DEBIAN_FRONTEND=noninteractive
$sudo apt-get update -qq
$sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
