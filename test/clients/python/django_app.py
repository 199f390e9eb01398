"""Django ORM (Debian's 3.2): unmanaged models over the tenant tables,
save()/delete() defaults, select_related/prefetch_related, atomic() with
nested savepoints, the schema introspection migrations and inspectdb use,
and connection close/reopen (CONN_MAX_AGE=0 reset)."""
import django
from django.conf import settings

from common import Report, TENANT, OTHER, HOST, PORT, DB, USER, PASSWORD

settings.configure(
    DATABASES={"default": {"ENGINE": "django.db.backends.postgresql", "NAME": DB, "USER": USER, "PASSWORD": PASSWORD,
                           "HOST": HOST, "PORT": PORT, "OPTIONS": {"sslmode": "disable", "application_name": "clients-django"},
                           "CONN_MAX_AGE": 0}},
    INSTALLED_APPS=["clientsapp"], USE_TZ=True, DEFAULT_AUTO_FIELD="django.db.models.BigAutoField")

import sys, types  # noqa: E402
mod = types.ModuleType("clientsapp")
mod.__file__ = __file__
sys.modules["clientsapp"] = mod
from django.apps import AppConfig  # noqa: E402


class ClientsAppConfig(AppConfig):
    name = "clientsapp"
    path = "."


mod.apps = types.ModuleType("clientsapp.apps")
mod.apps.ClientsAppConfig = ClientsAppConfig
sys.modules["clientsapp.apps"] = mod.apps
mod.default_app_config = "clientsapp.apps.ClientsAppConfig"
django.setup()

from django.db import models, transaction, connection, IntegrityError  # noqa: E402


class Order(models.Model):
    account_id = models.BigIntegerField()
    total = models.DecimalField(max_digits=12, decimal_places=2, default=0)
    note = models.TextField(null=True)

    class Meta:
        app_label, db_table, managed = "clientsapp", "orders", False


class LineItem(models.Model):
    account_id = models.BigIntegerField()
    order = models.ForeignKey(Order, on_delete=models.DO_NOTHING, related_name="items", db_constraint=False)
    sku = models.TextField()
    qty = models.IntegerField(default=1)

    class Meta:
        app_label, db_table, managed = "clientsapp", "line_items", False


class Customer(models.Model):
    account_id = models.BigIntegerField()
    name = models.TextField()
    email = models.TextField(null=True)

    class Meta:
        app_label, db_table, managed = "clientsapp", "customers", False


rep = Report("django", django.get_version())


def mark(q):
    with connection.cursor() as cur:
        cur.execute(q)


def row(o):
    return {"id": o.id, "account_id": o.account_id, "total": str(o.total), "note": o.note}


def connect():
    connection.ensure_connection()
    rep.mark = mark


rep.op("connect", "app", connect)
tenant = Order.objects.filter(account_id=TENANT)
rep.op("read.scoped", "app", lambda: [row(o) for o in tenant.order_by("id")])
st = {}


def create():
    o = Order.objects.create(account_id=TENANT, total=12.5, note="django")  # INSERT ... RETURNING id
    st["oid"] = o.id
    return [row(o)]


rep.op("orm.create", "app", create)
oid = st.get("oid", 1)
rep.op("queryset.update_scoped", "app", lambda: tenant.filter(id=oid).update(note="django bulk"))


def savepoint():
    with transaction.atomic():
        c = Customer.objects.create(account_id=TENANT, name="django customer")
        try:
            with transaction.atomic():  # SAVEPOINT
                LineItem.objects.create(account_id=TENANT, order_id=oid, sku="BAD", qty=-1)
        except IntegrityError:
            pass
        li = LineItem.objects.create(account_id=TENANT, order_id=oid, sku="SKU-DJ", qty=2)
    return [[c.id, c.account_id], [li.id, li.account_id]]


rep.op("tx.atomic_savepoint", "app", savepoint)


def introspect():
    with connection.cursor() as cur:
        intro = connection.introspection
        tables = sorted(t.name for t in intro.get_table_list(cur))
        cols = [c.name for c in intro.get_table_description(cur, "orders")]
        cons = sorted(intro.get_constraints(cur, "line_items"))
        seqs = intro.get_sequences(cur, "orders")
        return [tables, cols, cons, [s.get("name") for s in seqs]]


rep.op("connection.reset", "app", lambda: (connection.close(), connection.ensure_connection(), [row(o) for o in tenant.filter(id=1)])[2])
# get_table_description runs SELECT * FROM "orders" LIMIT 1 (a describe
# without a pin): refused in deny mode by design (issue 11), pinned in rewrite.
rep.op("introspect.migrations", "unpinned", introspect)
# The parent queryset is scoped; Django's association loads are not
# (prefetch: WHERE order_id IN (..); select_related: JOIN orders ON order_id = id).
rep.op("assoc.prefetch", "unpinned", lambda: [[o.id, o.account_id, sorted(i.sku for i in o.items.all())] for o in tenant.prefetch_related("items").order_by("id")])
rep.op("assoc.select_related", "unpinned", lambda: [[li.id, li.account_id, li.order.id, li.order.account_id] for li in LineItem.objects.filter(account_id=TENANT).select_related("order").order_by("id")])


def save_default():
    o = tenant.get(id=oid)
    o.note = "django saved"
    o.save()  # UPDATE orders SET account_id=.., total=.., note=.. WHERE id = ..
    return [row(o)]


rep.op("orm.save_default", "unpinned", save_default)
rep.op("orm.get_by_pk", "unpinned", lambda: [row(Order.objects.get(pk=1))])
rep.op("assoc.reverse_default", "unpinned", lambda: sorted(i.sku for i in tenant.get(id=1001).items.all()))  # WHERE order_id = 1001


def delete_default():
    c = Customer.objects.filter(account_id=TENANT).order_by("-id").first()
    c.delete()  # DELETE FROM customers WHERE id IN (..)
    return [[c.account_id]]


rep.op("orm.delete_default", "unpinned", delete_default)
rep.op("unscoped.all", "unscoped", lambda: sorted([o.id, o.account_id] for o in Order.objects.all()))
rep.op("unscoped.count", "unscoped", lambda: LineItem.objects.count())
rep.op("cross.filter", "cross", lambda: [row(o) for o in Order.objects.filter(account_id=OTHER)])
rep.op("cross.update", "cross", lambda: Order.objects.filter(account_id=OTHER).update(note="x"))
rep.op("cross.create", "cross", lambda: [row(Order.objects.create(id=990005, account_id=OTHER, total=1))])
connection.close()
rep.dump()
