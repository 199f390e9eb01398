// pgtenant compliance report: loads the tenant's attestation and audit
// export with the token the user enters, and verifies the audit chain here,
// in the browser, with WebCrypto, so the reviewer need not trust the server.
"use strict";

const $ = (id) => document.getElementById(id);
const enc = new TextEncoder();

function hexToBytes(h) {
  if (typeof h !== "string" || h.length % 2 !== 0 || /[^0-9a-f]/i.test(h)) throw new Error("not hex: " + h);
  const b = new Uint8Array(h.length / 2);
  for (let i = 0; i < b.length; i++) b[i] = parseInt(h.substr(2 * i, 2), 16);
  return b;
}
function bytesToHex(b) { return Array.from(b, (x) => x.toString(16).padStart(2, "0")).join(""); }
function u32(n) { const b = new Uint8Array(4); new DataView(b.buffer).setUint32(0, n); return b; }
function i64(n) { const b = new Uint8Array(8); new DataView(b.buffer).setBigInt64(0, BigInt(n)); return b; }
function lp(s) { const v = typeof s === "string" ? enc.encode(s) : s; return concat([u32(v.length), v]); }
function concat(parts) {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let o = 0;
  for (const p of parts) { out.set(p, o); o += p.length; }
  return out;
}
async function sha256(b) { return new Uint8Array(await crypto.subtle.digest("SHA-256", b)); }

// genesis and entry hashes as audit/README.md specifies them.
async function genesis(region, chain) { return sha256(concat([Uint8Array.of(0x20), lp(region), lp(chain)])); }
async function entryHash(chain, seq, prev, content) {
  return sha256(concat([Uint8Array.of(0x10), lp(chain), i64(seq), prev, content]));
}

// Field encodings of audit/README.md (content hash, version 1).
const P = Uint8Array.of(1), N = Uint8Array.of(0);
function fStr(v) { return v === null || v === undefined ? N : concat([P, lp(v)]); }
function fBytes(b) { return concat([P, lp(b)]); }
function fInt(v) { return v === null || v === undefined ? N : concat([P, i64(v)]); }
function fArr(a) { return a === null || a === undefined ? N : concat([P, u32(a.length), ...a.map(fStr)]); }
function uuidBytes(u) { return hexToBytes(u.replace(/-/g, "")); }
function micros(ts) {
  const m = /^(\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2})(?:\.(\d{1,6}))?Z$/.exec(ts);
  if (!m) throw new Error("unexpected timestamp " + ts);
  return BigInt(Date.parse(m[1] + "Z")) * 1000n + BigInt((m[2] || "").padEnd(6, "0"));
}
function ipBytes(s) {
  if (/^\d+\.\d+\.\d+\.\d+$/.test(s)) return Uint8Array.from(s.split(".").map(Number));
  if (!s.includes(":")) return null;
  let [head, tail] = s.includes("::") ? s.split("::") : [s, null];
  const parse = (part) => (part ? part.split(":") : []).flatMap((g) =>
    g.includes(".") ? Array.from(ipBytes(g)).reduce((acc, b, i) => (i % 2 ? (acc[acc.length - 1] |= b, acc) : [...acc, b << 8]), []) : [parseInt(g, 16)]);
  const h = parse(head), t = tail === null ? [] : parse(tail);
  const groups = tail === null ? h : [...h, ...Array(8 - h.length - t.length).fill(0), ...t];
  if (groups.length !== 8) return null;
  return Uint8Array.from(groups.flatMap((g) => [g >> 8, g & 0xff]));
}
function fAddr(s) {
  if (s === null || s === undefined) return N;
  const b = ipBytes(s);
  return b ? fBytes(b) : fStr(s);
}
// fBool encodes a boolean: 0x00 NULL, 0x01 || 0x00 false, 0x01 || 0x01 true.
function fBool(v) { return v === null || v === undefined ? N : Uint8Array.of(1, v ? 1 : 0); }
// committed reports whether a row hashes its statement commitment in the
// statement's place: version 2, and version 3 rows that carry one.
function committed(e) { return e.hash_version === 2 || (e.hash_version === 3 && !!e.statement_commitment); }
// contentHash recomputes an event's content hash (versions 1, 2 and 3), or
// returns null for a row it cannot recompute: one a signed retention purge
// redacted (its stored hash stands) or of a version this page predates.
// A version 1 or 2 row carrying role, actor, purpose, ticket or rewritten
// (fields those versions do not cover) gets an all-zero hash, so it fails.
async function contentHash(e) {
  if (e.purged || (e.hash_version !== 1 && e.hash_version !== 2 && e.hash_version !== 3)) return null;
  const extra = [e.role, e.actor, e.purpose, e.ticket, e.rewritten];
  if (e.hash_version !== 3 && extra.some((v) => v !== null && v !== undefined)) return new Uint8Array(32);
  // version 2 (audit.statement: full) commits to the statement text with a
  // salted hash and hashes the commitment in the statement's place
  const stmt = committed(e)
    ? (e.statement_commitment ? fBytes(hexToBytes(e.statement_commitment)) : N)
    : fStr(e.statement);
  // version 3 appends role, actor, purpose, ticket and rewritten
  const v3 = e.hash_version === 3 ? [fStr(e.role), fStr(e.actor), fStr(e.purpose), fStr(e.ticket), fBool(e.rewritten)] : [];
  return sha256(concat([Uint8Array.of(0x00, e.hash_version), fBytes(uuidBytes(e.event_id)), fStr(e.chain_id), fStr(e.region),
    concat([P, i64(micros(e.ts))]), fStr(e.kind), fStr(e.account_id), fStr(e.subject), fStr(e.client_user),
    fAddr(e.client_addr), fStr(e.session_id), fStr(e.proxy_instance), stmt, fArr(e.tables),
    fStr(e.verdict), fStr(e.reason), fStr(e.sqlstate), fInt(e.rows), fInt(e.duration_us), ...v3]));
}

