# ActiveRecord (Debian's Rails 6.1): models with has_many/belongs_to,
# create/save/destroy defaults, includes/preload and lazy associations,
# transactions with requires_new savepoints, the schema cache's column
# introspection, prepared statements and the connection pool.
require 'active_record'
require_relative 'common'

E = Clients::ENV_
T, O = E[:tenant], E[:other]
rep = Clients::Report.new('activerecord', ActiveRecord::VERSION::STRING)

# The tenant tables' primary keys are (account_id, id), which Rails 6.1
# cannot model: an application on this schema names id (unique by its
# identity sequence) as the models' key, as Rails apps on such schemas do.
class Order < ActiveRecord::Base
  self.primary_key = 'id'
  has_many :items, class_name: 'LineItem', foreign_key: :order_id
end

class LineItem < ActiveRecord::Base
  self.primary_key = 'id'
  belongs_to :order
end

class Customer < ActiveRecord::Base
  self.primary_key = 'id'
end

connected = false
rep.op('connect', 'app') do
  ActiveRecord::Base.establish_connection(adapter: 'postgresql', host: E[:host], port: E[:port], database: E[:db], username: E[:user],
                                          password: E[:password], sslmode: 'disable', pool: 2, prepared_statements: true,
                                          application_name: 'clients-activerecord')
  ActiveRecord::Base.connection.execute('SELECT 1')
  rep.mark = ->(q) { ActiveRecord::Base.connection.execute(q) }
  connected = true
  nil
end
if connected
  tenant = Order.where(account_id: T)
  rows = ->(rel) { rel.map(&:attributes) }
  rep.op('introspect.columns', 'app') { Order.column_names.sort }
  rep.op('read.scoped', 'app') { rows.(tenant.order(:id)) }
  o = nil
  rep.op('model.create', 'app') { o = Order.create!(account_id: T, total: 12.5, note: 'activerecord'); [o.attributes] }
  oid = o ? o.id : 1
  rep.op('relation.update_all_scoped', 'app') { tenant.where(id: oid).update_all(note: 'activerecord bulk') }
  rep.op('prepared.reuse', 'app') { [1, 5, oid].map { |id| tenant.where(id: id).pluck(:id, :account_id) } }
  rep.op('tx.savepoint', 'app') do
    ActiveRecord::Base.transaction do
      c = Customer.create!(account_id: T, name: 'activerecord customer')
      begin
        ActiveRecord::Base.transaction(requires_new: true) { LineItem.create!(account_id: T, order_id: oid, sku: 'BAD', qty: -1) }
      rescue ActiveRecord::StatementInvalid
        nil
      end
      li = ActiveRecord::Base.transaction(requires_new: true) { LineItem.create!(account_id: T, order_id: oid, sku: 'SKU-AR', qty: 2) }
      [c.attributes, li.attributes]
    end
  end
  rep.op('introspect.primary_keys', 'app') { [ActiveRecord::Base.connection.primary_keys('orders'), ActiveRecord::Base.connection.tables.sort] }
  rep.op('relation.delete_all_scoped', 'app') { LineItem.where(account_id: T, order_id: oid).delete_all }
  rep.op('pool.checkout_release', 'app') do
    3.times.map { ActiveRecord::Base.connection_pool.with_connection { |c| c.select_value("SELECT count(*) FROM orders WHERE account_id = #{T}") } }
  end
  rep.op('assoc.includes', 'unpinned') { tenant.includes(:items).order(:id).map { |x| [x.id, x.account_id, x.items.map(&:sku).sort] } }
  rep.op('assoc.lazy_has_many', 'unpinned') { rows.(tenant.find_by!(id: 1001).items) } # WHERE order_id = 1001
  rep.op('assoc.lazy_belongs_to', 'unpinned') { [LineItem.where(account_id: T).find_by!(id: 1).order.attributes] } # WHERE id = 1001
  rep.op('model.save_default', 'unpinned') { x = tenant.find_by!(id: oid); x.note = 'activerecord saved'; x.save!; [x.attributes] }
  rep.op('model.find_by_pk', 'unpinned') { [Order.find(1).attributes] }
  rep.op('model.destroy_default', 'unpinned') { c = Customer.where(account_id: T).order(id: :desc).first; c.destroy!; [c.account_id] }
  rep.op('unscoped.all', 'unscoped') { Order.order(:id).pluck(:id, :account_id) }
  rep.op('cross.where', 'cross') { rows.(Order.where(account_id: O)) }
  rep.op('cross.update_all', 'cross') { Order.where(account_id: O).update_all(note: 'x') }
  rep.op('cross.create', 'cross') { [Order.create!(id: 990043, account_id: O, total: 1).attributes] }
  ActiveRecord::Base.connection_pool.disconnect!
end
rep.dump
