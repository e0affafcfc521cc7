/*
 * Real concurrent connections on the same sessions, many times over. Flow
 * steps lock the session row first, so they queue instead of deadlocking and
 * every session ends consistent: each refusal is one of our codes, the audit
 * log replays to the current states, and the integrity view stays empty.
 */
import pg from 'pg';
import { asDbError, pool, requestSession } from '../helpers/db';

const CONNECTIONS = 12;
const ROUNDS = 25;
const SESSIONS_PER_ROUND = 8;

let db: pg.Pool;
beforeAll(() => { db = pool('owner', CONNECTIONS); });
afterAll(() => db.end());

async function newSessions(n: number, state: 'payment_pending' | 'ready'): Promise<string[]> {
  const client = await db.connect();
  try {
    const ids: string[] = [];
    for (let i = 0; i < n; i++) {
      const id = await requestSession(client);
      await client.query('select app_public.approve_session($1)', [id]);
      await client.query('select app_public.initiate_payment($1)', [id]);
      if (state === 'ready') await client.query(`select app_public.record_payment_outcome($1, 'confirmed')`, [id]);
      ids.push(id);
    }
    return ids;
  } finally {
    client.release();
  }
}

/** Runs a statement in its own transaction; returns the SQLSTATE it failed with, or 'ok'. */
async function run(sql: string, params: unknown[]): Promise<string> {
  try {
    await db.query(sql, params);
    return 'ok';
  } catch (err) {
    return asDbError(err).sqlstate;
  }
}

async function expectConsistent(ids: string[]): Promise<void> {
  const violations = await db.query('select * from app_hidden.integrity_violations where session_id = any($1)', [ids]);
  expect(violations.rows).toEqual([]);
  // The audit log replays to the current state of every entity.
  const replay = await db.query(
    `with last as (
       select distinct on (entity_id) entity_type, entity_id, new_value
       from app_public.audit_entries where session_id = any($1) order by entity_id, id desc)
     select l.entity_type, l.new_value, coalesce(s.status, p.status, v.status, a.status) as status
     from last l
     left join app_public.sessions s on l.entity_type = 'session' and s.id = l.entity_id
     left join app_public.payments p on l.entity_type = 'payment' and p.id = l.entity_id
     left join app_public.video_calls v on l.entity_type = 'video' and v.id = l.entity_id
     left join app_public.required_actions a on l.entity_type = 'required_action' and a.uid = l.entity_id
     where l.new_value is distinct from coalesce(s.status, p.status, v.status, a.status)`, [ids]);
  expect(replay.rows).toEqual([]);
}

test('competing flow steps on the same sessions: no deadlock, every session consistent', async () => {
  const outcomes = new Map<string, number>();
  for (let round = 0; round < ROUNDS; round++) {
    const ids = await newSessions(SESSIONS_PER_ROUND, round % 2 ? 'ready' : 'payment_pending');
    const calls = ids.flatMap((id) => [
      run(`select app_public.record_payment_outcome($1, 'confirmed')`, [id]),
      run(`select app_public.record_payment_outcome($1, 'failed')`, [id]),
      run('select app_public.cancel_session($1)', [id]),
      run('select app_public.initiate_payment($1)', [id]),
      run('select app_public.join_call($1)', [id]),
      run(`select app_public.mark_no_show($1, 'therapist')`, [id]),
      run('select app_public.start_session($1)', [id]),
    ]);
    for (const result of await Promise.all(calls)) outcomes.set(result, (outcomes.get(result) ?? 0) + 1);
    await expectConsistent(ids);
  }
  // Only successes and our own refusals (class QF): no deadlock (40P01), no serialization failure.
  for (const code of outcomes.keys()) expect(code === 'ok' || code.startsWith('QF')).toBe(true);
  expect(outcomes.get('ok')).toBeGreaterThan(ROUNDS * SESSIONS_PER_ROUND);
  expect(outcomes.size).toBeGreaterThan(1);
});

test('a DBA\'s two transactions taking the entities in opposite orders: one is aborted, nothing inconsistent commits', async () => {
  let deadlocks = 0;
  // (each deadlock costs the server's deadlock_timeout, 1 s by default)
  for (let round = 0; round < 4; round++) {
    const ids = await newSessions(6, 'payment_pending');
    const pairs = ids.map(async (id) => {
      const confirm = db.connect();
      const cancel = db.connect();
      const [a, b] = await Promise.all([confirm, cancel]);
      const transaction = async (client: pg.PoolClient, statements: string[]) => {
        try {
          await client.query('begin');
          for (const sql of statements) {
            await client.query(sql, [id]);
            await client.query('select pg_sleep(0.02)');
          }
          await client.query('commit');
          return 'ok';
        } catch (err) {
          await client.query('rollback');
          return asDbError(err).sqlstate;
        } finally {
          client.release();
        }
      };
      return Promise.all([
        transaction(a, [
          `update app_public.payments set status = 'confirmed' where session_id = $1`,
          `update app_public.sessions set status = 'paid' where id = $1`,
        ]),
        transaction(b, [
          `update app_public.sessions set status = 'cancelled' where id = $1`,
          `update app_public.payments set status = 'cancelled' where session_id = $1`,
        ]),
      ]);
    });
    for (const [a, b] of await Promise.all(pairs)) {
      expect([a, b].filter((r) => r === 'ok').length).toBeLessThanOrEqual(1);
      for (const r of [a, b]) expect(['ok', '40P01', 'QFST1', 'QFSF1', 'QFSY1']).toContain(r);
      if (a === '40P01' || b === '40P01') deadlocks++;
    }
    await expectConsistent(ids);
  }
  // The wrong order does deadlock (so this test exercises what it claims to).
  expect(deadlocks).toBeGreaterThan(0);
});
