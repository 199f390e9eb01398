"""psycopg2: an application's plain SQL with the driver's defaults
(transactions opened implicitly, client-side parameter binding), plus
set_session, server-side PREPARE, a named cursor and information_schema."""
import psycopg2
import psycopg2.extras

from common import Report, TENANT, OTHER, HOST, PORT, DB, USER, PASSWORD

rep = Report("psycopg2", psycopg2.__version__.split()[0])
state = {}


def connect():
    c = psycopg2.connect(host=HOST, port=PORT, dbname=DB, user=USER, password=PASSWORD,
                         application_name="clients-psycopg2", sslmode="disable")
    state["c"] = c
    rep.mark = lambda q: _mark(c, q)
    return None


def _mark(c, q):
    with c.cursor() as cur:
        cur.execute(q)
    c.commit()


def q(sql, args=None, commit=True):
    c = state["c"]
    with c.cursor(cursor_factory=psycopg2.extras.RealDictCursor) as cur:
        cur.execute(sql, args)
        rows = [dict(r) for r in cur.fetchall()] if cur.description else cur.rowcount
    if commit:
        c.commit()
    return rows


def rollback():
    state["c"].rollback()


rep.op("connect", "app", connect)
if "c" in state:
    c = state["c"]
    rep.op("session.set_session", "app", lambda: (c.set_session(isolation_level="REPEATABLE READ", readonly=False), q("SELECT 1 AS one"), c.set_session(isolation_level="READ COMMITTED"))[1], rollback)

    def autocommit_session():
        # An autocommit connection with session defaults (its own, as a
        # worker would have): psycopg2 sends SET default_transaction_* here.
        c2 = psycopg2.connect(host=HOST, port=PORT, dbname=DB, user=USER, password=PASSWORD,
                              application_name="clients-psycopg2-ac", sslmode="disable")
        try:
            c2.autocommit = True
            c2.set_session(readonly=True, isolation_level="REPEATABLE READ")
            with c2.cursor() as cur:
                cur.execute("SELECT count(*) FROM orders WHERE account_id = %s", (TENANT,))
                rows = [list(cur.fetchone())]
            c2.set_session(readonly=False, isolation_level="READ COMMITTED")
            return rows
        finally:
            c2.close()
    rep.op("read.scoped", "app", lambda: q("SELECT id, account_id, total, note FROM orders WHERE account_id = %s ORDER BY id", (TENANT,)), rollback)
    ins = rep.op("crud.insert", "app", lambda: q("INSERT INTO orders (account_id, total, note) VALUES (%s, %s, %s) RETURNING id, account_id, total, note", (TENANT, 12.5, "psycopg2")), rollback)
    oid = ins["rows"][0]["id"] if ins["ok"] else 1
    rep.op("crud.update", "app", lambda: q("UPDATE orders SET note = %s WHERE account_id = %s AND id = %s RETURNING id, account_id, note", ("psycopg2 updated", TENANT, oid)), rollback)

    def savepoints():
        cur = c.cursor()
        cur.execute("INSERT INTO customers (account_id, name) VALUES (%s, %s) RETURNING id, account_id", (TENANT, "psycopg2 customer"))
        row = cur.fetchone()
        cur.execute("SAVEPOINT sp1")
        try:
            cur.execute("INSERT INTO line_items (account_id, order_id, sku, qty) VALUES (%s, %s, %s, %s)", (TENANT, oid, "BAD", -1))
        except psycopg2.errors.CheckViolation:
            cur.execute("ROLLBACK TO SAVEPOINT sp1")
        cur.execute("INSERT INTO line_items (account_id, order_id, sku, qty) VALUES (%s, %s, %s, %s) RETURNING id, account_id, order_id", (TENANT, oid, "SKU-P2", 2))
        li = cur.fetchone()
        cur.execute("RELEASE SAVEPOINT sp1")
        c.commit()
        return [list(row), list(li)]
    rep.op("tx.savepoint", "app", savepoints, rollback)

    def prepared():
        cur = c.cursor()
        cur.execute("PREPARE order_by_id(bigint, bigint) AS SELECT id, account_id, total FROM orders WHERE account_id = $1 AND id = $2")
        out = []
        for i in (1, oid):
            cur.execute("EXECUTE order_by_id(%s, %s)", (TENANT, i))
            out.append([str(x) for x in cur.fetchone()])
        cur.execute("DEALLOCATE order_by_id")
        c.commit()
        return out
    rep.op("prepared", "app", prepared, rollback)
    rep.op("introspect.columns", "app", lambda: q("SELECT column_name, data_type FROM information_schema.columns WHERE table_schema = 'public' AND table_name = %s ORDER BY ordinal_position", ("orders",)), rollback)

    def named_cursor():
        cur = c.cursor(name="big_orders")
        cur.itersize = 2
        cur.execute("SELECT id, account_id FROM orders WHERE account_id = %s ORDER BY id", (TENANT,))
        rows = [list(r) for r in cur]
        cur.close()
        c.commit()
        return rows
    rep.op("cursor.named", "app", named_cursor, rollback)
    rep.op("assoc.join", "app", lambda: q("SELECT o.id, o.account_id, l.sku FROM orders o JOIN line_items l ON l.account_id = o.account_id AND l.order_id = o.id WHERE o.account_id = %s ORDER BY o.id, l.id", (TENANT,)), rollback)
    rep.op("crud.delete", "app", lambda: q("DELETE FROM line_items WHERE account_id = %s AND order_id = %s RETURNING id, account_id", (TENANT, oid)), rollback)
    rep.op("session.autocommit_set_session", "app", autocommit_session)
    # Session settings applications send (SPEC, second-round policy changes:
    # allowed by class; each is its own operation so each verdict is reported).
    for i, setting in enumerate([
            "SET synchronous_commit = off", "SET work_mem = '64MB'", "SET jit = off",
            "SET plan_cache_mode = force_custom_plan", "SET enable_seqscan = off",
            "SET default_transaction_isolation = 'read committed'", "SET standard_conforming_strings = on",
            "SET search_path = \"$user\", public", "SET search_path = public", "RESET ALL"]):
        rep.op("session.set.%d" % i, "app", lambda sql=setting: q(sql), rollback)
    rep.op("unpinned.update_by_id", "unpinned", lambda: q("UPDATE orders SET note = %s WHERE id = %s RETURNING id, account_id, note", ("by id", oid)), rollback)
    rep.op("unscoped.select", "unscoped", lambda: q("SELECT id, account_id FROM orders ORDER BY id"), rollback)
    rep.op("unscoped.count", "unscoped", lambda: q("SELECT count(*) AS n FROM line_items"), rollback)
    rep.op("cross.select", "cross", lambda: q("SELECT id, account_id FROM orders WHERE account_id = %s", (OTHER,)), rollback)
    rep.op("cross.update", "cross", lambda: q("UPDATE orders SET note = 'x' WHERE account_id = %s", (OTHER,)), rollback)
    rep.op("cross.insert", "cross", lambda: q("INSERT INTO orders (id, account_id, total) VALUES (%s, %s, 1)", (990001, OTHER)), rollback)
    c.close()
rep.dump()
