/*
 * M-Pesa callbacks in the database (app_public.receive_payment_callback):
 * each case of the issue — applied once, repeats, conflicts, unknown
 * CheckoutRequestIDs, wrong amounts, money taken for attempts that no longer
 * count — and the attempts' lifecycle on every path. Each test in a
 * rolled-back transaction; the concurrent ones are in payment-concurrency.
 */
import pg from 'pg';
import { asDbError, pool, requestSession, rolledBack, statuses } from '../helpers/db';
import { callbackJson, checkoutId, receive, receiptNumber, waitingPayment } from '../helpers/payments';

let db: pg.Pool;
beforeAll(() => { db = pool('superuser'); });
afterAll(() => db.end());

const attempts = async (c: pg.ClientBase, sessionId: string) =>
  (await c.query(`select attempt_no, status, settled_by, checkout_request_id, mpesa_receipt, result_code
                  from app_public.payment_attempts where session_id = $1 order by attempt_no`, [sessionId])).rows;
const actions = async (c: pg.ClientBase, sessionId: string) =>
  (await c.query(`select action, entity_type, detail from app_public.required_actions where session_id = $1 order by id`, [sessionId])).rows;
const auditCount = async (c: pg.ClientBase) => (await c.query('select count(*)::int as n from app_public.audit_entries')).rows[0].n;
const ledger = async (c: pg.ClientBase, checkout: string) =>
  (await c.query('select outcome, deliveries, attempt_id from app_private.payment_callbacks where checkout_request_id = $1', [checkout])).rows[0];

describe('attempts', () => {
  test('initiating a payment opens an attempt, whose STK push the dispatcher queues once; a retry opens another and keeps the first', async () => {
    await rolledBack(db, async (c) => {
      const s = { id: await requestSession(c) };
      await c.query('select app_public.approve_session($1)', [s.id]);
      await c.query('select app_public.initiate_payment($1)', [s.id]);
      const { rows: [waiting] } = await c.query(`select id, status, push_queued_at from app_public.payment_attempts where session_id = $1`, [s.id]);
      expect(waiting).toMatchObject({ status: 'requesting', push_queued_at: null });
      expect((await c.query('select app_private.queue_stk_pushes() as n')).rows[0].n).toBeGreaterThanOrEqual(1);
      expect((await c.query('select app_private.queue_stk_pushes() as n')).rows[0].n).toBe(0);
      const pushJob = await c.query(
        `select t.identifier as task_identifier, j.payload from graphile_worker._private_jobs j
         join graphile_worker._private_tasks t on t.id = j.task_id where j.key = $1`, [`mpesa_stk_push:${waiting.id}`]);
      expect(pushJob.rows).toEqual([{ task_identifier: 'mpesa_stk_push', payload: { attemptId: waiting.id } }]);
      const p = await waitingPayment(c);
      await receive(c, callbackJson(p.checkoutId, { resultCode: 1032 }));
      await c.query('select app_public.initiate_payment($1)', [p.sessionId]);
      expect(await attempts(c, p.sessionId)).toEqual([
        expect.objectContaining({ attempt_no: 1, status: 'failed', settled_by: 'callback', result_code: 1032, checkout_request_id: p.checkoutId }),
        expect.objectContaining({ attempt_no: 2, status: 'requesting', settled_by: null, checkout_request_id: null }),
      ]);
    });
  });

  test('a payment that leaves initiated another way settles its open attempt (cancel: abandoned; an outcome by hand: that outcome)', async () => {
    await rolledBack(db, async (c) => {
      const cancelled = await waitingPayment(c);
      await c.query('select app_public.cancel_session($1)', [cancelled.sessionId]);
      expect(await attempts(c, cancelled.sessionId)).toEqual([expect.objectContaining({ status: 'abandoned', settled_by: 'payment_status' })]);
      const byHand = await waitingPayment(c);
      await c.query(`update app_public.payments set status = 'confirmed' where session_id = $1`, [byHand.sessionId]);
      await c.query(`update app_public.sessions set status = 'paid' where id = $1`, [byHand.sessionId]);
      expect(await attempts(c, byHand.sessionId)).toEqual([expect.objectContaining({ status: 'confirmed', settled_by: 'payment_status' })]);
    });
  });

  test('a payment has at most one open attempt', async () => {
    await rolledBack(db, async (c) => {
      const p = await waitingPayment(c);
      const { rows: [a] } = await c.query('select payment_id from app_public.payment_attempts where id = $1', [p.attemptId]);
      const err = await c.query(
        `insert into app_public.payment_attempts (payment_id, session_id, attempt_no, phone, amount_kes) values ($1, $2, 9, '254708374149', 2500)`,
        [a.payment_id, p.sessionId]).then(() => null, asDbError);
      expect(err?.sqlstate).toBe('23505');
    });
  });
});

