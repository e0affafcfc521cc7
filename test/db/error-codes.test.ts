/*
 * Every error code is listed once, in app_hidden.error_codes: our SQLSTATE
 * class, each one raised somewhere, and nothing raised that is not listed.
 */
import fs from 'node:fs';
import path from 'node:path';
import pg from 'pg';
import { pool } from '../helpers/db';

let db: pg.Pool;
beforeAll(() => { db = pool(); });
afterAll(() => db.end());

const sqlDir = path.join(__dirname, '..', '..', 'sql');
const sqlSource = fs.readdirSync(sqlDir).map((f) => fs.readFileSync(path.join(sqlDir, f), 'utf8')).join('\n');

test('our SQLSTATEs: 5 characters, never PostgreSQL\'s own', async () => {
  const { rows } = await db.query('select code, sqlstate from app_hidden.error_codes');
  expect(rows.length).toBeGreaterThan(10);
  for (const { code, sqlstate } of rows) {
    expect({ code, ok: /^[A-EG-OQ-WYZ][0-9A-Z][1-9A-OQ-Z][A-Z][0-9A-Z]$/.test(sqlstate) && !sqlstate.endsWith('000') })
      .toEqual({ code, ok: true });
  }
});

test('every listed code is raised by the SQL, and every code raised is listed', async () => {
  const { rows } = await db.query('select code from app_hidden.error_codes order by code');
  const listed = rows.map((r) => r.code);
  // Codes raised directly, and the refusal codes of the call-access rules.
  const raised = new Set([...sqlSource.matchAll(/raise_error\(\s*'([A-Z_]+)'/g)].map((m) => m[1]));
  for (const r of (await db.query('select distinct refusal_code from app_hidden.session_call_access where refusal_code is not null')).rows) {
    raised.add(r.refusal_code);
  }
  // check_transition answers with these two for the triggers to raise.
  for (const code of sqlSource.match(/'(INVALID_STATE_TRANSITION|FORBIDDEN_TRANSITION)'/g) ?? []) raised.add(code.replace(/'/g, ''));
  expect([...raised].sort()).toEqual(listed);
});

test('the error raised carries the listed SQLSTATE and the code in its detail', async () => {
  const client = await db.connect();
  try {
    await client.query('begin');
    const codes = await client.query('select code, sqlstate from app_hidden.error_codes');
    for (const { code, sqlstate } of codes.rows) {
      await client.query('savepoint s');
      const err = await client.query(`select app_private.raise_error($1, 'test')`, [code]).then(() => null, (e) => e);
      await client.query('rollback to savepoint s');
      expect({ code, sqlstate: err.code, detail: JSON.parse(err.detail) }).toEqual({ code, sqlstate, detail: { code } });
    }
  } finally {
    await client.query('rollback');
    client.release();
  }
});
