#!/usr/bin/env bash
# Installs the client matrix's runtimes and libraries (test/clients): the
# Python, Java, Ruby and PHP clients from Debian's packages, the Node.js
# clients from npm at the versions pinned in node/package-lock.json, and the
# Go clients' module dependencies (go/go.mod). Only what is missing is
# installed; run it again at any time.
# Usage: test/clients/install.sh
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)

debs=(
  python3 python3-psycopg2 python3-psycopg python3-psycopg-pool python3-asyncpg python3-sqlalchemy python3-django
  default-jdk-headless libpostgresql-jdbc-java libhikaricp-java libslf4j-java
  ruby ruby-pg ruby-sequel ruby-activerecord
  php-cli php-pgsql php-illuminate-database
)
missing=()
for p in "${debs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
# Node.js may come from elsewhere than Debian (e.g. NodeSource, which bundles npm).
command -v node >/dev/null 2>&1 || missing+=(nodejs)
command -v npm >/dev/null 2>&1 || missing+=(npm)
if [ ${#missing[@]} -gt 0 ]; then
  echo "clients: installing ${missing[*]}" >&2
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  export DEBIAN_FRONTEND=noninteractive
  $sudo apt-get update -qq
  $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

if [ ! -f "$here/node/node_modules/.package-lock.json" ] || \
   [ "$here/node/package-lock.json" -nt "$here/node/node_modules/.package-lock.json" ]; then
  echo "clients: npm ci in test/clients/node" >&2
  (cd "$here/node" && npm ci --no-audit --no-fund --loglevel=error)
fi

if [ -f "$here/go/go.mod" ]; then
  (cd "$here/go" && go mod download)
fi
