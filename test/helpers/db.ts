/*
 * Database helpers for the tests: connections as the schema owner (a DBA
 * working as the table owner) or as a superuser, transactions that are
 * rolled back, and the error shape our triggers raise.
 */
import { randomUUID } from 'node:crypto';
import pg from 'pg';
import { INITIAL, Machine, pathTo } from './reference';

export type Who = 'owner' | 'superuser';

export function connectionString(who: Who): string {
  const url = who === 'owner' ? process.env.TEST_OWNER_URL : process.env.TEST_SUPERUSER_URL;
  if (!url) throw new Error('The test database is not set up (see test/globalSetup.ts)');
  return url;
}

export function pool(who: Who = 'owner', max = 4): pg.Pool {
  return new pg.Pool({ connectionString: connectionString(who), max });
}

/** Runs fn in a transaction that is always rolled back. */
export async function rolledBack<T>(p: pg.Pool, fn: (client: pg.PoolClient) => Promise<T>): Promise<T> {
  const client = await p.connect();
  try {
    await client.query('begin');
    return await fn(client);
  } finally {
    await client.query('rollback').catch(() => {});
    client.release();
  }
}

/** The parts of a database error the tests look at. */
export interface DbError {
  sqlstate: string;
  code?: string;
  message: string;
  detail: Record<string, unknown>;
}

export function asDbError(err: unknown): DbError {
  const e = err as pg.DatabaseError;
  if (!e || typeof e.code !== 'string') throw err;
  let detail: Record<string, unknown> = {};
  try {
    detail = e.detail ? JSON.parse(e.detail) : {};
  } catch {
    detail = { text: e.detail };
  }
  return { sqlstate: e.code, code: detail.code as string | undefined, message: e.message, detail };
}

/** Runs a statement inside a savepoint; returns its error (rolled back) or null (kept). */
export async function attempt(client: pg.ClientBase, sql: string, params: unknown[] = []): Promise<DbError | null> {
  await client.query('savepoint attempt');
  try {
    await client.query(sql, params);
    await client.query('release savepoint attempt');
    return null;
  } catch (err) {
    await client.query('rollback to savepoint attempt');
    return asDbError(err);
  }
}

/** Resolves to the error a promise rejects with; fails when it resolves. */
export async function rejection(promise: Promise<unknown>): Promise<DbError> {
  try {
    await promise;
  } catch (err) {
    return asDbError(err);
  }
  throw new Error('expected the database to refuse, but it accepted');
}

export interface Flow {
  sessionId: string;
  paymentId: string;
  videoId: string;
  formIds: string[];
}

/** Creates a flow in its initial states with plain INSERTs, as a DBA would. */
export async function insertFlow(client: pg.ClientBase, formKeys: string[] = []): Promise<Flow> {
  const sessionId = randomUUID();
  await client.query(
    `insert into app_public.sessions (id, client_id, therapist_id, scheduled_at, duration_minutes, price_kes)
     values ($1, $2, $3, now() + interval '1 day', 50, 2500)`,
    [sessionId, randomUUID(), randomUUID()],
  );
  const payment = await client.query(
    `insert into app_public.payments (session_id, amount_kes, payer_phone) values ($1, 2500, '254708374149') returning id`,
    [sessionId],
  );
  const video = await client.query(`insert into app_public.video_calls (session_id) values ($1) returning id`, [sessionId]);
  const formIds: string[] = [];
  for (const key of formKeys) {
    const form = await client.query(
      `insert into app_public.session_forms (session_id, form_key) values ($1, $2) returning id`,
      [sessionId, key],
    );
    formIds.push(form.rows[0].id);
  }
  return { sessionId, paymentId: payment.rows[0].id, videoId: video.rows[0].id, formIds };
}

/** Creates a flow through the request_session flow step. */
export async function requestSession(client: pg.ClientBase | pg.Pool, formKeys: string[] = []): Promise<string> {
  const { rows } = await client.query(
    `select id from app_public.request_session($1, $2, now() + interval '1 day', 50, 2500, '254708374149', $3)`,
    [randomUUID(), randomUUID(), formKeys],
  );
  return rows[0].id;
}

const TABLE: Record<Machine, string> = {
  payment: 'app_public.payments',
  session: 'app_public.sessions',
  video: 'app_public.video_calls',
  form: 'app_public.session_forms',
};

/** Sets an entity's status with a plain UPDATE. */
export async function setStatus(client: pg.ClientBase, machine: Machine, id: string, status: string): Promise<void> {
  await client.query(`update ${TABLE[machine]} set status = $1 where id = $2`, [status, id]);
}

export function updateStatusSql(machine: Machine): string {
  return `update ${TABLE[machine]} set status = $1 where id = $2`;
}

/** Walks an entity from its initial state to `target` along allowed transitions (UPDATE by UPDATE). */
export async function walk(client: pg.ClientBase, machine: Machine, id: string, target: string): Promise<void> {
  for (const state of target === INITIAL[machine] ? [] : pathTo(machine, target)) {
    await setStatus(client, machine, id, state);
  }
}

export function entityId(flow: Flow, machine: Machine): string {
  return machine === 'session' ? flow.sessionId : machine === 'payment' ? flow.paymentId : machine === 'video' ? flow.videoId : flow.formIds[0];
}

export async function statuses(client: pg.ClientBase | pg.Pool, sessionId: string): Promise<{ session: string; payment: string; video: string; forms: string[] }> {
  const { rows } = await client.query(
    `select s.status as session, p.status as payment, v.status as video,
            coalesce((select array_agg(f.status order by f.form_key) from app_public.session_forms f where f.session_id = s.id), '{}') as forms
     from app_public.sessions s
     join app_public.payments p on p.session_id = s.id
     join app_public.video_calls v on v.session_id = s.id
     where s.id = $1`,
    [sessionId],
  );
  return rows[0];
}

/** Fires the commit-time checks now, inside the transaction. */
export async function checkNow(client: pg.ClientBase): Promise<DbError | null> {
  // Both SETs inside one savepoint: constraint modes are restored per
  // subtransaction, so the checks are deferred again afterwards either way.
  return attempt(client, 'set constraints all immediate; set constraints all deferred');
}
