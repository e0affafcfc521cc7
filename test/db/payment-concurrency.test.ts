/*
 * Callbacks delivered many times at once, over real concurrent connections:
 * each payment is applied exactly once, every other delivery gets the stored
 * result (or a conflict), and no session is left inconsistent.
 */
import pg from 'pg';
import { pool } from '../helpers/db';
import { callbackJson, checkoutId, receive, Received, waitingPayment, WaitingPayment } from '../helpers/payments';

let db: pg.Pool;
beforeAll(() => { db = pool('superuser', 16); });
afterAll(() => db.end());

async function deliver(body: unknown): Promise<Received> {
  const c = await db.connect();
  try {
    await c.query('begin');
    const result = await receive(c, body);
    await c.query('commit');
    return result;
  } catch (err) {
    await c.query('rollback').catch(() => {});
    throw err;
  } finally {
    c.release();
  }
}

async function waiting(n: number): Promise<WaitingPayment[]> {
  const c = await db.connect();
  try {
    const out: WaitingPayment[] = [];
    for (let i = 0; i < n; i++) out.push(await waitingPayment(c, i % 2 ? ['intake'] : []));
    return out;
  } finally {
    c.release();
  }
}

const shuffled = <T>(items: T[]) => items.map((v) => [Math.random(), v] as const).sort((a, b) => a[0] - b[0]).map(([, v]) => v);

test('30 payments, each callback delivered 6 times at once: each applied exactly once', async () => {
  const payments = await waiting(30);
  const bodies = new Map(payments.map((p) => [p.checkoutId, callbackJson(p.checkoutId, { resultCode: 0 })]));
  const deliveries = shuffled(payments.flatMap((p) => Array.from({ length: 6 }, () => p.checkoutId)));
  const results = await Promise.all(deliveries.map(async (checkout) => ({ checkout, ...(await deliver(bodies.get(checkout))) })));

  for (const p of payments) {
    const mine = results.filter((r) => r.checkout === p.checkoutId);
    expect(mine.filter((r) => !r.duplicate).length).toBe(1);
    expect(new Set(mine.map((r) => `${r.outcome}/${r.payment_status}`))).toEqual(new Set(['confirmed/confirmed']));
  }
  const ids = payments.map((p) => p.sessionId);
  const confirmations = await db.query(
    `select session_id, count(*)::int as n from app_public.audit_entries
     where session_id = any($1) and entity_type = 'payment' and new_value = 'confirmed' group by session_id`, [ids]);
  expect(confirmations.rows.map((r) => r.n)).toEqual(ids.map(() => 1));
  const ledger = await db.query(
    `select count(*)::int as rows, sum(deliveries)::int as deliveries from app_private.payment_callbacks where checkout_request_id = any($1)`,
    [payments.map((p) => p.checkoutId)]);
  expect(ledger.rows[0]).toEqual({ rows: 30, deliveries: 180 });
  const violations = await db.query('select * from app_hidden.integrity_violations where session_id = any($1)', [ids]);
  expect(violations.rows).toEqual([]);
});

test('a success and a failure for one CheckoutRequestID at once: one is applied, the other refused as a conflict', async () => {
  const payments = await waiting(12);
  const results = await Promise.all(shuffled(payments.flatMap((p) => [
    { p, code: 0 }, { p, code: 1032 }, { p, code: 0 }, { p, code: 1032 },
  ])).map(async ({ p, code }) => ({ p, code, ...(await deliver(callbackJson(p.checkoutId, { resultCode: code, receipt: `R${p.checkoutId.slice(-9)}` }))) })));
  for (const p of payments) {
    const mine = results.filter((r) => r.p === p);
    const applied = mine.filter((r) => !r.duplicate && r.outcome !== 'conflict');
    expect(applied.length).toBe(1);
    const winner = applied[0].code;
    // The same body as the winner gets its result; the other body is a conflict.
    for (const r of mine) expect({ code: r.code, outcome: r.outcome }).toEqual({ code: r.code, outcome: r.code === winner ? (winner === 0 ? 'confirmed' : 'failed') : 'conflict' });
    const { rows: [s] } = await db.query('select status from app_public.payments where session_id = $1', [p.sessionId]);
    expect(s.status).toBe(winner === 0 ? 'confirmed' : 'failed');
  }
});

test('an unknown CheckoutRequestID delivered 8 times at once: one ledger row, every delivery acknowledged', async () => {
  const checkout = checkoutId();
  const body = callbackJson(checkout, { resultCode: 0 });
  const results = await Promise.all(Array.from({ length: 8 }, () => deliver(body)));
  expect(results.every((r) => r.outcome === 'unknown_checkout' && r.acknowledged)).toBe(true);
  expect(results.filter((r) => !r.duplicate).length).toBe(1);
  const { rows } = await db.query('select deliveries from app_private.payment_callbacks where checkout_request_id = $1', [checkout]);
  expect(rows).toEqual([{ deliveries: 8 }]);
});

test('callbacks racing an STK push query and a cancellation on the same sessions: every session ends consistent', async () => {
  const payments = await waiting(16);
  const owner = async (sql: string, params: unknown[]) => {
    const c = await db.connect();
    try { await c.query(sql, params); } catch { /* refused: the other side won */ } finally { c.release(); }
  };
  await Promise.all(shuffled(payments.flatMap((p) => [
    () => deliver(callbackJson(p.checkoutId, { resultCode: 0 })),
    () => owner(`select app_private.settle_payment_attempt($1, 1032, 'cancelled', 'query')`, [p.attemptId]),
    () => owner('select app_public.cancel_session($1)', [p.sessionId]),
  ])).map((f) => f()));
  const ids = payments.map((p) => p.sessionId);
  const violations = await db.query('select * from app_hidden.integrity_violations where session_id = any($1)', [ids]);
  expect(violations.rows).toEqual([]);
  // Money taken is never lost: a success not applied is raised for a refund.
  const { rows } = await db.query(
    `select c.outcome, exists (select 1 from app_public.required_actions r where r.entity_id = c.attempt_id and r.action = 'REFUND_OR_RECONCILE_PAYMENT') as refund
     from app_private.payment_callbacks c where c.checkout_request_id = any($1)`, [payments.map((p) => p.checkoutId)]);
  for (const r of rows) expect(r.refund).toBe(r.outcome === 'late_success');
  expect(rows.length).toBe(16);
});
