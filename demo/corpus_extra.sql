-- Objects the tenancy corpus names besides the demo tables, for tests that
-- run the corpus against a real database. Run as the superuser after
-- schema.sql. Not part of the demo: `audit` plays a forbidden schema (the
-- proxy's own audit schema is pgtenant_audit, owned by package audit).
-- Nothing here is granted to the service role.

CREATE SCHEMA IF NOT EXISTS audit;
REVOKE ALL ON SCHEMA audit FROM PUBLIC;

DO $types$
BEGIN
    CREATE TYPE audit.status AS ENUM ('ok', 'failed');
EXCEPTION WHEN duplicate_object THEN
    NULL;
END
$types$;

CREATE TABLE IF NOT EXISTS audit.log (
    id     bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    ref    bigint,
    entry  text NOT NULL,
    status audit.status NOT NULL DEFAULT 'ok',
    at     timestamptz NOT NULL DEFAULT now()
);

CREATE OR REPLACE FUNCTION audit.write_entry(entry text) RETURNS bigint
    LANGUAGE sql
    AS $$ INSERT INTO audit.log (entry) VALUES (entry) RETURNING id $$;
REVOKE ALL ON FUNCTION audit.write_entry(text) FROM PUBLIC;

-- A set-returning function over a tenant table (SECURITY INVOKER: RLS
-- still applies to the caller).
CREATE OR REPLACE FUNCTION public.report_all_orders() RETURNS SETOF public.orders
    LANGUAGE sql STABLE
    AS $$ SELECT * FROM public.orders $$;
REVOKE ALL ON FUNCTION public.report_all_orders() FROM PUBLIC;

CREATE OR REPLACE PROCEDURE public.refresh_account_stats(account bigint)
    LANGUAGE sql
    AS $$ SELECT 1 $$;
REVOKE ALL ON PROCEDURE public.refresh_account_stats(bigint) FROM PUBLIC;
