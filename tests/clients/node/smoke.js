// node-postgres against a running lakegate (PG* environment variables).
const assert = require('assert');
const { Client } = require('pg');

(async () => {
  const c = new Client();
  await c.connect();
  await c.query('CREATE TABLE node_t (id BIGINT, name TEXT, amount NUMERIC(10,2))');
  const ins = await c.query('INSERT INTO node_t VALUES ($1, $2, $3), (2, $4, 2.5)', [1, 'one', '1.50', 'two']);
  assert.strictEqual(ins.command, 'INSERT');
  assert.strictEqual(ins.rowCount, 2);
  const r = await c.query('SELECT id, name, amount FROM node_t WHERE id = $1', [2]);
  assert.deepStrictEqual(r.rows, [{ id: '2', name: 'two', amount: '2.50' }]);
  const n = await c.query('SELECT count(*)::int AS n FROM demo.customers');
  assert.deepStrictEqual(n.rows, [{ n: 200 }]);
  await assert.rejects(c.query('SELECT * FROM nope'), (e) => e.code === '42P01');
  const again = await c.query('SELECT 1 AS one');
  assert.deepStrictEqual(again.rows, [{ one: 1 }]);
  await c.end();
  console.log('node-postgres ok');
})().catch((e) => {
  console.error(e);
  process.exit(1);
});
