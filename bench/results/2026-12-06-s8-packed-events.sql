-- The packed-storage experiment of the s8 README (issue 12): PostgreSQL's cost of storing
-- 200,000 events shaped like the harness's as one row each in a table with events' two
-- indexes, against packs of 16, 64 and 256 events per row keyed by (chain_id, first_seq).
-- Run as a superuser with psql -f; it creates and leaves schema pk (drop it after).
\set ON_ERROR_STOP 1
DROP SCHEMA IF EXISTS pk CASCADE; CREATE SCHEMA pk;
CREATE TABLE pk.staged AS SELECT 'acct-42'::text chain_id, g::bigint seq, gen_random_uuid() event_id, now() + g * interval '1 microsecond' ts, 'statement'::text kind, '42'::text account_id, 'user-1'::text subject, 'app'::text client_user, '127.0.0.1'::inet client_addr, 'eu-west'::text region, 'sess-abcdef'::text session_id, 'proxy-1'::text proxy_instance, 'SELECT abalance FROM pgbench_accounts WHERE aid = $1'::text statement, ARRAY['public.pgbench_accounts'] tables, 'allow'::text verdict, NULL::text reason, NULL::text sqlstate, 1::bigint rows, 35::bigint duration_us, 2::smallint hash_version, sha256(g::text::bytea) content_hash, sha256((g-1)::text::bytea) prev_hash, sha256(g::text::bytea || 'x') entry_hash, g::bigint leaf FROM generate_series(1,200000) g;
CREATE TABLE pk.rowwise (LIKE pk.staged, PRIMARY KEY (chain_id, seq), UNIQUE (event_id));
CREATE TABLE pk.packsrc AS SELECT chain_id, min(seq) first_seq, count(*)::int n, array_agg(s ORDER BY seq) events FROM pk.staged s GROUP BY chain_id, (seq-1)/256;
CREATE TABLE pk.packs (chain_id text, first_seq bigint, n int, events pk.staged[], PRIMARY KEY (chain_id, first_seq));
ALTER TABLE pk.packs ALTER COLUMN events SET STORAGE EXTERNAL;
CREATE TABLE pk.packs_c (chain_id text, first_seq bigint, n int, events pk.staged[], PRIMARY KEY (chain_id, first_seq));
CHECKPOINT;
\timing on
INSERT INTO pk.rowwise SELECT * FROM pk.staged;
INSERT INTO pk.packs SELECT * FROM pk.packsrc;
INSERT INTO pk.packs_c SELECT * FROM pk.packsrc;
SELECT count(*) FROM pk.rowwise, LATERAL (SELECT 1) x;
SELECT sum(cardinality(events)) FROM pk.packs;
\timing off
SELECT pg_size_pretty(pg_total_relation_size('pk.rowwise')) rowwise, pg_size_pretty(pg_total_relation_size('pk.packs')) packs, pg_size_pretty(pg_total_relation_size('pk.packs_c')) packs_compressed;

\set ON_ERROR_STOP 1
TRUNCATE pk.rowwise;
DROP TABLE IF EXISTS pk.p16src, pk.p16, pk.p64src, pk.p64;
CREATE TABLE pk.p16src AS SELECT chain_id, min(seq) first_seq, count(*)::int n, array_agg(s ORDER BY seq) events FROM pk.staged s GROUP BY chain_id, (seq-1)/16;
CREATE TABLE pk.p64src AS SELECT chain_id, min(seq) first_seq, count(*)::int n, array_agg(s ORDER BY seq) events FROM pk.staged s GROUP BY chain_id, (seq-1)/64;
CREATE TABLE pk.p16 (LIKE pk.packs INCLUDING ALL);
CREATE TABLE pk.p64 (LIKE pk.packs INCLUDING ALL);
TRUNCATE pk.packs;
CHECKPOINT;
\timing on
INSERT INTO pk.rowwise SELECT * FROM pk.staged;
INSERT INTO pk.p16 SELECT * FROM pk.p16src;
INSERT INTO pk.p64 SELECT * FROM pk.p64src;
INSERT INTO pk.packs SELECT * FROM pk.packsrc;
\timing off
TRUNCATE pk.rowwise, pk.p16, pk.p64, pk.packs;
\timing on
INSERT INTO pk.rowwise SELECT * FROM pk.staged;
INSERT INTO pk.p16 SELECT * FROM pk.p16src;
INSERT INTO pk.p64 SELECT * FROM pk.p64src;
INSERT INTO pk.packs SELECT * FROM pk.packsrc;
