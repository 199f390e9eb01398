// Sequelize 6: models with associations (hasMany/belongsTo), create/save/
// destroy defaults, include (eager) and lazy getters, managed transactions
// with nested savepoints, describeTable, pool reuse.
'use strict';
const { Sequelize, DataTypes, Op } = require('sequelize');
const { cfg, Report, version } = require('./common');

(async () => {
  const rep = new Report('sequelize', version('sequelize'));
  const T = cfg.tenant;
  const seq = new Sequelize(cfg.database, cfg.user, cfg.password, { host: cfg.host, port: cfg.port, dialect: 'postgres', logging: false,
    pool: { max: 2 }, dialectOptions: { application_name: 'clients-sequelize' } });
  const common = { timestamps: false, underscored: true };
  const Order = seq.define('Order', { id: { type: DataTypes.BIGINT, primaryKey: true, autoIncrement: true }, accountId: DataTypes.BIGINT,
    total: DataTypes.DECIMAL, note: DataTypes.TEXT }, { ...common, tableName: 'orders' });
  const LineItem = seq.define('LineItem', { id: { type: DataTypes.BIGINT, primaryKey: true, autoIncrement: true }, accountId: DataTypes.BIGINT,
    orderId: DataTypes.BIGINT, sku: DataTypes.TEXT, qty: DataTypes.INTEGER }, { ...common, tableName: 'line_items' });
  const Customer = seq.define('Customer', { id: { type: DataTypes.BIGINT, primaryKey: true, autoIncrement: true }, accountId: DataTypes.BIGINT,
    name: DataTypes.TEXT, email: DataTypes.TEXT }, { ...common, tableName: 'customers' });
  Order.hasMany(LineItem, { foreignKey: 'orderId', as: 'items', constraints: false });
  LineItem.belongsTo(Order, { foreignKey: 'orderId', as: 'order', constraints: false });
  const row = (o) => o && o.get({ plain: true });
  const tenant = { accountId: T };

  await rep.op('connect', 'app', async () => {
    await seq.authenticate();
    rep.mark = (q) => seq.query(q);
  });
  await rep.op('read.scoped', 'app', async () => (await Order.findAll({ where: tenant, order: [['id', 'ASC']] })).map(row));
  const ins = await rep.op('model.create', 'app', async () => [row(await Order.create({ accountId: T, total: 12.5, note: 'sequelize' }))]);
  const oid = ins.ok ? ins.rows[0].id : 1;
  await rep.op('model.update_scoped', 'app', () => Order.update({ note: 'sequelize bulk' }, { where: { ...tenant, id: oid } }));
  await rep.op('tx.savepoint', 'app', () => seq.transaction(async (t) => {
    const c = await Customer.create({ accountId: T, name: 'sequelize customer' }, { transaction: t });
    await seq.transaction({ transaction: t }, (sp) => LineItem.create({ accountId: T, orderId: oid, sku: 'BAD', qty: -1 }, { transaction: sp })).catch(() => {});
    const li = await seq.transaction({ transaction: t }, (sp) => LineItem.create({ accountId: T, orderId: oid, sku: 'SKU-SQ', qty: 2 }, { transaction: sp }));
    return [row(c), row(li)];
  }));
  await rep.op('introspect.describeTable', 'app', async () => Object.keys(await seq.getQueryInterface().describeTable('orders')).sort());
  await rep.op('model.destroy_scoped', 'app', () => LineItem.destroy({ where: { ...tenant, orderId: oid } }));
  await rep.op('assoc.include_scoped', 'unpinned', async () => (await Order.findAll({ where: tenant, include: [{ model: LineItem, as: 'items', where: tenant, required: false }], order: [['id', 'ASC'], [{ model: LineItem, as: 'items' }, 'id', 'ASC']] })).map(row));
  await rep.op('assoc.lazy_getter', 'unpinned', async () => {
    const o = await Order.findOne({ where: { ...tenant, id: 1001 } });
    return (await o.getItems()).map(row); // WHERE order_id = 1001
  });
  await rep.op('assoc.belongs_to', 'unpinned', async () => {
    const li = await LineItem.findOne({ where: { ...tenant, id: 1 } });
    return [row(await li.getOrder())]; // WHERE id = 1001
  });
  await rep.op('model.save_default', 'unpinned', async () => {
    const o = await Order.findOne({ where: { ...tenant, id: oid } });
    o.note = 'sequelize saved';
    await o.save(); // UPDATE orders SET note=$1 WHERE id = $2
    return [row(o)];
  });
  await rep.op('model.findByPk', 'unpinned', async () => [row(await Order.findByPk(1))]);
  await rep.op('model.destroy_default', 'unpinned', async () => {
    const c = await Customer.findOne({ where: tenant, order: [['id', 'DESC']] });
    await c.destroy(); // DELETE FROM customers WHERE id = ..
    return [row(c)];
  });
  await rep.op('unscoped.findAll', 'unscoped', async () => (await Order.findAll({ attributes: ['id', 'accountId'], order: [['id', 'ASC']] })).map(row));
  await rep.op('unscoped.count', 'unscoped', () => LineItem.count());
  await rep.op('cross.findAll', 'cross', async () => (await Order.findAll({ where: { accountId: cfg.other } })).map(row));
  await rep.op('cross.update', 'cross', () => Order.update({ note: 'x' }, { where: { accountId: cfg.other } }));
  await rep.op('cross.create', 'cross', async () => [row(await Order.create({ id: 990014, accountId: cfg.other, total: 1 }))]);
  await seq.close();
  rep.dump();
})();