// statementMatches checks a committed row's text against its commitment:
// SHA-256(0x40 || salt || text); an erased text (no salt) is not checked.
async function statementMatches(e) {
  if (!committed(e) || !e.statement_salt || e.statement === null || e.statement === undefined) return true;
  const c = await sha256(concat([Uint8Array.of(0x40), hexToBytes(e.statement_salt), enc.encode(e.statement)]));
  return bytesToHex(c) === e.statement_commitment;
}

// parseExport splits a JSON-lines export into its header, events and checkpoints.
function parseExport(text) {
  const out = { header: null, events: [], checkpoints: [], notes: [] };
  for (const line of text.split("\n")) {
    if (!line.trim()) continue;
    const rec = JSON.parse(line);
    if (rec.type === "header") out.header = rec;
    else if (rec.type === "event") out.events.push(rec);
    else if (rec.type === "checkpoint") out.checkpoints.push(rec);
    else if (rec.type === "tree_checkpoint") out.notes.push(rec.note);
  }
  if (!out.header || out.header.format !== "pgtenant-audit-export") throw new Error("not a pgtenant audit export");
  return out;
}

function b64ToBytes(b64) { return Uint8Array.from(atob(b64), (c) => c.charCodeAt(0)); }

// parseNote splits a C2SP signed note into its text (the signed bytes) and
// signature lines, and reads pgtenant's tree checkpoint from the text:
// "pgtenant.audit/<region>", the tree size and the root hash (base64).
function parseNote(note) {
  const i = note.indexOf("\n\n");
  if (i < 0) throw new Error("tree checkpoint: not a signed note");
  const text = note.slice(0, i + 1);
  const lines = text.split("\n");
  const sigs = note.slice(i + 2).split("\n").filter((l) => l.startsWith("\u2014 ")).map((l) => {
    const [, name, b64] = l.split(" ");
    return { name, blob: b64ToBytes(b64) };
  });
  return { text, origin: lines[0], size: Number(lines[1]), root: b64ToBytes(lines[2]), sigs };
}

