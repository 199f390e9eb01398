# ruby-pg: exec_params, named prepared statements (prepare/exec_prepared),
# transactions with savepoints, type-map introspection, information_schema.
require 'pg'
require_relative 'common'

E = Clients::ENV_
T, O = E[:tenant], E[:other]
rep = Clients::Report.new('ruby-pg', PG::VERSION)
conn = nil
rep.op('connect', 'app') do
  conn = PG.connect(host: E[:host], port: E[:port], dbname: E[:db], user: E[:user], password: E[:password],
                    sslmode: 'disable', application_name: 'clients-ruby-pg')
  rep.mark = ->(q) { conn.exec(q) }
  nil
end
if conn
  q = ->(sql, *args) { r = conn.exec_params(sql, args); r.to_a }
  rep.op('read.scoped', 'app') { q.('SELECT id, account_id, total, note FROM orders WHERE account_id = $1 ORDER BY id', T) }
  ins = rep.op('crud.insert', 'app') { q.('INSERT INTO orders (account_id, total, note) VALUES ($1, $2, $3) RETURNING id, account_id', T, 12.5, 'ruby-pg') }
  oid = ins[:ok] ? ins[:rows][0]['id'].to_i : 1
  rep.op('crud.update', 'app') { q.('UPDATE orders SET note = $1 WHERE account_id = $2 AND id = $3 RETURNING id, account_id, note', 'ruby-pg updated', T, oid) }
  rep.op('prepared.named', 'app') do
    conn.prepare('order_by_id', 'SELECT id, account_id FROM orders WHERE account_id = $1 AND id = $2')
    [1, oid].flat_map { |id| conn.exec_prepared('order_by_id', [T, id]).to_a }
  end
  rep.op('typemap.introspect', 'app') do
    conn.type_map_for_results = PG::BasicTypeMapForResults.new(conn)
    r = q.('SELECT id, account_id, total FROM orders WHERE account_id = $1 AND id = 1', T)
    conn.type_map_for_results = PG::TypeMapAllStrings.new
    r
  end
  rep.op('tx.savepoint', 'app') do
    conn.transaction do |c|
      cu = c.exec_params('INSERT INTO customers (account_id, name) VALUES ($1, $2) RETURNING id, account_id', [T, 'ruby-pg customer']).to_a
      c.exec('SAVEPOINT sp1')
      begin
        c.exec_params("INSERT INTO line_items (account_id, order_id, sku, qty) VALUES ($1, $2, 'BAD', -1)", [T, oid])
      rescue PG::CheckViolation
        c.exec('ROLLBACK TO SAVEPOINT sp1')
      end
      li = c.exec_params("INSERT INTO line_items (account_id, order_id, sku, qty) VALUES ($1, $2, 'SKU-RP', 2) RETURNING id, account_id", [T, oid]).to_a
      cu + li
    end
  end
  rep.op('introspect.columns', 'app') { q.("SELECT column_name, data_type FROM information_schema.columns WHERE table_schema = 'public' AND table_name = $1 ORDER BY ordinal_position", 'orders') }
  rep.op('assoc.join', 'app') { q.('SELECT o.id, o.account_id, l.sku FROM orders o JOIN line_items l ON l.account_id = o.account_id AND l.order_id = o.id WHERE o.account_id = $1 ORDER BY o.id, l.id', T) }
  rep.op('crud.delete', 'app') { q.('DELETE FROM line_items WHERE account_id = $1 AND order_id = $2 RETURNING id, account_id', T, oid) }
  rep.op('unpinned.update_by_id', 'unpinned') { q.("UPDATE orders SET note = 'by id' WHERE id = $1 RETURNING id, account_id, note", oid) }
  rep.op('unscoped.select', 'unscoped') { q.('SELECT id, account_id FROM orders ORDER BY id') }
  rep.op('cross.select', 'cross') { q.('SELECT id, account_id FROM orders WHERE account_id = $1', O) }
  rep.op('cross.update', 'cross') { q.("UPDATE orders SET note = 'x' WHERE account_id = $1", O) }
  rep.op('cross.insert', 'cross') { q.('INSERT INTO orders (id, account_id, total) VALUES (990041, $1, 1)', O) }
  conn.close
end
rep.dump
