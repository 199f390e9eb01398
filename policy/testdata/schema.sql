-- Schema of the public tenancy corpus (policy/testdata/tenancy.tsv).
CREATE TABLE public.orders (
    id bigint NOT NULL,
    account_id bigint NOT NULL,
    total numeric,
    note text
);
CREATE TABLE public.customers (
    id bigint NOT NULL,
    account_id bigint NOT NULL,
    name text,
    email text
);
CREATE TABLE public.line_items (
    id bigint NOT NULL,
    account_id bigint NOT NULL,
    order_id bigint NOT NULL,
    sku text,
    qty integer
);
CREATE TABLE public.countries (
    code text PRIMARY KEY,
    name text
);
CREATE SCHEMA audit;
CREATE TABLE audit.log (
    id bigint,
    ref bigint,
    entry text
);
