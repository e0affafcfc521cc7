/*
 * Payments in the tests: sessions waiting for an M-Pesa callback (the push
 * already accepted), Daraja's callback bodies (the samples of
 * ../shared/samples/mpesa, verbatim), and a callback received as the
 * payment provider.
 */
import { randomBytes } from 'node:crypto';
import pg from 'pg';
import { CallbackFields, readCallback } from '../../server/mpesa/callback';
import { connectionString, requestSession } from './db';
import { openScratchDatabase } from '../../server/db/scratch';
import { withDatabase } from '../../server/db/setup';

/** ../shared/samples/mpesa/stk-callback-success.json */
export const SAMPLE_SUCCESS = `{"Body":{"stkCallback":{"MerchantRequestID":"29115-34620561-1","CheckoutRequestID":"ws_CO_191220191020363925","ResultCode":0,"ResultDesc":"The service request is processed successfully.","CallbackMetadata":{"Item":[{"Name":"Amount","Value":1.00},{"Name":"MpesaReceiptNumber","Value":"NLJ7RT61SV"},{"Name":"TransactionDate","Value":20191219102115},{"Name":"PhoneNumber","Value":254708374149}]}}}}`;
/** ../shared/samples/mpesa/stk-callback-cancelled-by-user.json */
export const SAMPLE_CANCELLED = `{"Body":{"stkCallback":{"MerchantRequestID":"8131-4f68-ab7a-5e68879d780e417019","CheckoutRequestID":"ws_CO_08042025180457363708374149","ResultCode":1032,"ResultDesc":"Request cancelled by user"}}}`;

export function checkoutId(): string {
  return `ws_CO_${Date.now()}${randomBytes(6).toString('hex')}`;
}

export function receiptNumber(): string {
  return randomBytes(5).toString('hex').toUpperCase();
}

/** A Daraja callback body for checkout: paid (amount, receipt) or failed with resultCode. */
export function callbackJson(checkout: string, outcome: { resultCode: number; amount?: number; receipt?: string; desc?: string }): any {
  const body = JSON.parse(outcome.resultCode === 0 ? SAMPLE_SUCCESS : SAMPLE_CANCELLED);
  const cb = body.Body.stkCallback;
  cb.CheckoutRequestID = checkout;
  cb.ResultCode = outcome.resultCode;
  if (outcome.desc) cb.ResultDesc = outcome.desc;
  if (outcome.resultCode === 0) {
    for (const item of cb.CallbackMetadata.Item) {
      if (item.Name === 'Amount') item.Value = outcome.amount ?? 2500;
      if (item.Name === 'MpesaReceiptNumber') item.Value = outcome.receipt ?? receiptNumber();
    }
  }
  return body;
}

export interface WaitingPayment {
  sessionId: string;
  attemptId: string;
  checkoutId: string;
}

/**
 * A session whose payment waits for M-Pesa: requested (price 2500), approved,
 * initiated, and the STK push accepted with a fresh CheckoutRequestID, as
 * the schema owner.
 */
export async function waitingPayment(client: pg.ClientBase, formKeys: string[] = []): Promise<WaitingPayment> {
  const sessionId = await requestSession(client, formKeys);
  await client.query('select app_public.approve_session($1)', [sessionId]);
  await client.query('select app_public.initiate_payment($1)', [sessionId]);
  const { rows: [a] } = await client.query(
    `select id from app_public.payment_attempts where session_id = $1 and settled_at is null`, [sessionId]);
  const checkout = checkoutId();
  await client.query(`select app_private.record_stk_push($1, 'm-1', $2)`, [a.id, checkout]);
  return { sessionId, attemptId: a.id, checkoutId: checkout };
}

export interface Received {
  outcome: string;
  acknowledged: boolean;
  duplicate: boolean;
  session_status: string | null;
  payment_status: string | null;
}

/** Receives a callback body as the payment provider would (a superuser client: SET ROLE inside). */
export async function receive(client: pg.ClientBase, body: unknown): Promise<Received> {
  const f: CallbackFields = readCallback(body);
  await client.query(`select set_config('role', 'flow_payment_provider', true), set_config('flow.actor', 'mpesa', true)`);
  try {
    const { rows } = await client.query(
      'select (r).* from app_public.receive_payment_callback($1, $2, $3, $4, $5, $6, $7, $8, $9) r',
      [f.checkoutRequestId, f.resultCode, f.resultDesc, f.amount, f.mpesaReceipt, f.phone, f.transactionDate, f.merchantRequestId, JSON.stringify(body)]);
    return rows[0];
  } finally {
    await client.query(`select set_config('role', 'none', true)`).catch(() => {});
  }
}

/**
 * A database of its own on the test server, fresh and migrated: for tests
 * that run graphile-worker, which must not pick up the jobs the other test
 * files queue in the shared one.
 */
export async function ownDatabase(name: string): Promise<{ ownerUrl: string; superuserUrl: string }> {
  return openScratchDatabase(name, { rootUrl: withDatabase(connectionString('superuser'), 'postgres') });
}
