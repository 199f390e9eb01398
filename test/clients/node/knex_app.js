// knex (pg dialect): the query builder with a tenant where() on every
// query, transactions with nested savepoints, a pool, columnInfo() and
// hasTable() introspection.
'use strict';
const knexlib = require('knex');
const { cfg, Report, version } = require('./common');

(async () => {
  const rep = new Report('knex', version('knex'));
  const T = cfg.tenant;
  let knex;
  await rep.op('connect', 'app', async () => {
    knex = knexlib({ client: 'pg', connection: { host: cfg.host, port: cfg.port, database: cfg.database, user: cfg.user,
      password: cfg.password, application_name: 'clients-knex' }, pool: { min: 0, max: 2 } });
    await knex.raw('SELECT 1');
    rep.mark = (q) => knex.raw(q);
  });
  const orders = () => knex('orders').where('account_id', T);
  await rep.op('read.scoped', 'app', () => orders().select('id', 'account_id', 'total', 'note').orderBy('id'));
  const ins = await rep.op('crud.insert', 'app', () => knex('orders').insert({ account_id: T, total: 12.5, note: 'knex' }).returning(['id', 'account_id', 'total', 'note']));
  const oid = ins.ok ? ins.rows[0].id : 1;
  await rep.op('crud.update', 'app', () => orders().where('id', oid).update({ note: 'knex updated' }).returning(['id', 'account_id', 'note']));
  await rep.op('tx.savepoint', 'app', () => knex.transaction(async (trx) => {
    const cu = await trx('customers').insert({ account_id: T, name: 'knex customer' }).returning(['id', 'account_id']);
    await trx.transaction(async (sp) => sp('line_items').insert({ account_id: T, order_id: oid, sku: 'BAD', qty: -1 })).catch(() => {});
    const li = await trx.transaction(async (sp) => sp('line_items').insert({ account_id: T, order_id: oid, sku: 'SKU-KX', qty: 2 }).returning(['id', 'account_id']));
    return [...cu, ...li];
  }));
  await rep.op('introspect.columnInfo', 'app', async () => {
    const info = await knex('orders').columnInfo();
    return [Object.keys(info).sort(), await knex.schema.hasTable('orders')];
  });
  await rep.op('assoc.join', 'app', () => knex('orders as o').join('line_items as l', function () { this.on('l.account_id', 'o.account_id').andOn('l.order_id', 'o.id'); })
    .where('o.account_id', T).select('o.id', 'o.account_id', 'l.sku').orderBy(['o.id', 'l.id']));
  await rep.op('assoc.whereIn', 'app', () => knex('line_items').where('account_id', T).whereIn('order_id', [1, 5, 1001]).select('id', 'account_id', 'order_id').orderBy('id'));
  await rep.op('crud.delete', 'app', () => knex('line_items').where({ account_id: T, order_id: oid }).del().returning(['id', 'account_id']));
  await rep.op('unpinned.update_by_id', 'unpinned', () => knex('orders').where('id', oid).update({ note: 'by id' }).returning(['id', 'account_id', 'note']));
  await rep.op('unscoped.select', 'unscoped', () => knex('orders').select('id', 'account_id').orderBy('id'));
  await rep.op('cross.select', 'cross', () => knex('orders').where('account_id', cfg.other).select('id', 'account_id'));
  await rep.op('cross.update', 'cross', () => knex('orders').where('account_id', cfg.other).update({ note: 'x' }));
  await rep.op('cross.insert', 'cross', () => knex('orders').insert({ id: 990013, account_id: cfg.other, total: 1 }));
  if (knex) await knex.destroy();
  rep.dump();
})();
