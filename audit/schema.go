package audit

import (
	"context"
	"errors"
	"fmt"
	"log/slog"

	"github.com/jackc/pgx/v5"

	"github.com/pgtenant/pgtenant/config"
)

// Schema and role names of the audit store.
const (
	Schema = "pgtenant_audit"
	// OwnerRole owns every audit object. It cannot log in; the proxy's
	// service role may only execute the append functions.
	OwnerRole = "pgtenant_audit_owner"
	// ReaderRole may read the audit tables; grant it to auditors.
	ReaderRole = "pgtenant_audit_reader"
)

// migrations are applied in order, each once, recorded in
// pgtenant_audit.schema_migrations. Never edit a released migration: append
// a new one.
var migrations = []string{
	// 1: tables, append-only triggers, append functions.
	`
CREATE TABLE pgtenant_audit.events (
	chain_id       text        NOT NULL,
	seq            bigint      NOT NULL CHECK (seq >= 1),
	event_id       uuid        NOT NULL,
	ts             timestamptz NOT NULL,
	kind           text        NOT NULL CHECK (kind IN ('connect','reject','statement','result','disconnect','config')),
	account_id     text,
	subject        text,
	client_user    text,
	client_addr    inet,
	region         text        NOT NULL,
	session_id     text,
	proxy_instance text,
	statement      text,
	tables         text[],
	verdict        text        CHECK (verdict IN ('allow','deny')),
	reason         text,
	sqlstate       text,
	rows           bigint,
	duration_us    bigint,
	hash_version   smallint    NOT NULL,
	content_hash   bytea       NOT NULL,
	prev_hash      bytea       NOT NULL,
	entry_hash     bytea       NOT NULL,
	PRIMARY KEY (chain_id, seq),
	UNIQUE (event_id)
);
CREATE INDEX events_account_ts ON pgtenant_audit.events (account_id, ts);

CREATE TABLE pgtenant_audit.chain_heads (
	chain_id   text        PRIMARY KEY,
	region     text        NOT NULL,
	seq        bigint      NOT NULL CHECK (seq >= 0),
	head       bytea       NOT NULL,
	updated_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE pgtenant_audit.checkpoints (
	id        bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
	chain_id  text        NOT NULL,
	region    text        NOT NULL,
	size      bigint      NOT NULL CHECK (size >= 0),
	head      bytea       NOT NULL,
	ts        timestamptz NOT NULL,
	key_id    text        NOT NULL,
	signature bytea       NOT NULL
);
CREATE INDEX checkpoints_chain ON pgtenant_audit.checkpoints (chain_id, size);

CREATE FUNCTION pgtenant_audit.forbid_change() RETURNS trigger
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
BEGIN
	RAISE EXCEPTION 'pgtenant_audit.%: % is not allowed, the audit trail is append-only', TG_TABLE_NAME, TG_OP
		USING ERRCODE = '42501';
END $$;

CREATE FUNCTION pgtenant_audit.head_forward() RETURNS trigger
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
BEGIN
	IF NEW.chain_id IS DISTINCT FROM OLD.chain_id OR NEW.region IS DISTINCT FROM OLD.region
	   OR NEW.seq < OLD.seq OR (NEW.seq = OLD.seq AND NEW.head IS DISTINCT FROM OLD.head) THEN
		RAISE EXCEPTION 'pgtenant_audit.chain_heads: a chain head may only move forward'
			USING ERRCODE = '42501';
	END IF;
	RETURN NEW;
END $$;

CREATE TRIGGER events_append_only BEFORE UPDATE OR DELETE ON pgtenant_audit.events
	FOR EACH ROW EXECUTE FUNCTION pgtenant_audit.forbid_change();
CREATE TRIGGER events_no_truncate BEFORE TRUNCATE ON pgtenant_audit.events
	FOR EACH STATEMENT EXECUTE FUNCTION pgtenant_audit.forbid_change();
CREATE TRIGGER checkpoints_append_only BEFORE UPDATE OR DELETE ON pgtenant_audit.checkpoints
	FOR EACH ROW EXECUTE FUNCTION pgtenant_audit.forbid_change();
CREATE TRIGGER checkpoints_no_truncate BEFORE TRUNCATE ON pgtenant_audit.checkpoints
	FOR EACH STATEMENT EXECUTE FUNCTION pgtenant_audit.forbid_change();
CREATE TRIGGER chain_heads_no_delete BEFORE DELETE ON pgtenant_audit.chain_heads
	FOR EACH ROW EXECUTE FUNCTION pgtenant_audit.forbid_change();
CREATE TRIGGER chain_heads_no_truncate BEFORE TRUNCATE ON pgtenant_audit.chain_heads
	FOR EACH STATEMENT EXECUTE FUNCTION pgtenant_audit.forbid_change();
CREATE TRIGGER chain_heads_forward BEFORE UPDATE ON pgtenant_audit.chain_heads
	FOR EACH ROW EXECUTE FUNCTION pgtenant_audit.head_forward();
-- ENABLE ALWAYS: the triggers fire under session_replication_role = replica too.
ALTER TABLE pgtenant_audit.events ENABLE ALWAYS TRIGGER events_append_only;
ALTER TABLE pgtenant_audit.events ENABLE ALWAYS TRIGGER events_no_truncate;
ALTER TABLE pgtenant_audit.checkpoints ENABLE ALWAYS TRIGGER checkpoints_append_only;
ALTER TABLE pgtenant_audit.checkpoints ENABLE ALWAYS TRIGGER checkpoints_no_truncate;
ALTER TABLE pgtenant_audit.chain_heads ENABLE ALWAYS TRIGGER chain_heads_no_delete;
ALTER TABLE pgtenant_audit.chain_heads ENABLE ALWAYS TRIGGER chain_heads_no_truncate;
ALTER TABLE pgtenant_audit.chain_heads ENABLE ALWAYS TRIGGER chain_heads_forward;

-- reserve locks a chain's head row (creating it at genesis) for the rest of
-- the transaction and returns its seq and head, and which of p_ids are
-- already recorded (so a re-shipped spool batch is not appended twice).
CREATE FUNCTION pgtenant_audit.reserve(p_chain text, p_region text, p_genesis bytea, p_ids uuid[])
RETURNS TABLE (seq bigint, head bytea, present uuid[])
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
	v_seq bigint;
	v_head bytea;
	v_region text;
BEGIN
	INSERT INTO pgtenant_audit.chain_heads (chain_id, region, seq, head)
		VALUES (p_chain, p_region, 0, p_genesis) ON CONFLICT (chain_id) DO NOTHING;
	UPDATE pgtenant_audit.chain_heads h SET updated_at = now() WHERE h.chain_id = p_chain
		RETURNING h.seq, h.head, h.region INTO v_seq, v_head, v_region;
	IF v_region IS DISTINCT FROM p_region THEN
		RAISE EXCEPTION 'pgtenant_audit.reserve: chain % belongs to region %, not %', p_chain, v_region, p_region;
	END IF;
	-- A new statement, hence a new snapshot: it sees rows committed by the
	-- transaction we may have waited for on the head row.
	RETURN QUERY SELECT v_seq, v_head,
		ARRAY(SELECT e.event_id FROM pgtenant_audit.events e WHERE e.event_id = ANY (p_ids));
END $$;

-- append inserts rows that must extend the chain head exactly (contiguous
-- seq, prev_hash = head) and moves the head to the last row.
CREATE FUNCTION pgtenant_audit.append(p_chain text, p_rows jsonb) RETURNS bigint
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
	v_seq bigint;
	v_head bytea;
	r record;
BEGIN
	SELECT h.seq, h.head INTO v_seq, v_head FROM pgtenant_audit.chain_heads h
		WHERE h.chain_id = p_chain FOR UPDATE;
	IF NOT FOUND THEN
		RAISE EXCEPTION 'pgtenant_audit.append: chain % has no head', p_chain;
	END IF;
	FOR r IN SELECT x.chain_id, x.seq, x.prev_hash, x.entry_hash
	         FROM jsonb_populate_recordset(NULL::pgtenant_audit.events, p_rows) x LOOP
		IF r.chain_id IS DISTINCT FROM p_chain OR r.seq IS DISTINCT FROM v_seq + 1
		   OR r.prev_hash IS DISTINCT FROM v_head OR length(r.entry_hash) <> 32 THEN
			RAISE EXCEPTION 'pgtenant_audit.append: row seq % does not extend chain % at seq %', r.seq, p_chain, v_seq
				USING ERRCODE = '40001';
		END IF;
		v_seq := r.seq;
		v_head := r.entry_hash;
	END LOOP;
	INSERT INTO pgtenant_audit.events
		SELECT * FROM jsonb_populate_recordset(NULL::pgtenant_audit.events, p_rows);
	UPDATE pgtenant_audit.chain_heads h SET seq = v_seq, head = v_head, updated_at = now()
		WHERE h.chain_id = p_chain;
	RETURN v_seq;
END $$;

CREATE FUNCTION pgtenant_audit.schema_version() RETURNS integer
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
	SELECT coalesce(max(version), 0) FROM pgtenant_audit.schema_migrations
$$;

REVOKE ALL ON ALL TABLES IN SCHEMA pgtenant_audit FROM PUBLIC;
REVOKE ALL ON ALL FUNCTIONS IN SCHEMA pgtenant_audit FROM PUBLIC;
`,
	// 2: append_rows takes typed column arrays and checks the chain set-based:
	// about half the server time per row of append's jsonb decoded twice and
	// PL/pgSQL loop. append stays for proxies of schema version 1.
	`
CREATE FUNCTION pgtenant_audit.append_rows(p_chain text, p_seq bigint[], p_event_id uuid[],
	p_ts timestamptz[], p_kind text[], p_account_id text[], p_subject text[], p_client_user text[],
	p_client_addr text[], p_region text[], p_session_id text[], p_proxy_instance text[],
	p_statement text[], p_tables text[], p_verdict text[], p_reason text[], p_sqlstate text[],
	p_rows bigint[], p_duration_us bigint[], p_hash_version smallint[], p_content_hash bytea[],
	p_prev_hash bytea[], p_entry_hash bytea[]) RETURNS bigint
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
	v_seq bigint;
	v_head bytea;
	v_n integer := coalesce(cardinality(p_seq), 0);
	v_bad bigint;
BEGIN
	SELECT h.seq, h.head INTO v_seq, v_head FROM pgtenant_audit.chain_heads h
		WHERE h.chain_id = p_chain FOR UPDATE;
	IF NOT FOUND THEN
		RAISE EXCEPTION 'pgtenant_audit.append_rows: chain % has no head', p_chain;
	END IF;
	IF v_n = 0 THEN
		RETURN v_seq;
	END IF;
	IF EXISTS (SELECT 1 FROM unnest(ARRAY[cardinality(p_event_id), cardinality(p_ts), cardinality(p_kind),
			cardinality(p_account_id), cardinality(p_subject), cardinality(p_client_user),
			cardinality(p_client_addr), cardinality(p_region), cardinality(p_session_id),
			cardinality(p_proxy_instance), cardinality(p_statement), cardinality(p_tables),
			cardinality(p_verdict), cardinality(p_reason), cardinality(p_sqlstate), cardinality(p_rows),
			cardinality(p_duration_us), cardinality(p_hash_version), cardinality(p_content_hash),
			cardinality(p_prev_hash), cardinality(p_entry_hash)]) AS c(n) WHERE c.n IS DISTINCT FROM v_n) THEN
		RAISE EXCEPTION 'pgtenant_audit.append_rows: column arrays differ in length' USING ERRCODE = '22023';
	END IF;
	-- Row i must be seq head+i, link to the previous row's entry hash (the
	-- head's for the first) and carry a 32-byte entry hash.
	SELECT count(*) INTO v_bad FROM (
		SELECT u.seq, u.prev, u.entry, u.i, lag(u.entry) OVER (ORDER BY u.i) AS before
		FROM unnest(p_seq, p_prev_hash, p_entry_hash) WITH ORDINALITY AS u(seq, prev, entry, i)) x
	WHERE x.seq IS DISTINCT FROM v_seq + x.i OR x.prev IS DISTINCT FROM coalesce(x.before, v_head)
		OR length(x.entry) IS DISTINCT FROM 32;
	IF v_bad > 0 THEN
		RAISE EXCEPTION 'pgtenant_audit.append_rows: rows do not extend chain % at seq %', p_chain, v_seq
			USING ERRCODE = '40001';
	END IF;
	INSERT INTO pgtenant_audit.events (chain_id, seq, event_id, ts, kind, account_id, subject, client_user,
		client_addr, region, session_id, proxy_instance, statement, tables, verdict, reason, sqlstate, rows,
		duration_us, hash_version, content_hash, prev_hash, entry_hash)
	SELECT p_chain, u.seq, u.event_id, u.ts, u.kind, u.account_id, u.subject, u.client_user,
		u.client_addr::inet, u.region, u.session_id, u.proxy_instance, u.statement, u.tables::text[],
		u.verdict, u.reason, u.sqlstate, u.rows, u.duration_us, u.hash_version, u.content_hash,
		u.prev_hash, u.entry_hash
	FROM unnest(p_seq, p_event_id, p_ts, p_kind, p_account_id, p_subject, p_client_user, p_client_addr,
		p_region, p_session_id, p_proxy_instance, p_statement, p_tables, p_verdict, p_reason, p_sqlstate,
		p_rows, p_duration_us, p_hash_version, p_content_hash, p_prev_hash, p_entry_hash)
		AS u(seq, event_id, ts, kind, account_id, subject, client_user, client_addr, region, session_id,
		     proxy_instance, statement, tables, verdict, reason, sqlstate, rows, duration_us, hash_version,
		     content_hash, prev_hash, entry_hash);
	UPDATE pgtenant_audit.chain_heads h SET seq = v_seq + v_n, head = p_entry_hash[array_upper(p_entry_hash, 1)],
		updated_at = now() WHERE h.chain_id = p_chain;
	RETURN v_seq + v_n;
END $$;

REVOKE ALL ON FUNCTION pgtenant_audit.append_rows(text, bigint[], uuid[], timestamptz[], text[], text[],
	text[], text[], text[], text[], text[], text[], text[], text[], text[], text[], text[], bigint[],
	bigint[], smallint[], bytea[], bytea[], bytea[]) FROM PUBLIC;
`,
	// 3: audit v3's write path. Writers append unsequenced, content-hashed
	// rows to ingest with COPY and take no lock; one integrator per region
	// (whichever proxy holds the advisory lock) assigns seq, links the chains
	// and moves them into events through integrate. Kinds api and purge.
	`
-- Nothing reads events by (account_id, ts): exports and verification go by
-- chain_id (the account) and seq. One index fewer per integrated event.
DROP INDEX pgtenant_audit.events_account_ts;
ALTER TABLE pgtenant_audit.events DROP CONSTRAINT events_kind_check;
ALTER TABLE pgtenant_audit.events ADD CONSTRAINT events_kind_check
	CHECK (kind IN ('connect','reject','statement','result','disconnect','config','api','purge'));

-- leaf: the event's index in its region's Merkle tree (RFC 6962 hashing,
-- leaf data = entry_hash), assigned by the integrator; NULL for rows of
-- schema version 2. tree_heads holds each region's tree size;
-- tree_checkpoints the signed notes of audit seal.
ALTER TABLE pgtenant_audit.events ADD COLUMN leaf bigint;
CREATE TABLE pgtenant_audit.tree_heads (
	region text   PRIMARY KEY,
	size   bigint NOT NULL CHECK (size >= 0)
);
CREATE TABLE pgtenant_audit.tree_checkpoints (
	id     bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
	region text        NOT NULL,
	size   bigint      NOT NULL CHECK (size >= 0),
	root   bytea       NOT NULL,
	ts     timestamptz NOT NULL DEFAULT now(),
	note   text        NOT NULL
);
CREATE FUNCTION pgtenant_audit.tree_forward() RETURNS trigger
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
BEGIN
	IF NEW.region IS DISTINCT FROM OLD.region OR NEW.size < OLD.size THEN
		RAISE EXCEPTION 'pgtenant_audit.tree_heads: a tree may only grow' USING ERRCODE = '42501';
	END IF;
	RETURN NEW;
END $$;
CREATE TRIGGER tree_heads_no_delete BEFORE DELETE ON pgtenant_audit.tree_heads
	FOR EACH ROW EXECUTE FUNCTION pgtenant_audit.forbid_change();
CREATE TRIGGER tree_heads_no_truncate BEFORE TRUNCATE ON pgtenant_audit.tree_heads
	FOR EACH STATEMENT EXECUTE FUNCTION pgtenant_audit.forbid_change();
CREATE TRIGGER tree_heads_forward BEFORE UPDATE ON pgtenant_audit.tree_heads
	FOR EACH ROW EXECUTE FUNCTION pgtenant_audit.tree_forward();
CREATE TRIGGER tree_checkpoints_append_only BEFORE UPDATE OR DELETE ON pgtenant_audit.tree_checkpoints
	FOR EACH ROW EXECUTE FUNCTION pgtenant_audit.forbid_change();
CREATE TRIGGER tree_checkpoints_no_truncate BEFORE TRUNCATE ON pgtenant_audit.tree_checkpoints
	FOR EACH STATEMENT EXECUTE FUNCTION pgtenant_audit.forbid_change();
ALTER TABLE pgtenant_audit.tree_heads ENABLE ALWAYS TRIGGER tree_heads_no_delete;
ALTER TABLE pgtenant_audit.tree_heads ENABLE ALWAYS TRIGGER tree_heads_no_truncate;
ALTER TABLE pgtenant_audit.tree_heads ENABLE ALWAYS TRIGGER tree_heads_forward;
ALTER TABLE pgtenant_audit.tree_checkpoints ENABLE ALWAYS TRIGGER tree_checkpoints_append_only;
ALTER TABLE pgtenant_audit.tree_checkpoints ENABLE ALWAYS TRIGGER tree_checkpoints_no_truncate;

-- tree_size locks region's tree head (creating it empty) and returns its size.
CREATE FUNCTION pgtenant_audit.tree_size(p_region text) RETURNS bigint
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
	v_size bigint;
BEGIN
	INSERT INTO pgtenant_audit.tree_heads (region, size) VALUES (p_region, 0) ON CONFLICT (region) DO NOTHING;
	SELECT t.size INTO v_size FROM pgtenant_audit.tree_heads t WHERE t.region = p_region FOR UPDATE;
	RETURN v_size;
END $$;

CREATE TABLE pgtenant_audit.ingest (
	event_id       uuid        NOT NULL,
	chain_id       text        NOT NULL,
	ts             timestamptz NOT NULL,
	kind           text        NOT NULL CHECK (kind IN ('connect','reject','statement','result','disconnect','config','api','purge')),
	account_id     text,
	subject        text,
	client_user    text,
	client_addr    inet,
	region         text        NOT NULL,
	session_id     text,
	proxy_instance text,
	statement      text,
	tables         text[],
	verdict        text        CHECK (verdict IN ('allow','deny')),
	reason         text,
	sqlstate       text,
	rows           bigint,
	duration_us    bigint,
	hash_version   smallint    NOT NULL,
	content_hash   bytea       NOT NULL CHECK (length(content_hash) = 32),
	-- the appending transaction: the integrator reads rows by it, so that a
	-- transaction that commits late is never skipped.
	xid            xid8        NOT NULL DEFAULT pg_current_xact_id()
);
CREATE UNIQUE INDEX ingest_event_id ON pgtenant_audit.ingest (event_id);
CREATE INDEX ingest_xid ON pgtenant_audit.ingest (xid, event_id);
CREATE TRIGGER ingest_append_only BEFORE UPDATE OR DELETE ON pgtenant_audit.ingest
	FOR EACH ROW EXECUTE FUNCTION pgtenant_audit.forbid_change();
CREATE TRIGGER ingest_no_truncate BEFORE TRUNCATE ON pgtenant_audit.ingest
	FOR EACH STATEMENT EXECUTE FUNCTION pgtenant_audit.forbid_change();
ALTER TABLE pgtenant_audit.ingest ENABLE ALWAYS TRIGGER ingest_append_only;
ALTER TABLE pgtenant_audit.ingest ENABLE ALWAYS TRIGGER ingest_no_truncate;

-- ingest_pending returns appended rows not yet integrated, from transaction
-- p_from on, in (xid, event_id) order. The planner settings keep the plan
-- on the indexes whatever the statistics say (a fresh table has none).
CREATE FUNCTION pgtenant_audit.ingest_pending(p_from bigint, p_limit integer)
RETURNS TABLE (event_id uuid, chain_id text, region text, ts timestamptz, content_hash bytea, xid bigint)
LANGUAGE sql STABLE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp SET enable_seqscan = off SET enable_hashjoin = off
SET enable_mergejoin = off SET enable_sort = off AS $$
	SELECT i.event_id, i.chain_id, i.region, i.ts, i.content_hash, i.xid::text::bigint
	FROM pgtenant_audit.ingest i
	WHERE i.xid >= p_from::text::xid8
	  AND NOT EXISTS (SELECT 1 FROM pgtenant_audit.events e WHERE e.event_id = i.event_id)
	ORDER BY i.xid, i.event_id LIMIT p_limit
$$;

-- is_integrated reports whether an appended event is in events (a closing
-- proxy that does not integrate waits for its last event).
CREATE FUNCTION pgtenant_audit.is_integrated(p_event_id uuid) RETURNS boolean
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
	SELECT EXISTS (SELECT 1 FROM pgtenant_audit.events e WHERE e.event_id = p_event_id)
$$;

-- snapshot_xmin: every transaction below it has ended.
CREATE FUNCTION pgtenant_audit.snapshot_xmin() RETURNS bigint
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
	SELECT pg_snapshot_xmin(pg_current_snapshot())::text::bigint
$$;

-- heads_of locks the heads of p_chains (creating them at genesis) in chain
-- order and returns them.
CREATE FUNCTION pgtenant_audit.heads_of(p_chains text[], p_regions text[])
RETURNS TABLE (chain_id text, region text, seq bigint, head bytea)
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
BEGIN
	INSERT INTO pgtenant_audit.chain_heads AS h (chain_id, region, seq, head)
	SELECT c.chain, c.region, 0, sha256('\x20'::bytea || int4send(octet_length(convert_to(c.region, 'UTF8')))
			|| convert_to(c.region, 'UTF8') || int4send(octet_length(convert_to(c.chain, 'UTF8')))
			|| convert_to(c.chain, 'UTF8'))
	FROM unnest(p_chains, p_regions) AS c(chain, region)
	ORDER BY c.chain
	ON CONFLICT ON CONSTRAINT chain_heads_pkey DO NOTHING;
	RETURN QUERY SELECT h.chain_id, h.region, h.seq, h.head FROM pgtenant_audit.chain_heads h
		WHERE h.chain_id = ANY (p_chains) ORDER BY h.chain_id FOR UPDATE;
END $$;

-- integrate moves ingested rows into events with the seq and hashes the
-- integrator computed, after checking that they extend every chain exactly
-- (contiguous seq, prev_hash = the previous entry hash, entry_hash =
-- SHA-256(0x10 || lp(chain_id) || seq || prev_hash || content_hash)), that
-- each names its ingested row's chain and content hash, and moves the heads
-- (locked by heads_of in the same transaction).
CREATE FUNCTION pgtenant_audit.integrate(p_region text, p_first_leaf bigint, p_event_id uuid[], p_chain text[],
	p_content bytea[], p_seq bigint[], p_prev bytea[], p_entry bytea[])
RETURNS bigint
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp
-- Index lookups per row whatever the statistics say: a fresh ingest table
-- has none, and a hash or nested-loop plan over a sequential scan of it
-- took seconds per batch.
SET enable_seqscan = off SET enable_hashjoin = off SET enable_mergejoin = off AS $$
DECLARE
	v_n integer := coalesce(cardinality(p_event_id), 0);
	v_bad bigint;
	v_ins bigint;
	v_size bigint;
BEGIN
	IF v_n = 0 THEN
		RETURN 0;
	END IF;
	-- The rows become leaves p_first_leaf.. of the region's tree, which must
	-- be its current size: leaves are contiguous and never reassigned.
	SELECT t.size INTO v_size FROM pgtenant_audit.tree_heads t WHERE t.region = p_region FOR UPDATE;
	IF v_size IS DISTINCT FROM p_first_leaf THEN
		RAISE EXCEPTION 'pgtenant_audit.integrate: tree of % has % leaves, not %', p_region, v_size, p_first_leaf
			USING ERRCODE = '40001';
	END IF;
	IF cardinality(p_chain) <> v_n OR cardinality(p_content) <> v_n OR cardinality(p_seq) <> v_n
	   OR cardinality(p_prev) <> v_n OR cardinality(p_entry) <> v_n THEN
		RAISE EXCEPTION 'pgtenant_audit.integrate: arrays differ in length' USING ERRCODE = '22023';
	END IF;
	SELECT count(*) INTO v_bad
	FROM (SELECT u.chain, u.content, u.seq, u.prev, u.entry, h.seq AS h_seq, h.head AS h_head,
			row_number() OVER w AS rn, lag(u.entry) OVER w AS before
		FROM unnest(p_chain, p_content, p_seq, p_prev, p_entry) WITH ORDINALITY AS u(chain, content, seq, prev, entry, ord)
		LEFT JOIN pgtenant_audit.chain_heads h ON h.chain_id = u.chain
		WINDOW w AS (PARTITION BY u.chain ORDER BY u.ord)) x
	WHERE x.h_seq IS NULL OR x.seq <> x.h_seq + x.rn OR x.prev IS DISTINCT FROM coalesce(x.before, x.h_head)
		OR x.entry IS DISTINCT FROM sha256('\x10'::bytea || int4send(octet_length(convert_to(x.chain, 'UTF8')))
			|| convert_to(x.chain, 'UTF8') || int8send(x.seq) || x.prev || x.content);
	IF v_bad > 0 THEN
		RAISE EXCEPTION 'pgtenant_audit.integrate: % rows do not extend their chains', v_bad
			USING ERRCODE = '40001';
	END IF;
	INSERT INTO pgtenant_audit.events (chain_id, seq, event_id, ts, kind, account_id, subject, client_user,
		client_addr, region, session_id, proxy_instance, statement, tables, verdict, reason, sqlstate, rows,
		duration_us, hash_version, content_hash, prev_hash, entry_hash, leaf)
	SELECT i.chain_id, u.seq, i.event_id, i.ts, i.kind, i.account_id, i.subject, i.client_user,
		i.client_addr, i.region, i.session_id, i.proxy_instance, i.statement, i.tables, i.verdict, i.reason,
		i.sqlstate, i.rows, i.duration_us, i.hash_version, i.content_hash, u.prev, u.entry, p_first_leaf + u.ord - 1
	FROM unnest(p_event_id, p_chain, p_content, p_seq, p_prev, p_entry) WITH ORDINALITY
		AS u(event_id, chain, content, seq, prev, entry, ord)
	JOIN pgtenant_audit.ingest i ON i.event_id = u.event_id AND i.chain_id = u.chain AND i.content_hash = u.content
		AND i.region = p_region
	JOIN pgtenant_audit.chain_heads h ON h.chain_id = u.chain AND h.region = p_region;
	GET DIAGNOSTICS v_ins = ROW_COUNT;
	IF v_ins <> v_n THEN
		RAISE EXCEPTION 'pgtenant_audit.integrate: % of % events do not match an ingested row of their chain''s region',
			v_n - v_ins, v_n USING ERRCODE = '22023';
	END IF;
	UPDATE pgtenant_audit.chain_heads h SET seq = l.seq, head = l.entry, updated_at = now()
	FROM (SELECT DISTINCT ON (u.chain) u.chain, u.seq, u.entry
		FROM unnest(p_chain, p_seq, p_entry) AS u(chain, seq, entry)
		ORDER BY u.chain, u.seq DESC) l
	WHERE h.chain_id = l.chain;
	UPDATE pgtenant_audit.tree_heads t SET size = v_size + v_n WHERE t.region = p_region;
	RETURN v_n;
END $$;

REVOKE ALL ON ALL FUNCTIONS IN SCHEMA pgtenant_audit FROM PUBLIC;
`,
	// 4: retention. A purge redacts a chain's expired prefix in place: the
	// rows keep their identity and hashes (so every chain and the tree still
	// verify) and lose their content; only such redactions get past the
	// append-only trigger, and only the owner (the admin role) may update.
	`
ALTER TABLE pgtenant_audit.events ADD COLUMN purged boolean NOT NULL DEFAULT false;

CREATE TABLE pgtenant_audit.purges (
	id        bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
	region    text        NOT NULL,
	chain_id  text        NOT NULL,
	upto_seq  bigint      NOT NULL CHECK (upto_seq >= 1),
	head      bytea       NOT NULL,
	before    timestamptz NOT NULL,
	ts        timestamptz NOT NULL,
	key_id    text        NOT NULL,
	signature bytea       NOT NULL
);
CREATE TRIGGER purges_append_only BEFORE UPDATE OR DELETE ON pgtenant_audit.purges
	FOR EACH ROW EXECUTE FUNCTION pgtenant_audit.forbid_change();
CREATE TRIGGER purges_no_truncate BEFORE TRUNCATE ON pgtenant_audit.purges
	FOR EACH STATEMENT EXECUTE FUNCTION pgtenant_audit.forbid_change();
ALTER TABLE pgtenant_audit.purges ENABLE ALWAYS TRIGGER purges_append_only;
ALTER TABLE pgtenant_audit.purges ENABLE ALWAYS TRIGGER purges_no_truncate;

-- events: the only change allowed is a redaction (purged false -> true,
-- personal fields NULL, everything else untouched).
CREATE FUNCTION pgtenant_audit.events_redact_only() RETURNS trigger
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
BEGIN
	IF TG_OP = 'UPDATE' AND NOT OLD.purged AND NEW.purged
	   AND (NEW.chain_id, NEW.seq, NEW.event_id, NEW.ts, NEW.kind, NEW.account_id, NEW.region, NEW.proxy_instance,
	        NEW.verdict, NEW.sqlstate, NEW.rows, NEW.duration_us, NEW.hash_version, NEW.content_hash,
	        NEW.prev_hash, NEW.entry_hash, NEW.leaf)
	       IS NOT DISTINCT FROM
	       (OLD.chain_id, OLD.seq, OLD.event_id, OLD.ts, OLD.kind, OLD.account_id, OLD.region, OLD.proxy_instance,
	        OLD.verdict, OLD.sqlstate, OLD.rows, OLD.duration_us, OLD.hash_version, OLD.content_hash,
	        OLD.prev_hash, OLD.entry_hash, OLD.leaf)
	   AND NEW.subject IS NULL AND NEW.client_user IS NULL AND NEW.client_addr IS NULL
	   AND NEW.session_id IS NULL AND NEW.statement IS NULL AND NEW.tables IS NULL AND NEW.reason IS NULL THEN
		RETURN NEW;
	END IF;
	RAISE EXCEPTION 'pgtenant_audit.events: % is not allowed, the audit trail is append-only', TG_OP
		USING ERRCODE = '42501';
END $$;
DROP TRIGGER events_append_only ON pgtenant_audit.events;
CREATE TRIGGER events_append_only BEFORE UPDATE OR DELETE ON pgtenant_audit.events
	FOR EACH ROW EXECUTE FUNCTION pgtenant_audit.events_redact_only();
ALTER TABLE pgtenant_audit.events ENABLE ALWAYS TRIGGER events_append_only;

-- ingest: a row may be deleted once its event is in events with the same
-- content hash (a purge removes the copies of what it redacts); nothing
-- awaiting integration can be deleted or changed.
CREATE FUNCTION pgtenant_audit.ingest_delete_integrated() RETURNS trigger
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
BEGIN
	IF TG_OP = 'DELETE' AND EXISTS (SELECT 1 FROM pgtenant_audit.events e
			WHERE e.event_id = OLD.event_id AND e.content_hash = OLD.content_hash) THEN
		RETURN OLD;
	END IF;
	RAISE EXCEPTION 'pgtenant_audit.ingest: % is not allowed, the audit trail is append-only', TG_OP
		USING ERRCODE = '42501';
END $$;
DROP TRIGGER ingest_append_only ON pgtenant_audit.ingest;
CREATE TRIGGER ingest_append_only BEFORE UPDATE OR DELETE ON pgtenant_audit.ingest
	FOR EACH ROW EXECUTE FUNCTION pgtenant_audit.ingest_delete_integrated();
ALTER TABLE pgtenant_audit.ingest ENABLE ALWAYS TRIGGER ingest_append_only;

-- purge_chain redacts the longest prefix of p_chain whose events are all
-- older than p_before and returns its last seq and entry hash (0 and NULL
-- when nothing is expired). EXECUTE is not granted: only the owner's
-- members (the admin role that holds the seal key) may run it.
CREATE FUNCTION pgtenant_audit.purge_chain(p_chain text, p_before timestamptz)
RETURNS TABLE (upto bigint, head bytea, redacted bigint)
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
	v_upto bigint;
	v_head bytea;
	v_n bigint;
BEGIN
	SELECT coalesce((SELECT min(e.seq) FROM pgtenant_audit.events e WHERE e.chain_id = p_chain AND e.ts >= p_before),
		(SELECT max(e.seq) + 1 FROM pgtenant_audit.events e WHERE e.chain_id = p_chain), 1) - 1 INTO v_upto;
	IF v_upto < 1 THEN
		RETURN QUERY SELECT 0::bigint, NULL::bytea, 0::bigint;
		RETURN;
	END IF;
	UPDATE pgtenant_audit.events e SET purged = true, subject = NULL, client_user = NULL, client_addr = NULL,
		session_id = NULL, statement = NULL, tables = NULL, reason = NULL
	WHERE e.chain_id = p_chain AND e.seq <= v_upto AND NOT e.purged;
	GET DIAGNOSTICS v_n = ROW_COUNT;
	DELETE FROM pgtenant_audit.ingest i USING pgtenant_audit.events e
	WHERE i.chain_id = p_chain AND e.event_id = i.event_id AND e.chain_id = p_chain AND e.seq <= v_upto;
	SELECT e.entry_hash INTO v_head FROM pgtenant_audit.events e WHERE e.chain_id = p_chain AND e.seq = v_upto;
	RETURN QUERY SELECT v_upto, v_head, v_n;
END $$;
REVOKE ALL ON FUNCTION pgtenant_audit.purge_chain(text, timestamptz) FROM PUBLIC;
`,
	// 5: statement text outside the hashed content (hash version 2, for
	// audit.statement: full): a salt and the commitment
	// SHA-256(0x40 || salt || text) are stored, the content hash covers the
	// commitment, and erase_statements may clear the text and salt.
	`
ALTER TABLE pgtenant_audit.ingest ADD COLUMN statement_salt bytea, ADD COLUMN statement_commitment bytea;
ALTER TABLE pgtenant_audit.events ADD COLUMN statement_salt bytea, ADD COLUMN statement_commitment bytea;

CREATE OR REPLACE FUNCTION pgtenant_audit.integrate(p_region text, p_first_leaf bigint, p_event_id uuid[], p_chain text[],
	p_content bytea[], p_seq bigint[], p_prev bytea[], p_entry bytea[])
RETURNS bigint
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp
-- Index lookups per row whatever the statistics say: a fresh ingest table
-- has none, and a hash or nested-loop plan over a sequential scan of it
-- took seconds per batch.
SET enable_seqscan = off SET enable_hashjoin = off SET enable_mergejoin = off AS $$
DECLARE
	v_n integer := coalesce(cardinality(p_event_id), 0);
	v_bad bigint;
	v_ins bigint;
	v_size bigint;
BEGIN
	IF v_n = 0 THEN
		RETURN 0;
	END IF;
	-- The rows become leaves p_first_leaf.. of the region's tree, which must
	-- be its current size: leaves are contiguous and never reassigned.
	SELECT t.size INTO v_size FROM pgtenant_audit.tree_heads t WHERE t.region = p_region FOR UPDATE;
	IF v_size IS DISTINCT FROM p_first_leaf THEN
		RAISE EXCEPTION 'pgtenant_audit.integrate: tree of % has % leaves, not %', p_region, v_size, p_first_leaf
			USING ERRCODE = '40001';
	END IF;
	IF cardinality(p_chain) <> v_n OR cardinality(p_content) <> v_n OR cardinality(p_seq) <> v_n
	   OR cardinality(p_prev) <> v_n OR cardinality(p_entry) <> v_n THEN
		RAISE EXCEPTION 'pgtenant_audit.integrate: arrays differ in length' USING ERRCODE = '22023';
	END IF;
	SELECT count(*) INTO v_bad
	FROM (SELECT u.chain, u.content, u.seq, u.prev, u.entry, h.seq AS h_seq, h.head AS h_head,
			row_number() OVER w AS rn, lag(u.entry) OVER w AS before
		FROM unnest(p_chain, p_content, p_seq, p_prev, p_entry) WITH ORDINALITY AS u(chain, content, seq, prev, entry, ord)
		LEFT JOIN pgtenant_audit.chain_heads h ON h.chain_id = u.chain
		WINDOW w AS (PARTITION BY u.chain ORDER BY u.ord)) x
	WHERE x.h_seq IS NULL OR x.seq <> x.h_seq + x.rn OR x.prev IS DISTINCT FROM coalesce(x.before, x.h_head)
		OR x.entry IS DISTINCT FROM sha256('\x10'::bytea || int4send(octet_length(convert_to(x.chain, 'UTF8')))
			|| convert_to(x.chain, 'UTF8') || int8send(x.seq) || x.prev || x.content);
	IF v_bad > 0 THEN
		RAISE EXCEPTION 'pgtenant_audit.integrate: % rows do not extend their chains', v_bad
			USING ERRCODE = '40001';
	END IF;
	INSERT INTO pgtenant_audit.events (chain_id, seq, event_id, ts, kind, account_id, subject, client_user,
		client_addr, region, session_id, proxy_instance, statement, tables, verdict, reason, sqlstate, rows,
		duration_us, hash_version, content_hash, prev_hash, entry_hash, leaf, statement_salt, statement_commitment)
	SELECT i.chain_id, u.seq, i.event_id, i.ts, i.kind, i.account_id, i.subject, i.client_user,
		i.client_addr, i.region, i.session_id, i.proxy_instance, i.statement, i.tables, i.verdict, i.reason,
		i.sqlstate, i.rows, i.duration_us, i.hash_version, i.content_hash, u.prev, u.entry, p_first_leaf + u.ord - 1,
		i.statement_salt, i.statement_commitment
	FROM unnest(p_event_id, p_chain, p_content, p_seq, p_prev, p_entry) WITH ORDINALITY
		AS u(event_id, chain, content, seq, prev, entry, ord)
	JOIN pgtenant_audit.ingest i ON i.event_id = u.event_id AND i.chain_id = u.chain AND i.content_hash = u.content
		AND i.region = p_region
	JOIN pgtenant_audit.chain_heads h ON h.chain_id = u.chain AND h.region = p_region;
	GET DIAGNOSTICS v_ins = ROW_COUNT;
	IF v_ins <> v_n THEN
		RAISE EXCEPTION 'pgtenant_audit.integrate: % of % events do not match an ingested row of their chain''s region',
			v_n - v_ins, v_n USING ERRCODE = '22023';
	END IF;
	UPDATE pgtenant_audit.chain_heads h SET seq = l.seq, head = l.entry, updated_at = now()
	FROM (SELECT DISTINCT ON (u.chain) u.chain, u.seq, u.entry
		FROM unnest(p_chain, p_seq, p_entry) AS u(chain, seq, entry)
		ORDER BY u.chain, u.seq DESC) l
	WHERE h.chain_id = l.chain;
	UPDATE pgtenant_audit.tree_heads t SET size = v_size + v_n WHERE t.region = p_region;
	RETURN v_n;
END $$;

CREATE OR REPLACE FUNCTION pgtenant_audit.events_redact_only() RETURNS trigger
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
BEGIN
	IF TG_OP = 'UPDATE' AND NOT OLD.purged AND NEW.purged
	   AND (NEW.chain_id, NEW.seq, NEW.event_id, NEW.ts, NEW.kind, NEW.account_id, NEW.region, NEW.proxy_instance,
	        NEW.verdict, NEW.sqlstate, NEW.rows, NEW.duration_us, NEW.hash_version, NEW.content_hash,
	        NEW.prev_hash, NEW.entry_hash, NEW.leaf)
	       IS NOT DISTINCT FROM
	       (OLD.chain_id, OLD.seq, OLD.event_id, OLD.ts, OLD.kind, OLD.account_id, OLD.region, OLD.proxy_instance,
	        OLD.verdict, OLD.sqlstate, OLD.rows, OLD.duration_us, OLD.hash_version, OLD.content_hash,
	        OLD.prev_hash, OLD.entry_hash, OLD.leaf)
	   AND NEW.subject IS NULL AND NEW.client_user IS NULL AND NEW.client_addr IS NULL
	   AND NEW.session_id IS NULL AND NEW.statement IS NULL AND NEW.tables IS NULL AND NEW.reason IS NULL
	   AND NEW.statement_salt IS NULL AND NEW.statement_commitment IS NOT DISTINCT FROM OLD.statement_commitment THEN
		RETURN NEW;
	END IF;
	-- An erasure: a hash-version-2 row loses its statement text and salt,
	-- keeping the commitment the content hash covers; nothing else changes.
	IF TG_OP = 'UPDATE' AND OLD.hash_version = 2 AND OLD.statement IS NOT NULL
	   AND NEW.statement IS NULL AND NEW.statement_salt IS NULL
	   AND ROW(NEW.chain_id, NEW.seq, NEW.event_id, NEW.ts, NEW.kind, NEW.account_id, NEW.subject, NEW.client_user,
	        NEW.client_addr, NEW.region, NEW.session_id, NEW.proxy_instance, NEW.tables, NEW.verdict, NEW.reason,
	        NEW.sqlstate, NEW.rows, NEW.duration_us, NEW.hash_version, NEW.content_hash, NEW.prev_hash,
	        NEW.entry_hash, NEW.leaf, NEW.purged, NEW.statement_commitment)
	       IS NOT DISTINCT FROM
	       ROW(OLD.chain_id, OLD.seq, OLD.event_id, OLD.ts, OLD.kind, OLD.account_id, OLD.subject, OLD.client_user,
	        OLD.client_addr, OLD.region, OLD.session_id, OLD.proxy_instance, OLD.tables, OLD.verdict, OLD.reason,
	        OLD.sqlstate, OLD.rows, OLD.duration_us, OLD.hash_version, OLD.content_hash, OLD.prev_hash,
	        OLD.entry_hash, OLD.leaf, OLD.purged, OLD.statement_commitment) THEN
		RETURN NEW;
	END IF;
	RAISE EXCEPTION 'pgtenant_audit.events: % is not allowed, the audit trail is append-only', TG_OP
		USING ERRCODE = '42501';
END $$;

CREATE OR REPLACE FUNCTION pgtenant_audit.purge_chain(p_chain text, p_before timestamptz)
RETURNS TABLE (upto bigint, head bytea, redacted bigint)
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
	v_upto bigint;
	v_head bytea;
	v_n bigint;
BEGIN
	SELECT coalesce((SELECT min(e.seq) FROM pgtenant_audit.events e WHERE e.chain_id = p_chain AND e.ts >= p_before),
		(SELECT max(e.seq) + 1 FROM pgtenant_audit.events e WHERE e.chain_id = p_chain), 1) - 1 INTO v_upto;
	IF v_upto < 1 THEN
		RETURN QUERY SELECT 0::bigint, NULL::bytea, 0::bigint;
		RETURN;
	END IF;
	UPDATE pgtenant_audit.events e SET purged = true, subject = NULL, client_user = NULL, client_addr = NULL,
		session_id = NULL, statement = NULL, tables = NULL, reason = NULL, statement_salt = NULL
	WHERE e.chain_id = p_chain AND e.seq <= v_upto AND NOT e.purged;
	GET DIAGNOSTICS v_n = ROW_COUNT;
	DELETE FROM pgtenant_audit.ingest i USING pgtenant_audit.events e
	WHERE i.chain_id = p_chain AND e.event_id = i.event_id AND e.chain_id = p_chain AND e.seq <= v_upto;
	SELECT e.entry_hash INTO v_head FROM pgtenant_audit.events e WHERE e.chain_id = p_chain AND e.seq = v_upto;
	RETURN QUERY SELECT v_upto, v_head, v_n;
END $$;

-- erase_statements clears the statement text (and salt) of p_chain's
-- hash-version-2 events older than p_before, in events and in the ingested
-- copies; owner's members only.
CREATE FUNCTION pgtenant_audit.erase_statements(p_chain text, p_before timestamptz) RETURNS bigint
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
	v_n bigint;
BEGIN
	UPDATE pgtenant_audit.events e SET statement = NULL, statement_salt = NULL
	WHERE e.chain_id = p_chain AND e.ts < p_before AND e.hash_version = 2 AND e.statement IS NOT NULL;
	GET DIAGNOSTICS v_n = ROW_COUNT;
	DELETE FROM pgtenant_audit.ingest i USING pgtenant_audit.events e
	WHERE i.chain_id = p_chain AND e.event_id = i.event_id AND i.ts < p_before AND i.statement IS NOT NULL;
	RETURN v_n;
END $$;
REVOKE ALL ON FUNCTION pgtenant_audit.erase_statements(text, timestamptz) FROM PUBLIC;
REVOKE ALL ON FUNCTION pgtenant_audit.integrate(text, bigint, uuid[], text[], bytea[], bigint[], bytea[], bytea[]) FROM PUBLIC;
`,
	// 6: the caller's role, the support session's actor, purpose and
	// ticket, and the rewritten flag (hash version 3, README.md). Existing
	// rows keep NULLs, which their hash versions 1 and 2 do not cover (the
	// verifier requires the columns NULL there). integrate copies them, the
	// redaction and erasure triggers keep them unchanged, and erasure also
	// applies to hash-version-3 rows that carry a statement commitment.
	`
ALTER TABLE pgtenant_audit.ingest ADD COLUMN IF NOT EXISTS role text, ADD COLUMN IF NOT EXISTS actor text,
	ADD COLUMN IF NOT EXISTS purpose text, ADD COLUMN IF NOT EXISTS ticket text, ADD COLUMN IF NOT EXISTS rewritten boolean;
ALTER TABLE pgtenant_audit.events ADD COLUMN IF NOT EXISTS role text, ADD COLUMN IF NOT EXISTS actor text,
	ADD COLUMN IF NOT EXISTS purpose text, ADD COLUMN IF NOT EXISTS ticket text, ADD COLUMN IF NOT EXISTS rewritten boolean;

CREATE OR REPLACE FUNCTION pgtenant_audit.integrate(p_region text, p_first_leaf bigint, p_event_id uuid[], p_chain text[],
	p_content bytea[], p_seq bigint[], p_prev bytea[], p_entry bytea[])
RETURNS bigint
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
	v_n integer := coalesce(cardinality(p_event_id), 0);
	v_bad bigint;
	v_ins bigint;
	v_size bigint;
BEGIN
	IF v_n = 0 THEN
		RETURN 0;
	END IF;
	-- The rows become leaves p_first_leaf.. of the region's tree, which must
	-- be its current size: leaves are contiguous and never reassigned.
	SELECT t.size INTO v_size FROM pgtenant_audit.tree_heads t WHERE t.region = p_region FOR UPDATE;
	IF v_size IS DISTINCT FROM p_first_leaf THEN
		RAISE EXCEPTION 'pgtenant_audit.integrate: tree of % has % leaves, not %', p_region, v_size, p_first_leaf
			USING ERRCODE = '40001';
	END IF;
	IF cardinality(p_chain) <> v_n OR cardinality(p_content) <> v_n OR cardinality(p_seq) <> v_n
	   OR cardinality(p_prev) <> v_n OR cardinality(p_entry) <> v_n THEN
		RAISE EXCEPTION 'pgtenant_audit.integrate: arrays differ in length' USING ERRCODE = '22023';
	END IF;
	SELECT count(*) INTO v_bad
	FROM (SELECT u.chain, u.content, u.seq, u.prev, u.entry, h.seq AS h_seq, h.head AS h_head,
			row_number() OVER w AS rn, lag(u.entry) OVER w AS before
		FROM unnest(p_chain, p_content, p_seq, p_prev, p_entry) WITH ORDINALITY AS u(chain, content, seq, prev, entry, ord)
		LEFT JOIN pgtenant_audit.chain_heads h ON h.chain_id = u.chain
		WINDOW w AS (PARTITION BY u.chain ORDER BY u.ord)) x
	WHERE x.h_seq IS NULL OR x.seq <> x.h_seq + x.rn OR x.prev IS DISTINCT FROM coalesce(x.before, x.h_head)
		OR x.entry IS DISTINCT FROM sha256('\x10'::bytea || int4send(octet_length(convert_to(x.chain, 'UTF8')))
			|| convert_to(x.chain, 'UTF8') || int8send(x.seq) || x.prev || x.content);
	IF v_bad > 0 THEN
		RAISE EXCEPTION 'pgtenant_audit.integrate: % rows do not extend their chains', v_bad
			USING ERRCODE = '40001';
	END IF;
	INSERT INTO pgtenant_audit.events (chain_id, seq, event_id, ts, kind, account_id, subject, client_user,
		client_addr, region, session_id, proxy_instance, statement, tables, verdict, reason, sqlstate, rows,
		duration_us, hash_version, content_hash, prev_hash, entry_hash, leaf, statement_salt, statement_commitment,
		role, actor, purpose, ticket, rewritten)
	SELECT i.chain_id, u.seq, i.event_id, i.ts, i.kind, i.account_id, i.subject, i.client_user,
		i.client_addr, i.region, i.session_id, i.proxy_instance, i.statement, i.tables, i.verdict, i.reason,
		i.sqlstate, i.rows, i.duration_us, i.hash_version, i.content_hash, u.prev, u.entry, p_first_leaf + u.ord - 1,
		i.statement_salt, i.statement_commitment, i.role, i.actor, i.purpose, i.ticket, i.rewritten
	FROM unnest(p_event_id, p_chain, p_content, p_seq, p_prev, p_entry) WITH ORDINALITY
		AS u(event_id, chain, content, seq, prev, entry, ord)
	JOIN pgtenant_audit.ingest i ON i.event_id = u.event_id AND i.chain_id = u.chain AND i.content_hash = u.content
		AND i.region = p_region
	JOIN pgtenant_audit.chain_heads h ON h.chain_id = u.chain AND h.region = p_region;
	GET DIAGNOSTICS v_ins = ROW_COUNT;
	IF v_ins <> v_n THEN
		RAISE EXCEPTION 'pgtenant_audit.integrate: % of % events do not match an ingested row of their chain''s region',
			v_n - v_ins, v_n USING ERRCODE = '22023';
	END IF;
	UPDATE pgtenant_audit.chain_heads h SET seq = l.seq, head = l.entry, updated_at = now()
	FROM (SELECT DISTINCT ON (u.chain) u.chain, u.seq, u.entry
		FROM unnest(p_chain, p_seq, p_entry) AS u(chain, seq, entry)
		ORDER BY u.chain, u.seq DESC) l
	WHERE h.chain_id = l.chain;
	UPDATE pgtenant_audit.tree_heads t SET size = v_size + v_n WHERE t.region = p_region;
	RETURN v_n;
END $$;

CREATE OR REPLACE FUNCTION pgtenant_audit.events_redact_only() RETURNS trigger
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
BEGIN
	IF TG_OP = 'UPDATE' AND NOT OLD.purged AND NEW.purged
	   AND (NEW.chain_id, NEW.seq, NEW.event_id, NEW.ts, NEW.kind, NEW.account_id, NEW.region, NEW.proxy_instance,
	        NEW.verdict, NEW.sqlstate, NEW.rows, NEW.duration_us, NEW.hash_version, NEW.content_hash,
	        NEW.prev_hash, NEW.entry_hash, NEW.leaf, NEW.role, NEW.actor, NEW.purpose, NEW.ticket, NEW.rewritten)
	       IS NOT DISTINCT FROM
	       (OLD.chain_id, OLD.seq, OLD.event_id, OLD.ts, OLD.kind, OLD.account_id, OLD.region, OLD.proxy_instance,
	        OLD.verdict, OLD.sqlstate, OLD.rows, OLD.duration_us, OLD.hash_version, OLD.content_hash,
	        OLD.prev_hash, OLD.entry_hash, OLD.leaf, OLD.role, OLD.actor, OLD.purpose, OLD.ticket, OLD.rewritten)
	   AND NEW.subject IS NULL AND NEW.client_user IS NULL AND NEW.client_addr IS NULL
	   AND NEW.session_id IS NULL AND NEW.statement IS NULL AND NEW.tables IS NULL AND NEW.reason IS NULL
	   AND NEW.statement_salt IS NULL AND NEW.statement_commitment IS NOT DISTINCT FROM OLD.statement_commitment THEN
		RETURN NEW;
	END IF;
	-- An erasure: a hash-version-2 row loses its statement text and salt,
	-- keeping the commitment the content hash covers; nothing else changes.
	IF TG_OP = 'UPDATE' AND OLD.hash_version IN (2, 3) AND OLD.statement_commitment IS NOT NULL AND OLD.statement IS NOT NULL
	   AND NEW.statement IS NULL AND NEW.statement_salt IS NULL
	   AND ROW(NEW.chain_id, NEW.seq, NEW.event_id, NEW.ts, NEW.kind, NEW.account_id, NEW.subject, NEW.client_user,
	        NEW.client_addr, NEW.region, NEW.session_id, NEW.proxy_instance, NEW.tables, NEW.verdict, NEW.reason,
	        NEW.sqlstate, NEW.rows, NEW.duration_us, NEW.hash_version, NEW.content_hash, NEW.prev_hash,
	        NEW.entry_hash, NEW.leaf, NEW.purged, NEW.statement_commitment,
	        NEW.role, NEW.actor, NEW.purpose, NEW.ticket, NEW.rewritten)
	       IS NOT DISTINCT FROM
	       ROW(OLD.chain_id, OLD.seq, OLD.event_id, OLD.ts, OLD.kind, OLD.account_id, OLD.subject, OLD.client_user,
	        OLD.client_addr, OLD.region, OLD.session_id, OLD.proxy_instance, OLD.tables, OLD.verdict, OLD.reason,
	        OLD.sqlstate, OLD.rows, OLD.duration_us, OLD.hash_version, OLD.content_hash, OLD.prev_hash,
	        OLD.entry_hash, OLD.leaf, OLD.purged, OLD.statement_commitment,
	        OLD.role, OLD.actor, OLD.purpose, OLD.ticket, OLD.rewritten) THEN
		RETURN NEW;
	END IF;
	RAISE EXCEPTION 'pgtenant_audit.events: % is not allowed, the audit trail is append-only', TG_OP
		USING ERRCODE = '42501';
END $$;

-- erase_statements clears the statement text (and salt) of p_chain's
-- hash-version-2 events older than p_before, in events and in the ingested
-- copies; owner's members only.
CREATE OR REPLACE FUNCTION pgtenant_audit.erase_statements(p_chain text, p_before timestamptz) RETURNS bigint
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
	v_n bigint;
BEGIN
	UPDATE pgtenant_audit.events e SET statement = NULL, statement_salt = NULL
	WHERE e.chain_id = p_chain AND e.ts < p_before AND e.hash_version IN (2, 3)
		AND e.statement_commitment IS NOT NULL AND e.statement IS NOT NULL;
	GET DIAGNOSTICS v_n = ROW_COUNT;
	DELETE FROM pgtenant_audit.ingest i USING pgtenant_audit.events e
	WHERE i.chain_id = p_chain AND e.event_id = i.event_id AND i.ts < p_before AND i.statement IS NOT NULL
		AND i.statement_commitment IS NOT NULL;
	RETURN v_n;
END $$;
REVOKE ALL ON FUNCTION pgtenant_audit.erase_statements(text, timestamptz) FROM PUBLIC;
REVOKE ALL ON FUNCTION pgtenant_audit.erase_statements(text, timestamptz) FROM PUBLIC;
REVOKE ALL ON FUNCTION pgtenant_audit.integrate(text, bigint, uuid[], text[], bytea[], bigint[], bytea[], bytea[]) FROM PUBLIC;
`,
	// 7: one ingest row per writer batch. Version 6 stored every event
	// twice, each time as a wide row with two index entries (ingest:
	// event_id, (xid, event_id); events: the primary key, event_id), and
	// found pending rows with a per-event anti-join against events: about
	// 18 µs of server CPU per event. Writers now COPY one ingest_batches row
	// per batch, the events packed in an array of the composite
	// ingest_event (SQL unpacks it with unnest, no decoding code in SQL);
	// the integrator reads the pending batches, chains their events and, in
	// the same transaction, deletes the batches it integrated, so the queue
	// is its own progress record (no low-water mark, no anti-join over a
	// table that grows forever) and nothing is stored twice. Duplicates (a
	// spool batch re-shipped after a crash) are skipped at integration by
	// event_id (UUIDv7, so the events index grows at its right edge).
	`
CREATE TYPE pgtenant_audit.ingest_event AS (
	event_id uuid, chain_id text, ts timestamptz, kind text, account_id text, subject text,
	client_user text, client_addr inet, region text, session_id text, proxy_instance text,
	statement text, tables text[], verdict text, reason text, sqlstate text, rows bigint,
	duration_us bigint, hash_version smallint, content_hash bytea, statement_salt bytea,
	statement_commitment bytea, role text, actor text, purpose text, ticket text, rewritten boolean);

CREATE TABLE pgtenant_audit.ingest_batches (
	id          bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
	region      text        NOT NULL,
	n           integer     NOT NULL CHECK (n >= 1),
	events      pgtenant_audit.ingest_event[] NOT NULL CHECK (cardinality(events) = n),
	appended_at timestamptz NOT NULL DEFAULT now()
);
-- The batch is mostly hashes and identifiers: compressing it costs more CPU
-- than the few bytes it saves, and the row lives only until integrated.
ALTER TABLE pgtenant_audit.ingest_batches ALTER COLUMN events SET STORAGE EXTERNAL;

-- A batch may be deleted only once every one of its events is in events
-- (integrate_batches deletes what it integrated); a batch awaiting
-- integration can be neither changed nor deleted.
CREATE FUNCTION pgtenant_audit.ingest_batch_delete_integrated() RETURNS trigger
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp
-- One index probe per event whatever the statistics say (and whatever the
-- calling function set): a hashed plan would scan all of events per batch.
SET enable_seqscan = off SET enable_hashjoin = off SET enable_mergejoin = off SET enable_nestloop = on SET jit = off AS $$
BEGIN
	-- integrate_batches has just chained every event of the batches it
	-- names (it checked the skipped ones too). Only the owner may delete at
	-- all, and an owner can as well disable the trigger: the setting saves
	-- a lookup per event, it grants nothing.
	IF TG_OP = 'DELETE' AND OLD.id::text = ANY (string_to_array(current_setting('pgtenant_audit.integrated_batches', true), ',')) THEN
		RETURN OLD;
	END IF;
	IF TG_OP = 'DELETE' AND NOT EXISTS (SELECT 1 FROM unnest(OLD.events) x
			WHERE NOT EXISTS (SELECT 1 FROM pgtenant_audit.events e WHERE e.event_id = x.event_id)) THEN
		RETURN OLD;
	END IF;
	RAISE EXCEPTION 'pgtenant_audit.ingest_batches: % is not allowed, the audit trail is append-only', TG_OP
		USING ERRCODE = '42501';
END $$;
CREATE TRIGGER ingest_batches_append_only BEFORE UPDATE OR DELETE ON pgtenant_audit.ingest_batches
	FOR EACH ROW EXECUTE FUNCTION pgtenant_audit.ingest_batch_delete_integrated();
CREATE TRIGGER ingest_batches_no_truncate BEFORE TRUNCATE ON pgtenant_audit.ingest_batches
	FOR EACH STATEMENT EXECUTE FUNCTION pgtenant_audit.forbid_change();
ALTER TABLE pgtenant_audit.ingest_batches ENABLE ALWAYS TRIGGER ingest_batches_append_only;
ALTER TABLE pgtenant_audit.ingest_batches ENABLE ALWAYS TRIGGER ingest_batches_no_truncate;

-- Upgrade: rows of version 6 still awaiting integration become one batch
-- per region, and rows that proxies of version 6 append during a rolling
-- upgrade are forwarded the same way (they stay in ingest as well, which
-- only they use).
INSERT INTO pgtenant_audit.ingest_batches (region, n, events)
SELECT i.region, count(*), array_agg(ROW(i.event_id, i.chain_id, i.ts, i.kind, i.account_id, i.subject,
		i.client_user, i.client_addr, i.region, i.session_id, i.proxy_instance, i.statement, i.tables, i.verdict,
		i.reason, i.sqlstate, i.rows, i.duration_us, i.hash_version, i.content_hash, i.statement_salt,
		i.statement_commitment, i.role, i.actor, i.purpose, i.ticket, i.rewritten)::pgtenant_audit.ingest_event
		ORDER BY i.xid, i.event_id)
FROM pgtenant_audit.ingest i
WHERE NOT EXISTS (SELECT 1 FROM pgtenant_audit.events e WHERE e.event_id = i.event_id)
GROUP BY i.region;

CREATE FUNCTION pgtenant_audit.ingest_forward() RETURNS trigger
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
BEGIN
	INSERT INTO pgtenant_audit.ingest_batches (region, n, events)
	SELECT i.region, count(*), array_agg(ROW(i.event_id, i.chain_id, i.ts, i.kind, i.account_id, i.subject,
			i.client_user, i.client_addr, i.region, i.session_id, i.proxy_instance, i.statement, i.tables, i.verdict,
			i.reason, i.sqlstate, i.rows, i.duration_us, i.hash_version, i.content_hash, i.statement_salt,
			i.statement_commitment, i.role, i.actor, i.purpose, i.ticket, i.rewritten)::pgtenant_audit.ingest_event
			ORDER BY i.event_id)
	FROM appended i GROUP BY i.region;
	RETURN NULL;
END $$;
CREATE TRIGGER ingest_forward AFTER INSERT ON pgtenant_audit.ingest
	REFERENCING NEW TABLE AS appended FOR EACH STATEMENT EXECUTE FUNCTION pgtenant_audit.ingest_forward();
ALTER TABLE pgtenant_audit.ingest ENABLE ALWAYS TRIGGER ingest_forward;

-- The version-6 integrator is retired: its rows reach events through the
-- batches above, and two integrators must never number one tree.
CREATE OR REPLACE FUNCTION pgtenant_audit.integrate(p_region text, p_first_leaf bigint, p_event_id uuid[], p_chain text[],
	p_content bytea[], p_seq bigint[], p_prev bytea[], p_entry bytea[])
RETURNS bigint
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
BEGIN
	RAISE EXCEPTION 'pgtenant_audit.integrate: schema version 7 integrates through integrate_batches; upgrade this proxy'
		USING ERRCODE = '55000';
END $$;

-- pending_events returns the events of region's oldest pending batches (at
-- least one batch, then whole batches while they add up to at most
-- p_limit events) in batch and array order, and with p_check whether each
-- event_id is already in events (a re-shipped duplicate; false without
-- p_check: the integrator looks only after the unique event_id index
-- refused a round, since duplicates are rare and the lookup is not free),
-- leaving out the batches p_exclude (those of the round being integrated
-- while the integrator reads ahead).
CREATE FUNCTION pgtenant_audit.pending_events(p_region text, p_limit integer, p_check boolean, p_exclude bigint[])
RETURNS TABLE (batch bigint, ord integer, event_id uuid, chain_id text, region text, ts timestamptz,
	content_hash bytea, integrated boolean)
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp
-- An index probe of events per event, never a scan of it (and no JIT for
-- the disabled plans' costs).
SET enable_seqscan = off SET enable_hashjoin = off SET enable_mergejoin = off SET jit = off AS $$
	SELECT b.id, x.ord::integer, x.event_id, x.chain_id, x.region, x.ts, x.content_hash,
		p_check AND EXISTS (SELECT 1 FROM pgtenant_audit.events e WHERE e.event_id = x.event_id)
	FROM (SELECT q.id, q.events FROM (SELECT b.id, b.events, b.n, sum(b.n) OVER (ORDER BY b.id) - b.n AS before
			FROM pgtenant_audit.ingest_batches b WHERE b.region = p_region AND b.id <> ALL (p_exclude)) q
		WHERE q.before = 0 OR q.before + q.n <= p_limit) b
	CROSS JOIN LATERAL unnest(b.events) WITH ORDINALITY AS x(event_id, chain_id, ts, kind, account_id, subject,
		client_user, client_addr, region, session_id, proxy_instance, statement, tables, verdict, reason, sqlstate,
		rows, duration_us, hash_version, content_hash, statement_salt, statement_commitment, role, actor, purpose,
		ticket, rewritten, ord)
	ORDER BY b.id, x.ord
$$;

-- integrate_batches chains the events of the pending batches p_batches.
-- p_seq, p_prev, p_entry and p_leaf hold, for every element of those
-- batches in order (batch after batch, each in array order), the seq,
-- hashes and tree leaf the integrator computed, NULL for an element it
-- skipped as a duplicate. It copies the events into events straight from
-- their batches (zipped with the arrays: no join, no sort of the wide
-- rows), then checks in one narrow pass over the same batches that they
-- extend every chain exactly (contiguous seq from the chain's head,
-- prev_hash = the previous entry hash, entry_hash = SHA-256(0x10 ||
-- lp(chain_id) || seq || prev_hash || content_hash) over the batch's own
-- chain and content hash, the region), that the leaves are the next ones of
-- the region's tree in that order, that each chain's last event is the head
-- p_head_* names and that every skipped element is in events; it moves the
-- chain and tree heads and deletes the batches. Any failure rolls the whole
-- round back.
CREATE FUNCTION pgtenant_audit.integrate_batches(p_region text, p_first_leaf bigint, p_batches bigint[],
	p_seq bigint[], p_prev bytea[], p_entry bytea[], p_leaf bigint[],
	p_head_chain text[], p_head_seq bigint[], p_head_entry bytea[])
RETURNS bigint
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp
-- In memory (a round is at most 16384 events), and no JIT: the estimates of
-- unnest are guesses, and compiling took a third of a second per round.
SET work_mem = '64MB' SET jit = off AS $$
DECLARE
	v_size bigint;
	v_found integer;
	v_total bigint;
	v_ins bigint;
	v_bad bigint;
	v_maxleaf bigint;
	v_leaves bigint;
	v_gaps bigint;
	v_heads bigint;
	v_del bigint;
BEGIN
	SELECT t.size INTO v_size FROM pgtenant_audit.tree_heads t WHERE t.region = p_region FOR UPDATE;
	IF v_size IS DISTINCT FROM p_first_leaf THEN
		RAISE EXCEPTION 'pgtenant_audit.integrate_batches: tree of % has % leaves, not %', p_region, v_size, p_first_leaf
			USING ERRCODE = '40001';
	END IF;
	SELECT count(*), coalesce(sum(b.n), 0) INTO v_found, v_total
	FROM pgtenant_audit.ingest_batches b WHERE b.id = ANY (p_batches) AND b.region = p_region;
	IF v_found <> coalesce(cardinality(p_batches), 0)
	   OR v_found <> (SELECT count(DISTINCT u.id) FROM unnest(p_batches) AS u(id)) THEN
		RAISE EXCEPTION 'pgtenant_audit.integrate_batches: % of % batches are pending in region %',
			v_found, coalesce(cardinality(p_batches), 0), p_region USING ERRCODE = '40001';
	END IF;
	IF coalesce(cardinality(p_seq), 0) <> v_total OR coalesce(cardinality(p_prev), 0) <> v_total
	   OR coalesce(cardinality(p_entry), 0) <> v_total OR coalesce(cardinality(p_leaf), 0) <> v_total
	   OR coalesce(cardinality(p_head_seq), 0) <> coalesce(cardinality(p_head_chain), 0)
	   OR coalesce(cardinality(p_head_entry), 0) <> coalesce(cardinality(p_head_chain), 0) THEN
		RAISE EXCEPTION 'pgtenant_audit.integrate_batches: arrays do not match the batches'' % events', v_total
			USING ERRCODE = '22023';
	END IF;
	-- The check reads what the insert returns (chain, content hash and
	-- region as copied from the batch): no second pass over the batches.
	WITH ins AS (
		INSERT INTO pgtenant_audit.events (chain_id, seq, event_id, ts, kind, account_id, subject, client_user,
			client_addr, region, session_id, proxy_instance, statement, tables, verdict, reason, sqlstate, rows,
			duration_us, hash_version, content_hash, prev_hash, entry_hash, leaf, statement_salt, statement_commitment,
			role, actor, purpose, ticket, rewritten)
		SELECT x.chain_id, x.seq, x.event_id, x.ts, x.kind, x.account_id, x.subject, x.client_user,
			x.client_addr, x.region, x.session_id, x.proxy_instance, x.statement, x.tables, x.verdict, x.reason,
			x.sqlstate, x.rows, x.duration_us, x.hash_version, x.content_hash, x.prev, x.entry, x.leaf,
			x.statement_salt, x.statement_commitment, x.role, x.actor, x.purpose, x.ticket, x.rewritten
		FROM pgtenant_audit.batch_elements(p_region, p_batches, p_seq, p_prev, p_entry, p_leaf) x
		WHERE x.seq IS NOT NULL
		RETURNING chain_id, seq, region, content_hash, prev_hash, entry_hash, leaf),
	h AS MATERIALIZED (
		SELECT h.chain_id, h.seq, h.head, l.seq AS last_seq, l.entry AS last_entry,
			'\x10'::bytea || int4send(octet_length(convert_to(h.chain_id, 'UTF8'))) || convert_to(h.chain_id, 'UTF8') AS prefix
		FROM unnest(p_head_chain, p_head_seq, p_head_entry) AS l(chain, seq, entry)
		JOIN pgtenant_audit.chain_heads h ON h.chain_id = l.chain AND h.region = p_region),
	c AS (
		-- Per event: its chain's head before and after the round, and the
		-- event before it in this round (by hash on (chain, seq - 1)).
		SELECT i.*, h.seq AS h_seq, h.head AS h_head, h.prefix, h.last_seq, h.last_entry, p.entry_hash AS before
		FROM ins i
		LEFT JOIN h ON h.chain_id = i.chain_id
		LEFT JOIN ins p ON p.chain_id = i.chain_id AND p.seq = i.seq - 1)
	SELECT count(*),
		count(*) FILTER (WHERE (c.h_seq IS NULL OR c.region IS DISTINCT FROM p_region
			-- seq within (old head, new head]: with (chain_id, seq) unique
			-- and the count per chain checked below, contiguous.
			OR c.seq <= c.h_seq OR c.seq > c.last_seq
			OR c.prev_hash IS DISTINCT FROM CASE WHEN c.seq = c.h_seq + 1 THEN c.h_head ELSE c.before END
			OR c.entry_hash IS DISTINCT FROM sha256(c.prefix || int8send(c.seq) || c.prev_hash || c.content_hash)
			OR (c.seq = c.last_seq AND c.entry_hash IS DISTINCT FROM c.last_entry)
			OR c.leaf < p_first_leaf) IS NOT FALSE),
		max(c.leaf), count(DISTINCT c.leaf),
		(SELECT count(*) FROM h) - count(DISTINCT c.chain_id)
			+ (SELECT coalesce(sum(h.last_seq - h.seq), 0) FROM h) - count(*)
	INTO v_ins, v_bad, v_maxleaf, v_leaves, v_gaps
	FROM c;
	-- Leaves: v_ins distinct values from p_first_leaf up to p_first_leaf +
	-- v_ins - 1, hence exactly the next ones. Heads: one per chain present,
	-- each v_ins-per-chain rows above the old head.
	IF v_bad > 0 OR v_gaps <> 0 OR v_leaves <> v_ins
	   OR (v_ins > 0 AND v_maxleaf <> p_first_leaf + v_ins - 1) THEN
		RAISE EXCEPTION 'pgtenant_audit.integrate_batches: % of % events do not extend their chains or the tree',
			greatest(v_bad, 1), v_ins USING ERRCODE = '40001';
	END IF;
	-- A skipped element must repeat an event chained before or in this
	-- round: otherwise deleting its batch would lose it.
	IF array_position(p_seq, NULL) IS NOT NULL THEN
		SELECT count(*) INTO v_bad
		FROM pgtenant_audit.batch_elements(p_region, p_batches, p_seq, p_prev, p_entry, p_leaf) x
		WHERE x.seq IS NULL AND NOT EXISTS (SELECT 1 FROM pgtenant_audit.events e WHERE e.event_id = x.event_id);
		IF v_bad > 0 THEN
			RAISE EXCEPTION 'pgtenant_audit.integrate_batches: % skipped events were never chained', v_bad
				USING ERRCODE = '22023';
		END IF;
	END IF;
	-- Each named head is the entry of a chained event (the pass above
	-- checked it is its chain's last of this round).
	SELECT count(*) INTO v_heads FROM unnest(p_head_chain, p_head_seq, p_head_entry) AS l(chain, seq, entry)
	WHERE NOT EXISTS (SELECT 1 FROM pgtenant_audit.events e WHERE e.chain_id = l.chain AND e.seq = l.seq
		AND e.entry_hash = l.entry AND e.region = p_region);
	IF v_heads > 0 THEN
		RAISE EXCEPTION 'pgtenant_audit.integrate_batches: % chain heads name no chained event', v_heads
			USING ERRCODE = '40001';
	END IF;
	UPDATE pgtenant_audit.chain_heads h SET seq = l.seq, head = l.entry, updated_at = now()
	FROM unnest(p_head_chain, p_head_seq, p_head_entry) AS l(chain, seq, entry)
	WHERE h.chain_id = l.chain;
	UPDATE pgtenant_audit.tree_heads t SET size = v_size + v_ins WHERE t.region = p_region;
	-- The batches' events are all chained now: the delete trigger, told so
	-- for this transaction, need not look each one up again.
	PERFORM set_config('pgtenant_audit.integrated_batches', array_to_string(p_batches, ','), true);
	DELETE FROM pgtenant_audit.ingest_batches b WHERE b.id = ANY (p_batches) AND b.region = p_region;
	GET DIAGNOSTICS v_del = ROW_COUNT;
	PERFORM set_config('pgtenant_audit.integrated_batches', '', true);
	IF v_del <> v_found THEN
		RAISE EXCEPTION 'pgtenant_audit.integrate_batches: deleted % of % batches', v_del, v_found USING ERRCODE = '40001';
	END IF;
	RETURN v_ins;
END $$;

-- batch_elements returns the elements of region's batches p_batches, batch
-- after batch (k = the batch's place in p_batches) and each in array order
-- (ord), zipped with the per-element arrays integrate_batches receives.
-- Inlined into its caller (a single SELECT): each batch is detoasted and
-- unnested once per use.
CREATE FUNCTION pgtenant_audit.batch_elements(p_region text, p_batches bigint[],
	p_seq bigint[], p_prev bytea[], p_entry bytea[], p_leaf bigint[])
RETURNS TABLE (k bigint, event_id uuid, chain_id text, ts timestamptz, kind text, account_id text, subject text,
	client_user text, client_addr inet, region text, session_id text, proxy_instance text, statement text,
	tables text[], verdict text, reason text, sqlstate text, rows bigint, duration_us bigint, hash_version smallint,
	content_hash bytea, statement_salt bytea, statement_commitment bytea, role text, actor text, purpose text,
	ticket text, rewritten boolean, seq bigint, prev bytea, entry bytea, leaf bigint, ord bigint)
LANGUAGE sql STABLE AS $$
	SELECT pb.k, x.*
	FROM (SELECT u.k, b.events, b.n, sum(b.n) OVER (ORDER BY u.k) - b.n AS off
		FROM unnest(p_batches) WITH ORDINALITY AS u(id, k)
		JOIN pgtenant_audit.ingest_batches b ON b.id = u.id AND b.region = p_region) pb
	CROSS JOIN LATERAL ROWS FROM (unnest(pb.events), unnest(p_seq[pb.off + 1 : pb.off + pb.n]),
		unnest(p_prev[pb.off + 1 : pb.off + pb.n]), unnest(p_entry[pb.off + 1 : pb.off + pb.n]),
		unnest(p_leaf[pb.off + 1 : pb.off + pb.n])) WITH ORDINALITY
		AS x(event_id, chain_id, ts, kind, account_id, subject, client_user, client_addr, region, session_id,
			proxy_instance, statement, tables, verdict, reason, sqlstate, rows, duration_us, hash_version,
			content_hash, statement_salt, statement_commitment, role, actor, purpose, ticket, rewritten,
			seq, prev, entry, leaf, ord)
$$;

REVOKE ALL ON ALL FUNCTIONS IN SCHEMA pgtenant_audit FROM PUBLIC;
`,
	// 8: the integrator's functions run cached generic plans, and look
	// events up by index only. integrate_batches' check that each moved
	// head names a chained event ran, once plpgsql had cached a generic
	// plan while events was small, as a sequential scan of all of events
	// per round: a round's cost grew with the table (4 ms per round after
	// 12,000 events, and more each round). And a round paid planning on
	// every call: plpgsql kept choosing custom plans for integrate_batches
	// (inlining and planning batch_elements each time), and pending_events,
	// a SQL function, was parsed and planned on every call; together about
	// 3 ms of the backend's CPU per round, whatever the round carried.
	// pending_events becomes plpgsql (same query, same result).
	`
ALTER FUNCTION pgtenant_audit.integrate_batches(text, bigint, bigint[], bigint[], bytea[], bytea[], bigint[], text[],
	bigint[], bytea[]) SET enable_seqscan = off SET plan_cache_mode = force_generic_plan;
ALTER FUNCTION pgtenant_audit.heads_of(text[], text[]) SET plan_cache_mode = force_generic_plan;
ALTER FUNCTION pgtenant_audit.tree_size(text) SET plan_cache_mode = force_generic_plan;

CREATE OR REPLACE FUNCTION pgtenant_audit.pending_events(p_region text, p_limit integer, p_check boolean, p_exclude bigint[])
RETURNS TABLE (batch bigint, ord integer, event_id uuid, chain_id text, region text, ts timestamptz,
	content_hash bytea, integrated boolean)
LANGUAGE plpgsql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp
SET enable_seqscan = off SET enable_hashjoin = off SET enable_mergejoin = off SET jit = off
SET plan_cache_mode = force_generic_plan AS $$
#variable_conflict use_column
BEGIN
	RETURN QUERY
	SELECT b.id, x.ord::integer, x.event_id, x.chain_id, x.region, x.ts, x.content_hash,
		p_check AND EXISTS (SELECT 1 FROM pgtenant_audit.events e WHERE e.event_id = x.event_id)
	FROM (SELECT q.id, q.events FROM (SELECT b.id, b.events, b.n, sum(b.n) OVER (ORDER BY b.id) - b.n AS before
			FROM pgtenant_audit.ingest_batches b WHERE b.region = p_region AND b.id <> ALL (p_exclude)) q
		WHERE q.before = 0 OR q.before + q.n <= p_limit) b
	CROSS JOIN LATERAL unnest(b.events) WITH ORDINALITY AS x(event_id, chain_id, ts, kind, account_id, subject,
		client_user, client_addr, region, session_id, proxy_instance, statement, tables, verdict, reason, sqlstate,
		rows, duration_us, hash_version, content_hash, statement_salt, statement_commitment, role, actor, purpose,
		ticket, rewritten, ord)
	ORDER BY b.id, x.ord;
END $$;
`,
	// 9: the integrator's own events are written once. The process that
	// holds a region's integrator lock no longer appends its own writers'
	// events to ingest_batches only to read, copy and delete them in its
	// next round: integrate_round takes them as a parameter (p_own, after
	// the pending batches' elements) and inserts them into events straight
	// away, with the same checks. Other proxies' events still come through
	// ingest_batches. integrate_batches becomes integrate_round without own
	// events, for proxies of version 8 during a rolling upgrade.
	`
-- round_elements is batch_elements with the elements of p_own after those
-- of the batches (k = the number of batches + 1).
CREATE FUNCTION pgtenant_audit.round_elements(p_region text, p_batches bigint[], p_own pgtenant_audit.ingest_event[],
	p_seq bigint[], p_prev bytea[], p_entry bytea[], p_leaf bigint[])
RETURNS TABLE (k bigint, event_id uuid, chain_id text, ts timestamptz, kind text, account_id text, subject text,
	client_user text, client_addr inet, region text, session_id text, proxy_instance text, statement text,
	tables text[], verdict text, reason text, sqlstate text, rows bigint, duration_us bigint, hash_version smallint,
	content_hash bytea, statement_salt bytea, statement_commitment bytea, role text, actor text, purpose text,
	ticket text, rewritten boolean, seq bigint, prev bytea, entry bytea, leaf bigint, ord bigint)
LANGUAGE sql STABLE AS $$
	SELECT pb.k, x.*
	FROM (SELECT s.k, s.events, s.n, sum(s.n) OVER (ORDER BY s.k) - s.n AS off
		FROM (SELECT u.k, b.events, b.n
			FROM unnest(p_batches) WITH ORDINALITY AS u(id, k)
			JOIN pgtenant_audit.ingest_batches b ON b.id = u.id AND b.region = p_region
			UNION ALL
			SELECT coalesce(cardinality(p_batches), 0) + 1, p_own, cardinality(p_own)
			WHERE cardinality(p_own) > 0) s) pb
	CROSS JOIN LATERAL ROWS FROM (unnest(pb.events), unnest(p_seq[pb.off + 1 : pb.off + pb.n]),
		unnest(p_prev[pb.off + 1 : pb.off + pb.n]), unnest(p_entry[pb.off + 1 : pb.off + pb.n]),
		unnest(p_leaf[pb.off + 1 : pb.off + pb.n])) WITH ORDINALITY
		AS x(event_id, chain_id, ts, kind, account_id, subject, client_user, client_addr, region, session_id,
			proxy_instance, statement, tables, verdict, reason, sqlstate, rows, duration_us, hash_version,
			content_hash, statement_salt, statement_commitment, role, actor, purpose, ticket, rewritten,
			seq, prev, entry, leaf, ord)
$$;

-- integrate_round is integrate_batches (version 7) over the batches'
-- elements followed by p_own: the same checks, the same result.
CREATE FUNCTION pgtenant_audit.integrate_round(p_region text, p_first_leaf bigint, p_batches bigint[],
	p_own pgtenant_audit.ingest_event[], p_seq bigint[], p_prev bytea[], p_entry bytea[], p_leaf bigint[],
	p_head_chain text[], p_head_seq bigint[], p_head_entry bytea[])
RETURNS bigint
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp
SET work_mem = '64MB' SET jit = off SET enable_seqscan = off SET plan_cache_mode = force_generic_plan AS $$
DECLARE
	v_size bigint;
	v_found integer;
	v_total bigint;
	v_ins bigint;
	v_bad bigint;
	v_maxleaf bigint;
	v_leaves bigint;
	v_gaps bigint;
	v_heads bigint;
	v_del bigint;
BEGIN
	SELECT t.size INTO v_size FROM pgtenant_audit.tree_heads t WHERE t.region = p_region FOR UPDATE;
	IF v_size IS DISTINCT FROM p_first_leaf THEN
		RAISE EXCEPTION 'pgtenant_audit.integrate_round: tree of % has % leaves, not %', p_region, v_size, p_first_leaf
			USING ERRCODE = '40001';
	END IF;
	SELECT count(*), coalesce(sum(b.n), 0) INTO v_found, v_total
	FROM pgtenant_audit.ingest_batches b WHERE b.id = ANY (p_batches) AND b.region = p_region;
	IF v_found <> coalesce(cardinality(p_batches), 0)
	   OR v_found <> (SELECT count(DISTINCT u.id) FROM unnest(p_batches) AS u(id)) THEN
		RAISE EXCEPTION 'pgtenant_audit.integrate_round: % of % batches are pending in region %',
			v_found, coalesce(cardinality(p_batches), 0), p_region USING ERRCODE = '40001';
	END IF;
	v_total := v_total + coalesce(cardinality(p_own), 0);
	IF coalesce(cardinality(p_seq), 0) <> v_total OR coalesce(cardinality(p_prev), 0) <> v_total
	   OR coalesce(cardinality(p_entry), 0) <> v_total OR coalesce(cardinality(p_leaf), 0) <> v_total
	   OR coalesce(cardinality(p_head_seq), 0) <> coalesce(cardinality(p_head_chain), 0)
	   OR coalesce(cardinality(p_head_entry), 0) <> coalesce(cardinality(p_head_chain), 0) THEN
		RAISE EXCEPTION 'pgtenant_audit.integrate_round: arrays do not match the round''s % events', v_total
			USING ERRCODE = '22023';
	END IF;
	WITH ins AS (
		INSERT INTO pgtenant_audit.events (chain_id, seq, event_id, ts, kind, account_id, subject, client_user,
			client_addr, region, session_id, proxy_instance, statement, tables, verdict, reason, sqlstate, rows,
			duration_us, hash_version, content_hash, prev_hash, entry_hash, leaf, statement_salt, statement_commitment,
			role, actor, purpose, ticket, rewritten)
		SELECT x.chain_id, x.seq, x.event_id, x.ts, x.kind, x.account_id, x.subject, x.client_user,
			x.client_addr, x.region, x.session_id, x.proxy_instance, x.statement, x.tables, x.verdict, x.reason,
			x.sqlstate, x.rows, x.duration_us, x.hash_version, x.content_hash, x.prev, x.entry, x.leaf,
			x.statement_salt, x.statement_commitment, x.role, x.actor, x.purpose, x.ticket, x.rewritten
		FROM pgtenant_audit.round_elements(p_region, p_batches, p_own, p_seq, p_prev, p_entry, p_leaf) x
		WHERE x.seq IS NOT NULL
		RETURNING chain_id, seq, region, content_hash, prev_hash, entry_hash, leaf),
	h AS MATERIALIZED (
		SELECT h.chain_id, h.seq, h.head, l.seq AS last_seq, l.entry AS last_entry,
			'\x10'::bytea || int4send(octet_length(convert_to(h.chain_id, 'UTF8'))) || convert_to(h.chain_id, 'UTF8') AS prefix
		FROM unnest(p_head_chain, p_head_seq, p_head_entry) AS l(chain, seq, entry)
		JOIN pgtenant_audit.chain_heads h ON h.chain_id = l.chain AND h.region = p_region),
	c AS (
		SELECT i.*, h.seq AS h_seq, h.head AS h_head, h.prefix, h.last_seq, h.last_entry, p.entry_hash AS before
		FROM ins i
		LEFT JOIN h ON h.chain_id = i.chain_id
		LEFT JOIN ins p ON p.chain_id = i.chain_id AND p.seq = i.seq - 1)
	SELECT count(*),
		count(*) FILTER (WHERE (c.h_seq IS NULL OR c.region IS DISTINCT FROM p_region
			OR c.seq <= c.h_seq OR c.seq > c.last_seq
			OR c.prev_hash IS DISTINCT FROM CASE WHEN c.seq = c.h_seq + 1 THEN c.h_head ELSE c.before END
			OR c.entry_hash IS DISTINCT FROM sha256(c.prefix || int8send(c.seq) || c.prev_hash || c.content_hash)
			OR (c.seq = c.last_seq AND c.entry_hash IS DISTINCT FROM c.last_entry)
			OR c.leaf < p_first_leaf) IS NOT FALSE),
		max(c.leaf), count(DISTINCT c.leaf),
		(SELECT count(*) FROM h) - count(DISTINCT c.chain_id)
			+ (SELECT coalesce(sum(h.last_seq - h.seq), 0) FROM h) - count(*)
	INTO v_ins, v_bad, v_maxleaf, v_leaves, v_gaps
	FROM c;
	IF v_bad > 0 OR v_gaps <> 0 OR v_leaves <> v_ins
	   OR (v_ins > 0 AND v_maxleaf <> p_first_leaf + v_ins - 1) THEN
		RAISE EXCEPTION 'pgtenant_audit.integrate_round: % of % events do not extend their chains or the tree',
			greatest(v_bad, 1), v_ins USING ERRCODE = '40001';
	END IF;
	-- A skipped element must repeat an event chained before or in this
	-- round: otherwise deleting its batch (or dropping the own event) would
	-- lose it.
	IF array_position(p_seq, NULL) IS NOT NULL THEN
		SELECT count(*) INTO v_bad
		FROM pgtenant_audit.round_elements(p_region, p_batches, p_own, p_seq, p_prev, p_entry, p_leaf) x
		WHERE x.seq IS NULL AND NOT EXISTS (SELECT 1 FROM pgtenant_audit.events e WHERE e.event_id = x.event_id);
		IF v_bad > 0 THEN
			RAISE EXCEPTION 'pgtenant_audit.integrate_round: % skipped events were never chained', v_bad
				USING ERRCODE = '22023';
		END IF;
	END IF;
	SELECT count(*) INTO v_heads FROM unnest(p_head_chain, p_head_seq, p_head_entry) AS l(chain, seq, entry)
	WHERE NOT EXISTS (SELECT 1 FROM pgtenant_audit.events e WHERE e.chain_id = l.chain AND e.seq = l.seq
		AND e.entry_hash = l.entry AND e.region = p_region);
	IF v_heads > 0 THEN
		RAISE EXCEPTION 'pgtenant_audit.integrate_round: % chain heads name no chained event', v_heads
			USING ERRCODE = '40001';
	END IF;
	UPDATE pgtenant_audit.chain_heads h SET seq = l.seq, head = l.entry, updated_at = now()
	FROM unnest(p_head_chain, p_head_seq, p_head_entry) AS l(chain, seq, entry)
	WHERE h.chain_id = l.chain;
	UPDATE pgtenant_audit.tree_heads t SET size = v_size + v_ins WHERE t.region = p_region;
	IF v_found > 0 THEN
		PERFORM set_config('pgtenant_audit.integrated_batches', array_to_string(p_batches, ','), true);
		DELETE FROM pgtenant_audit.ingest_batches b WHERE b.id = ANY (p_batches) AND b.region = p_region;
		GET DIAGNOSTICS v_del = ROW_COUNT;
		PERFORM set_config('pgtenant_audit.integrated_batches', '', true);
		IF v_del <> v_found THEN
			RAISE EXCEPTION 'pgtenant_audit.integrate_round: deleted % of % batches', v_del, v_found USING ERRCODE = '40001';
		END IF;
	END IF;
	RETURN v_ins;
END $$;

-- One body for both: integrate_batches is a round without own events.
DROP FUNCTION pgtenant_audit.integrate_batches(text, bigint, bigint[], bigint[], bytea[], bytea[], bigint[], text[],
	bigint[], bytea[]);
DROP FUNCTION pgtenant_audit.batch_elements(text, bigint[], bigint[], bytea[], bytea[], bigint[]);
CREATE FUNCTION pgtenant_audit.integrate_batches(p_region text, p_first_leaf bigint, p_batches bigint[],
	p_seq bigint[], p_prev bytea[], p_entry bytea[], p_leaf bigint[],
	p_head_chain text[], p_head_seq bigint[], p_head_entry bytea[])
RETURNS bigint
LANGUAGE sql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
	SELECT pgtenant_audit.integrate_round(p_region, p_first_leaf, p_batches, NULL, p_seq, p_prev, p_entry, p_leaf,
		p_head_chain, p_head_seq, p_head_entry)
$$;

-- integrated_ids returns those of p_ids that are events already: the
-- integrator's look-up of its own events after the unique event_id index
-- refused a round (pending_events answers it for the batches').
CREATE FUNCTION pgtenant_audit.integrated_ids(p_ids uuid[]) RETURNS SETOF uuid
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp SET enable_seqscan = off AS $$
	SELECT e.event_id FROM pgtenant_audit.events e WHERE e.event_id = ANY (p_ids)
$$;

REVOKE ALL ON ALL FUNCTIONS IN SCHEMA pgtenant_audit FROM PUBLIC;
`,
	// 10: rounds overlap. The integrator plans a round while the one before
	// it runs (on a second connection), and integrate_round inserts the
	// round's events before it waits for that round: it takes an advisory
	// key named by the leaf where its tree ends, inserts, waits for the key
	// of the leaf where it starts (held by the round before until it ends),
	// then takes the tree's lock and runs the same checks as version 9 over
	// what it inserted. The database's two halves of consecutive rounds run
	// on both cores instead of one after the other.
	`
CREATE OR REPLACE FUNCTION pgtenant_audit.integrate_round(p_region text, p_first_leaf bigint, p_batches bigint[],
	p_own pgtenant_audit.ingest_event[], p_seq bigint[], p_prev bytea[], p_entry bytea[], p_leaf bigint[],
	p_head_chain text[], p_head_seq bigint[], p_head_entry bytea[])
RETURNS bigint
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp
SET work_mem = '64MB' SET jit = off SET enable_seqscan = off SET plan_cache_mode = force_generic_plan AS $$
DECLARE
	v_size bigint;
	v_found integer;
	v_total bigint;
	v_ins bigint;
	v_bad bigint;
	v_maxleaf bigint;
	v_leaves bigint;
	v_gaps bigint;
	v_heads bigint;
	v_del bigint;
	v_key integer := hashtext('pgtenant_audit.round.' || p_region);
	v_end bigint;
	v_chain text[];
	v_seq bigint[];
	v_region text[];
	v_content bytea[];
	v_prev bytea[];
	v_entry bytea[];
	v_leaf bigint[];
BEGIN
	SELECT count(*), coalesce(sum(b.n), 0) INTO v_found, v_total
	FROM pgtenant_audit.ingest_batches b WHERE b.id = ANY (p_batches) AND b.region = p_region;
	IF v_found <> coalesce(cardinality(p_batches), 0)
	   OR v_found <> (SELECT count(DISTINCT u.id) FROM unnest(p_batches) AS u(id)) THEN
		RAISE EXCEPTION 'pgtenant_audit.integrate_round: % of % batches are pending in region %',
			v_found, coalesce(cardinality(p_batches), 0), p_region USING ERRCODE = '40001';
	END IF;
	v_total := v_total + coalesce(cardinality(p_own), 0);
	IF coalesce(cardinality(p_seq), 0) <> v_total OR coalesce(cardinality(p_prev), 0) <> v_total
	   OR coalesce(cardinality(p_entry), 0) <> v_total OR coalesce(cardinality(p_leaf), 0) <> v_total
	   OR coalesce(cardinality(p_head_seq), 0) <> coalesce(cardinality(p_head_chain), 0)
	   OR coalesce(cardinality(p_head_entry), 0) <> coalesce(cardinality(p_head_chain), 0) THEN
		RAISE EXCEPTION 'pgtenant_audit.integrate_round: arrays do not match the round''s % events', v_total
			USING ERRCODE = '22023';
	END IF;
	-- The round's tree ends at v_end: the round planned after this one
	-- (which starts there) waits for this key, so that it checks the chains
	-- and the tree this one leaves, committed or rolled back.
	v_end := p_first_leaf + coalesce(cardinality(p_seq), 0) - coalesce(cardinality(array_positions(p_seq, NULL)), 0);
	PERFORM pg_advisory_xact_lock(v_key, (v_end % 2147483648)::integer);
	-- Insert first, without the tree's lock: the previous round may still
	-- be checking or committing, and this work overlaps it. Everything is
	-- checked below, once that round has ended, before this one commits.
	WITH ins AS (
		INSERT INTO pgtenant_audit.events (chain_id, seq, event_id, ts, kind, account_id, subject, client_user,
			client_addr, region, session_id, proxy_instance, statement, tables, verdict, reason, sqlstate, rows,
			duration_us, hash_version, content_hash, prev_hash, entry_hash, leaf, statement_salt, statement_commitment,
			role, actor, purpose, ticket, rewritten)
		SELECT x.chain_id, x.seq, x.event_id, x.ts, x.kind, x.account_id, x.subject, x.client_user,
			x.client_addr, x.region, x.session_id, x.proxy_instance, x.statement, x.tables, x.verdict, x.reason,
			x.sqlstate, x.rows, x.duration_us, x.hash_version, x.content_hash, x.prev, x.entry, x.leaf,
			x.statement_salt, x.statement_commitment, x.role, x.actor, x.purpose, x.ticket, x.rewritten
		FROM pgtenant_audit.round_elements(p_region, p_batches, p_own, p_seq, p_prev, p_entry, p_leaf) x
		WHERE x.seq IS NOT NULL
		RETURNING chain_id, seq, region, content_hash, prev_hash, entry_hash, leaf)
	SELECT count(*), array_agg(ins.chain_id), array_agg(ins.seq), array_agg(ins.region), array_agg(ins.content_hash),
		array_agg(ins.prev_hash), array_agg(ins.entry_hash), array_agg(ins.leaf)
	INTO v_ins, v_chain, v_seq, v_region, v_content, v_prev, v_entry, v_leaf
	FROM ins;
	-- Wait for the round that ends where this one starts, then take the tree.
	PERFORM pg_advisory_xact_lock(v_key, (p_first_leaf % 2147483648)::integer);
	SELECT t.size INTO v_size FROM pgtenant_audit.tree_heads t WHERE t.region = p_region FOR UPDATE;
	IF v_size IS DISTINCT FROM p_first_leaf THEN
		RAISE EXCEPTION 'pgtenant_audit.integrate_round: tree of % has % leaves, not %', p_region, v_size, p_first_leaf
			USING ERRCODE = '40001';
	END IF;
	WITH ins AS (
		SELECT * FROM unnest(v_chain, v_seq, v_region, v_content, v_prev, v_entry, v_leaf)
			AS i(chain_id, seq, region, content_hash, prev_hash, entry_hash, leaf)),
	h AS MATERIALIZED (
		SELECT h.chain_id, h.seq, h.head, l.seq AS last_seq, l.entry AS last_entry,
			'\x10'::bytea || int4send(octet_length(convert_to(h.chain_id, 'UTF8'))) || convert_to(h.chain_id, 'UTF8') AS prefix
		FROM unnest(p_head_chain, p_head_seq, p_head_entry) AS l(chain, seq, entry)
		JOIN pgtenant_audit.chain_heads h ON h.chain_id = l.chain AND h.region = p_region),
	c AS (
		SELECT i.*, h.seq AS h_seq, h.head AS h_head, h.prefix, h.last_seq, h.last_entry, p.entry_hash AS before
		FROM ins i
		LEFT JOIN h ON h.chain_id = i.chain_id
		LEFT JOIN ins p ON p.chain_id = i.chain_id AND p.seq = i.seq - 1)
	SELECT count(*),
		count(*) FILTER (WHERE (c.h_seq IS NULL OR c.region IS DISTINCT FROM p_region
			OR c.seq <= c.h_seq OR c.seq > c.last_seq
			OR c.prev_hash IS DISTINCT FROM CASE WHEN c.seq = c.h_seq + 1 THEN c.h_head ELSE c.before END
			OR c.entry_hash IS DISTINCT FROM sha256(c.prefix || int8send(c.seq) || c.prev_hash || c.content_hash)
			OR (c.seq = c.last_seq AND c.entry_hash IS DISTINCT FROM c.last_entry)
			OR c.leaf < p_first_leaf) IS NOT FALSE),
		max(c.leaf), count(DISTINCT c.leaf),
		(SELECT count(*) FROM h) - count(DISTINCT c.chain_id)
			+ (SELECT coalesce(sum(h.last_seq - h.seq), 0) FROM h) - count(*)
	INTO v_ins, v_bad, v_maxleaf, v_leaves, v_gaps
	FROM c;
	IF v_bad > 0 OR v_gaps <> 0 OR v_leaves <> v_ins
	   OR (v_ins > 0 AND v_maxleaf <> p_first_leaf + v_ins - 1) THEN
		RAISE EXCEPTION 'pgtenant_audit.integrate_round: % of % events do not extend their chains or the tree',
			greatest(v_bad, 1), v_ins USING ERRCODE = '40001';
	END IF;
	-- A skipped element must repeat an event chained before or in this
	-- round: otherwise deleting its batch (or dropping the own event) would
	-- lose it.
	IF array_position(p_seq, NULL) IS NOT NULL THEN
		SELECT count(*) INTO v_bad
		FROM pgtenant_audit.round_elements(p_region, p_batches, p_own, p_seq, p_prev, p_entry, p_leaf) x
		WHERE x.seq IS NULL AND NOT EXISTS (SELECT 1 FROM pgtenant_audit.events e WHERE e.event_id = x.event_id);
		IF v_bad > 0 THEN
			RAISE EXCEPTION 'pgtenant_audit.integrate_round: % skipped events were never chained', v_bad
				USING ERRCODE = '22023';
		END IF;
	END IF;
	SELECT count(*) INTO v_heads FROM unnest(p_head_chain, p_head_seq, p_head_entry) AS l(chain, seq, entry)
	WHERE NOT EXISTS (SELECT 1 FROM pgtenant_audit.events e WHERE e.chain_id = l.chain AND e.seq = l.seq
		AND e.entry_hash = l.entry AND e.region = p_region);
	IF v_heads > 0 THEN
		RAISE EXCEPTION 'pgtenant_audit.integrate_round: % chain heads name no chained event', v_heads
			USING ERRCODE = '40001';
	END IF;
	UPDATE pgtenant_audit.chain_heads h SET seq = l.seq, head = l.entry, updated_at = now()
	FROM unnest(p_head_chain, p_head_seq, p_head_entry) AS l(chain, seq, entry)
	WHERE h.chain_id = l.chain;
	UPDATE pgtenant_audit.tree_heads t SET size = v_size + v_ins WHERE t.region = p_region;
	IF v_found > 0 THEN
		PERFORM set_config('pgtenant_audit.integrated_batches', array_to_string(p_batches, ','), true);
		DELETE FROM pgtenant_audit.ingest_batches b WHERE b.id = ANY (p_batches) AND b.region = p_region;
		GET DIAGNOSTICS v_del = ROW_COUNT;
		PERFORM set_config('pgtenant_audit.integrated_batches', '', true);
		IF v_del <> v_found THEN
			RAISE EXCEPTION 'pgtenant_audit.integrate_round: deleted % of % batches', v_del, v_found USING ERRCODE = '40001';
		END IF;
	END IF;
	RETURN v_ins;
END $$;

REVOKE ALL ON ALL FUNCTIONS IN SCHEMA pgtenant_audit FROM PUBLIC;
`,
	// 11: deleting the batches a round integrated costs a constant per
	// batch. The delete trigger split the round's whole list of batch ids
	// into an array for every row it let through, and applied six settings
	// per row: a round of many small batches (strict writers, sidecars that
	// ship little at a time) spent about a third of the integrator's CPU
	// there, growing with the square of its batches. It now finds the id in
	// the comma-delimited list with one strpos and sets nothing on that
	// path; the lookup of every event, for a batch not in the list, moves
	// into batch_integrated, which keeps the settings that plan it as one
	// index probe per event.
	`
CREATE FUNCTION pgtenant_audit.batch_integrated(p_events pgtenant_audit.ingest_event[]) RETURNS boolean
LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp
-- One index probe per event whatever the statistics say (and whatever the
-- calling function set): a hashed plan would scan all of events per batch.
SET enable_seqscan = off SET enable_hashjoin = off SET enable_mergejoin = off SET enable_nestloop = on SET jit = off AS $$
	SELECT NOT EXISTS (SELECT 1 FROM unnest(p_events) x
		WHERE NOT EXISTS (SELECT 1 FROM pgtenant_audit.events e WHERE e.event_id = x.event_id))
$$;

CREATE OR REPLACE FUNCTION pgtenant_audit.ingest_batch_delete_integrated() RETURNS trigger
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
BEGIN
	-- integrate_round has just chained every event of the batches it
	-- names (it checked the skipped ones too). Only the owner may delete at
	-- all, and an owner can as well disable the trigger: the setting saves
	-- a lookup per event, it grants nothing.
	IF TG_OP = 'DELETE' AND strpos(',' || current_setting('pgtenant_audit.integrated_batches', true) || ',',
			',' || OLD.id || ',') > 0 THEN
		RETURN OLD;
	END IF;
	IF TG_OP = 'DELETE' AND pgtenant_audit.batch_integrated(OLD.events) THEN
		RETURN OLD;
	END IF;
	RAISE EXCEPTION 'pgtenant_audit.ingest_batches: % is not allowed, the audit trail is append-only', TG_OP
		USING ERRCODE = '42501';
END $$;

REVOKE ALL ON ALL FUNCTIONS IN SCHEMA pgtenant_audit FROM PUBLIC;
`,
	// 12: a round's elements are cut from its arrays in constant time.
	// round_elements sliced p_seq, p_prev, p_entry and p_leaf once per
	// batch, and slicing a bytea[] walks it from its start: a round of many
	// small batches (strict writers) spent about a quarter of the
	// integrator's CPU in array_get_slice, growing with the square of its
	// batches. integrate_round gains a form that takes the prev and entry
	// hashes as two strings of 32 bytes per element, which
	// round_elements_flat cuts per element by offset; the bigint arrays it
	// still slices are reached by offset too (fixed-width elements, no
	// NULLs but a duplicate's). Everything else, the checks included, is
	// version 10's. The bytea[] form stays for proxies of version 11
	// during a rolling upgrade: it lays its arrays out that way and calls
	// the new one.
	`
-- round_elements_flat is round_elements with the prev and entry hashes of
-- the elements as strings of 32 bytes per element, in element order
-- (anything for a skipped element, whose seq is NULL: its hashes are NULL).
CREATE FUNCTION pgtenant_audit.round_elements_flat(p_region text, p_batches bigint[], p_own pgtenant_audit.ingest_event[],
	p_seq bigint[], p_prevs bytea, p_entries bytea, p_leaf bigint[])
RETURNS TABLE (k bigint, event_id uuid, chain_id text, ts timestamptz, kind text, account_id text, subject text,
	client_user text, client_addr inet, region text, session_id text, proxy_instance text, statement text,
	tables text[], verdict text, reason text, sqlstate text, rows bigint, duration_us bigint, hash_version smallint,
	content_hash bytea, statement_salt bytea, statement_commitment bytea, role text, actor text, purpose text,
	ticket text, rewritten boolean, seq bigint, prev bytea, entry bytea, leaf bigint, ord bigint)
LANGUAGE sql STABLE AS $$
	SELECT pb.k, x.event_id, x.chain_id, x.ts, x.kind, x.account_id, x.subject, x.client_user, x.client_addr,
		x.region, x.session_id, x.proxy_instance, x.statement, x.tables, x.verdict, x.reason, x.sqlstate, x.rows,
		x.duration_us, x.hash_version, x.content_hash, x.statement_salt, x.statement_commitment, x.role, x.actor,
		x.purpose, x.ticket, x.rewritten, x.seq,
		CASE WHEN x.seq IS NOT NULL THEN substring(p_prevs FROM ((pb.off + x.ord - 1) * 32 + 1)::integer FOR 32) END,
		CASE WHEN x.seq IS NOT NULL THEN substring(p_entries FROM ((pb.off + x.ord - 1) * 32 + 1)::integer FOR 32) END,
		x.leaf, x.ord
	FROM (SELECT s.k, s.events, s.n, sum(s.n) OVER (ORDER BY s.k) - s.n AS off
		FROM (SELECT u.k, b.events, b.n
			FROM unnest(p_batches) WITH ORDINALITY AS u(id, k)
			JOIN pgtenant_audit.ingest_batches b ON b.id = u.id AND b.region = p_region
			UNION ALL
			SELECT coalesce(cardinality(p_batches), 0) + 1, p_own, cardinality(p_own)
			WHERE cardinality(p_own) > 0) s) pb
	CROSS JOIN LATERAL ROWS FROM (unnest(pb.events), unnest(p_seq[pb.off + 1 : pb.off + pb.n]),
		unnest(p_leaf[pb.off + 1 : pb.off + pb.n])) WITH ORDINALITY
		AS x(event_id, chain_id, ts, kind, account_id, subject, client_user, client_addr, region, session_id,
			proxy_instance, statement, tables, verdict, reason, sqlstate, rows, duration_us, hash_version,
			content_hash, statement_salt, statement_commitment, role, actor, purpose, ticket, rewritten,
			seq, leaf, ord)
$$;

-- integrate_round (this form) is version 10's over the hashes p_prevs and
-- p_entries: 32 bytes per element of the round in element order, anything
-- for a skipped element (seq NULL).
CREATE FUNCTION pgtenant_audit.integrate_round(p_region text, p_first_leaf bigint, p_batches bigint[],
	p_own pgtenant_audit.ingest_event[], p_seq bigint[], p_prevs bytea, p_entries bytea, p_leaf bigint[],
	p_head_chain text[], p_head_seq bigint[], p_head_entry bytea[])
RETURNS bigint
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp
SET work_mem = '64MB' SET jit = off SET enable_seqscan = off SET plan_cache_mode = force_generic_plan AS $$
DECLARE
	v_size bigint;
	v_found integer;
	v_total bigint;
	v_ins bigint;
	v_bad bigint;
	v_maxleaf bigint;
	v_leaves bigint;
	v_gaps bigint;
	v_heads bigint;
	v_del bigint;
	v_key integer := hashtext('pgtenant_audit.round.' || p_region);
	v_end bigint;
	v_chain text[];
	v_seq bigint[];
	v_region text[];
	v_content bytea[];
	v_prev bytea[];
	v_entry bytea[];
	v_leaf bigint[];
BEGIN
	SELECT count(*), coalesce(sum(b.n), 0) INTO v_found, v_total
	FROM pgtenant_audit.ingest_batches b WHERE b.id = ANY (p_batches) AND b.region = p_region;
	IF v_found <> coalesce(cardinality(p_batches), 0)
	   OR v_found <> (SELECT count(DISTINCT u.id) FROM unnest(p_batches) AS u(id)) THEN
		RAISE EXCEPTION 'pgtenant_audit.integrate_round: % of % batches are pending in region %',
			v_found, coalesce(cardinality(p_batches), 0), p_region USING ERRCODE = '40001';
	END IF;
	v_total := v_total + coalesce(cardinality(p_own), 0);
	IF coalesce(cardinality(p_seq), 0) <> v_total OR coalesce(octet_length(p_prevs), 0) <> 32 * v_total
	   OR coalesce(octet_length(p_entries), 0) <> 32 * v_total OR coalesce(cardinality(p_leaf), 0) <> v_total
	   OR coalesce(cardinality(p_head_seq), 0) <> coalesce(cardinality(p_head_chain), 0)
	   OR coalesce(cardinality(p_head_entry), 0) <> coalesce(cardinality(p_head_chain), 0) THEN
		RAISE EXCEPTION 'pgtenant_audit.integrate_round: arrays do not match the round''s % events', v_total
			USING ERRCODE = '22023';
	END IF;
	-- The round's tree ends at v_end: the round planned after this one
	-- (which starts there) waits for this key, so that it checks the chains
	-- and the tree this one leaves, committed or rolled back.
	v_end := p_first_leaf + coalesce(cardinality(p_seq), 0) - coalesce(cardinality(array_positions(p_seq, NULL)), 0);
	PERFORM pg_advisory_xact_lock(v_key, (v_end % 2147483648)::integer);
	-- Insert first, without the tree's lock: the previous round may still
	-- be checking or committing, and this work overlaps it. Everything is
	-- checked below, once that round has ended, before this one commits.
	WITH ins AS (
		INSERT INTO pgtenant_audit.events (chain_id, seq, event_id, ts, kind, account_id, subject, client_user,
			client_addr, region, session_id, proxy_instance, statement, tables, verdict, reason, sqlstate, rows,
			duration_us, hash_version, content_hash, prev_hash, entry_hash, leaf, statement_salt, statement_commitment,
			role, actor, purpose, ticket, rewritten)
		SELECT x.chain_id, x.seq, x.event_id, x.ts, x.kind, x.account_id, x.subject, x.client_user,
			x.client_addr, x.region, x.session_id, x.proxy_instance, x.statement, x.tables, x.verdict, x.reason,
			x.sqlstate, x.rows, x.duration_us, x.hash_version, x.content_hash, x.prev, x.entry, x.leaf,
			x.statement_salt, x.statement_commitment, x.role, x.actor, x.purpose, x.ticket, x.rewritten
		FROM pgtenant_audit.round_elements_flat(p_region, p_batches, p_own, p_seq, p_prevs, p_entries, p_leaf) x
		WHERE x.seq IS NOT NULL
		RETURNING chain_id, seq, region, content_hash, prev_hash, entry_hash, leaf)
	SELECT count(*), array_agg(ins.chain_id), array_agg(ins.seq), array_agg(ins.region), array_agg(ins.content_hash),
		array_agg(ins.prev_hash), array_agg(ins.entry_hash), array_agg(ins.leaf)
	INTO v_ins, v_chain, v_seq, v_region, v_content, v_prev, v_entry, v_leaf
	FROM ins;
	-- Wait for the round that ends where this one starts, then take the tree.
	PERFORM pg_advisory_xact_lock(v_key, (p_first_leaf % 2147483648)::integer);
	SELECT t.size INTO v_size FROM pgtenant_audit.tree_heads t WHERE t.region = p_region FOR UPDATE;
	IF v_size IS DISTINCT FROM p_first_leaf THEN
		RAISE EXCEPTION 'pgtenant_audit.integrate_round: tree of % has % leaves, not %', p_region, v_size, p_first_leaf
			USING ERRCODE = '40001';
	END IF;
	WITH ins AS (
		SELECT * FROM unnest(v_chain, v_seq, v_region, v_content, v_prev, v_entry, v_leaf)
			AS i(chain_id, seq, region, content_hash, prev_hash, entry_hash, leaf)),
	h AS MATERIALIZED (
		SELECT h.chain_id, h.seq, h.head, l.seq AS last_seq, l.entry AS last_entry,
			'\x10'::bytea || int4send(octet_length(convert_to(h.chain_id, 'UTF8'))) || convert_to(h.chain_id, 'UTF8') AS prefix
		FROM unnest(p_head_chain, p_head_seq, p_head_entry) AS l(chain, seq, entry)
		JOIN pgtenant_audit.chain_heads h ON h.chain_id = l.chain AND h.region = p_region),
	c AS (
		SELECT i.*, h.seq AS h_seq, h.head AS h_head, h.prefix, h.last_seq, h.last_entry, p.entry_hash AS before
		FROM ins i
		LEFT JOIN h ON h.chain_id = i.chain_id
		LEFT JOIN ins p ON p.chain_id = i.chain_id AND p.seq = i.seq - 1)
	SELECT count(*),
		count(*) FILTER (WHERE (c.h_seq IS NULL OR c.region IS DISTINCT FROM p_region
			OR c.seq <= c.h_seq OR c.seq > c.last_seq
			OR c.prev_hash IS DISTINCT FROM CASE WHEN c.seq = c.h_seq + 1 THEN c.h_head ELSE c.before END
			OR c.entry_hash IS DISTINCT FROM sha256(c.prefix || int8send(c.seq) || c.prev_hash || c.content_hash)
			OR (c.seq = c.last_seq AND c.entry_hash IS DISTINCT FROM c.last_entry)
			OR c.leaf < p_first_leaf) IS NOT FALSE),
		max(c.leaf), count(DISTINCT c.leaf),
		(SELECT count(*) FROM h) - count(DISTINCT c.chain_id)
			+ (SELECT coalesce(sum(h.last_seq - h.seq), 0) FROM h) - count(*)
	INTO v_ins, v_bad, v_maxleaf, v_leaves, v_gaps
	FROM c;
	IF v_bad > 0 OR v_gaps <> 0 OR v_leaves <> v_ins
	   OR (v_ins > 0 AND v_maxleaf <> p_first_leaf + v_ins - 1) THEN
		RAISE EXCEPTION 'pgtenant_audit.integrate_round: % of % events do not extend their chains or the tree',
			greatest(v_bad, 1), v_ins USING ERRCODE = '40001';
	END IF;
	-- A skipped element must repeat an event chained before or in this
	-- round: otherwise deleting its batch (or dropping the own event) would
	-- lose it.
	IF array_position(p_seq, NULL) IS NOT NULL THEN
		SELECT count(*) INTO v_bad
		FROM pgtenant_audit.round_elements_flat(p_region, p_batches, p_own, p_seq, p_prevs, p_entries, p_leaf) x
		WHERE x.seq IS NULL AND NOT EXISTS (SELECT 1 FROM pgtenant_audit.events e WHERE e.event_id = x.event_id);
		IF v_bad > 0 THEN
			RAISE EXCEPTION 'pgtenant_audit.integrate_round: % skipped events were never chained', v_bad
				USING ERRCODE = '22023';
		END IF;
	END IF;
	SELECT count(*) INTO v_heads FROM unnest(p_head_chain, p_head_seq, p_head_entry) AS l(chain, seq, entry)
	WHERE NOT EXISTS (SELECT 1 FROM pgtenant_audit.events e WHERE e.chain_id = l.chain AND e.seq = l.seq
		AND e.entry_hash = l.entry AND e.region = p_region);
	IF v_heads > 0 THEN
		RAISE EXCEPTION 'pgtenant_audit.integrate_round: % chain heads name no chained event', v_heads
			USING ERRCODE = '40001';
	END IF;
	UPDATE pgtenant_audit.chain_heads h SET seq = l.seq, head = l.entry, updated_at = now()
	FROM unnest(p_head_chain, p_head_seq, p_head_entry) AS l(chain, seq, entry)
	WHERE h.chain_id = l.chain;
	UPDATE pgtenant_audit.tree_heads t SET size = v_size + v_ins WHERE t.region = p_region;
	IF v_found > 0 THEN
		PERFORM set_config('pgtenant_audit.integrated_batches', array_to_string(p_batches, ','), true);
		DELETE FROM pgtenant_audit.ingest_batches b WHERE b.id = ANY (p_batches) AND b.region = p_region;
		GET DIAGNOSTICS v_del = ROW_COUNT;
		PERFORM set_config('pgtenant_audit.integrated_batches', '', true);
		IF v_del <> v_found THEN
			RAISE EXCEPTION 'pgtenant_audit.integrate_round: deleted % of % batches', v_del, v_found USING ERRCODE = '40001';
		END IF;
	END IF;
	RETURN v_ins;
END $$;

-- The bytea[] form (versions 9 to 11): its hashes laid out as the form
-- above takes them, once per round.
CREATE OR REPLACE FUNCTION pgtenant_audit.integrate_round(p_region text, p_first_leaf bigint, p_batches bigint[],
	p_own pgtenant_audit.ingest_event[], p_seq bigint[], p_prev bytea[], p_entry bytea[], p_leaf bigint[],
	p_head_chain text[], p_head_seq bigint[], p_head_entry bytea[])
RETURNS bigint
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp SET jit = off AS $$
DECLARE
	v_prevs bytea;
	v_entries bytea;
	v_bad bigint;
	v_zero bytea := decode(repeat('00', 32), 'hex');
BEGIN
	IF coalesce(cardinality(p_prev), 0) <> coalesce(cardinality(p_seq), 0)
	   OR coalesce(cardinality(p_entry), 0) <> coalesce(cardinality(p_seq), 0) THEN
		RAISE EXCEPTION 'pgtenant_audit.integrate_round: arrays do not match the round''s % events',
			coalesce(cardinality(p_seq), 0) USING ERRCODE = '22023';
	END IF;
	SELECT string_agg(coalesce(u.prev, v_zero), ''::bytea ORDER BY u.o),
		string_agg(coalesce(u.entry, v_zero), ''::bytea ORDER BY u.o),
		count(*) FILTER (WHERE octet_length(u.prev) <> 32 OR octet_length(u.entry) <> 32)
	INTO v_prevs, v_entries, v_bad
	FROM unnest(p_prev, p_entry) WITH ORDINALITY AS u(prev, entry, o);
	IF v_bad > 0 THEN
		RAISE EXCEPTION 'pgtenant_audit.integrate_round: % hashes are not 32 bytes long', v_bad USING ERRCODE = '22023';
	END IF;
	RETURN pgtenant_audit.integrate_round(p_region, p_first_leaf, p_batches, p_own, p_seq, v_prevs, v_entries, p_leaf,
		p_head_chain, p_head_seq, p_head_entry);
END $$;


REVOKE ALL ON ALL FUNCTIONS IN SCHEMA pgtenant_audit FROM PUBLIC;
`,
	// 13: a round checks its events as it inserts them. Version 12 inserted
	// them, returned every inserted row's chain, seq, region and hashes,
	// gathered those into eight arrays, unnested them again and joined the
	// round with itself to find each event's predecessor: three copies of
	// every hash and a hash join per round, a sixth of the integrator
	// backend's CPU. The insert now reads the round's elements once
	// (materialised), and the same statement checks each against the one
	// before it in its chain (a window over chain and seq: consecutive seq,
	// prev = that one's entry, entry recomputed), and keeps each chain's
	// first and last element. Only those wait for the round before this one
	// to end: the first must extend the chain's head as that round left it,
	// the last must be the head the integrator declares. What a round
	// accepts is what version 12 accepted.
	`
CREATE OR REPLACE FUNCTION pgtenant_audit.integrate_round(p_region text, p_first_leaf bigint, p_batches bigint[],
	p_own pgtenant_audit.ingest_event[], p_seq bigint[], p_prevs bytea, p_entries bytea, p_leaf bigint[],
	p_head_chain text[], p_head_seq bigint[], p_head_entry bytea[])
RETURNS bigint
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp
SET work_mem = '64MB' SET jit = off SET enable_seqscan = off SET plan_cache_mode = force_generic_plan AS $$
DECLARE
	v_size bigint;
	v_found integer;
	v_total bigint;
	v_ins bigint;
	v_bad bigint;
	v_maxleaf bigint;
	v_minleaf bigint;
	v_leaves bigint;
	v_del bigint;
	v_key integer := hashtext('pgtenant_audit.round.' || p_region);
	v_end bigint;
	v_first_chain text[];
	v_first_seq bigint[];
	v_first_prev bytea[];
	v_last_chain text[];
	v_last_seq bigint[];
	v_last_entry bytea[];
BEGIN
	SELECT count(*), coalesce(sum(b.n), 0) INTO v_found, v_total
	FROM pgtenant_audit.ingest_batches b WHERE b.id = ANY (p_batches) AND b.region = p_region;
	IF v_found <> coalesce(cardinality(p_batches), 0)
	   OR v_found <> (SELECT count(DISTINCT u.id) FROM unnest(p_batches) AS u(id)) THEN
		RAISE EXCEPTION 'pgtenant_audit.integrate_round: % of % batches are pending in region %',
			v_found, coalesce(cardinality(p_batches), 0), p_region USING ERRCODE = '40001';
	END IF;
	v_total := v_total + coalesce(cardinality(p_own), 0);
	IF coalesce(cardinality(p_seq), 0) <> v_total OR coalesce(octet_length(p_prevs), 0) <> 32 * v_total
	   OR coalesce(octet_length(p_entries), 0) <> 32 * v_total OR coalesce(cardinality(p_leaf), 0) <> v_total
	   OR coalesce(cardinality(p_head_seq), 0) <> coalesce(cardinality(p_head_chain), 0)
	   OR coalesce(cardinality(p_head_entry), 0) <> coalesce(cardinality(p_head_chain), 0) THEN
		RAISE EXCEPTION 'pgtenant_audit.integrate_round: arrays do not match the round''s % events', v_total
			USING ERRCODE = '22023';
	END IF;
	-- The round's tree ends at v_end: the round planned after this one
	-- (which starts there) waits for this key, so that it checks the chains
	-- and the tree this one leaves, committed or rolled back.
	v_end := p_first_leaf + coalesce(cardinality(p_seq), 0) - coalesce(cardinality(array_positions(p_seq, NULL)), 0);
	PERFORM pg_advisory_xact_lock(v_key, (v_end % 2147483648)::integer);
	-- Insert and check, without the tree's lock: the previous round may
	-- still be checking or committing, and this work overlaps it. An event
	-- whose chain has an earlier event in the round must follow that one
	-- (w.before_seq); a chain's first and last events are checked below,
	-- once that round has ended, against the heads it left.
	WITH x AS MATERIALIZED (
		SELECT * FROM pgtenant_audit.round_elements_flat(p_region, p_batches, p_own, p_seq, p_prevs, p_entries, p_leaf) x
		WHERE x.seq IS NOT NULL),
	ins AS (
		INSERT INTO pgtenant_audit.events (chain_id, seq, event_id, ts, kind, account_id, subject, client_user,
			client_addr, region, session_id, proxy_instance, statement, tables, verdict, reason, sqlstate, rows,
			duration_us, hash_version, content_hash, prev_hash, entry_hash, leaf, statement_salt, statement_commitment,
			role, actor, purpose, ticket, rewritten)
		SELECT x.chain_id, x.seq, x.event_id, x.ts, x.kind, x.account_id, x.subject, x.client_user,
			x.client_addr, x.region, x.session_id, x.proxy_instance, x.statement, x.tables, x.verdict, x.reason,
			x.sqlstate, x.rows, x.duration_us, x.hash_version, x.content_hash, x.prev, x.entry, x.leaf,
			x.statement_salt, x.statement_commitment, x.role, x.actor, x.purpose, x.ticket, x.rewritten
		FROM x
		RETURNING 1),
	w AS (
		SELECT x.chain_id, x.seq, x.region, x.content_hash, x.prev, x.entry, x.leaf,
			lag(x.seq) OVER c AS before_seq, lag(x.entry) OVER c AS before_entry,
			lead(x.seq) OVER c IS NULL AS last
		FROM x
		WINDOW c AS (PARTITION BY x.chain_id ORDER BY x.seq))
	SELECT (SELECT count(*) FROM ins),
		count(*) FILTER (WHERE (w.region IS DISTINCT FROM p_region
			OR w.entry IS DISTINCT FROM sha256('\x10'::bytea || int4send(octet_length(convert_to(w.chain_id, 'UTF8')))
				|| convert_to(w.chain_id, 'UTF8') || int8send(w.seq) || w.prev || w.content_hash)
			OR (w.before_seq IS NOT NULL AND (w.seq <> w.before_seq + 1 OR w.prev IS DISTINCT FROM w.before_entry))
			OR w.leaf < p_first_leaf) IS NOT FALSE),
		min(w.leaf), max(w.leaf), count(DISTINCT w.leaf),
		array_agg(w.chain_id) FILTER (WHERE w.before_seq IS NULL), array_agg(w.seq) FILTER (WHERE w.before_seq IS NULL),
		array_agg(w.prev) FILTER (WHERE w.before_seq IS NULL),
		array_agg(w.chain_id) FILTER (WHERE w.last), array_agg(w.seq) FILTER (WHERE w.last),
		array_agg(w.entry) FILTER (WHERE w.last)
	INTO v_ins, v_bad, v_minleaf, v_maxleaf, v_leaves, v_first_chain, v_first_seq, v_first_prev,
		v_last_chain, v_last_seq, v_last_entry
	FROM w;
	-- Wait for the round that ends where this one starts, then take the tree.
	PERFORM pg_advisory_xact_lock(v_key, (p_first_leaf % 2147483648)::integer);
	SELECT t.size INTO v_size FROM pgtenant_audit.tree_heads t WHERE t.region = p_region FOR UPDATE;
	IF v_size IS DISTINCT FROM p_first_leaf THEN
		RAISE EXCEPTION 'pgtenant_audit.integrate_round: tree of % has % leaves, not %', p_region, v_size, p_first_leaf
			USING ERRCODE = '40001';
	END IF;
	-- Every chain of the round: its first event extends the chain's head as
	-- it is now, its last is the head declared for it, and the declared
	-- heads are exactly the round's chains, once each.
	IF v_bad = 0 THEN
		SELECT count(*) FILTER (WHERE (f.seq = h.seq + 1 AND f.prev = h.head
				AND l.seq = d.seq AND l.entry = d.entry) IS NOT TRUE)
			+ abs(count(*) - coalesce(cardinality(p_head_chain), 0))
			+ abs(count(DISTINCT d.chain) - coalesce(cardinality(p_head_chain), 0))
		INTO v_bad
		FROM unnest(p_head_chain, p_head_seq, p_head_entry) AS d(chain, seq, entry)
		FULL JOIN unnest(v_first_chain, v_first_seq, v_first_prev) AS f(chain, seq, prev) ON f.chain = d.chain
		FULL JOIN unnest(v_last_chain, v_last_seq, v_last_entry) AS l(chain, seq, entry) ON l.chain = coalesce(d.chain, f.chain)
		LEFT JOIN pgtenant_audit.chain_heads h ON h.chain_id = coalesce(d.chain, f.chain, l.chain) AND h.region = p_region;
	END IF;
	IF v_bad > 0 OR v_leaves <> v_ins
	   OR (v_ins > 0 AND (v_minleaf <> p_first_leaf OR v_maxleaf <> p_first_leaf + v_ins - 1)) THEN
		RAISE EXCEPTION 'pgtenant_audit.integrate_round: % of % events do not extend their chains or the tree',
			greatest(v_bad, 1), v_ins USING ERRCODE = '40001';
	END IF;
	-- A skipped element must repeat an event chained before or in this
	-- round: otherwise deleting its batch (or dropping the own event) would
	-- lose it.
	IF array_position(p_seq, NULL) IS NOT NULL THEN
		SELECT count(*) INTO v_bad
		FROM pgtenant_audit.round_elements_flat(p_region, p_batches, p_own, p_seq, p_prevs, p_entries, p_leaf) x
		WHERE x.seq IS NULL AND NOT EXISTS (SELECT 1 FROM pgtenant_audit.events e WHERE e.event_id = x.event_id);
		IF v_bad > 0 THEN
			RAISE EXCEPTION 'pgtenant_audit.integrate_round: % skipped events were never chained', v_bad
				USING ERRCODE = '22023';
		END IF;
	END IF;
	UPDATE pgtenant_audit.chain_heads h SET seq = l.seq, head = l.entry, updated_at = now()
	FROM unnest(p_head_chain, p_head_seq, p_head_entry) AS l(chain, seq, entry)
	WHERE h.chain_id = l.chain;
	UPDATE pgtenant_audit.tree_heads t SET size = v_size + v_ins WHERE t.region = p_region;
	IF v_found > 0 THEN
		PERFORM set_config('pgtenant_audit.integrated_batches', array_to_string(p_batches, ','), true);
		DELETE FROM pgtenant_audit.ingest_batches b WHERE b.id = ANY (p_batches) AND b.region = p_region;
		GET DIAGNOSTICS v_del = ROW_COUNT;
		PERFORM set_config('pgtenant_audit.integrated_batches', '', true);
		IF v_del <> v_found THEN
			RAISE EXCEPTION 'pgtenant_audit.integrate_round: deleted % of % batches', v_del, v_found USING ERRCODE = '40001';
		END IF;
	END IF;
	RETURN v_ins;
END $$;

REVOKE ALL ON ALL FUNCTIONS IN SCHEMA pgtenant_audit FROM PUBLIC;
`,
}

