/*
 * Payments end to end, with graphile-worker running in the server and the
 * simulator as M-Pesa: the client initiates over GraphQL, the worker pushes,
 * the simulator posts its callbacks to the endpoint. And no payment left
 * hanging: with no callback ("never"), the STK push query settles it, and
 * without an answer the attempt fails after the bound. On a database of its
 * own: the worker must not act on the other test files' payments.
 */
import { randomUUID } from 'node:crypto';
import pg from 'pg';
import type { App } from '../../server/app';
import { MpesaSimulator } from '../../server/mpesa/simulator';
import { gql, startTestApp, user, User } from '../helpers/api';
import { statuses } from '../helpers/db';
import { ownDatabase } from '../helpers/payments';

const QUERY_AFTER = 1;
const GIVE_UP_AFTER = 3;

let app: App;
let db: pg.Pool;
const simulator = new MpesaSimulator({ resultCode: 0, deliveries: 1, delayMs: 50, query: 'result' });

beforeAll(async () => {
  const own = await ownDatabase('flow_integrity_worker_test');
  db = new pg.Pool({ connectionString: own.ownerUrl, max: 4 });
  app = await startTestApp(
    { WORKER: 'on', PAYMENT_QUERY_AFTER_SECONDS: String(QUERY_AFTER), PAYMENT_GIVE_UP_AFTER_SECONDS: String(GIVE_UP_AFTER) },
    { ownerUrl: own.ownerUrl, provider: simulator },
  );
}, 60_000);
afterAll(async () => {
  await app.close();
  await db.end();
});

let phoneSeq = 100000;
/** A session for a payer of its own (the simulator's scenarios go by phone), approved, with its client. */
async function approvedSession(formKeys: string[] = []): Promise<{ sessionId: string; phone: string; client: User }> {
  const phone = `2547${String(phoneSeq++).padStart(8, '0')}`;
  const client = user('client');
  const { rows: [s] } = await db.query(
    `select id from app_public.request_session($1, $2, now() + interval '1 day', 50, 2500, $3, $4)`, [client.id, randomUUID(), phone, formKeys]);
  await db.query('select app_public.approve_session($1)', [s.id]);
  return { sessionId: s.id, phone, client };
}

async function initiate(sessionId: string, client: User): Promise<void> {
  const res = await gql(app, client, 'mutation ($id: UUID!) { initiatePayment(input: { sessionId: $id }) { session { status } } }', { id: sessionId });
  expect(res.errors).toBeUndefined();
  expect(res.data!.initiatePayment.session.status).toBe('payment_pending');
}

async function until<T>(what: string, read: () => Promise<T>, done: (value: T) => boolean, timeoutMs = 15_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await read();
    if (done(value)) return value;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}; last: ${JSON.stringify(value)}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

const attempts = async (sessionId: string) =>
  (await db.query(`select attempt_no, status, settled_by, checkout_request_id, result_code from app_public.payment_attempts where session_id = $1 order by attempt_no`, [sessionId])).rows;
const actions = async (sessionId: string) =>
  (await db.query(`select action from app_public.required_actions where session_id = $1 order by id`, [sessionId])).rows.map((r) => r.action);
const paymentStatus = async (sessionId: string) => (await statuses(db, sessionId)).payment;

test('paid: pushed by the worker, confirmed by the simulator\'s callback, the session on to forms_required', async () => {
  const s = await approvedSession(['intake']);
  await initiate(s.sessionId, s.client);
  await until('confirmed', () => paymentStatus(s.sessionId), (p) => p === 'confirmed');
  expect(await statuses(db, s.sessionId)).toMatchObject({ session: 'forms_required' });
  const [a] = await attempts(s.sessionId);
  expect(a).toMatchObject({ status: 'confirmed', settled_by: 'callback' });
  expect(simulator.pushFor(a.checkout_request_id)!.request).toMatchObject({ phone: s.phone, amountKes: 2500, callbackUrl: app.callbackUrl });
});

test('the callback delivered three times at once: confirmed once', async () => {
  const s = await approvedSession();
  simulator.setScenario(s.phone, { deliveries: 3 });
  await initiate(s.sessionId, s.client);
  await until('confirmed', () => paymentStatus(s.sessionId), (p) => p === 'confirmed');
  const [a] = await attempts(s.sessionId);
  expect(await simulator.pushFor(a.checkout_request_id)!.delivered).toEqual([200, 200, 200]);
  const { rows } = await db.query(`select count(*)::int as n from app_public.audit_entries where session_id = $1 and entity_type = 'payment' and new_value = 'confirmed'`, [s.sessionId]);
  expect(rows[0].n).toBe(1);
  // (Identical deliveries answered from the first in flight are counted within 100 ms.)
  await until('3 deliveries counted',
    async () => (await db.query('select deliveries from app_private.payment_callbacks where checkout_request_id = $1', [a.checkout_request_id])).rows,
    (rows) => rows[0]?.deliveries === 3, 2000);
});

test('cancelled by the payer (1032): failed, ALERT_CLIENT_RETRY; the retry is a new attempt with a new CheckoutRequestID', async () => {
  const s = await approvedSession();
  simulator.setScenario(s.phone, { resultCode: 1032 });
  await initiate(s.sessionId, s.client);
  await until('failed', () => paymentStatus(s.sessionId), (p) => p === 'failed');
  expect(await actions(s.sessionId)).toEqual(['ALERT_CLIENT_RETRY']);
  simulator.setScenario(s.phone, { resultCode: 0 });
  await initiate(s.sessionId, s.client);
  await until('confirmed', () => paymentStatus(s.sessionId), (p) => p === 'confirmed');
  const [first, second] = await attempts(s.sessionId);
  expect(first).toMatchObject({ attempt_no: 1, status: 'failed', result_code: 1032 });
  expect(second).toMatchObject({ attempt_no: 2, status: 'confirmed' });
  expect(second.checkout_request_id).not.toBe(first.checkout_request_id);
});

