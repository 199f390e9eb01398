"""Shared reporting for the Python programs of pgtenant's client matrix.

Every program builds a Report, runs its operations through Report.op (which
first sends the marker statement through the program's own client) and
prints Report.dump() as its last line; see ../README.md.
"""
import decimal
import json
import os
import sys
import traceback

TENANT = int(os.environ.get("PGT_TENANT", "42"))
OTHER = int(os.environ.get("PGT_OTHER", "7"))
MODE = os.environ.get("PGT_MODE", "deny")
HOST = os.environ.get("PGT_HOST", "127.0.0.1")
PORT = int(os.environ.get("PGT_PORT", "5432"))
DB = os.environ.get("PGT_DB", "app")
USER = os.environ.get("PGT_USER", "tester")
PASSWORD = os.environ.get("PGT_PASSWORD", "")
URL = os.environ.get("PGT_URL", "")


def sqlstate(exc):
    """The SQLSTATE of a driver or ORM exception, looking through wrappers."""
    seen = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        for attr in ("pgcode", "sqlstate"):
            v = getattr(exc, attr, None)
            if isinstance(v, str) and v:
                return v
        exc = getattr(exc, "orig", None) or exc.__cause__ or exc.__context__
    return ""


def plain(v):
    """A JSON-stable form of a row value."""
    if isinstance(v, decimal.Decimal):
        return str(v.normalize()) if v == v.to_integral() else str(v)
    if isinstance(v, dict):
        return {k: plain(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [plain(x) for x in v]
    if isinstance(v, (int, float, str, bool)) or v is None:
        return v
    return str(v)


class Report:
    def __init__(self, client, version):
        self.client, self.version, self.ops = client, version, []
        self.mark = None  # function(text) running the marker statement

    def op(self, name, kind, fn, on_error=None):
        """Run fn (returning the rows it read or changed) as operation name."""
        if self.mark is not None:
            try:
                self.mark("SELECT 'pgtenant-op:%s'" % name)
            except Exception as e:  # the op's own failure is what counts
                print("marker %s: %s" % (name, e), file=sys.stderr)
        rec = {"name": name, "kind": kind, "ok": True, "sqlstate": "", "error": "", "rows": None}
        try:
            rec["rows"] = plain(fn())
        except Exception as e:
            rec.update(ok=False, sqlstate=sqlstate(e), error=str(e).strip()[:500])
            print("op %s: %s" % (name, traceback.format_exc()), file=sys.stderr)
            if on_error is not None:
                try:
                    on_error()
                except Exception as e2:
                    print("op %s cleanup: %s" % (name, e2), file=sys.stderr)
        self.ops.append(rec)
        return rec

    def dump(self):
        print(json.dumps({"client": self.client, "version": self.version, "ops": self.ops}))
