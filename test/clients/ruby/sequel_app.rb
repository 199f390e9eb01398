# Sequel: a connection pool, models with one_to_many/many_to_one
# associations, save/destroy defaults, eager and lazy loads, transactions
# with savepoints, prepared statements and Database#schema introspection.
require 'sequel'
require_relative 'common'

E = Clients::ENV_
T, O = E[:tenant], E[:other]
rep = Clients::Report.new('sequel', Sequel::VERSION)
db = nil
rep.op('connect', 'app') do
  db = Sequel.connect(adapter: 'postgres', host: E[:host], port: E[:port], database: E[:db], user: E[:user], password: E[:password],
                      sslmode: 'disable', max_connections: 2, connect_sqls: [], application_name: 'clients-sequel')
  db.test_connection
  rep.mark = ->(q) { db.run(q) }
  nil
end
if db
  # The tenant tables' primary keys are (account_id, id); the application's
  # models are keyed by id (unique by its identity sequence), so that its
  # associations are by order_id alone: the unpinned loads the matrix checks.
  class Order < Sequel::Model(:orders)
    set_primary_key :id
    one_to_many :items, class: :LineItem, key: :order_id
  end

  class LineItem < Sequel::Model(:line_items)
    set_primary_key :id
    many_to_one :order, class: :Order, key: :order_id
  end

  class Customer < Sequel::Model(:customers)
    set_primary_key :id
  end
  rows = ->(ds) { ds.all.map { |o| o.respond_to?(:values) ? o.values : o } }
  tenant = Order.where(account_id: T)
  rep.op('read.scoped', 'app') { rows.(tenant.order(:id)) }
  o = nil
  rep.op('model.create', 'app') { o = Order.create(account_id: T, total: 12.5, note: 'sequel'); [o.values] }
  oid = o ? o.id : 1
  rep.op('dataset.update_scoped', 'app') { tenant.where(id: oid).update(note: 'sequel bulk') }
  rep.op('prepared', 'app') do
    ps = db[:orders].where(account_id: :$t, id: :$id).prepare(:select, :order_by_id)
    [1, oid].flat_map { |id| ps.call(t: T, id: id) }
  end
  rep.op('tx.savepoint', 'app') do
    db.transaction do
      c = Customer.create(account_id: T, name: 'sequel customer')
      begin
        db.transaction(savepoint: true) { LineItem.create(account_id: T, order_id: oid, sku: 'BAD', qty: -1) }
      rescue Sequel::CheckConstraintViolation
        nil
      end
      li = db.transaction(savepoint: true) { LineItem.create(account_id: T, order_id: oid, sku: 'SKU-SQ', qty: 2) }
      [c.values, li.values]
    end
  end
  rep.op('introspect.schema', 'app') { [db.schema(:orders).map(&:first).map(&:to_s), db.tables.map(&:to_s).sort, db.indexes(:line_items).keys.map(&:to_s)] }
  rep.op('dataset.delete_scoped', 'app') { LineItem.where(account_id: T, order_id: oid).delete }
  rep.op('assoc.eager', 'unpinned') { tenant.eager(:items).order(:id).all.map { |x| [x.id, x.account_id, x.items.map(&:sku).sort] } }
  rep.op('assoc.lazy_one_to_many', 'unpinned') { tenant.where(id: 1001).first.items.map(&:values) } # WHERE order_id = 1001
  rep.op('assoc.lazy_many_to_one', 'unpinned') { [LineItem.where(account_id: T, id: 1).first.order.values] } # WHERE id = 1001
  rep.op('model.save_default', 'unpinned') { x = tenant.where(id: oid).first; x.note = 'sequel saved'; x.save; [x.values] } # UPDATE ... WHERE id = ..
  rep.op('model.by_pk', 'unpinned') { [Order[1].values] }
  rep.op('model.destroy_default', 'unpinned') { c = Customer.where(account_id: T).order(Sequel.desc(:id)).first; c.destroy; [c.account_id] }
  rep.op('unscoped.all', 'unscoped') { rows.(Order.order(:id).select(:id, :account_id)) }
  rep.op('cross.where', 'cross') { rows.(Order.where(account_id: O)) }
  rep.op('cross.update', 'cross') { Order.where(account_id: O).update(note: 'x') }
  rep.op('cross.insert', 'cross') { db[:orders].insert(id: 990042, account_id: O, total: 1) }
  db.disconnect
end
rep.dump
