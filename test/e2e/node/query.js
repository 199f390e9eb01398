'use strict';
// pgtenant end-to-end client: connects through the proxy with node-postgres,
// the token as the password, and prints what it saw as one JSON object.
const { Client } = require('pg');

async function main() {
  const client = new Client({
    host: process.env.PGHOST,
    port: Number(process.env.PGPORT),
    user: 'tester',
    database: 'app',
    password: process.env.PGPASSWORD,
    ssl: false,
    application_name: 'pgtenant-e2e-node',
  });
  await client.connect();
  try {
    // Parameterized (extended protocol); 2001 belongs to another tenant.
    const orders = await client.query(
      'SELECT id::text AS id, note FROM orders WHERE account_id = $1 AND id = ANY($2::bigint[]) ORDER BY id',
      [42, [1, 1001, 2001]]);
    const ctx = await client.query(
      "SELECT current_setting('app.current_account_id') AS account, current_setting('application_name') AS app");
    let errorCode = null;
    try {
      await client.query('SELECT * FROM no_such_table WHERE id = $1', [1]);
    } catch (e) {
      errorCode = e.code;
    }
    const after = await client.query({ name: 'plus_one', text: 'SELECT $1::int + 1 AS n', values: [41] });
    const again = await client.query({ name: 'plus_one', text: 'SELECT $1::int + 1 AS n', values: [99] });
    console.log(JSON.stringify({
      orders: orders.rows,
      account: ctx.rows[0].account,
      application_name: ctx.rows[0].app,
      error_code: errorCode,
      prepared: [after.rows[0].n, again.rows[0].n],
    }));
  } finally {
    await client.end();
  }
}

main().catch((e) => {
  console.error(JSON.stringify({ error: e.message, code: e.code }));
  process.exit(1);
});
