// TypeORM 0.3 (EntitySchema, no decorators): repositories with relations
// (one-to-many/many-to-one), save/remove defaults, relation loading,
// QueryRunner transactions with savepoints, the query runner's getTable.
'use strict';
require('reflect-metadata');
const { DataSource, EntitySchema } = require('typeorm');
const { cfg, Report, version } = require('./common');

const Order = new EntitySchema({ name: 'Order', tableName: 'orders', columns: {
  id: { type: 'bigint', primary: true, generated: 'increment' }, account_id: { type: 'bigint' }, total: { type: 'numeric' }, note: { type: 'text', nullable: true } },
  relations: { items: { type: 'one-to-many', target: 'LineItem', inverseSide: 'order' } } });
const LineItem = new EntitySchema({ name: 'LineItem', tableName: 'line_items', columns: {
  id: { type: 'bigint', primary: true, generated: 'increment' }, account_id: { type: 'bigint' }, order_id: { type: 'bigint' }, sku: { type: 'text' }, qty: { type: 'int' } },
  relations: { order: { type: 'many-to-one', target: 'Order', joinColumn: { name: 'order_id' }, inverseSide: 'items', createForeignKeyConstraints: false } } });
const Customer = new EntitySchema({ name: 'Customer', tableName: 'customers', columns: {
  id: { type: 'bigint', primary: true, generated: 'increment' }, account_id: { type: 'bigint' }, name: { type: 'text' }, email: { type: 'text', nullable: true } } });

(async () => {
  const rep = new Report('typeorm', version('typeorm'));
  const T = cfg.tenant;
  const ds = new DataSource({ type: 'postgres', host: cfg.host, port: cfg.port, database: cfg.database, username: cfg.user, password: cfg.password,
    entities: [Order, LineItem, Customer], synchronize: false, logging: false, poolSize: 2, applicationName: 'clients-typeorm' });
  const strip = (o) => o && JSON.parse(JSON.stringify(o));
  await rep.op('connect', 'app', async () => {
    await ds.initialize();
    rep.mark = (q) => ds.query(q);
  });
  if (!ds.isInitialized) return rep.dump();
  const orders = ds.getRepository('Order');
  const items = ds.getRepository('LineItem');
  const customers = ds.getRepository('Customer');
  await rep.op('read.scoped', 'app', async () => strip(await orders.find({ where: { account_id: T }, order: { id: 'ASC' } })));
  const ins = await rep.op('repo.insert', 'app', async () => strip((await orders.insert({ account_id: T, total: 12.5, note: 'typeorm' })).identifiers));
  const oid = ins.ok ? ins.rows[0].id : '1';
  await rep.op('repo.update_scoped', 'app', async () => (await orders.update({ account_id: T, id: oid }, { note: 'typeorm bulk' })).affected);
  await rep.op('tx.savepoint', 'app', () => ds.transaction(async (m) => {
    const c = await m.getRepository('Customer').insert({ account_id: T, name: 'typeorm customer' });
    const qr = m.queryRunner;
    await qr.query('SAVEPOINT sp1');
    try { await m.getRepository('LineItem').insert({ account_id: T, order_id: oid, sku: 'BAD', qty: -1 }); } catch (e) { await qr.query('ROLLBACK TO SAVEPOINT sp1'); }
    const li = await m.getRepository('LineItem').insert({ account_id: T, order_id: oid, sku: 'SKU-TO', qty: 2 });
    await qr.query('RELEASE SAVEPOINT sp1');
    return strip([c.identifiers, li.identifiers]);
  }));
  await rep.op('introspect.getTable', 'app', async () => {
    const qr = ds.createQueryRunner();
    try {
      const t = await qr.getTable('orders');
      return [t.columns.map((c) => c.name).sort(), t.primaryColumns.map((c) => c.name).sort()];
    } finally { await qr.release(); }
  });
  await rep.op('assoc.querybuilder_join', 'app', async () => strip(await orders.createQueryBuilder('o').leftJoinAndSelect('o.items', 'l', 'l.account_id = o.account_id')
    .where('o.account_id = :t', { t: T }).orderBy('o.id').addOrderBy('l.id').getMany()));
  await rep.op('repo.delete_scoped', 'app', async () => (await items.delete({ account_id: T, order_id: oid })).affected);
  await rep.op('assoc.relations_scoped', 'unpinned', async () => strip(await orders.find({ where: { account_id: T }, relations: { items: true }, order: { id: 'ASC', items: { id: 'ASC' } } })));
  await rep.op('repo.save_default', 'unpinned', async () => {
    const o = await orders.findOneBy({ account_id: T, id: oid });
    o.note = 'typeorm saved';
    return strip(await orders.save(o)); // SELECT by id, then UPDATE ... WHERE id = $2
  });
  await rep.op('repo.findOneBy_pk', 'unpinned', async () => strip(await orders.findOneBy({ id: '1' })));
  await rep.op('repo.remove_default', 'unpinned', async () => {
    const c = await customers.findOne({ where: { account_id: T }, order: { id: 'DESC' } });
    await customers.remove(c); // DELETE FROM customers WHERE id IN ($1)
    return strip([c.account_id]);
  });
  await rep.op('unscoped.find', 'unscoped', async () => strip(await orders.find({ select: { id: true, account_id: true }, order: { id: 'ASC' } })));
  await rep.op('cross.find', 'cross', async () => strip(await orders.find({ where: { account_id: cfg.other } })));
  await rep.op('cross.update', 'cross', async () => (await orders.update({ account_id: cfg.other }, { note: 'x' })).affected);
  await rep.op('cross.insert', 'cross', async () => strip((await orders.insert({ id: '990015', account_id: cfg.other, total: 1 })).identifiers));
  await ds.destroy();
  rep.dump();
})();
