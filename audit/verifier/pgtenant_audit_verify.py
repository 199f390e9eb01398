#!/usr/bin/env python3
"""Independent verifier of a pgtenant audit export (audit/README.md).

A second implementation of the byte-level spec, written from README.md and
sharing no code with the Go package: it recomputes every content, entry and
genesis hash of a JSON-lines export (`pgtenant audit export`), checks that
seq is contiguous and every link holds, that a redacted (purged) row lies
inside a purge record's prefix, that checkpoint and purge heads match, and
every RFC 6962 inclusion proof against the export's tree checkpoint note,
and, for hash version 2 rows (and version 3 rows with a commitment), that a
statement text still present matches its salted commitment. Version 3 rows
also cover role, actor, purpose, ticket and rewritten; rows of versions 1
and 2 must not carry those fields.

It does not check Ed25519 signatures (the standard library has no Ed25519);
`pgtenant audit verify --file EXPORT --public-key KEY` does.

Usage: pgtenant_audit_verify.py EXPORT.jsonl     (exit 0 intact, 1 broken, 2 unusable)
       pgtenant_audit_verify.py --vectors        (prints the README's test vector hashes)
"""

import base64
import datetime
import hashlib
import ipaddress
import json
import struct
import sys


def u32(n):
    return struct.pack(">I", n)


def i64(n):
    return struct.pack(">q", n)


def lp(b):
    return u32(len(b)) + b


def text(s):
    if s is None:
        return b"\x00"
    return b"\x01" + lp(s.encode("utf-8"))


def raw(b):
    return b"\x01" + lp(b)


def bigint(n):
    if n is None:
        return b"\x00"
    return b"\x01" + i64(n)


def text_array(a):
    if a is None:
        return b"\x00"
    return b"\x01" + u32(len(a)) + b"".join(text(s) for s in a)


def inet(s):
    if s is None:
        return b"\x00"
    try:
        return raw(ipaddress.ip_address(s).packed)
    except ValueError:
        return text(s)


def micros(ts):
    """RFC 3339 with microseconds (the export's ts) -> microseconds since the epoch."""
    dt = datetime.datetime.fromisoformat(ts.replace("Z", "+00:00"))
    delta = dt - datetime.datetime(1970, 1, 1, tzinfo=datetime.timezone.utc)
    return (delta.days * 86400 + delta.seconds) * 1_000_000 + delta.microseconds


def content_hash(r):
    b = bytes([0x00, r["hash_version"]])
    b += raw(bytes.fromhex(r["event_id"].replace("-", "")))
    b += text(r["chain_id"]) + text(r["region"]) + b"\x01" + i64(micros(r["ts"])) + text(r["kind"])
    for f in ("account_id", "subject", "client_user"):
        b += text(r.get(f))
    b += inet(r.get("client_addr"))
    for f in ("session_id", "proxy_instance"):
        b += text(r.get(f))
    if r["hash_version"] == 2 or (r["hash_version"] == 3 and r.get("statement_commitment")):
        # Version 2 (and 3 with a commitment): the salted commitment to the
        # text stands in its place.
        c = r.get("statement_commitment")
        b += raw(bytes.fromhex(c)) if c else b"\x00"
    else:
        b += text(r.get("statement"))
    b += text_array(r.get("tables"))
    for f in ("verdict", "reason", "sqlstate"):
        b += text(r.get(f))
    b += bigint(r.get("rows")) + bigint(r.get("duration_us"))
    if r["hash_version"] == 3:
        for f in ("role", "actor", "purpose", "ticket"):
            b += text(r.get(f))
        w = r.get("rewritten")
        b += b"\x00" if w is None else b"\x01" + (b"\x01" if w else b"\x00")
    return hashlib.sha256(b).digest()


ATTRIBUTION = ("role", "actor", "purpose", "ticket", "rewritten")


def entry_hash(chain, seq, prev, content):
    return hashlib.sha256(b"\x10" + lp(chain.encode()) + i64(seq) + prev + content).digest()


def genesis(region, chain):
    return hashlib.sha256(b"\x20" + lp(region.encode()) + lp(chain.encode())).digest()


# RFC 6962 / 9162 Merkle tree hashing.
def leaf_hash(data):
    return hashlib.sha256(b"\x00" + data).digest()


def node_hash(left, right):
    return hashlib.sha256(b"\x01" + left + right).digest()


def root_from_inclusion(index, size, leaf, proof):
    """RFC 9162 section 2.1.3.2: the root an inclusion proof leads to, or None."""
    if index >= size:
        return None
    fn, sn, r = index, size - 1, leaf
    for p in proof:
        if sn == 0:
            return None
        if fn % 2 == 1 or fn == sn:
            r = node_hash(p, r)
            if fn % 2 == 0:
                while fn % 2 == 0 and fn != 0:
                    fn >>= 1
                    sn >>= 1
        else:
            r = node_hash(r, p)
        fn >>= 1
        sn >>= 1
    return r if sn == 0 else None


def parse_note(note):
    """A C2SP checkpoint note: origin, size, base64 root (signatures not checked)."""
    body = note.split("\n\n", 1)[0].split("\n")
    if len(body) < 3 or not body[0].startswith("pgtenant.audit/"):
        raise ValueError("not a pgtenant audit checkpoint note")
    return body[0][len("pgtenant.audit/"):], int(body[1]), base64.b64decode(body[2])


