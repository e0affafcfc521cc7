/*
 * A local M-Pesa: answers STK pushes and queries as Daraja would, then posts
 * Daraja-shaped callbacks to the callback URL, as each payer's scenario says
 * (paid, each failure code, duplicates, delays, never). The default provider
 * in development and in the tests: no credentials, no internet.
 */
import { randomBytes, randomInt } from 'node:crypto';
import type { PaymentProvider, StkPushAccepted, StkPushRequest, StkQueryResult } from './provider';
import { PushRefused } from './provider';
import { darajaTimestamp } from './daraja';

export interface Scenario {
  /** The callback's ResultCode: 0 paid, otherwise an M-Pesa failure code (app_hidden.mpesa_result_codes). */
  resultCode: number;
  /** The amount the callback reports as paid (default: the amount asked). */
  amount?: number;
  /** How many times the same callback is delivered, all at once (0: never). */
  deliveries: number;
  /** How long after the push the callback is delivered. */
  delayMs: number;
  /** What an STK push query answers: the result, "still processing", or an error (provider unreachable). */
  query: 'result' | 'pending' | 'error';
  /** Refuse the push itself (as Daraja does an invalid number). */
  refusePush?: boolean;
}

export const DEFAULT_SCENARIO: Scenario = { resultCode: 0, deliveries: 1, delayMs: 2000, query: 'result' };

const RESULT_DESCRIPTIONS: Record<number, string> = {
  0: 'The service request is processed successfully.',
  1: 'The balance is insufficient for the transaction.',
  1032: 'Request cancelled by user',
  1037: 'DS timeout user cannot be reached',
  1019: 'Transaction has expired',
  2001: 'The initiator information is invalid.',
  1001: 'Unable to lock subscriber, a transaction is already in process for the current subscriber',
};

export interface SimulatedPush {
  request: StkPushRequest;
  accepted: StkPushAccepted;
  scenario: Scenario;
  /** The callback body, as delivered (each delivery the same). */
  callback: unknown;
  /** Resolves with the HTTP status of each delivery once all are done. */
  delivered: Promise<number[]>;
}

export class MpesaSimulator implements PaymentProvider {
  readonly name = 'simulator';
  readonly pushes: SimulatedPush[] = [];
  private readonly byPhone = new Map<string, Partial<Scenario>>();
  private readonly timers = new Set<NodeJS.Timeout>();

  constructor(private defaults: Scenario = DEFAULT_SCENARIO) {}

  /** The scenario for every payer without their own. */
  setDefault(scenario: Partial<Scenario>): void {
    this.defaults = { ...this.defaults, ...scenario };
  }

  /** The scenario of one payer (2547XXXXXXXX). */
  setScenario(phone: string, scenario: Partial<Scenario>): void {
    this.byPhone.set(phone, scenario);
  }

  scenarioFor(phone: string): Scenario {
    return { ...this.defaults, ...this.byPhone.get(phone) };
  }

  pushFor(checkoutRequestId: string): SimulatedPush | undefined {
    return this.pushes.find((p) => p.accepted.checkoutRequestId === checkoutRequestId);
  }

  async stkPush(request: StkPushRequest): Promise<StkPushAccepted> {
    const scenario = this.scenarioFor(request.phone);
    if (scenario.refusePush) throw new PushRefused(null, 'Bad Request - Invalid PhoneNumber (400.002.02)');
    const accepted = {
      merchantRequestId: `${randomInt(10000, 99999)}-${randomInt(1e7, 9e7)}-1`,
      checkoutRequestId: `ws_CO_${darajaTimestamp()}${randomBytes(8).toString('hex')}`,
    };
    const callback = callbackBody(request, accepted, scenario);
    const delivered = new Promise<number[]>((resolve) => {
      if (scenario.deliveries === 0) return resolve([]);
      const timer = setTimeout(() => {
        this.timers.delete(timer);
        const text = JSON.stringify(callback);
        void Promise.all(Array.from({ length: scenario.deliveries }, () => deliver(request.callbackUrl, text))).then(resolve);
      }, scenario.delayMs);
      this.timers.add(timer);
    });
    this.pushes.push({ request, accepted, scenario, callback, delivered });
    return accepted;
  }

  async stkQuery(checkoutRequestId: string): Promise<StkQueryResult> {
    const push = this.pushFor(checkoutRequestId);
    if (!push) throw new Error(`simulator: no STK push ${checkoutRequestId}`);
    if (push.scenario.query === 'error') throw new Error('simulator: provider unreachable');
    if (push.scenario.query === 'pending') return { state: 'pending' };
    return { state: 'settled', resultCode: push.scenario.resultCode, resultDesc: describe(push.scenario.resultCode) };
  }

  /** Drops the callbacks not yet delivered. */
  async close(): Promise<void> {
    for (const timer of this.timers) clearTimeout(timer);
    this.timers.clear();
  }
}

function describe(resultCode: number): string {
  return RESULT_DESCRIPTIONS[resultCode] ?? `M-Pesa result ${resultCode}`;
}

/** A callback body as Daraja sends it (../shared/samples/mpesa). */
export function callbackBody(request: Pick<StkPushRequest, 'phone' | 'amountKes'>, accepted: StkPushAccepted, scenario: Pick<Scenario, 'resultCode' | 'amount'>): unknown {
  const stkCallback: Record<string, unknown> = {
    MerchantRequestID: accepted.merchantRequestId,
    CheckoutRequestID: accepted.checkoutRequestId,
    ResultCode: scenario.resultCode,
    ResultDesc: describe(scenario.resultCode),
  };
  if (scenario.resultCode === 0) {
    stkCallback.CallbackMetadata = {
      Item: [
        { Name: 'Amount', Value: scenario.amount ?? request.amountKes },
        { Name: 'MpesaReceiptNumber', Value: randomBytes(8).toString('base64').replace(/[^A-Za-z0-9]/g, '').toUpperCase().padEnd(10, 'X').slice(0, 10) },
        { Name: 'TransactionDate', Value: Number(darajaTimestamp()) },
        { Name: 'PhoneNumber', Value: Number(request.phone) },
      ],
    };
  }
  return { Body: { stkCallback } };
}

async function deliver(url: string, body: string): Promise<number> {
  try {
    const res = await fetch(url, { method: 'POST', headers: { 'content-type': 'application/json' }, body });
    await res.arrayBuffer();
    return res.status;
  } catch {
    return 0;
  }
}
