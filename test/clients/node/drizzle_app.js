// Drizzle ORM over node-postgres: pgTable schemas with relations, the
// relational query API (with), insert/update/delete builders, transactions
// with nested savepoints, prepared queries.
'use strict';
const { Pool } = require('pg');
const { drizzle } = require('drizzle-orm/node-postgres');
const { pgTable, bigint, bigserial, numeric, text, integer } = require('drizzle-orm/pg-core');
const { relations, eq, and, sql, asc, placeholder } = require('drizzle-orm');
const { cfg, Report, version } = require('./common');

const orders = pgTable('orders', { id: bigserial('id', { mode: 'number' }).primaryKey(), accountId: bigint('account_id', { mode: 'number' }).notNull(),
  total: numeric('total').notNull(), note: text('note') });
const lineItems = pgTable('line_items', { id: bigserial('id', { mode: 'number' }).primaryKey(), accountId: bigint('account_id', { mode: 'number' }).notNull(),
  orderId: bigint('order_id', { mode: 'number' }).notNull(), sku: text('sku').notNull(), qty: integer('qty').notNull() });
const customers = pgTable('customers', { id: bigserial('id', { mode: 'number' }).primaryKey(), accountId: bigint('account_id', { mode: 'number' }).notNull(),
  name: text('name').notNull(), email: text('email') });
const ordersRelations = relations(orders, ({ many }) => ({ items: many(lineItems) }));
const lineItemsRelations = relations(lineItems, ({ one }) => ({ order: one(orders, { fields: [lineItems.orderId], references: [orders.id] }) }));

(async () => {
  const rep = new Report('drizzle', version('drizzle-orm'));
  const T = cfg.tenant;
  const pool = new Pool({ host: cfg.host, port: cfg.port, database: cfg.database, user: cfg.user, password: cfg.password, max: 2,
    application_name: 'clients-drizzle' });
  const db = drizzle(pool, { schema: { orders, lineItems, customers, ordersRelations, lineItemsRelations } });
  await rep.op('connect', 'app', async () => {
    await db.execute(sql`SELECT 1`);
    rep.mark = (q) => pool.query(q);
  });
  await rep.op('read.scoped', 'app', () => db.select().from(orders).where(eq(orders.accountId, T)).orderBy(asc(orders.id)));
  const ins = await rep.op('crud.insert', 'app', () => db.insert(orders).values({ accountId: T, total: '12.5', note: 'drizzle' }).returning());
  const oid = ins.ok ? ins.rows[0].id : 1;
  await rep.op('crud.update', 'app', () => db.update(orders).set({ note: 'drizzle updated' }).where(and(eq(orders.accountId, T), eq(orders.id, oid))).returning({ id: orders.id, accountId: orders.accountId }));
  await rep.op('prepared', 'app', async () => {
    const p = db.select().from(orders).where(and(eq(orders.accountId, placeholder('t')), eq(orders.id, placeholder('id')))).prepare('drizzle_order_by_id');
    return [...(await p.execute({ t: T, id: 1 })), ...(await p.execute({ t: T, id: oid }))];
  });
  await rep.op('tx.savepoint', 'app', () => db.transaction(async (tx) => {
    const c = await tx.insert(customers).values({ accountId: T, name: 'drizzle customer' }).returning({ id: customers.id, accountId: customers.accountId });
    await tx.transaction(async (sp) => sp.insert(lineItems).values({ accountId: T, orderId: oid, sku: 'BAD', qty: -1 })).catch(() => {});
    const li = await tx.transaction(async (sp) => sp.insert(lineItems).values({ accountId: T, orderId: oid, sku: 'SKU-DZ', qty: 2 }).returning({ id: lineItems.id, accountId: lineItems.accountId }));
    return [...c, ...li];
  }));
  await rep.op('assoc.join', 'app', () => db.select({ id: orders.id, accountId: orders.accountId, sku: lineItems.sku }).from(orders)
    .innerJoin(lineItems, and(eq(lineItems.accountId, orders.accountId), eq(lineItems.orderId, orders.id))).where(eq(orders.accountId, T)).orderBy(asc(orders.id), asc(lineItems.id)));
  await rep.op('crud.delete', 'app', () => db.delete(lineItems).where(and(eq(lineItems.accountId, T), eq(lineItems.orderId, oid))).returning({ id: lineItems.id, accountId: lineItems.accountId }));
  await rep.op('assoc.with_scoped', 'unpinned', () => db.query.orders.findMany({ where: eq(orders.accountId, T), with: { items: { orderBy: [asc(lineItems.id)] } }, orderBy: [asc(orders.id)] }));
  await rep.op('unpinned.update_by_id', 'unpinned', () => db.update(orders).set({ note: 'by id' }).where(eq(orders.id, oid)).returning({ id: orders.id, accountId: orders.accountId }));
  await rep.op('unscoped.select', 'unscoped', () => db.select({ id: orders.id, accountId: orders.accountId }).from(orders).orderBy(asc(orders.id)));
  await rep.op('cross.select', 'cross', () => db.select().from(orders).where(eq(orders.accountId, cfg.other)));
  await rep.op('cross.update', 'cross', () => db.update(orders).set({ note: 'x' }).where(eq(orders.accountId, cfg.other)));
  await rep.op('cross.insert', 'cross', () => db.insert(orders).values({ id: 990016, accountId: cfg.other, total: '1' }));
  await pool.end();
  rep.dump();
})();
