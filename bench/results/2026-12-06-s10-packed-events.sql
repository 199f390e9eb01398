-- The packed-storage experiment of the s10 README (issue 12): s8's measurement again with the
-- packs built as the integrator would build them (array_agg of the round's rows per chain),
-- 200,000 events in rounds of 800 (16 events per chain per round), UUIDv7-like ids.
-- Run as a superuser with psql -f; it creates and leaves schema pk2 (drop it after).
\set ON_ERROR_STOP 1
DROP SCHEMA IF EXISTS pk2 CASCADE; CREATE SCHEMA pk2;
CREATE TABLE pk2.staged AS SELECT 'acct-' || (g % 50)::text chain_id, g::bigint seq, (lpad(to_hex(g),12,'0') || '7000' || '8000' || substr(md5(g::text),1,12))::uuid event_id, now() + g * interval '1 microsecond' ts, 'statement'::text kind, '42'::text account_id, 'user-1'::text subject, 'app'::text client_user, '127.0.0.1'::inet client_addr, 'eu-west'::text region, 'sess-abcdef'::text session_id, 'proxy-1'::text proxy_instance, 'SELECT abalance FROM pgbench_accounts WHERE aid = $1'::text statement, ARRAY['public.pgbench_accounts'] tables, 'allow'::text verdict, NULL::text reason, NULL::text sqlstate, 1::bigint rows, 35::bigint duration_us, 2::smallint hash_version, sha256(g::text::bytea) content_hash, sha256((g-1)::text::bytea) prev_hash, sha256(g::text::bytea || 'x') entry_hash, g::bigint leaf FROM generate_series(1,200000) g;
ALTER TABLE pk2.staged ADD COLUMN rnd int; UPDATE pk2.staged SET rnd = (seq-1)/800;
CREATE INDEX ON pk2.staged(rnd); ANALYZE pk2.staged;
CREATE TABLE pk2.rowwise (LIKE pk2.staged, PRIMARY KEY (chain_id, seq), UNIQUE (event_id));
CREATE TABLE pk2.packs (chain_id text, first_seq bigint, last_seq bigint, max_ts timestamptz, events pk2.staged[], PRIMARY KEY (chain_id, first_seq));
CREATE TABLE pk2.packs_ids (chain_id text, first_seq bigint, last_seq bigint, events pk2.staged[], PRIMARY KEY (chain_id, first_seq));
CREATE TABLE pk2.ids (event_id uuid PRIMARY KEY);
CHECKPOINT;
\timing on
-- rounds of 800 events, 50 chains: 16 per chain per round, like the harness
DO $$ BEGIN FOR r IN 0..249 LOOP INSERT INTO pk2.rowwise SELECT * FROM pk2.staged s WHERE s.rnd = r; END LOOP; END $$;
DO $$ BEGIN FOR r IN 0..249 LOOP INSERT INTO pk2.packs SELECT chain_id, min(seq), max(seq), max(ts), array_agg(s ORDER BY seq) FROM pk2.staged s WHERE s.rnd = r GROUP BY chain_id; END LOOP; END $$;
DO $$ BEGIN FOR r IN 0..249 LOOP INSERT INTO pk2.packs_ids SELECT chain_id, min(seq), max(seq), array_agg(s ORDER BY seq) FROM pk2.staged s WHERE s.rnd = r GROUP BY chain_id; INSERT INTO pk2.ids SELECT event_id FROM pk2.staged s WHERE s.rnd = r; END LOOP; END $$;
DO $$ BEGIN FOR r IN 0..249 LOOP PERFORM count(*) FROM pk2.staged s WHERE s.rnd = r; END LOOP; END $$;
\timing off
TRUNCATE pk2.rowwise, pk2.packs, pk2.packs_ids, pk2.ids;
CHECKPOINT;
\timing on
DO $$ BEGIN FOR r IN 0..249 LOOP INSERT INTO pk2.rowwise SELECT * FROM pk2.staged s WHERE s.rnd = r; END LOOP; END $$;
DO $$ BEGIN FOR r IN 0..249 LOOP INSERT INTO pk2.packs SELECT chain_id, min(seq), max(seq), max(ts), array_agg(s ORDER BY seq) FROM pk2.staged s WHERE s.rnd = r GROUP BY chain_id; END LOOP; END $$;
DO $$ BEGIN FOR r IN 0..249 LOOP INSERT INTO pk2.packs_ids SELECT chain_id, min(seq), max(seq), array_agg(s ORDER BY seq) FROM pk2.staged s WHERE s.rnd = r GROUP BY chain_id; INSERT INTO pk2.ids SELECT event_id FROM pk2.staged s WHERE s.rnd = r; END LOOP; END $$;
DO $$ BEGIN FOR r IN 0..249 LOOP PERFORM count(*) FROM pk2.staged s WHERE s.rnd = r; END LOOP; END $$;
\timing off

-- Then the packs' storage variants and the aggregation alone:
\set ON_ERROR_STOP 1
DROP TABLE IF EXISTS pk2.pm, pk2.pe, pk2.pcols;
CREATE TABLE pk2.pm (chain_id text, first_seq bigint, last_seq bigint, events pk2.staged[], PRIMARY KEY (chain_id, first_seq)) WITH (toast_tuple_target = 8160);
ALTER TABLE pk2.pm ALTER COLUMN events SET STORAGE MAIN;
CREATE TABLE pk2.pe (chain_id text, first_seq bigint, last_seq bigint, events pk2.staged[], PRIMARY KEY (chain_id, first_seq));
ALTER TABLE pk2.pe ALTER COLUMN events SET STORAGE EXTERNAL;
TRUNCATE pk2.rowwise;
CHECKPOINT;
\timing on
DO $$ BEGIN FOR r IN 0..249 LOOP INSERT INTO pk2.rowwise SELECT * FROM pk2.staged s WHERE s.rnd = r; END LOOP; END $$;
DO $$ BEGIN FOR r IN 0..249 LOOP INSERT INTO pk2.pm SELECT chain_id, min(seq), max(seq), array_agg(s ORDER BY seq) FROM pk2.staged s WHERE s.rnd = r GROUP BY chain_id; END LOOP; END $$;
DO $$ BEGIN FOR r IN 0..249 LOOP INSERT INTO pk2.pe SELECT chain_id, min(seq), max(seq), array_agg(s ORDER BY seq) FROM pk2.staged s WHERE s.rnd = r GROUP BY chain_id; END LOOP; END $$;
DO $$ BEGIN FOR r IN 0..249 LOOP PERFORM chain_id, min(seq), max(seq), array_agg(s ORDER BY seq) FROM pk2.staged s WHERE s.rnd = r GROUP BY chain_id; END LOOP; END $$;
DO $$ BEGIN FOR r IN 0..249 LOOP PERFORM chain_id, min(seq), max(seq), array_agg(s) FROM pk2.staged s WHERE s.rnd = r GROUP BY chain_id; END LOOP; END $$;
DO $$ BEGIN FOR r IN 0..249 LOOP PERFORM chain_id, count(*) FROM pk2.staged s WHERE s.rnd = r GROUP BY chain_id; END LOOP; END $$;
\timing off
SELECT pg_size_pretty(pg_total_relation_size('pk2.rowwise')) rowwise, pg_size_pretty(pg_total_relation_size('pk2.pm')) pm, pg_size_pretty(pg_total_relation_size('pk2.pe')) pe, pg_size_pretty(pg_total_relation_size('pk2.packs')) packs_default;
