"""asyncpg: a connection pool (checkout, release with asyncpg's reset
query, checkout again), prepared statements (asyncpg prepares every query),
type introspection, transactions with nested savepoints, executemany."""
import asyncio

import asyncpg

from common import Report, MODE, TENANT, OTHER, HOST, PORT, DB, USER, PASSWORD

rep = Report("asyncpg", asyncpg.__version__)


def rows(rs):
    return [dict(r) for r in rs]




async def main():
    pool = None
    marks = []

    async def op(name, kind, coro_fn):
        if pool is not None:
            try:
                await pool.execute("SELECT 'pgtenant-op:%s'" % name)
            except Exception:
                pass
        try:
            r = await coro_fn()
            rep.mark = None
            return rep.op(name, kind, lambda: r)
        except Exception as e:
            err = e
            rep.mark = None
            def raise_():
                raise err
            return rep.op(name, kind, raise_)

    async def connect():
        nonlocal pool
        pool = await asyncpg.create_pool(host=HOST, port=PORT, database=DB, user=USER, password=PASSWORD,
                                         ssl=False, min_size=1, max_size=2,
                                         server_settings={"application_name": "clients-asyncpg"})
        return None
    await op("connect", "app", connect)
    if pool is None:
        return
    await op("read.scoped", "app", lambda: _fetch(pool, "SELECT id, account_id, total, note FROM orders WHERE account_id = $1 ORDER BY id", TENANT))
    ins = await op("crud.insert", "app", lambda: _fetch(pool, "INSERT INTO orders (account_id, total, note) VALUES ($1, $2, $3) RETURNING id, account_id, total, note", TENANT, 12.5, "asyncpg"))
    oid = ins["rows"][0]["id"] if ins["ok"] else 1
    await op("crud.update", "app", lambda: _fetch(pool, "UPDATE orders SET note = $1 WHERE account_id = $2 AND id = $3 RETURNING id, account_id, note", "asyncpg updated", TENANT, oid))

    async def pool_reset():
        # Checkout, use, release (asyncpg runs its reset query on release:
        # pg_advisory_unlock_all(), CLOSE ALL, UNLISTEN *, RESET ALL), again.
        out = []
        for _ in range(3):
            async with pool.acquire() as con:
                out += rows(await con.fetch("SELECT id, account_id FROM orders WHERE account_id = $1 AND id = $2", TENANT, 1))
        return out
    await op("pool.release_reset", "app", pool_reset)

    async def prepared():
        async with pool.acquire() as con:
            st = await con.prepare("SELECT id, account_id, total FROM orders WHERE account_id = $1 AND id = $2")
            return [rows(await st.fetch(TENANT, i)) for i in (1, oid)]
    await op("prepared", "app", prepared)

    async def savepoints():
        async with pool.acquire() as con:
            async with con.transaction():
                row = await con.fetchrow("INSERT INTO customers (account_id, name) VALUES ($1, $2) RETURNING id, account_id", TENANT, "asyncpg customer")
                try:
                    async with con.transaction():
                        await con.execute("INSERT INTO line_items (account_id, order_id, sku, qty) VALUES ($1, $2, $3, $4)", TENANT, oid, "BAD", -1)
                except asyncpg.exceptions.CheckViolationError:
                    pass
                async with con.transaction():
                    li = await con.fetchrow("INSERT INTO line_items (account_id, order_id, sku, qty) VALUES ($1, $2, $3, $4) RETURNING id, account_id, order_id", TENANT, oid, "SKU-AP", 2)
            return [dict(row), dict(li)]
    await op("tx.savepoint", "app", savepoints)

    async def many():
        async with pool.acquire() as con:
            await con.executemany("INSERT INTO line_items (account_id, order_id, sku, qty) VALUES ($1, $2, $3, $4)",
                                  [(TENANT, oid, "SKU-M1", 1), (TENANT, oid, "SKU-M2", 3)])
            return rows(await con.fetch("SELECT sku, account_id, qty FROM line_items WHERE account_id = $1 AND order_id = $2 ORDER BY sku", TENANT, oid))
    await op("executemany", "app", many)

    async def introspect():
        async with pool.acquire() as con:
            # A composite/array type makes asyncpg run its type introspection query.
            return [r["ids"] for r in await con.fetch("SELECT array_agg(id ORDER BY id) AS ids FROM orders WHERE account_id = $1", TENANT)]
    await op("introspect.types", "app", introspect)

    async def copy_records():
        async with pool.acquire() as con:
            if MODE == "oracle":
                # PostgreSQL refuses COPY FROM into a table with RLS (0A000):
                # the RLS equivalent of the COPY is the INSERT of its rows.
                await con.execute("INSERT INTO line_items (account_id, order_id, sku, qty) VALUES ($1, $2, $3, $4)", TENANT, oid, "SKU-C1", 4)
            else:
                await con.copy_records_to_table("line_items", records=[(TENANT, oid, "SKU-C1", 4)], columns=["account_id", "order_id", "sku", "qty"])
            return rows(await con.fetch("SELECT sku, account_id FROM line_items WHERE account_id = $1 AND sku = 'SKU-C1'", TENANT))
    await op("copy_records_to_table", "unpinned", copy_records)
    await op("crud.delete", "app", lambda: _fetch(pool, "DELETE FROM line_items WHERE account_id = $1 AND order_id = $2 RETURNING id, account_id", TENANT, oid))
    await op("unscoped.select", "unscoped", lambda: _fetch(pool, "SELECT id, account_id FROM orders ORDER BY id"))
    await op("cross.select", "cross", lambda: _fetch(pool, "SELECT id, account_id FROM orders WHERE account_id = $1", OTHER))
    await op("cross.update", "cross", lambda: _fetch(pool, "UPDATE orders SET note = 'x' WHERE account_id = $1 RETURNING id", OTHER))
    await op("cross.insert", "cross", lambda: _fetch(pool, "INSERT INTO orders (id, account_id, total) VALUES ($1, $2, 1) RETURNING id", 990003, OTHER))
    await pool.close()


async def _fetch(pool, sql, *args):
    return rows(await pool.fetch(sql, *args))


asyncio.run(main())
rep.dump()