def verify(lines):
    header, events, checkpoints, purges, notes = None, [], [], [], []
    for n, line in enumerate(lines, 1):
        if not line.strip():
            continue
        rec = json.loads(line)
        t = rec.get("type")
        if t == "header":
            header = rec
        elif t == "event":
            events.append(rec)
        elif t == "checkpoint":
            checkpoints.append(rec)
        elif t == "purge":
            purges.append(rec)
        elif t == "tree_checkpoint":
            notes.append(rec["note"])
        else:
            raise ValueError("line %d: unknown record type %r" % (n, t))
    if header is None or header.get("format") != "pgtenant-audit-export":
        raise ValueError("no pgtenant-audit-export header")
    failures = []
    trees = {}
    for note in notes:
        region, size, root = parse_note(note)
        trees[region] = (size, root)
    chains = {}
    for e in events:
        chains.setdefault((e["region"], e["chain_id"]), []).append(e)
    for (region, chain), rows in chains.items():
        purged_upto = max([p["upto_seq"] for p in purges if p["region"] == region and p["chain_id"] == chain] or [0])
        first = header.get("first_seq", 1)
        expect_seq = rows[0]["seq"] if first > 1 else 1
        prev = bytes.fromhex(rows[0]["prev_hash"]) if first > 1 else genesis(region, chain)
        heads = {}
        broken = None
        for r in rows:
            seq = r["seq"]
            ch, ph, eh = (bytes.fromhex(r[k]) for k in ("content_hash", "prev_hash", "entry_hash"))
            if seq != expect_seq:
                broken = (expect_seq, "seq_gap" if seq > expect_seq else "seq_order")
            elif r.get("purged"):
                if seq > purged_upto:
                    broken = (seq, "unsigned_purge")
            elif r["hash_version"] not in (1, 2, 3):
                broken = (seq, "unknown_version")
            elif r["hash_version"] != 3 and any(r.get(f) is not None for f in ATTRIBUTION):
                broken = (seq, "content_mismatch")
            elif content_hash(r) != ch:
                broken = (seq, "content_mismatch")
            elif (r["hash_version"] == 2 or (r["hash_version"] == 3 and r.get("statement_commitment"))) \
                    and r.get("statement") is not None and (
                    not r.get("statement_salt") or hashlib.sha256(
                        b"\x40" + bytes.fromhex(r["statement_salt"]) + r["statement"].encode("utf-8")
                    ).hexdigest() != r.get("statement_commitment")):
                broken = (seq, "content_mismatch")
            if broken is None and ph != prev:
                broken = (seq, "genesis_mismatch" if seq == 1 else "link_mismatch")
            if broken is None and entry_hash(chain, seq, ph, ch) != eh:
                broken = (seq, "entry_mismatch")
            if broken is None and "leaf" in r and r.get("proof") is not None:
                tree = trees.get(region)
                proof = [base64.b64decode(h) for h in r["proof"]]
                if tree is None or root_from_inclusion(r["leaf"], tree[0], leaf_hash(eh), proof) != tree[1]:
                    broken = (seq, "tree_mismatch")
            if broken:
                break
            heads[seq] = eh
            prev, expect_seq = eh, seq + 1
        for c in [c for c in checkpoints if c["region"] == region and c["chain_id"] == chain] + \
                 [p for p in purges if p["region"] == region and p["chain_id"] == chain]:
            size = c.get("size", c.get("upto_seq"))
            if broken is None and size in heads and heads[size].hex() != c["head"]:
                broken = (size, "checkpoint_mismatch")
            elif broken is None and size >= expect_seq and header.get("complete", True):
                broken = (size, "truncated")
        if broken:
            failures.append("region %s chain %r seq %d: %s" % (region, chain, broken[0], broken[1]))
    return failures


def vectors():
    r = {"event_id": "01890a5d-ac96-774b-bcce-b302099a8057", "chain_id": "acct-42", "account_id": "acct-42",
         "region": "eu-west", "ts": "2026-01-02T03:04:05.123456Z", "kind": "statement",
         "subject": "user@example.com", "client_user": "app", "client_addr": "10.0.0.7", "session_id": "s-1",
         "proxy_instance": "proxy-a", "statement": "SELECT * FROM orders WHERE account_id = $1",
         "tables": ["public.orders"], "verdict": "allow", "hash_version": 1}
    g = genesis("eu-west", "acct-42")
    c = content_hash(r)
    print("genesis     ", g.hex())
    print("content_hash", c.hex())
    print("entry_hash  ", entry_hash("acct-42", 1, g, c).hex())
    r.update({"hash_version": 3, "role": "support", "actor": "alice@vendor.example",
              "purpose": "debug invoice export", "ticket": "SUP-7", "rewritten": True})
    c = content_hash(r)
    print("v3 content_hash", c.hex())
    print("v3 entry_hash  ", entry_hash("acct-42", 1, g, c).hex())


def main(argv):
    if argv[1:] == ["--vectors"]:
        vectors()
        return 0
    if len(argv) != 2:
        print(__doc__, file=sys.stderr)
        return 2
    try:
        with open(argv[1], encoding="utf-8") as f:
            failures = verify(f.read().split("\n"))
    except (OSError, ValueError, KeyError) as e:
        print("cannot verify: %s" % e, file=sys.stderr)
        return 2
    for f in failures:
        print("BROKEN " + f)
    if failures:
        return 1
    print("ok: every exported chain verifies")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