describe('a callback', () => {
  test('paid: the attempt, the payment and the session move together, audited with the provider as actor and the CheckoutRequestID', async () => {
    await rolledBack(db, async (c) => {
      const withForms = await waitingPayment(c, ['intake']);
      const receipt = receiptNumber();
      const result = await receive(c, callbackJson(withForms.checkoutId, { resultCode: 0, amount: 2500.0, receipt }));
      expect(result).toMatchObject({ outcome: 'confirmed', acknowledged: true, duplicate: false, payment_status: 'confirmed', session_status: 'forms_required' });
      expect(await statuses(c, withForms.sessionId)).toMatchObject({ session: 'forms_required', payment: 'confirmed' });
      expect(await attempts(c, withForms.sessionId)).toEqual([expect.objectContaining({ status: 'confirmed', settled_by: 'callback', mpesa_receipt: receipt })]);
      const audit = await c.query(
        `select entity_type, new_value, step, actor, request_id from app_public.audit_entries
         where session_id = $1 and step = 'receive_payment_callback' order by id`, [withForms.sessionId]);
      expect(audit.rows).toEqual(['confirmed', 'paid', 'forms_required'].map((state, i) => ({
        entity_type: i === 0 ? 'payment' : 'session', new_value: state, step: 'receive_payment_callback', actor: 'mpesa', request_id: withForms.checkoutId,
      })));
      const noForms = await waitingPayment(c);
      expect((await receive(c, callbackJson(noForms.checkoutId, { resultCode: 0 }))).session_status).toBe('ready');
    });
  });

  test('each M-Pesa failure code: payment failed, ALERT_CLIENT_RETRY raised, the session still payment_pending', async () => {
    await rolledBack(db, async (c) => {
      const codes = (await c.query('select result_code from app_hidden.mpesa_result_codes where result_code <> 0 order by 1')).rows.map((r) => r.result_code);
      expect(codes.length).toBeGreaterThanOrEqual(8);
      for (const code of [...codes, 4242 /* one we do not know */]) {
        const p = await waitingPayment(c);
        const result = await receive(c, callbackJson(p.checkoutId, { resultCode: code }));
        expect({ code, ...result }).toMatchObject({ code, outcome: 'failed', acknowledged: true, payment_status: 'failed', session_status: 'payment_pending' });
        expect(await actions(c, p.sessionId)).toEqual([{ action: 'ALERT_CLIENT_RETRY', entity_type: 'payment', detail: null }]);
        expect(await attempts(c, p.sessionId)).toEqual([expect.objectContaining({ status: 'failed', result_code: code })]);
      }
    });
  });

  test('the same callback again: the stored result, marked duplicate, and nothing else changes', async () => {
    await rolledBack(db, async (c) => {
      const p = await waitingPayment(c);
      const body = callbackJson(p.checkoutId, { resultCode: 0 });
      const first = await receive(c, body);
      const audited = await auditCount(c);
      for (let i = 0; i < 3; i++) {
        expect(await receive(c, body)).toEqual({ ...first, duplicate: true });
      }
      expect(await auditCount(c)).toBe(audited);
      expect(await ledger(c, p.checkoutId)).toMatchObject({ outcome: 'confirmed', deliveries: 4 });
    });
  });

  test('the same CheckoutRequestID with a different body: refused as a conflict, kept for review, nothing applied', async () => {
    await rolledBack(db, async (c) => {
      const p = await waitingPayment(c);
      await receive(c, callbackJson(p.checkoutId, { resultCode: 1032 }));
      const before = await statuses(c, p.sessionId);
      const audited = await auditCount(c);
      const result = await receive(c, callbackJson(p.checkoutId, { resultCode: 0 }));
      expect(result).toMatchObject({ outcome: 'conflict', acknowledged: false, duplicate: false });
      expect(await statuses(c, p.sessionId)).toEqual(before);
      expect(await auditCount(c)).toBe(audited);
      const review = await c.query(`select outcome, body -> 'Body' -> 'stkCallback' ->> 'ResultCode' as code from app_private.payment_callback_conflicts where checkout_request_id = $1`, [p.checkoutId]);
      expect(review.rows).toEqual([{ outcome: 'conflict', code: '0' }]);
    });
  });

  test('an unknown CheckoutRequestID: acknowledged and recorded, nothing applied; applied when the push it answers is recorded', async () => {
    await rolledBack(db, async (c) => {
      const early = checkoutId();
      const audited = await auditCount(c);
      expect(await receive(c, callbackJson(early, { resultCode: 0 }))).toMatchObject({ outcome: 'unknown_checkout', acknowledged: true });
      expect(await auditCount(c)).toBe(audited);
      expect(await ledger(c, early)).toMatchObject({ outcome: 'unknown_checkout', attempt_id: null });
      // The push's answer is recorded after its callback arrived:
      const s = { id: await requestSession(c) };
      await c.query('select app_public.approve_session($1)', [s.id]);
      await c.query('select app_public.initiate_payment($1)', [s.id]);
      const { rows: [a] } = await c.query('select id from app_public.payment_attempts where session_id = $1', [s.id]);
      const { rows: [r] } = await c.query(`select app_private.record_stk_push($1, 'm', $2) as outcome`, [a.id, early]);
      expect(r.outcome).toBe('confirmed');
      expect(await statuses(c, s.id)).toMatchObject({ payment: 'confirmed', session: 'ready' });
      expect(await ledger(c, early)).toMatchObject({ outcome: 'confirmed', attempt_id: a.id });
    });
  });

  test('paid a different amount: not confirmed; RECONCILE_PAYMENT_AMOUNT with both amounts; the payment stays initiated', async () => {
    await rolledBack(db, async (c) => {
      for (const amount of [2499, 2500.5, 25000]) {
        const p = await waitingPayment(c);
        const receipt = receiptNumber();
        expect(await receive(c, callbackJson(p.checkoutId, { resultCode: 0, amount, receipt })))
          .toMatchObject({ outcome: 'amount_mismatch', acknowledged: true, payment_status: 'initiated', session_status: 'payment_pending' });
        expect(await actions(c, p.sessionId)).toEqual([{
          action: 'RECONCILE_PAYMENT_AMOUNT', entity_type: 'payment_attempt',
          detail: { expectedAmount: 2500, amount, mpesaReceipt: receipt },
        }]);
        expect(await attempts(c, p.sessionId)).toEqual([expect.objectContaining({ status: 'amount_mismatch', mpesa_receipt: receipt })]);
      }
    });
  });

  test('paid for an attempt that no longer counts (timed out and retried; payment cancelled): not applied, REFUND_OR_RECONCILE_PAYMENT', async () => {
    await rolledBack(db, async (c) => {
      const retried = await waitingPayment(c);
      await c.query(`select app_private.settle_payment_attempt($1, null, 'no answer', 'timeout')`, [retried.attemptId]);
      await c.query('select app_public.initiate_payment($1)', [retried.sessionId]);
      const late = await receive(c, callbackJson(retried.checkoutId, { resultCode: 0 }));
      expect(late).toMatchObject({ outcome: 'late_success', acknowledged: true, payment_status: 'initiated', session_status: 'payment_pending' });
      expect((await actions(c, retried.sessionId)).map((a) => a.action)).toEqual(['ALERT_CLIENT_RETRY', 'REFUND_OR_RECONCILE_PAYMENT']);
      expect((await attempts(c, retried.sessionId)).map((a) => a.status)).toEqual(['failed', 'requesting']);

      const cancelled = await waitingPayment(c);
      await c.query('select app_public.cancel_session($1)', [cancelled.sessionId]);
      expect(await receive(c, callbackJson(cancelled.checkoutId, { resultCode: 0 })))
        .toMatchObject({ outcome: 'late_success', payment_status: 'cancelled', session_status: 'cancelled' });
      expect((await actions(c, cancelled.sessionId)).map((a) => a.action)).toEqual(['REFUND_OR_RECONCILE_PAYMENT']);
    });
  });

  test('agreeing with an attempt already settled (by a query, or by hand): nothing to do; a failure after it: nothing either', async () => {
    await rolledBack(db, async (c) => {
      const queried = await waitingPayment(c);
      expect((await c.query(`select app_private.settle_payment_attempt($1, 0, 'ok', 'query') as o`, [queried.attemptId])).rows[0].o).toBe('confirmed');
      const receipt = receiptNumber();
      expect(await receive(c, callbackJson(queried.checkoutId, { resultCode: 0, receipt }))).toMatchObject({ outcome: 'already_settled', payment_status: 'confirmed' });
      expect(await attempts(c, queried.sessionId)).toEqual([expect.objectContaining({ status: 'confirmed', settled_by: 'query', mpesa_receipt: receipt })]);
      expect(await actions(c, queried.sessionId)).toEqual([]);

      const confirmedByHand = await waitingPayment(c);
      await c.query(`select app_public.record_payment_outcome($1, 'confirmed')`, [confirmedByHand.sessionId]);
      expect(await receive(c, callbackJson(confirmedByHand.checkoutId, { resultCode: 1032 }))).toMatchObject({ outcome: 'late_failure', payment_status: 'confirmed' });
    });
  });

  test('a receipt number already used by another CheckoutRequestID: refused, kept for review', async () => {
    await rolledBack(db, async (c) => {
      const first = await waitingPayment(c);
      const second = await waitingPayment(c);
      const receipt = receiptNumber();
      await receive(c, callbackJson(first.checkoutId, { resultCode: 0, receipt }));
      expect(await receive(c, callbackJson(second.checkoutId, { resultCode: 0, receipt }))).toMatchObject({ outcome: 'receipt_reused', acknowledged: false });
      expect(await statuses(c, second.sessionId)).toMatchObject({ payment: 'initiated', session: 'payment_pending' });
      const review = await c.query(`select outcome from app_private.payment_callback_conflicts where checkout_request_id = $1`, [second.checkoutId]);
      expect(review.rows).toEqual([{ outcome: 'receipt_reused' }]);
    });
  });

  test('only the payment provider may deliver one; bad arguments are INVALID_ARGUMENT', async () => {
    await rolledBack(db, async (c) => {
      for (const role of ['client', 'therapist', 'admin', 'anonymous']) {
        await c.query('savepoint s');
        await c.query(`select set_config('role', $1, true)`, [`flow_${role}`]);
        const err = await c.query(`select app_public.receive_payment_callback('ws_CO_x', 0)`).then(() => null, asDbError);
        expect({ role, code: err?.code }).toEqual({ role, code: 'NOT_AUTHORIZED' });
        await c.query('rollback to savepoint s');
      }
      await c.query(`select set_config('role', 'flow_payment_provider', true)`);
      for (const [args, argument] of [[`'', 0`, 'checkout_request_id'], [`'has space', 0`, 'checkout_request_id'], [`'ws_CO_x', null`, 'result_code']]) {
        await c.query('savepoint s');
        const err = await c.query(`select app_public.receive_payment_callback(${args})`).then(() => null, asDbError);
        expect({ args, code: err?.code, argument: err?.detail.argument }).toEqual({ args, code: 'INVALID_ARGUMENT', argument });
        await c.query('rollback to savepoint s');
      }
    });
  });
});

