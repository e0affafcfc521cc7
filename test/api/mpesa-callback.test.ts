/*
 * The M-Pesa callback endpoint over real HTTP: Daraja's body as is, at the
 * secret path; every malformed request refused with a clear 4xx and nothing
 * changed; many simultaneous deliveries applied once. And the same operation
 * as a GraphQL mutation, for the payment provider only.
 */
import pg from 'pg';
import type { App } from '../../server/app';
import { CALLBACK_PATH } from '../../server/mpesa/callback';
import { gql, startTestApp, user } from '../helpers/api';
import { pool, statuses } from '../helpers/db';
import { callbackJson, checkoutId, SAMPLE_CANCELLED, SAMPLE_SUCCESS, waitingPayment, WaitingPayment } from '../helpers/payments';

let app: App;
let db: pg.Pool;
beforeAll(async () => {
  db = pool('superuser', 8);
  app = await startTestApp({ MPESA_CALLBACK_SECRET: 'test-callback-secret', MAX_CALLBACK_BYTES: '4096' });
});
afterAll(async () => {
  await app.close();
  await db.end();
});

async function post(body: string, options: { url?: string; method?: string; type?: string | null } = {}) {
  const res = await fetch(options.url ?? app.callbackUrl, {
    method: options.method ?? 'POST',
    headers: options.type === null ? {} : { 'content-type': options.type ?? 'application/json' },
    body: options.method === 'GET' ? undefined : body,
  });
  return { status: res.status, body: await res.json().catch(() => null) };
}

async function waiting(formKeys: string[] = []): Promise<WaitingPayment> {
  const c = await db.connect();
  try { return await waitingPayment(c, formKeys); } finally { c.release(); }
}

async function ledgerRows(): Promise<number> {
  return (await db.query('select count(*)::int as n from app_private.payment_callbacks')).rows[0].n;
}

test('the callback URL has the secret segment; a paid callback is acknowledged as M-Pesa expects, and applied', async () => {
  expect(app.callbackUrl).toBe(`${app.url}${CALLBACK_PATH}test-callback-secret`);
  const p = await waiting(['intake']);
  const res = await post(JSON.stringify(callbackJson(p.checkoutId, { resultCode: 0 })));
  expect(res).toEqual({ status: 200, body: { ResultCode: 0, ResultDesc: 'Accepted' } });
  expect(await statuses(db, p.sessionId)).toMatchObject({ payment: 'confirmed', session: 'forms_required' });
  const audit = await db.query(`select distinct actor from app_public.audit_entries where session_id = $1 and step = 'receive_payment_callback'`, [p.sessionId]);
  expect(audit.rows).toEqual([{ actor: 'mpesa' }]);
});

test('the samples of ../shared/samples/mpesa are read as they are (Amount 1.00, numbers as numbers, items by name)', async () => {
  for (const sample of [SAMPLE_SUCCESS, SAMPLE_CANCELLED]) {
    // Their CheckoutRequestIDs are nobody's: acknowledged, recorded, nothing applied.
    expect(await post(sample)).toEqual({ status: 200, body: { ResultCode: 0, ResultDesc: 'Accepted' } });
  }
  const { rows } = await db.query(
    `select outcome, amount, mpesa_receipt, phone, transaction_date, result_code from app_private.payment_callbacks
     where checkout_request_id in ('ws_CO_191220191020363925', 'ws_CO_08042025180457363708374149') order by result_code`);
  expect(rows).toEqual([
    { outcome: 'unknown_checkout', amount: '1', mpesa_receipt: 'NLJ7RT61SV', phone: '254708374149', transaction_date: '20191219102115', result_code: 0 },
    { outcome: 'unknown_checkout', amount: null, mpesa_receipt: null, phone: null, transaction_date: null, result_code: 1032 },
  ]);
});

test('a repeat is acknowledged again without effect; a conflicting body gets 409', async () => {
  const p = await waiting();
  const body = JSON.stringify(callbackJson(p.checkoutId, { resultCode: 1032 }));
  expect((await post(body)).status).toBe(200);
  expect((await post(body)).status).toBe(200);
  const conflict = await post(JSON.stringify(callbackJson(p.checkoutId, { resultCode: 0 })));
  expect(conflict.status).toBe(409);
  expect(conflict.body.ResultDesc).toMatch(/^Rejected \(conflict\)/);
  expect(await statuses(db, p.sessionId)).toMatchObject({ payment: 'failed', session: 'payment_pending' });
});

