"""SQLAlchemy ORM (1.4, psycopg2 dialect): declarative models, a pooled
engine (reset on return), session add/flush/commit, relationship loads
(lazy and selectin), nested transactions (SAVEPOINT), the inspector, and the
unit of work's default UPDATE/DELETE by primary key."""
import sqlalchemy as sa
from sqlalchemy import orm

from common import Report, TENANT, OTHER, HOST, PORT, DB, USER, PASSWORD

rep = Report("sqlalchemy", sa.__version__)
Base = orm.declarative_base()


class Order(Base):
    __tablename__ = "orders"
    id = sa.Column(sa.BigInteger, primary_key=True)
    account_id = sa.Column(sa.BigInteger, nullable=False)
    total = sa.Column(sa.Numeric, nullable=False, default=0)
    note = sa.Column(sa.Text)
    items = orm.relationship("LineItem", back_populates="order",
                             primaryjoin="and_(Order.account_id == foreign(LineItem.account_id), Order.id == foreign(LineItem.order_id))")

    def row(self):
        return {"id": self.id, "account_id": self.account_id, "total": self.total, "note": self.note}


class LineItem(Base):
    __tablename__ = "line_items"
    id = sa.Column(sa.BigInteger, primary_key=True)
    account_id = sa.Column(sa.BigInteger, nullable=False)
    order_id = sa.Column(sa.BigInteger, nullable=False)
    sku = sa.Column(sa.Text, nullable=False)
    qty = sa.Column(sa.Integer, nullable=False, default=1)
    order = orm.relationship("Order", back_populates="items",
                             primaryjoin="and_(Order.account_id == foreign(LineItem.account_id), Order.id == foreign(LineItem.order_id))")


class Customer(Base):
    __tablename__ = "customers"
    id = sa.Column(sa.BigInteger, primary_key=True)
    account_id = sa.Column(sa.BigInteger, nullable=False)
    name = sa.Column(sa.Text, nullable=False)
    email = sa.Column(sa.Text)


state = {}


def connect():
    url = sa.engine.URL.create("postgresql+psycopg2", username=USER, password=PASSWORD, host=HOST, port=PORT, database=DB,
                               query={"sslmode": "disable", "application_name": "clients-sqlalchemy"})
    engine = sa.create_engine(url, pool_size=2, max_overflow=0, pool_pre_ping=True, future=True)
    with engine.connect() as conn:
        conn.execute(sa.text("SELECT 1"))
    state["engine"] = engine
    state["Session"] = orm.sessionmaker(engine, future=True, expire_on_commit=False)

    def mark(q):
        with engine.connect() as conn:
            conn.execute(sa.text(q))
    rep.mark = mark