// verifyNoteSignature checks the note's Ed25519 signature with the seal
// public key (SPKI PEM) the reviewer trusts: the key hash must be the
// note's (first 4 bytes of SHA-256(name || "\n" || 0x01 || key)).
async function verifyNoteSignature(n, pem) {
  const der = b64ToBytes(pem.replace(/-----[^-]+-----/g, "").replace(/\s+/g, ""));
  const raw = der.slice(der.length - 32); // Ed25519 SPKI ends with the 32-byte key
  const key = await crypto.subtle.importKey("raw", raw, { name: "Ed25519" }, false, ["verify"]);
  for (const sig of n.sigs) {
    const kh = (await sha256(concat([enc.encode(sig.name), Uint8Array.of(0x0a, 0x01), raw]))).slice(0, 4);
    if (bytesToHex(kh) !== bytesToHex(sig.blob.slice(0, 4))) continue;
    if (await crypto.subtle.verify({ name: "Ed25519" }, key, sig.blob.slice(4), enc.encode(n.text))) return true;
  }
  return false;
}

// verifyInclusion checks an RFC 6962 / RFC 9162 inclusion proof of an
// event (leaf data: its entry hash) in a tree of the given size and root.
async function verifyInclusion(entryHashHex, index, size, proof, root) {
  if (index >= size) return false;
  let fn = index, sn = size - 1;
  let r = await sha256(concat([Uint8Array.of(0x00), hexToBytes(entryHashHex)]));
  for (const p64 of proof) {
    const p = b64ToBytes(p64);
    if (sn === 0) return false;
    if ((fn & 1) === 1 || fn === sn) {
      r = await sha256(concat([Uint8Array.of(0x01), p, r]));
      if ((fn & 1) === 0) while ((fn & 1) === 0 && fn !== 0) { fn = Math.floor(fn / 2); sn = Math.floor(sn / 2); }
    } else {
      r = await sha256(concat([Uint8Array.of(0x01), r, p]));
    }
    fn = Math.floor(fn / 2); sn = Math.floor(sn / 2);
  }
  return sn === 0 && bytesToHex(r) === bytesToHex(root);
}

// verifyTree checks the export's signed tree checkpoint (when the reviewer
// gave the seal public key) and every event's inclusion proof against it.
async function verifyTree(exp, pem) {
  if (exp.notes.length === 0) return { ok: true, detail: "no signed tree checkpoint in the export yet (the operator has not run audit seal)" };
  const n = parseNote(exp.notes[exp.notes.length - 1]);
  let signed = "signature not checked: paste the seal public key to check it";
  if (pem.trim()) {
    if (!(await verifyNoteSignature(n, pem))) return { ok: false, detail: "the tree checkpoint's signature does not verify with the seal public key given" };
    signed = "signature verified with the seal public key given";
  }
  let proven = 0;
  for (const e of exp.events) {
    if (e.leaf === undefined || e.leaf === null || !e.proof) continue;
    if (!(await verifyInclusion(e.entry_hash, e.leaf, n.size, e.proof, n.root))) {
      return { ok: false, detail: `seq ${e.seq}: its inclusion proof does not lead to the signed tree root: history was rewritten` };
    }
    proven++;
  }
  return { ok: true, detail: `tree checkpoint ${n.origin} of size ${n.size}: ${signed}; ${proven} event(s) proven included` };
}

