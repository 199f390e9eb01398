"""psycopg 3: server-side binding (the extended protocol), automatic
prepared statements after prepare_threshold uses, transaction() blocks with
nested savepoints, executemany, type introspection, and psycopg_pool's
checkout/return."""
import psycopg
from psycopg.rows import dict_row

from common import Report, TENANT, OTHER, HOST, PORT, DB, USER, PASSWORD

rep = Report("psycopg3", psycopg.__version__)
state = {}


def connect():
    c = psycopg.connect(host=HOST, port=PORT, dbname=DB, user=USER, password=PASSWORD,
                        application_name="clients-psycopg3", sslmode="disable", autocommit=True,
                        row_factory=dict_row, prepare_threshold=1)
    state["c"] = c
    rep.mark = lambda q: c.execute(q)


rep.op("connect", "app", connect)
if "c" in state:
    c = state["c"]

    def q(sql, args=None):
        cur = c.execute(sql, args)
        return cur.fetchall() if cur.description else cur.rowcount

    rep.op("read.scoped", "app", lambda: q("SELECT id, account_id, total, note FROM orders WHERE account_id = %s ORDER BY id", (TENANT,)))
    ins = rep.op("crud.insert", "app", lambda: q("INSERT INTO orders (account_id, total, note) VALUES (%s, %s, %s) RETURNING id, account_id, total, note", (TENANT, 12.5, "psycopg3")))
    oid = ins["rows"][0]["id"] if ins["ok"] else 1
    rep.op("crud.update", "app", lambda: q("UPDATE orders SET note = %s WHERE account_id = %s AND id = %s RETURNING id, account_id, note", ("psycopg3 updated", TENANT, oid)))

    def prepared():
        out = []
        for i in (1, 5, 1001, oid):  # prepare_threshold=1: prepared on the server after the first use
            out += q("SELECT id, account_id, total FROM orders WHERE account_id = %s AND id = %s", (TENANT, i), )
        return out
    rep.op("prepared.auto", "app", prepared)
    rep.op("prepared.explicit", "app", lambda: c.execute("SELECT id, account_id FROM orders WHERE account_id = %s AND id = %s", (TENANT, oid), prepare=True).fetchall())

    def savepoints():
        with c.transaction():
            row = q("INSERT INTO customers (account_id, name) VALUES (%s, %s) RETURNING id, account_id", (TENANT, "psycopg3 customer"))
            try:
                with c.transaction():  # a SAVEPOINT
                    q("INSERT INTO line_items (account_id, order_id, sku, qty) VALUES (%s, %s, %s, %s)", (TENANT, oid, "BAD", -1))
            except psycopg.errors.CheckViolation:
                pass
            with c.transaction():
                li = q("INSERT INTO line_items (account_id, order_id, sku, qty) VALUES (%s, %s, %s, %s) RETURNING id, account_id, order_id", (TENANT, oid, "SKU-P3", 2))
        return row + li
    rep.op("tx.savepoint", "app", savepoints)

    def many():
        with c.cursor() as cur:
            cur.executemany("INSERT INTO line_items (account_id, order_id, sku, qty) VALUES (%s, %s, %s, %s)",
                            [(TENANT, oid, "SKU-M1", 1), (TENANT, oid, "SKU-M2", 3)])
        return q("SELECT sku, account_id, qty FROM line_items WHERE account_id = %s AND order_id = %s ORDER BY sku", (TENANT, oid))
    rep.op("executemany", "app", many)
    rep.op("introspect.types", "app", lambda: [psycopg.types.TypeInfo.fetch(c, "numeric").oid])
    rep.op("introspect.columns", "app", lambda: q("SELECT column_name, data_type FROM information_schema.columns WHERE table_schema = 'public' AND table_name = %s ORDER BY ordinal_position", ("orders",)))
    rep.op("assoc.join", "app", lambda: q("SELECT o.id, o.account_id, l.sku FROM orders o JOIN line_items l ON l.account_id = o.account_id AND l.order_id = o.id WHERE o.account_id = %s ORDER BY o.id, l.id", (TENANT,)))

    def pool_checkout_release():
        # psycopg_pool: connections come back with a transaction open or
        # idle; the pool rolls back and checks them before reuse.
        from psycopg_pool import ConnectionPool
        info = psycopg.conninfo.make_conninfo(host=HOST, port=PORT, dbname=DB, user=USER, password=PASSWORD,
                                              sslmode="disable", application_name="clients-psycopg3-pool")
        out = []
        with ConnectionPool(info, min_size=1, max_size=2, kwargs={"row_factory": dict_row}) as pool:
            for i in range(3):
                with pool.connection() as pc:
                    out += pc.execute("SELECT id, account_id FROM orders WHERE account_id = %s AND id = 1", (TENANT,)).fetchall()
                    if i == 0:
                        pc.execute("BEGIN")  # left open: the pool rolls it back on return
            pool.check()
        return out
    rep.op("pool.checkout_release", "app", pool_checkout_release)
    rep.op("crud.delete", "app", lambda: q("DELETE FROM line_items WHERE account_id = %s AND order_id = %s RETURNING id, account_id", (TENANT, oid)))
    rep.op("unpinned.delete_by_id", "unpinned", lambda: q("DELETE FROM customers WHERE id = %s RETURNING id, account_id", (100000,)))
    rep.op("unscoped.select", "unscoped", lambda: q("SELECT id, account_id FROM orders ORDER BY id"))
    rep.op("cross.select", "cross", lambda: q("SELECT id, account_id FROM orders WHERE account_id = %s", (OTHER,)))
    rep.op("cross.update", "cross", lambda: q("UPDATE orders SET note = 'x' WHERE account_id = %s", (OTHER,)))
    rep.op("cross.insert", "cross", lambda: q("INSERT INTO orders (id, account_id, total) VALUES (%s, %s, 1)", (990002, OTHER)))
    c.close()
rep.dump()
