// postgres.js through pgtenant in pool.mode: transaction. postgres.js
// pipelines the queries it has queued on each connection: many statements,
// each its own implicit transaction, are in flight at once, interleaved with
// BEGIN blocks (sql.begin reserves a connection). Every answer is checked
// against the connecting tenant; the Go test (node_test.go) then checks the
// rows in the database.
//
// Input (environment): PGHOST, PGPORT, TXPOOL_TENANTS (JSON list of
// {tenant, token, client}), TXPOOL_ITERATIONS, TXPOOL_PREPARE ("1": named
// prepared statements, "0": unnamed). Output (stdout): JSON
// {"committed": {client: rows}, "statements": n, "violations": [...],
// "errors": [...]}.
'use strict';
const postgres = require('postgres');

const tenants = JSON.parse(process.env.TXPOOL_TENANTS);
const iterations = Number(process.env.TXPOOL_ITERATIONS || '5');
const prepare = process.env.TXPOOL_PREPARE === '1';
const out = { committed: {}, statements: 0, violations: [], errors: [] };

async function runTenant({ tenant, token, client }) {
  const sql = postgres({
    host: process.env.PGHOST, port: Number(process.env.PGPORT), database: 'app',
    username: 'tester', password: token, ssl: false, max: 2, prepare,
    connect_timeout: 60, idle_timeout: 0, onnotice: () => {},
  });
  let seq = 0;
  let committed = 0;
  const check = (where, setting) => {
    out.statements++;
    if (setting !== String(tenant)) {
      out.violations.push(`tenant ${tenant} (${where}): tenant setting ${JSON.stringify(setting)}`);
    }
  };
  try {
    for (let i = 0; i < iterations; i++) {
      const batch = [];
      // Implicit transactions, pipelined.
      for (let k = 0; k < 8; k++) {
        batch.push(sql`SELECT coalesce(current_setting('app.current_account_id', true), '<unset>') AS s`
          .then(([r]) => check('pipelined select', r.s)));
        const s = ++seq;
        batch.push(sql`INSERT INTO public.tx_probe (account_id, client, seq) VALUES (${tenant}, ${client}, ${s})`
          .then(() => { committed++; out.statements++; }));
        batch.push(sql`SELECT account_id::text AS a, count(*)::int AS n FROM public.orders GROUP BY account_id`
          .then((rows) => {
            out.statements++;
            if (rows.length !== 1 || rows[0].a !== String(tenant) || rows[0].n !== 3) {
              out.violations.push(`tenant ${tenant}: orders visible ${JSON.stringify(rows)}`);
            }
          }));
      }
      // A BEGIN block in the middle of the pipelined traffic.
      const s = ++seq;
      batch.push(sql.begin(async (tx) => {
        const [r] = await tx`SELECT coalesce(current_setting('app.current_account_id', true), '<unset>') AS s`;
        check('in BEGIN block', r.s);
        await tx`INSERT INTO public.tx_probe (account_id, client, seq) VALUES (${tenant}, ${client}, ${s})`;
        const [c] = await tx`SELECT count(*) FILTER (WHERE account_id <> ${tenant})::int AS foreign FROM public.tx_probe`;
        if (c.foreign !== 0) {
          out.violations.push(`tenant ${tenant}: ${c.foreign} rows of other accounts visible`);
        }
        out.statements += 2;
      }).then(() => { committed++; }));
      await Promise.all(batch);
    }
  } catch (e) {
    out.errors.push(`tenant ${tenant}: ${e.code || ''} ${e.message}`);
  } finally {
    out.committed[client] = committed;
    await sql.end({ timeout: 5 });
  }
}

Promise.all(tenants.map(runTenant)).then(() => {
  process.stdout.write(JSON.stringify(out) + '\n');
});