// SchemaVersion is the audit schema version this build writes.
var SchemaVersion = len(migrations)

// InitRegion creates or upgrades the audit schema in one region's audit
// database, logged in as the region's admin role (admin_user, default user),
// which must be able to create roles and schemas. It is idempotent and safe
// to run from several processes at once (an advisory lock serializes them).
// It then grants the region's service role (user) EXECUTE on the append
// functions and nothing else.
func InitRegion(ctx context.Context, name string, r config.Region, logger *slog.Logger) error {
	conn, err := connectAdmin(ctx, name, r)
	if err != nil {
		return err
	}
	defer conn.Close(context.Background())
	var privileged bool
	if err := conn.QueryRow(ctx, `SELECT rolsuper OR rolcreaterole FROM pg_roles WHERE rolname = current_user`).Scan(&privileged); err != nil {
		return fmt.Errorf("region %s: audit init: %w", name, err)
	}
	if !privileged {
		// Not allowed to create roles: fine only if there is nothing to do.
		var v int
		err := conn.QueryRow(ctx, `SELECT pgtenant_audit.schema_version()`).Scan(&v)
		if err == nil && v == SchemaVersion {
			if logger != nil {
				logger.Info("audit schema is current; not re-applying grants without an admin role", "region", name, "version", v)
			}
			return nil
		}
		return fmt.Errorf("region %s: audit init: role %q cannot create roles; set regions.%s.admin_user (and admin_password_env) to a role with CREATEROLE that may create schemas in database %q",
			name, conn.Config().User, name, r.AuditDB())
	}
	tx, err := conn.Begin(ctx)
	if err != nil {
		return fmt.Errorf("region %s: begin: %w", name, err)
	}
	defer tx.Rollback(context.Background()) //nolint:errcheck // no-op after commit
	from, err := initSchema(ctx, tx, r.User)
	if err != nil {
		return fmt.Errorf("region %s: audit init: %w", name, err)
	}
	if err := tx.Commit(ctx); err != nil {
		return fmt.Errorf("region %s: audit init: commit: %w", name, err)
	}
	if logger != nil {
		logger.Info("audit schema ready", "region", name, "from_version", from, "version", SchemaVersion)
	}
	return nil
}

