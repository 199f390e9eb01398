#!/bin/bash
# run.sh MODE CLIENTS SECONDS ROUNDS: pgbench (-M MODE -c CLIENTS -T SECONDS, a
# point select) through PgBouncer 1.18 (session pooling), each relayproto
# design and directly, in turn, ROUNDS times; prints TPS, the relay's CPU per
# statement from /proc/PID/stat, and the machine's idle share. Needs the
# PostgreSQL on 127.0.0.1:5432 (trust for postgres), pgbouncer, and root
# (pgbouncer runs as postgres). PGSSLMODE=disable: the relays would pass
# pgbench's TLS negotiation through to PostgreSQL, PgBouncer does not offer
# TLS, and TLS costs both ends more than the relay itself.
set -eu
mode=${1:-extended}; c=${2:-8}; T=${3:-10}; rounds=${4:-3}
here=$(cd "$(dirname "$0")" && pwd)
work=$(mktemp -d); chmod 755 "$work"
export PGSSLMODE=disable
cd "$here" && go build -o "$work/relay" .
psql -h 127.0.0.1 -U postgres -qX -c "CREATE TABLE IF NOT EXISTS relayproto(id int PRIMARY KEY, v int);
  INSERT INTO relayproto SELECT g, g FROM generate_series(1, 1000) g ON CONFLICT DO NOTHING; ANALYZE relayproto;"
printf '\\set id random(1, 1000)\nSELECT v FROM relayproto WHERE id = :id;\n' > "$work/sel.sql"
cat > "$work/pgb.ini" <<INI
[databases]
postgres = host=127.0.0.1 port=5432 dbname=postgres
[pgbouncer]
listen_addr = 127.0.0.1
listen_port = 6441
unix_socket_dir =
auth_type = trust
auth_file = $work/users.txt
pool_mode = session
max_client_conn = 1000
default_pool_size = 100
logfile = $work/pgbouncer.log
INI
echo '"postgres" ""' > "$work/users.txt"; chown -R postgres "$work"
cpu() { awk '{print $14 + $15}' "/proc/$1/stat"; }     # utime + stime, clock ticks
idle() { awk '/^cpu /{print $5}' /proc/stat; }
measure() { # name port pid (pid 0: no relay)
  local name=$1 port=$2 pid=$3 t0=0 t1=0
  pgbench -h 127.0.0.1 -p "$port" -U postgres -n -M "$mode" -c "$c" -j 2 -T 2 -f "$work/sel.sql" postgres >/dev/null 2>&1
  [ "$pid" != 0 ] && t0=$(cpu "$pid"); local i0; i0=$(idle)
  local out; out=$(pgbench -h 127.0.0.1 -p "$port" -U postgres -n -M "$mode" -c "$c" -j 2 -T "$T" -f "$work/sel.sql" postgres 2>&1)
  [ "$pid" != 0 ] && t1=$(cpu "$pid"); local i1; i1=$(idle)
  local tps tx; tps=$(echo "$out" | sed -n 's/^tps = \([0-9.]*\) .*/\1/p')
  tx=$(echo "$out" | sed -n 's/^number of transactions actually processed: \([0-9]*\).*/\1/p')
  printf '%-10s %s c=%s tps=%.0f relay_cpu_us_per_stmt=%.1f idle=%.0f%%\n' "$name" "$mode" "$c" "$tps" \
    "$(echo "($t1 - $t0) * 10000 / $tx" | bc -l)" "$(echo "($i1 - $i0) / (2 * $T)" | bc -l)"
}
"$work/relay" -mode goroutine -port 6442 & GOR=$!
"$work/relay" -mode loop -port 6443 & LOOP=$!
"$work/relay" -mode loop -raw -port 6444 & RAW=$!
runuser -u postgres -- pgbouncer -q "$work/pgb.ini" & sleep 1
PGB=$(pgrep -x -u postgres pgbouncer | head -1)
trap 'kill $GOR $LOOP $RAW $PGB 2>/dev/null; rm -rf "$work"' EXIT
for r in $(seq "$rounds"); do
  echo "round $r, load $(cut -d' ' -f1-3 /proc/loadavg)"
  measure pgbouncer 6441 "$PGB"
  measure goroutine 6442 "$GOR"
  measure loop 6443 "$LOOP"
  measure loop-raw 6444 "$RAW"
  measure direct 5432 0
done
