-- pgtenant demo data: two tenants, 42 and 7, and a few countries. Run as
-- the superuser after schema.sql (RLS does not apply to the superuser).
-- Idempotent: existing rows are left alone. Each order has at most one
-- line item (the corpus MERGEs line items into orders by order id).

INSERT INTO public.countries (code, name) VALUES
    ('DE', 'Germany'),
    ('FR', 'France'),
    ('US', 'United States'),
    ('JP', 'Japan')
ON CONFLICT (code) DO NOTHING;

INSERT INTO public.customers (id, account_id, name, email) VALUES
    (1, 42, 'Ada Lovelace',   'a@example.com'),
    (2, 42, 'Alan Turing',    'alan@example.com'),
    (3,  7, 'Grace Hopper',   'grace@example.org'),
    (4,  7, 'Edsger Dijkstra','edsger@example.org')
ON CONFLICT DO NOTHING;

INSERT INTO public.orders (id, account_id, total, note) VALUES
    (1,    42,  10.00, 'DE'),
    (5,    42,  25.50, 'a@example.com'),
    (9,    42,   0.00, NULL),
    (1001, 42, 120.00, 'first big order'),
    (2001,  7,  99.90, 'FR'),
    (2002,  7, 510.00, 'grace@example.org')
ON CONFLICT DO NOTHING;

INSERT INTO public.line_items (id, account_id, order_id, sku, qty) VALUES
    (1, 42, 1001, 'SKU-1', 2),
    (2, 42,    1, 'SKU-2', 1),
    (3, 42,    5, 'SKU-3', 0),
    (4,  7, 2001, 'SKU-1', 3),
    (5,  7, 2002, 'SKU-9', 1)
ON CONFLICT DO NOTHING;
