// node-postgres (pg): a Pool (checkout/release), parameterized queries,
// named prepared statements, transactions with savepoints, information_schema.
'use strict';
const { Pool } = require('pg');
const { cfg, Report, version } = require('./common');

(async () => {
  const rep = new Report('node-postgres', version('pg'));
  const T = cfg.tenant;
  let pool;
  await rep.op('connect', 'app', async () => {
    pool = new Pool({ host: cfg.host, port: cfg.port, database: cfg.database, user: cfg.user, password: cfg.password,
      max: 2, application_name: 'clients-node-postgres' });
    await pool.query('SELECT 1');
    rep.mark = (q) => pool.query(q);
  });
  const q = async (text, values) => (await pool.query(text, values)).rows;
  await rep.op('read.scoped', 'app', () => q('SELECT id, account_id, total, note FROM orders WHERE account_id = $1 ORDER BY id', [T]));
  const ins = await rep.op('crud.insert', 'app', () => q('INSERT INTO orders (account_id, total, note) VALUES ($1, $2, $3) RETURNING id, account_id, total, note', [T, 12.5, 'node-postgres']));
  const oid = ins.ok ? ins.rows[0].id : 1;
  await rep.op('crud.update', 'app', () => q('UPDATE orders SET note = $1 WHERE account_id = $2 AND id = $3 RETURNING id, account_id, note', ['node-postgres updated', T, oid]));
  await rep.op('prepared.named', 'app', async () => {
    const out = [];
    for (const id of [1, oid]) {
      out.push(...(await pool.query({ name: 'order-by-id', text: 'SELECT id, account_id, total FROM orders WHERE account_id = $1 AND id = $2', values: [T, id] })).rows);
    }
    return out;
  });
  await rep.op('tx.savepoint', 'app', async () => {
    const c = await pool.connect();
    try {
      await c.query('BEGIN');
      const cu = (await c.query('INSERT INTO customers (account_id, name) VALUES ($1, $2) RETURNING id, account_id', [T, 'node-postgres customer'])).rows;
      await c.query('SAVEPOINT sp1');
      try {
        await c.query('INSERT INTO line_items (account_id, order_id, sku, qty) VALUES ($1, $2, $3, $4)', [T, oid, 'BAD', -1]);
      } catch (e) {
        await c.query('ROLLBACK TO SAVEPOINT sp1');
      }
      const li = (await c.query('INSERT INTO line_items (account_id, order_id, sku, qty) VALUES ($1, $2, $3, $4) RETURNING id, account_id', [T, oid, 'SKU-NP', 2])).rows;
      await c.query('COMMIT');
      return cu.concat(li);
    } catch (e) {
      await c.query('ROLLBACK').catch(() => {});
      throw e;
    } finally {
      c.release();
    }
  });
  await rep.op('introspect.columns', 'app', () => q("SELECT column_name, data_type FROM information_schema.columns WHERE table_schema = 'public' AND table_name = $1 ORDER BY ordinal_position", ['orders']));
  await rep.op('pool.checkout_release', 'app', async () => {
    const out = [];
    for (let i = 0; i < 3; i++) {
      const c = await pool.connect();
      out.push(...(await c.query('SELECT id, account_id FROM orders WHERE account_id = $1 AND id = 1', [T])).rows);
      c.release();
    }
    return out;
  });
  await rep.op('assoc.join', 'app', () => q('SELECT o.id, o.account_id, l.sku FROM orders o JOIN line_items l ON l.account_id = o.account_id AND l.order_id = o.id WHERE o.account_id = $1 ORDER BY o.id, l.id', [T]));
  await rep.op('crud.delete', 'app', () => q('DELETE FROM line_items WHERE account_id = $1 AND order_id = $2 RETURNING id, account_id', [T, oid]));
  await rep.op('unpinned.update_by_id', 'unpinned', () => q('UPDATE orders SET note = $1 WHERE id = $2 RETURNING id, account_id, note', ['by id', oid]));
  await rep.op('unscoped.select', 'unscoped', () => q('SELECT id, account_id FROM orders ORDER BY id'));
  await rep.op('cross.select', 'cross', () => q('SELECT id, account_id FROM orders WHERE account_id = $1', [cfg.other]));
  await rep.op('cross.update', 'cross', () => q("UPDATE orders SET note = 'x' WHERE account_id = $1 RETURNING id", [cfg.other]));
  await rep.op('cross.insert', 'cross', () => q('INSERT INTO orders (id, account_id, total) VALUES ($1, $2, 1) RETURNING id', [990011, cfg.other]));
  if (pool) await pool.end();
  rep.dump();
})();
