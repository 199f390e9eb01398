// postgres.js: tagged-template queries (prepared by default), sql.begin
// with nested savepoints, helpers for inserts, a pool of 2, unsafe() text.
'use strict';
const postgres = require('postgres');
const { cfg, Report, version } = require('./common');

(async () => {
  const rep = new Report('postgres.js', version('postgres'));
  const T = cfg.tenant;
  let sql;
  await rep.op('connect', 'app', async () => {
    sql = postgres({ host: cfg.host, port: cfg.port, database: cfg.database, username: cfg.user, password: cfg.password,
      max: 2, ssl: false, connection: { application_name: 'clients-postgres-js' } });
    await sql`SELECT 1`;
    rep.mark = (q) => sql.unsafe(q);
  });
  await rep.op('read.scoped', 'app', () => sql`SELECT id, account_id, total, note FROM orders WHERE account_id = ${T} ORDER BY id`);
  const ins = await rep.op('crud.insert', 'app', () => sql`INSERT INTO orders ${sql({ account_id: T, total: 12.5, note: 'postgres.js' })} RETURNING id, account_id, total, note`);
  const oid = ins.ok ? ins.rows[0].id : 1;
  await rep.op('crud.update', 'app', () => sql`UPDATE orders SET note = ${'postgres.js updated'} WHERE account_id = ${T} AND id = ${oid} RETURNING id, account_id, note`);
  await rep.op('prepared.reuse', 'app', async () => {
    const out = [];
    for (const id of [1, 5, oid]) out.push(...(await sql`SELECT id, account_id, total FROM orders WHERE account_id = ${T} AND id = ${id}`));
    return out;
  });
  await rep.op('tx.savepoint', 'app', () => sql.begin(async (tx) => {
    const cu = await tx`INSERT INTO customers (account_id, name) VALUES (${T}, ${'postgres.js customer'}) RETURNING id, account_id`;
    await tx.savepoint(async (sp) => sp`INSERT INTO line_items (account_id, order_id, sku, qty) VALUES (${T}, ${oid}, 'BAD', -1)`).catch(() => {});
    const li = await tx.savepoint((sp) => sp`INSERT INTO line_items (account_id, order_id, sku, qty) VALUES (${T}, ${oid}, 'SKU-PJ', 2) RETURNING id, account_id`);
    return [...cu, ...li];
  }));
  await rep.op('introspect.columns', 'app', () => sql`SELECT column_name, data_type FROM information_schema.columns WHERE table_schema = 'public' AND table_name = 'orders' ORDER BY ordinal_position`);
  await rep.op('assoc.join', 'app', () => sql`SELECT o.id, o.account_id, l.sku FROM orders o JOIN line_items l ON l.account_id = o.account_id AND l.order_id = o.id WHERE o.account_id = ${T} ORDER BY o.id, l.id`);
  await rep.op('array.any', 'app', () => sql`SELECT id, account_id FROM orders WHERE account_id = ${T} AND id = ANY(${sql.array([1, 5, 9])}::bigint[]) ORDER BY id`);
  await rep.op('crud.delete', 'app', () => sql`DELETE FROM line_items WHERE account_id = ${T} AND order_id = ${oid} RETURNING id, account_id`);
  await rep.op('unpinned.update_by_id', 'unpinned', () => sql`UPDATE orders SET note = 'by id' WHERE id = ${oid} RETURNING id, account_id, note`);
  await rep.op('unscoped.select', 'unscoped', () => sql`SELECT id, account_id FROM orders ORDER BY id`);
  await rep.op('cross.select', 'cross', () => sql`SELECT id, account_id FROM orders WHERE account_id = ${cfg.other}`);
  await rep.op('cross.update', 'cross', () => sql`UPDATE orders SET note = 'x' WHERE account_id = ${cfg.other} RETURNING id`);
  await rep.op('cross.insert', 'cross', () => sql`INSERT INTO orders (id, account_id, total) VALUES (990012, ${cfg.other}, 1) RETURNING id`);
  if (sql) await sql.end({ timeout: 5 });
  rep.dump();
})();
