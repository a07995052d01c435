// node-postgres scenarios for pglease's client matrix (tests/clients).
// usage: node scenarios.js CASE HOST PORT DBNAME
// HOST is a socket directory, or a host name for TCP. With PGSSLMODE=verify-full in the
// environment (test_matrix's TLS modes) the connection is TLS, the server's certificate checked
// against the CA in PGSSLROOTCERT and its name against HOST, and PGPASSWORD is the password.
// Prints what the client saw, one fact per line, nothing that depends on PIDs or time.
'use strict';
const { Client, Pool } = require('pg');
const Cursor = require('pg-cursor');
const fs = require('fs');

const [, , which, host, port, database] = process.argv;
const cfg = { host, port: Number(port), database, user: 'postgres' };
if (process.env.PGSSLMODE === 'verify-full') {
  // Spelled out rather than left to pg's own reading of PGSSLMODE (which trusts only the system's
  // CAs): node's TLS checks the chain against ca and the name against servername (pg sets it to host).
  cfg.ssl = { ca: fs.readFileSync(process.env.PGSSLROOTCERT), rejectUnauthorized: true };
  cfg.password = process.env.PGPASSWORD;
} else if (process.env.PGSSLMODE) {
  throw new Error('scenarios.js knows PGSSLMODE=verify-full only, not ' + process.env.PGSSLMODE);
}
const out = (...a) => console.log(a.map((x) => (typeof x === 'string' ? x : JSON.stringify(x))).join(' '));

// Where a step ran, for test_matrix to check that shuffle() really moved the client
// (written to $MATRIX_PIDS, never printed: the output must not depend on PIDs).
const noteBackend = (pid) => { if (process.env.MATRIX_PIDS) fs.appendFileSync(process.env.MATRIX_PIDS, pid + '\n'); };

// Holds a transaction open every other step, so that in transaction mode the
// other client's next query lands on another backend (checked through noteBackend).
async function shuffle(sh, i, state) {
  if (state.holding) { await sh.query('commit'); state.holding = false; }
  else if (i % 2 === 0) { await sh.query('begin'); await sh.query('select 1'); state.holding = true; }
}

const M_SEL = 'select count(*)::int as n, sum(id)::int as s, pg_backend_pid() as pid from m_node_named where id <= $1';

async function namedStatements() {
  const c = new Client(cfg); const sh = new Client(cfg);
  await c.connect(); await sh.connect();
  await c.query('drop table if exists m_node_named');
  await c.query('create table m_node_named (id int primary key, v text)');
  const state = { holding: false };
  for (let i = 0; i < 60; i++) {
    await shuffle(sh, i, state);
    await c.query({ name: 'm_ins', text: 'insert into m_node_named values ($1, $2)', values: [i, 'v' + i] });
    const r = await c.query({ name: 'm_sel', text: M_SEL, values: [i] });
    const { pid, ...counts } = r.rows[0];
    noteBackend(pid);
    out('step', i, counts);
  }
  if (state.holding) await sh.query('commit');
  // A named statement used inside an explicit transaction too.
  await c.query('begin');
  const r = await c.query({ name: 'm_sel', text: M_SEL, values: [1000] });
  await c.query('commit');
  out('in txn', { n: r.rows[0].n, s: r.rows[0].s });
  await c.end(); await sh.end();
}

async function cursorBatches() {
  const c = new Client(cfg);
  await c.connect();
  await c.query('drop table if exists m_node_cur');
  await c.query("create table m_node_cur as select g as id, repeat('r', g % 100) as v from generate_series(1, 5000) g");
  // Outside a transaction: portal reads with a row limit and Flush, no Sync between batches.
  for (const txn of [false, true]) {
    if (txn) await c.query('begin');
    const cur = c.query(new Cursor('select id, v from m_node_cur where id > $1 order by id', [0]));
    let batches = 0, rows = 0, sum = 0;
    for (;;) {
      const got = await cur.read(333);
      if (got.length === 0) break;
      batches++; rows += got.length;
      for (const r of got) sum += r.id + r.v.length;
    }
    await cur.close();
    if (txn) await c.query('commit');
    out('cursor', txn ? 'in txn' : 'autocommit', batches, rows, sum);
  }
  const r = await c.query('select count(*)::int as n from m_node_cur');
  out('after', r.rows[0]);
  await c.end();
}

// 20 pooled clients, 600 transactions on 10 counters. With named, each transaction
// also runs a named statement, which every client prepares once on its own connection.
async function poolHammer(named) {
  const setup = new Client(cfg);
  await setup.connect();
  await setup.query('drop table if exists m_node_hammer');
  await setup.query('create table m_node_hammer (k int primary key, n int not null)');
  await setup.query('insert into m_node_hammer select g, 0 from generate_series(0, 9) g');
  const pool = new Pool({ ...cfg, max: 20 });
  const jobs = [];
  for (let i = 0; i < 600; i++) {
    jobs.push((async () => {
      const c = await pool.connect();
      try {
        await c.query('begin');
        await c.query('update m_node_hammer set n = n + 1 where k = $1', [i % 10]);
        const sel = { text: 'select n from m_node_hammer where k = $1', values: [i % 10] };
        await c.query(named ? { name: 'm_hammer_sel', ...sel } : sel);
        await c.query('commit');
      } finally { c.release(); }
      await pool.query('select $1::int + 1 as x', [i]);
    })());
  }
  await Promise.all(jobs);
  await pool.end();
  const r = await setup.query('select sum(n)::int as total, min(n)::int as lo, max(n)::int as hi from m_node_hammer');
  out('counts', r.rows[0]);
  await setup.end();
}

const cases = { 'named-statements': namedStatements, 'cursor-batches': cursorBatches, 'pool-hammer': () => poolHammer(false),
  'pool-hammer-named': () => poolHammer(true) };
cases[which]().catch((e) => { console.error('FAILED:', e.code || '', e.message); process.exit(1); });