describe('settling without a callback', () => {
  test('the push refused, an STK push query, or giving up: each settles the open attempt once', async () => {
    await rolledBack(db, async (c) => {
      const refused = await waitingPayment(c);
      expect((await c.query(`select app_private.settle_payment_attempt($1, null, 'Invalid PhoneNumber', 'push') as o`, [refused.attemptId])).rows[0].o).toBe('failed');
      const queried = await waitingPayment(c);
      expect((await c.query(`select app_private.settle_payment_attempt($1, 1037, 'unreachable', 'query') as o`, [queried.attemptId])).rows[0].o).toBe('failed');
      const given = await waitingPayment(c);
      expect((await c.query(`select app_private.settle_payment_attempt($1, null, 'no result after 600 s', 'timeout') as o`, [given.attemptId])).rows[0].o).toBe('failed');
      expect((await c.query(`select app_private.settle_payment_attempt($1, 0, 'ok', 'query') as o`, [given.attemptId])).rows[0].o).toBe('already_settled');
      for (const [p, by] of [[refused, 'push'], [queried, 'query'], [given, 'timeout']] as const) {
        expect(await statuses(c, p.sessionId)).toMatchObject({ payment: 'failed', session: 'payment_pending' });
        expect(await attempts(c, p.sessionId)).toEqual([expect.objectContaining({ status: 'failed', settled_by: by })]);
        expect((await actions(c, p.sessionId)).map((a) => a.action)).toEqual(['ALERT_CLIENT_RETRY']);
      }
    });
  });

  test('the sweep queues one settling job per open attempt older than the bound', async () => {
    await rolledBack(db, async (c) => {
      const p = await waitingPayment(c);
      await c.query(`update app_public.payment_attempts set created_at = now() - interval '1 hour' where id = $1`, [p.attemptId]);
      const queued = async () => (await c.query(`select count(*)::int as n from graphile_worker.jobs where key = $1`, [`mpesa_settle_attempt:${p.attemptId}`])).rows[0].n;
      const { rows: [r] } = await c.query(`select app_private.queue_payment_settlements(interval '90 seconds') as n`);
      expect(r.n).toBeGreaterThanOrEqual(1);
      await c.query(`select app_private.queue_payment_settlements(interval '90 seconds')`);
      expect(await queued()).toBe(1);
    });
  });
});