func initSchema(ctx context.Context, tx pgx.Tx, serviceRole string) (int, error) {
	owner := pgx.Identifier{OwnerRole}.Sanitize()
	reader := pgx.Identifier{ReaderRole}.Sanitize()
	service := pgx.Identifier{serviceRole}.Sanitize()
	steps := []string{
		`SELECT pg_advisory_xact_lock(hashtext('pgtenant_audit.init'))`,
		`DO $$ BEGIN
			IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'pgtenant_audit_owner') THEN
				CREATE ROLE pgtenant_audit_owner NOLOGIN;
			END IF;
			IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'pgtenant_audit_reader') THEN
				CREATE ROLE pgtenant_audit_reader NOLOGIN;
			END IF;
			IF NOT pg_has_role(current_user, 'pgtenant_audit_owner', 'USAGE') THEN
				GRANT pgtenant_audit_owner TO CURRENT_USER;
			END IF;
		END $$`,
		`CREATE SCHEMA IF NOT EXISTS pgtenant_audit AUTHORIZATION ` + owner,
		`SET LOCAL ROLE ` + owner,
		`CREATE TABLE IF NOT EXISTS pgtenant_audit.schema_migrations (
			version integer PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now())`,
	}
	for _, s := range steps {
		if _, err := tx.Exec(ctx, s); err != nil {
			return 0, err
		}
	}
	var owned string
	if err := tx.QueryRow(ctx, `SELECT nspowner::regrole::text FROM pg_namespace WHERE nspname = $1`, Schema).Scan(&owned); err != nil {
		return 0, err
	}
	if owned != OwnerRole {
		return 0, fmt.Errorf("schema %s is owned by %s, not %s", Schema, owned, OwnerRole)
	}
	var from int
	if err := tx.QueryRow(ctx, `SELECT coalesce(max(version), 0) FROM pgtenant_audit.schema_migrations`).Scan(&from); err != nil {
		return 0, err
	}
	if from > len(migrations) {
		return from, fmt.Errorf("schema version %d is newer than this build's %d", from, len(migrations))
	}
	for v := from + 1; v <= len(migrations); v++ {
		if _, err := tx.Exec(ctx, migrations[v-1]); err != nil {
			return from, fmt.Errorf("migration %d: %w", v, err)
		}
		if _, err := tx.Exec(ctx, `INSERT INTO pgtenant_audit.schema_migrations (version) VALUES ($1)`, v); err != nil {
			return from, fmt.Errorf("migration %d: %w", v, err)
		}
	}
	var rules int
	if err := tx.QueryRow(ctx, `SELECT count(*) FROM pg_rules WHERE schemaname = $1`, Schema).Scan(&rules); err != nil {
		return from, err
	}
	if rules > 0 {
		return from, fmt.Errorf("schema %s has %d rule(s); rules could silently rewrite appends, drop them", Schema, rules)
	}
	grants := []string{
		`REVOKE ALL ON SCHEMA pgtenant_audit FROM PUBLIC`,
		`GRANT USAGE ON SCHEMA pgtenant_audit TO ` + reader,
		`GRANT SELECT ON ALL TABLES IN SCHEMA pgtenant_audit TO ` + reader,
	}
	if serviceRole != OwnerRole {
		grants = append(grants,
			`GRANT USAGE ON SCHEMA pgtenant_audit TO `+service,
			`REVOKE ALL ON ALL TABLES IN SCHEMA pgtenant_audit FROM `+service,
			`GRANT EXECUTE ON FUNCTION pgtenant_audit.reserve(text, text, bytea, uuid[]),
				pgtenant_audit.append(text, jsonb), pgtenant_audit.schema_version() TO `+service,
			`GRANT EXECUTE ON FUNCTION pgtenant_audit.append_rows(text, bigint[], uuid[], timestamptz[],
				text[], text[], text[], text[], text[], text[], text[], text[], text[], text[], text[], text[],
				text[], bigint[], bigint[], smallint[], bytea[], bytea[], bytea[]) TO `+service)
	}
	if serviceRole != OwnerRole && len(migrations) >= 3 {
		grants = append(grants,
			`GRANT INSERT ON pgtenant_audit.ingest TO `+service,
			`GRANT EXECUTE ON FUNCTION pgtenant_audit.ingest_pending(bigint, integer),
				pgtenant_audit.snapshot_xmin(),
				pgtenant_audit.is_integrated(uuid),
				pgtenant_audit.heads_of(text[], text[]),
				pgtenant_audit.integrate(text, bigint, uuid[], text[], bytea[], bigint[], bytea[], bytea[]),
				pgtenant_audit.tree_size(text) TO `+service)
	}
	if serviceRole != OwnerRole && len(migrations) >= 7 {
		grants = append(grants,
			`GRANT INSERT ON pgtenant_audit.ingest_batches TO `+service,
			`GRANT EXECUTE ON FUNCTION pgtenant_audit.pending_events(text, integer, boolean, bigint[]),
				pgtenant_audit.integrate_batches(text, bigint, bigint[], bigint[], bytea[], bytea[], bigint[], text[], bigint[], bytea[]) TO `+service)
	}
	if serviceRole != OwnerRole && len(migrations) >= 9 {
		grants = append(grants,
			`GRANT EXECUTE ON FUNCTION pgtenant_audit.integrate_round(text, bigint, bigint[], pgtenant_audit.ingest_event[],
				bigint[], bytea[], bytea[], bigint[], text[], bigint[], bytea[]),
				pgtenant_audit.integrate_batches(text, bigint, bigint[], bigint[], bytea[], bytea[], bigint[], text[], bigint[], bytea[]),
				pgtenant_audit.integrated_ids(uuid[]) TO `+service)
	}
	if serviceRole != OwnerRole && len(migrations) >= 12 {
		grants = append(grants,
			`GRANT EXECUTE ON FUNCTION pgtenant_audit.integrate_round(text, bigint, bigint[], pgtenant_audit.ingest_event[],
				bigint[], bytea, bytea, bigint[], text[], bigint[], bytea[]) TO `+service)
	}
	for _, s := range grants {
		if _, err := tx.Exec(ctx, s); err != nil {
			return from, err
		}
	}
	return from, nil
}

// ErrSchemaOutdated means the audit schema is missing or older than this
// build; run `pgtenant audit init`.
var ErrSchemaOutdated = errors.New("audit schema is missing or outdated: run `pgtenant audit init`")

// Init creates or upgrades the audit schema in every configured region.
func Init(ctx context.Context, regions map[string]config.Region, logger *slog.Logger) error {
	for _, name := range sortedRegions(regions) {
		if err := InitRegion(ctx, name, regions[name], logger); err != nil {
			return err
		}
	}
	return nil
}
