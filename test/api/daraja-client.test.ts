/*
 * The Daraja client against a local server speaking Daraja's format: the
 * OAuth token (cached, renewed when refused), the STK push and its password,
 * refusals, "still being processed", and transient errors.
 */
import { createServer } from 'node:http';
import { DarajaClient, DarajaError, darajaPassword, darajaTimestamp } from '../../server/mpesa/daraja';
import { PushRefused } from '../../server/mpesa/provider';
import { startTestApp } from '../helpers/api';
import { DARAJA_TEST, FakeDaraja, startFakeDaraja } from '../helpers/daraja-server';
import { pool, requestSession, statuses } from '../helpers/db';

let daraja: FakeDaraja;
let client: DarajaClient;
beforeEach(async () => {
  daraja = await startFakeDaraja();
  daraja.simulator.setDefault({ deliveries: 0 });
  client = new DarajaClient({ baseUrl: daraja.url, ...DARAJA_TEST, transactionType: 'CustomerPayBillOnline', timeoutMs: 5000 });
});
afterEach(() => daraja.close());

const push = { attemptId: 'a', phone: '254708374149', amountKes: 2500, accountReference: 'SESSION-12345678', description: 'Therapy session booking', callbackUrl: 'http://127.0.0.1:1/cb/secret' };

test('the timestamp is Kenya time, yyyyMMddHHmmss; the password is base64(shortcode + passkey + timestamp)', () => {
  expect(darajaTimestamp(new Date('2026-11-30T21:30:05Z'))).toBe('20261201003005');
  expect(Buffer.from(darajaPassword('174379', 'key', '20261201003005'), 'base64').toString()).toBe('174379key20261201003005');
});

test('an STK push: one token for several requests, and the request Daraja expects', async () => {
  const first = await client.stkPush(push);
  const second = await client.stkPush(push);
  expect(first.checkoutRequestId).toMatch(/^ws_CO_/);
  expect(second.checkoutRequestId).not.toBe(first.checkoutRequestId);
  expect(daraja.requests.map((r) => r.path)).toEqual(['/oauth/v1/generate', '/mpesa/stkpush/v1/processrequest', '/mpesa/stkpush/v1/processrequest']);
  expect(daraja.requests[1].body).toEqual({
    BusinessShortCode: '174379', Password: expect.any(String), Timestamp: expect.stringMatching(/^\d{14}$/),
    TransactionType: 'CustomerPayBillOnline', Amount: 2500, PartyA: '254708374149', PartyB: '174379', PhoneNumber: '254708374149',
    CallBackURL: push.callbackUrl, AccountReference: 'SESSION-1234', TransactionDesc: 'Therapy sessi',
  });
});

test('a token Daraja no longer accepts is renewed once', async () => {
  await client.stkPush(push);
  daraja.expireToken();
  await expect(client.stkPush(push)).resolves.toMatchObject({ checkoutRequestId: expect.any(String) });
  expect(daraja.requests.filter((r) => r.path === '/oauth/v1/generate').length).toBe(2);
});

test('a refused push is PushRefused; a 5xx is transient', async () => {
  daraja.simulator.setScenario('254708374149', { refusePush: true });
  await expect(client.stkPush(push)).rejects.toBeInstanceOf(PushRefused);
  await expect(client.stkPush(push)).rejects.toThrow(/Invalid PhoneNumber \(400\.002\.02\)/);
  daraja.simulator.setScenario('254708374149', {});
  daraja.failNext(1);
  await expect(client.stkPush(push)).rejects.toBeInstanceOf(DarajaError);
  const wrong = new DarajaClient({ baseUrl: daraja.url, ...DARAJA_TEST, passKey: 'wrong', transactionType: 'CustomerPayBillOnline', timeoutMs: 5000 });
  await expect(wrong.stkPush(push)).rejects.toBeInstanceOf(PushRefused);
});

test('an STK push query: the result, "still being processed" as pending (not failed), errors as transient', async () => {
  daraja.simulator.setScenario('254708374149', { resultCode: 1032, query: 'result' });
  const cancelled = await client.stkPush(push);
  expect(await client.stkQuery(cancelled.checkoutRequestId)).toEqual({ state: 'settled', resultCode: 1032, resultDesc: 'Request cancelled by user' });
  daraja.simulator.setScenario('254708374149', { query: 'pending' });
  const waiting = await client.stkPush(push);
  expect(await client.stkQuery(waiting.checkoutRequestId)).toEqual({ state: 'pending' });
  daraja.simulator.setScenario('254708374149', { query: 'error' });
  const unreachable = await client.stkPush(push);
  await expect(client.stkQuery(unreachable.checkoutRequestId)).rejects.toBeInstanceOf(DarajaError);
});

test('a Daraja that does not answer in time is a transient error', async () => {
  const silent = createServer(() => { /* never answers */ });
  await new Promise<void>((resolve) => silent.listen(0, '127.0.0.1', resolve));
  try {
    const url = `http://127.0.0.1:${(silent.address() as { port: number }).port}`;
    const slow = new DarajaClient({ baseUrl: url, ...DARAJA_TEST, transactionType: 'CustomerPayBillOnline', timeoutMs: 200 });
    await expect(slow.stkPush(push)).rejects.toThrow(/aborted|timeout/i);
  } finally {
    silent.closeAllConnections();
    await new Promise((resolve) => silent.close(resolve));
  }
});

test('end to end through the Daraja client: push accepted, the callback posted to our endpoint, the payment confirmed', async () => {
  const app = await startTestApp();
  const db = pool('superuser', 2);
  try {
    daraja.simulator.setDefault({ deliveries: 2, delayMs: 20 });
    const s = { id: await requestSession(db) };
    await db.query('select app_public.approve_session($1)', [s.id]);
    await db.query('select app_public.initiate_payment($1)', [s.id]);
    const { rows: [a] } = await db.query('select id, phone, amount_kes from app_public.payment_attempts where session_id = $1', [s.id]);
    const accepted = await client.stkPush({ ...push, attemptId: a.id, phone: a.phone, amountKes: a.amount_kes, callbackUrl: app.callbackUrl });
    await db.query(`select app_private.record_stk_push($1, $2, $3)`, [a.id, accepted.merchantRequestId, accepted.checkoutRequestId]);
    expect(await daraja.simulator.pushFor(accepted.checkoutRequestId)!.delivered).toEqual([200, 200]);
    expect(await statuses(db, s.id)).toMatchObject({ payment: 'confirmed', session: 'ready' });
  } finally {
    await app.close();
    await db.end();
  }
});