// verifyChain checks seq continuity, every link and every entry hash, and
// that each checkpoint's signed head matches the entry at its size.
async function verifyChain(exp) {
  const ev = exp.events;
  if (ev.length === 0) return { ok: true, detail: "no events in range" };
  let prev = null, uncheckedContent = 0;
  for (let i = 0; i < ev.length; i++) {
    const e = ev[i];
    if (i > 0 && e.seq !== ev[i - 1].seq + 1) return { ok: false, detail: `seq ${ev[i - 1].seq} is followed by ${e.seq}: rows are missing or reordered` };
    if (e.seq === 1) {
      const g = await genesis(e.region, e.chain_id);
      if (bytesToHex(g) !== e.prev_hash) return { ok: false, detail: "seq 1 does not start from the chain's genesis hash" };
    } else if (prev !== null && e.prev_hash !== prev) {
      return { ok: false, detail: `seq ${e.seq} does not link to seq ${e.seq - 1}` };
    }
    const ch = await contentHash(e);
    if (ch === null) uncheckedContent++;
    else if (bytesToHex(ch) !== e.content_hash) return { ok: false, detail: `seq ${e.seq}: its fields do not match its content hash (a changed field)` };
    if (!(await statementMatches(e))) return { ok: false, detail: `seq ${e.seq}: its statement text does not match its commitment` };
    const h = await entryHash(e.chain_id, e.seq, hexToBytes(e.prev_hash), hexToBytes(e.content_hash));
    if (bytesToHex(h) !== e.entry_hash) return { ok: false, detail: `seq ${e.seq}: its entry hash does not match its contents' hash and link` };
    prev = e.entry_hash;
  }
  const bySeq = new Map(ev.map((e) => [e.seq, e]));
  let matched = 0;
  for (const c of exp.checkpoints) {
    const e = bySeq.get(c.size);
    if (!e) continue;
    if (e.entry_hash !== c.head) return { ok: false, detail: `the signed checkpoint at size ${c.size} names another head: history was rewritten` };
    matched++;
  }
  const contents = uncheckedContent
    ? `${ev.length - uncheckedContent} content hashes recomputed (${uncheckedContent} purged or of a newer version: check those with pgtenant audit verify --file)`
    : "every content hash recomputed";
  return { ok: true, detail: `${ev.length} events linked from seq ${ev[0].seq} to ${ev[ev.length - 1].seq}, ${contents}; ${matched} signed checkpoint head(s) match` };
}

function cell(tr, text, cls) { const td = document.createElement("td"); td.textContent = text; if (cls) td.className = cls; tr.appendChild(td); return td; }
function fill(id, rows) {
  const tb = $(id).querySelector("tbody");
  tb.replaceChildren();
  for (const r of rows) { const tr = document.createElement("tr"); r(tr); tb.appendChild(tr); }
}
function statusCell(tr, s) { cell(tr, s, "status-" + s); }

function timeline(events) {
  const days = new Map();
  for (const e of events) {
    if (!e.verdict) continue;
    const d = e.ts.slice(0, 10);
    const v = days.get(d) || { allow: 0, deny: 0 };
    v[e.verdict === "deny" ? "deny" : "allow"]++;
    days.set(d, v);
  }
  const keys = [...days.keys()].sort();
  const holder = $("timeline");
  holder.replaceChildren();
  if (keys.length === 0) { holder.textContent = "no accesses recorded"; return; }
  const max = Math.max(...keys.map((k) => days.get(k).allow + days.get(k).deny));
  const w = Math.max(320, keys.length * 28), h = 160, ns = "http://www.w3.org/2000/svg";
  const svg = document.createElementNS(ns, "svg");
  svg.setAttribute("width", w); svg.setAttribute("height", h + 20); svg.setAttribute("role", "img");
  svg.setAttribute("aria-label", "accesses per day, allowed and denied");
  keys.forEach((k, i) => {
    const v = days.get(k), x = i * 28 + 6;
    const ha = (v.allow / max) * h, hd = (v.deny / max) * h;
    for (const [val, hh, y, color, label] of [[v.allow, ha, h - ha, "#2da44e", "allowed"], [v.deny, hd, h - ha - hd, "#cf222e", "denied"]]) {
      const r = document.createElementNS(ns, "rect");
      r.setAttribute("x", x); r.setAttribute("y", y); r.setAttribute("width", 20); r.setAttribute("height", hh); r.setAttribute("fill", color);
      r.setAttribute("class", "bar-" + label); r.dataset.day = k; r.dataset.count = val;
      const t = document.createElementNS(ns, "title"); t.textContent = `${k}: ${val} ${label}`; r.appendChild(t);
      svg.appendChild(r);
    }
    const label = document.createElementNS(ns, "text");
    label.setAttribute("x", x); label.setAttribute("y", h + 14); label.setAttribute("font-size", "9");
    label.textContent = k.slice(5);
    svg.appendChild(label);
  });
  holder.appendChild(svg);
  const legend = document.createElement("p");
  legend.className = "legend";
  legend.innerHTML = '<span class="a">&#9632; allowed</span> <span class="d">&#9632; denied</span>';
  holder.appendChild(legend);
}

