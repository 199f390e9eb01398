// Shared reporting for the Node.js programs of pgtenant's client matrix:
// each operation is preceded by the marker statement (sent through the
// program's own client) and recorded; dump() prints the report (../README.md).
'use strict';

const env = process.env;
const cfg = {
  host: env.PGT_HOST || '127.0.0.1',
  port: Number(env.PGT_PORT || 5432),
  database: env.PGT_DB || 'app',
  user: env.PGT_USER || 'tester',
  password: env.PGT_PASSWORD || '',
  url: env.PGT_URL || '',
  mode: env.PGT_MODE || 'deny',
  tenant: Number(env.PGT_TENANT || 42),
  other: Number(env.PGT_OTHER || 7),
};

function sqlstate(e) {
  for (let x = e, i = 0; x && i < 5; x = x.original || x.parent || x.cause || x.driverError, i++) {
    if (typeof x.code === 'string' && /^[0-9A-Z]{5}$/.test(x.code)) return x.code;
  }
  return '';
}

// plain makes rows JSON-stable: bigint and numeric as strings or numbers as the driver gives them.
function plain(v) {
  return JSON.parse(JSON.stringify(v === undefined ? null : v, (k, x) => (typeof x === 'bigint' ? x.toString() : x)));
}

class Report {
  constructor(client, version) {
    this.client = client;
    this.version = version;
    this.ops = [];
    this.mark = null; // async (sql) => runs the marker
  }

  async op(name, kind, fn) {
    if (this.mark) {
      try { await this.mark(`SELECT 'pgtenant-op:${name}'`); } catch (e) { console.error(`marker ${name}: ${e.message}`); }
    }
    const rec = { name, kind, ok: true, sqlstate: '', error: '', rows: null };
    try {
      rec.rows = plain(await fn());
    } catch (e) {
      rec.ok = false;
      rec.sqlstate = sqlstate(e);
      rec.error = String(e && e.message || e).slice(0, 500);
      console.error(`op ${name}:`, e);
    }
    this.ops.push(rec);
    return rec;
  }

  dump() {
    process.stdout.write(JSON.stringify({ client: this.client, version: this.version, ops: this.ops }) + '\n');
  }
}

function version(pkg) {
  const file = require('path').join(__dirname, 'node_modules', pkg, 'package.json');
  return JSON.parse(require('fs').readFileSync(file, 'utf8')).version;
}

module.exports = { cfg, Report, version };
