INSERT INTO orders AS o (account_id, total) VALUES (42, 1), ($1::bigint, DEFAULT) ON CONFLICT (account_id, id) DO UPDATE SET total = EXCLUDED.total WHERE o.account_id = 42 RETURNING id