// verifyAll runs the chain and tree checks and joins what they say.
async function verifyAll(exp) {
  const c = await verifyChain(exp);
  if (!c.ok) return c;
  const t = await verifyTree(exp, $("sealkey").value);
  return { ok: t.ok, detail: t.ok ? c.detail + "; " + t.detail : t.detail };
}

async function api(path, token) {
  const r = await fetch(path, { headers: { Authorization: "Bearer " + token }, cache: "no-store" });
  if (!r.ok) {
    let msg = r.status + " " + r.statusText;
    try { msg += ": " + (await r.json()).error; } catch (_) { /* not JSON */ }
    throw new Error(msg);
  }
  return r;
}

async function load(token) {
  $("status").textContent = "loading...";
  const proof = await (await api("/v1/isolation-proof", token)).json();
  const exportText = await (await api("/v1/audit/export", token)).text();
  const exp = parseExport(exportText);

  $("account").textContent = proof.account_id;
  $("region").textContent = proof.region;
  $("generated").textContent = proof.generated_at;
  $("policy").textContent = proof.policy_version || "(unversioned)";
  $("overall").textContent = proof.status;
  $("overall").className = "status-" + proof.status;
  const L = proof.layers;
  fill("layers", [
    (tr) => { cell(tr, "Parser policy (pgtenant)"); statusCell(tr, L.parser); },
    (tr) => { cell(tr, "Row-level security"); statusCell(tr, L.rls); },
    (tr) => { cell(tr, "Service role cannot bypass RLS"); statusCell(tr, L.service_role); },
    (tr) => { cell(tr, "Audit is append-only"); statusCell(tr, L.audit_append_only); },
    (tr) => { cell(tr, "Data stays in its region"); statusCell(tr, L.region); },
  ]);
  const totals = new Map((proof.system_totals || []).map((t) => [t.table, t.estimated_rows]));
  fill("data", (proof.your_data || []).map((d) => (tr) => { cell(tr, d.table); cell(tr, String(d.rows)); const est = totals.get(d.table); cell(tr, est === undefined ? "" : est < 0 ? "not analysed yet" : String(est)); }));

  timeline(exp.events);
  fill("denials", exp.events.filter((e) => e.verdict === "deny").map((e) => (tr) => {
    cell(tr, e.ts); cell(tr, e.kind); cell(tr, e.reason || ""); cell(tr, e.statement || "", "stmt");
  }));
  const subjects = new Map();
  for (const e of exp.events) if (e.subject) subjects.set(e.subject, (subjects.get(e.subject) || 0) + 1);
  fill("subjects", [...subjects.entries()].sort().map(([s, n]) => (tr) => { cell(tr, s); cell(tr, String(n)); }));
  const support = new Map();
  for (const e of exp.events) if (e.actor && !support.has(e.session_id)) support.set(e.session_id, e);
  fill("support", [...support.values()].map((e) => (tr) => { cell(tr, e.session_id || ""); cell(tr, e.actor); cell(tr, e.purpose || ""); cell(tr, e.ts); }));

  const v = await verifyAll(exp);
  $("verify").textContent = (v.ok ? "verified: " : "FAILED: ") + v.detail;
  $("verify").className = "verify " + (v.ok ? "ok" : "bad");
  const blob = new Blob([exportText], { type: "application/x-ndjson" });
  const a = $("download");
  a.href = URL.createObjectURL(blob);
  a.download = `pgtenant-audit-${proof.account_id}-${proof.region}.jsonl`;
  $("report").hidden = false;
  $("status").textContent = "";
}

$("login").addEventListener("submit", (ev) => {
  ev.preventDefault();
  const token = $("token").value.trim();
  $("token").value = ""; // keep it out of the page once used
  load(token).catch((err) => { $("status").textContent = "could not load the report: " + err.message; });
});

$("exportfile").addEventListener("change", async () => {
  const f = $("exportfile").files[0];
  if (!f) return;
  try {
    const v = await verifyAll(parseExport(await f.text()));
    $("fileverify").textContent = (v.ok ? "verified: " : "FAILED: ") + v.detail;
    $("fileverify").className = "verify " + (v.ok ? "ok" : "bad");
  } catch (err) {
    $("fileverify").textContent = "FAILED: " + err.message;
    $("fileverify").className = "verify bad";
  }
});
