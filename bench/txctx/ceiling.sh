#!/usr/bin/env bash
# What the tenant context of pool.mode: transaction costs the server alone.
#
# pgtenant in transaction mode sets app.current_account_id transaction-locally
# at the start of every transaction (a Bind+Execute of its prepared
# set_config, in the same round trip as the client's first statement), as
# issue 13 requires; PgBouncer in transaction mode runs nothing per
# transaction. This runs the bench harness's point select straight against
# PostgreSQL with as many connections as the pools hold (--pool-size 20),
# with the setting made once per connection (plain) and with the
# transaction-local set_config pipelined before every transaction (ctx),
# interleaved, and prints ctx/plain: the most pgtenant-transaction can keep
# of pgbouncer-transaction's TPS if pgtenant's own CPU per statement were no
# more than PgBouncer's.
#
# Usage: bench/txctx/ceiling.sh [clients] [seconds] [rounds]
# Connects with the PG* environment (default: 127.0.0.1:5432 as postgres for
# setup, a non-superuser role benchsvc for the runs, which RLS applies to)
# and (re)creates the database pgtenant_txctx.
set -euo pipefail
clients=${1:-20}
secs=${2:-10}
rounds=${3:-3}
host=${PGHOST:-127.0.0.1}
port=${PGPORT:-5432}
admin=(psql -X -q -h "$host" -p "$port" -U "${PGADMIN:-postgres}" -v ON_ERROR_STOP=1)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

"${admin[@]}" -d postgres -c "DROP DATABASE IF EXISTS pgtenant_txctx" -c "CREATE DATABASE pgtenant_txctx"
"${admin[@]}" -d pgtenant_txctx <<'SQL'
DO $$ BEGIN IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'benchsvc') THEN CREATE ROLE benchsvc LOGIN; END IF; END $$;
CREATE TABLE public.accounts (aid bigint NOT NULL, account_id bigint NOT NULL, abalance int NOT NULL DEFAULT 0,
    filler char(84)) WITH (fillfactor = 90);
INSERT INTO public.accounts (aid, account_id, abalance)
    SELECT a, t, 0 FROM generate_series(1, 1000) AS t, generate_series(1, 1000) AS a;
ALTER TABLE public.accounts ADD PRIMARY KEY (account_id, aid);
ALTER TABLE public.accounts ENABLE ROW LEVEL SECURITY;
ALTER TABLE public.accounts FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON public.accounts
    USING (account_id = NULLIF(current_setting('app.current_account_id', true), '')::bigint);
GRANT SELECT ON public.accounts TO benchsvc;
VACUUM (FREEZE, ANALYZE) public.accounts;
SQL

cat > "$work/plain.sql" <<'SQL'
\set aid random(1, 1000)
SELECT abalance FROM accounts WHERE account_id = 42 AND aid = :aid;
SQL
cat > "$work/ctx.sql" <<'SQL'
\set aid random(1, 1000)
\startpipeline
SELECT set_config('app.current_account_id', '42', true);
SELECT abalance FROM accounts WHERE account_id = 42 AND aid = :aid;
\endpipeline
SQL

run() { # script -> TPS
	PGOPTIONS="-c app.current_account_id=42" pgbench -n -h "$host" -p "$port" -U benchsvc -M prepared \
		-c "$clients" -j 2 -T "$secs" -f "$work/$1.sql" pgtenant_txctx | awk '/^tps = /{print $3}'
}
echo "clients $clients, ${secs}s per run, pgbench -M prepared; load average $(cut -d' ' -f1-3 /proc/loadavg)"
for r in $(seq "$rounds"); do
	p=$(run plain)
	c=$(run ctx)
	awk -v r="$r" -v p="$p" -v c="$c" 'BEGIN{printf "round %d: plain %.0f TPS, ctx %.0f TPS, ctx/plain %.3f\n", r, p, c, c/p}'
done
"${admin[@]}" -d postgres -c "DROP DATABASE pgtenant_txctx"
