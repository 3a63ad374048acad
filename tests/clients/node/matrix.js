// What node-postgres reports of the shop schema (tests/clients/catalog_matrix.py creates it), as
// one JSON document the matrix compares between PostgreSQL and Lakegate.
// Usage: node matrix.js CONNECTION_URL
const { Client, types } = require('pg');

function shape(r) {
  return {
    command: r.command,
    rowCount: r.rowCount,
    fields: r.fields.map((f) => [f.name, f.dataTypeID, f.format]),
    rows: r.rows,
  };
}

(async () => {
  const c = new Client({ connectionString: process.argv[2] });
  await c.connect();
  const out = {};
  out.items = shape(await c.query('SELECT * FROM shop.items ORDER BY id'));
  out.params = shape(await c.query('SELECT id, name, price FROM shop.items WHERE id = $1 OR name = $2 ORDER BY id', [2, 'apple']));
  out.arrays = shape(await c.query({ text: 'SELECT ARRAY[1,2,3] AS a, ARRAY[$1::text, $2::text] AS t', values: ['x', null], rowMode: 'array' }));
  out.named = [];
  const named = { name: 'by-id', text: 'SELECT name FROM shop.items WHERE id = $1' };
  for (const id of [1, 2, 3]) {
    out.named.push((await c.query({ ...named, values: [id] })).rows);
  }
  // Queries issued without awaiting each: node-postgres queues them on one connection.
  const queued = await Promise.all([
    c.query('SELECT count(*) AS n FROM shop.many'),
    c.query('SELECT max(n) AS m FROM shop.many WHERE n < $1', [100]),
    c.query('SELECT label FROM shop.many WHERE n = $1', [4321]),
  ]);
  out.queued = queued.map(shape);
  try {
    await c.query('SELECT * FROM shop.nope');
    out.error = null;
  } catch (e) {
    out.error = [e.code, e.severity];
  }
  try {
    await c.query('SELECT 1/0 AS boom');
    out.divzero = null;
  } catch (e) {
    out.divzero = e.code;
  }
  await c.query('DROP TABLE IF EXISTS shop.node_tx');
  await c.query('BEGIN');
  await c.query('CREATE TABLE shop.node_tx (id BIGINT)');
  out.txStatus = shape(await c.query('SELECT 1 AS in_tx'));
  await c.query('COMMIT');
  out.multi = (await c.query('SELECT 1 AS a; SELECT 2 AS b')).map(shape);
  out.timestamps = shape(await c.query("SELECT TIMESTAMP '2024-01-02 03:04:05.123' AS ts, DATE '2024-02-29' AS d"));
  out.catalog = shape(await c.query(
    "SELECT table_name, column_name, data_type FROM information_schema.columns WHERE table_schema = 'shop' AND table_name = 'items' ORDER BY ordinal_position"));
  types.setTypeParser(1700, (v) => 'numeric:' + v);
  out.parser = shape(await c.query('SELECT price FROM shop.items ORDER BY id'));
  await c.end();
  console.log(JSON.stringify(out));
})().catch((e) => {
  console.error(e);
  process.exit(1);
});