test('anything that is not a callback is refused with a clear 4xx, and changes nothing', async () => {
  const p = await waiting();
  const good = callbackJson(p.checkoutId, { resultCode: 0 });
  const before = await ledgerRows();
  const withCode = (code: unknown) => JSON.stringify({ Body: { stkCallback: { ...good.Body.stkCallback, ResultCode: code } } });
  const cases: Array<[string, Promise<{ status: number; body: any }>, number, RegExp]> = [
    ['wrong secret', post(JSON.stringify(good), { url: `${app.url}${CALLBACK_PATH}wrong-secret` }), 404, /Not found/],
    ['no secret', post(JSON.stringify(good), { url: `${app.url}${CALLBACK_PATH}` }), 404, /Not found/],
    ['GET', post('', { method: 'GET' }), 405, /POST/],
    ['not JSON', post('{"Body": {'), 400, /not JSON/],
    ['not JSON content', post(JSON.stringify(good), { type: 'text/plain' }), 415, /application\/json/],
    ['no Body', post('{}'), 400, /Body.stkCallback must be an object/],
    ['an array', post('[1,2]'), 400, /Body.stkCallback must be an object/],
    ['no CheckoutRequestID', post(JSON.stringify({ Body: { stkCallback: { ResultCode: 0 } } })), 400, /CheckoutRequestID/],
    ['CheckoutRequestID with a space (the database refuses it)', post(JSON.stringify({ Body: { stkCallback: { ...good.Body.stkCallback, CheckoutRequestID: 'ws CO' } } })), 400, /Invalid argument checkout_request_id/],
    ['ResultCode as text', post(withCode('0')), 400, /ResultCode must be an integer/],
    ['ResultCode 1.5', post(withCode(1.5)), 400, /ResultCode must be an integer/],
    ['Item not a list', post(JSON.stringify({ Body: { stkCallback: { ...good.Body.stkCallback, CallbackMetadata: { Item: {} } } } })), 400, /Item must be an array/],
    ['Amount as text', post(JSON.stringify({ Body: { stkCallback: { ...good.Body.stkCallback, CallbackMetadata: { Item: [{ Name: 'Amount', Value: 'lots' }] } } } })), 400, /Amount must be a number/],
    ['huge body', post(JSON.stringify({ ...good, padding: 'x'.repeat(1_000_000) })), 413, /too large/],
  ];
  for (const [name, response, status, why] of cases) {
    const res = await response;
    expect({ name, status: res.status }).toEqual({ name, status });
    expect({ name, desc: res.body?.ResultDesc }).toEqual({ name, desc: expect.stringMatching(why) });
  }
  expect(await ledgerRows()).toBe(before);
  expect(await statuses(db, p.sessionId)).toMatchObject({ payment: 'initiated', session: 'payment_pending' });
  // ...and the server still takes the real one.
  expect((await post(JSON.stringify(good))).status).toBe(200);
});

test('20 payments, each callback posted 5 times at once over HTTP: each applied exactly once', async () => {
  const payments = await Promise.all(Array.from({ length: 20 }, () => waiting()));
  const bodies = payments.map((p) => JSON.stringify(callbackJson(p.checkoutId, { resultCode: 0 })));
  const statusesSeen = await Promise.all(bodies.flatMap((b) => Array.from({ length: 5 }, () => post(b).then((r) => r.status))));
  expect(new Set(statusesSeen)).toEqual(new Set([200]));
  const { rows } = await db.query(
    `select count(*)::int as n from app_public.audit_entries where session_id = any($1) and entity_type = 'payment' and new_value = 'confirmed'`,
    [payments.map((p) => p.sessionId)]);
  expect(rows[0].n).toBe(20);
  // Every delivery counted (identical ones answered from the first in flight within 100 ms).
  await new Promise((resolve) => setTimeout(resolve, 300));
  const ledger = await db.query(`select sum(deliveries)::int as n from app_private.payment_callbacks where checkout_request_id = any($1)`, [payments.map((p) => p.checkoutId)]);
  expect(ledger.rows[0].n).toBe(100);
});

const MUTATION = `mutation ($input: ReceivePaymentCallbackInput!) {
  receivePaymentCallback(input: $input) { result { outcome acknowledged duplicate sessionStatus paymentStatus } }
}`;

test('GraphQL receivePaymentCallback: the same operation for other providers, only for the payment provider', async () => {
  const p = await waiting();
  const input = { checkoutRequestId: p.checkoutId, resultCode: 0, amount: '2500', mpesaReceipt: 'GQL0000001' };
  const provider = user('payment_provider');
  const first = await gql(app, provider, MUTATION, { input });
  expect(first.errors).toBeUndefined();
  expect(first.data!.receivePaymentCallback.result).toEqual({
    outcome: 'confirmed', acknowledged: true, duplicate: false, sessionStatus: 'ready', paymentStatus: 'confirmed',
  });
  const again = await gql(app, provider, MUTATION, { input });
  expect(again.data!.receivePaymentCallback.result).toMatchObject({ outcome: 'confirmed', duplicate: true });
  for (const role of ['client', 'therapist', 'admin'] as const) {
    const refused = await gql(app, user(role), MUTATION, { input: { checkoutRequestId: checkoutId(), resultCode: 0 } });
    expect({ role, code: refused.errors?.[0].extensions?.code }).toEqual({ role, code: 'NOT_AUTHORIZED' });
  }
});