rep.op("connect", "app", connect)
if "engine" in state:
    engine, Session = state["engine"], state["Session"]

    def ses(fn):
        with Session() as s:
            return fn(s)
    rep.op("read.scoped", "app", lambda: ses(lambda s: [o.row() for o in s.scalars(sa.select(Order).where(Order.account_id == TENANT).order_by(Order.id))]))

    def insert():
        with Session() as s, s.begin():
            o = Order(account_id=TENANT, total=12.5, note="sqlalchemy")
            s.add(o)
            s.flush()
            s.add(LineItem(account_id=TENANT, order_id=o.id, sku="SKU-SA", qty=1))
        state["oid"] = o.id
        return [o.row()]
    rep.op("orm.insert", "app", insert)
    oid = state.get("oid", 1)

    def update_scoped():
        with Session() as s, s.begin():
            r = s.execute(sa.update(Order).where(Order.account_id == TENANT, Order.id == oid).values(note="sqlalchemy bulk").returning(Order.id, Order.account_id))
            return [dict(x._mapping) for x in r]
    rep.op("core.update_scoped", "app", update_scoped)

    def savepoint():
        with Session() as s, s.begin():
            c = Customer(account_id=TENANT, name="sqlalchemy customer")
            s.add(c)
            try:
                with s.begin_nested():
                    s.add(LineItem(account_id=TENANT, order_id=oid, sku="BAD", qty=-1))
            except sa.exc.IntegrityError:
                pass
            s.flush()
            return [{"id": c.id, "account_id": c.account_id}]
    rep.op("tx.savepoint", "app", savepoint)

    def autocommit_reset():
        # A connection switched to AUTOCOMMIT; the pool resets its isolation
        # level when it is returned.
        with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            n = conn.execute(sa.select(sa.func.count()).select_from(Order).where(Order.account_id == TENANT)).scalar()
        with engine.connect() as conn:
            iso = conn.execute(sa.text("SELECT current_setting('transaction_isolation')")).scalar()
        return [n, iso]
    rep.op("inspect", "app", lambda: (lambda i: [sorted(c["name"] for c in i.get_columns("orders")), i.get_pk_constraint("orders")["constrained_columns"],
                                                 sorted(fk["referred_table"] for fk in i.get_foreign_keys("line_items")), sorted(i.get_table_names())])(sa.inspect(engine)))

    def assoc_lazy():
        with Session() as s:
            o = s.scalars(sa.select(Order).where(Order.account_id == TENANT, Order.id == 1001)).one()
            items = [[i.id, i.account_id, i.sku] for i in o.items]  # lazy load: WHERE account_id = ? AND order_id = ?
            li = s.scalars(sa.select(LineItem).where(LineItem.account_id == TENANT, LineItem.id == 1)).one()
            return items + [[li.order.id, li.order.account_id]]
    rep.op("assoc.lazy", "app", assoc_lazy)

    rep.op("pool.autocommit_reset", "app", autocommit_reset)

    def assoc_selectin():
        with Session() as s:
            os_ = s.scalars(sa.select(Order).where(Order.account_id == TENANT).options(orm.selectinload(Order.items)).order_by(Order.id)).all()
            return [[o.id, o.account_id, sorted(i.sku for i in o.items)] for o in os_]
    # selectinload loads children by the parents' ids only: WHERE orders_1.id IN (..).
    rep.op("assoc.selectin", "unpinned", assoc_selectin)

    def orm_save():
        with Session() as s, s.begin():
            o = s.scalars(sa.select(Order).where(Order.account_id == TENANT, Order.id == oid)).one()
            o.note = "sqlalchemy saved"  # UPDATE orders SET note=%(note)s WHERE orders.id = %(orders_id)s
        return [o.row()]
    rep.op("orm.save_default", "unpinned", orm_save)

    def orm_delete():
        with Session() as s, s.begin():
            c = s.scalars(sa.select(Customer).where(Customer.account_id == TENANT).order_by(Customer.id.desc()).limit(1)).one()
            s.delete(c)  # DELETE FROM customers WHERE customers.id = %(id)s
            return [{"id": c.id, "account_id": c.account_id}]
    rep.op("orm.delete_default", "unpinned", orm_delete)
    rep.op("orm.get_by_pk", "unpinned", lambda: ses(lambda s: [s.get(Order, 1).row()]))
    rep.op("unscoped.query_all", "unscoped", lambda: ses(lambda s: sorted([o.id, o.account_id] for o in s.scalars(sa.select(Order)))))
    rep.op("cross.select", "cross", lambda: ses(lambda s: [o.row() for o in s.scalars(sa.select(Order).where(Order.account_id == OTHER))]))

    def cross_update():
        with Session() as s, s.begin():
            return s.execute(sa.update(Order).where(Order.account_id == OTHER).values(note="x")).rowcount
    rep.op("cross.update", "cross", cross_update)

    def cross_insert():
        with Session() as s, s.begin():
            s.add(Order(id=990004, account_id=OTHER, total=1))
    rep.op("cross.insert", "cross", cross_insert)
    engine.dispose()
rep.dump()