test('the push refused: failed at once, ALERT_CLIENT_RETRY', async () => {
  const s = await approvedSession();
  simulator.setScenario(s.phone, { refusePush: true });
  await initiate(s.sessionId, s.client);
  await until('failed', () => paymentStatus(s.sessionId), (p) => p === 'failed');
  expect(await attempts(s.sessionId)).toEqual([expect.objectContaining({ status: 'failed', settled_by: 'push', checkout_request_id: null })]);
  expect(await actions(s.sessionId)).toEqual(['ALERT_CLIENT_RETRY']);
});

describe('no callback ever ("never")', () => {
  test('the STK push query settles it: paid', async () => {
    const s = await approvedSession();
    simulator.setScenario(s.phone, { deliveries: 0, query: 'result', resultCode: 0 });
    await initiate(s.sessionId, s.client);
    await until('confirmed', () => paymentStatus(s.sessionId), (p) => p === 'confirmed');
    expect(await attempts(s.sessionId)).toEqual([expect.objectContaining({ status: 'confirmed', settled_by: 'query' })]);
  });

  test('the query says it failed: failed, ALERT_CLIENT_RETRY', async () => {
    const s = await approvedSession();
    simulator.setScenario(s.phone, { deliveries: 0, query: 'result', resultCode: 1037 });
    await initiate(s.sessionId, s.client);
    await until('failed', () => paymentStatus(s.sessionId), (p) => p === 'failed');
    expect(await attempts(s.sessionId)).toEqual([expect.objectContaining({ status: 'failed', settled_by: 'query', result_code: 1037 })]);
    expect(await actions(s.sessionId)).toEqual(['ALERT_CLIENT_RETRY']);
  });

  test('"still being processed" is waited for, then, past the bound, failed with ALERT_CLIENT_RETRY (likewise a provider that never answers)', async () => {
    const pending = await approvedSession();
    const unreachable = await approvedSession();
    simulator.setScenario(pending.phone, { deliveries: 0, query: 'pending' });
    simulator.setScenario(unreachable.phone, { deliveries: 0, query: 'error' });
    const started = Date.now();
    await initiate(pending.sessionId, pending.client);
    await initiate(unreachable.sessionId, unreachable.client);
    // Still waiting after the first query:
    await new Promise((r) => setTimeout(r, (QUERY_AFTER + 0.8) * 1000));
    expect(await paymentStatus(pending.sessionId)).toBe('initiated');
    for (const s of [pending, unreachable]) {
      await until('failed', () => paymentStatus(s.sessionId), (p) => p === 'failed');
      expect(await attempts(s.sessionId)).toEqual([expect.objectContaining({ status: 'failed', settled_by: 'timeout' })]);
      expect(await actions(s.sessionId)).toEqual(['ALERT_CLIENT_RETRY']);
      expect(await statuses(db, s.sessionId)).toMatchObject({ session: 'payment_pending' });
    }
    expect(Date.now() - started).toBeGreaterThanOrEqual(GIVE_UP_AFTER * 1000);
  });

  test('a success arriving after the attempt was given up: not applied, REFUND_OR_RECONCILE_PAYMENT', async () => {
    const s = await approvedSession();
    simulator.setScenario(s.phone, { query: 'pending', delayMs: (GIVE_UP_AFTER + 1.5) * 1000 });
    await initiate(s.sessionId, s.client);
    await until('failed', () => paymentStatus(s.sessionId), (p) => p === 'failed');
    await until('the refund action', () => actions(s.sessionId), (a) => a.includes('REFUND_OR_RECONCILE_PAYMENT'));
    expect(await actions(s.sessionId)).toEqual(['ALERT_CLIENT_RETRY', 'REFUND_OR_RECONCILE_PAYMENT']);
    expect(await paymentStatus(s.sessionId)).toBe('failed');
  });
});

test('the sweep finds an open attempt that lost its jobs, and settles it', async () => {
  const s = await approvedSession();
  const accepted = await simulator.stkPush({ attemptId: '', phone: s.phone, amountKes: 2500, accountReference: '', description: '', callbackUrl: 'http://127.0.0.1:1/' });
  simulator.setScenario(s.phone, { deliveries: 0, query: 'result', resultCode: 0 });
  const c = await db.connect();
  try {
    // As if the server had died after M-Pesa accepted the push, before it queued the job that asks about it.
    await c.query('begin');
    await c.query('select app_public.initiate_payment($1)', [s.sessionId]);
    const { rows: [a] } = await c.query('select id from app_public.payment_attempts where session_id = $1', [s.sessionId]);
    await c.query(`select app_private.record_stk_push($1, 'm', $2)`, [a.id, accepted.checkoutRequestId]);
    await c.query(`update app_public.payment_attempts set created_at = now() - interval '1 minute' where id = $1`, [a.id]);
    await c.query('commit');
  } finally {
    c.release();
  }
  await new Promise((r) => setTimeout(r, 500));
  expect(await paymentStatus(s.sessionId)).toBe('initiated');
  await db.query(`select graphile_worker.add_job('mpesa_sweep')`); // (what the crontab runs every minute)
  await until('confirmed', () => paymentStatus(s.sessionId), (p) => p === 'confirmed');
  expect(await attempts(s.sessionId)).toEqual([expect.objectContaining({ status: 'confirmed', settled_by: 'query' })]);
});
