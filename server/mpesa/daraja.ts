/*
 * The Daraja HTTP client (Safaricom's M-Pesa API): OAuth client-credentials
 * token, STK push, STK push query. Tested against a local server that speaks
 * Daraja's format (test/helpers/daraja-server.ts), never the internet.
 */
import type { PaymentProvider, StkPushAccepted, StkPushRequest, StkQueryResult } from './provider';
import { PushRefused } from './provider';

export interface DarajaConfig {
  /** https://sandbox.safaricom.co.ke or https://api.safaricom.co.ke */
  baseUrl: string;
  consumerKey: string;
  consumerSecret: string;
  /** The paybill or till number (BusinessShortCode). */
  shortCode: string;
  passKey: string;
  /** CustomerPayBillOnline (paybill) or CustomerBuyGoodsOnline (till). */
  transactionType: string;
  /** Per request. */
  timeoutMs: number;
}

/** Daraja's "still being processed" answer to an STK push query. */
const STILL_PROCESSING = '500.001.1001';

/** yyyyMMddHHmmss in Kenya time (UTC+3, no daylight saving), as Daraja wants it. */
export function darajaTimestamp(at: Date = new Date()): string {
  return new Date(at.getTime() + 3 * 3600_000).toISOString().replace(/[-:T]/g, '').slice(0, 14);
}

export function darajaPassword(shortCode: string, passKey: string, timestamp: string): string {
  return Buffer.from(shortCode + passKey + timestamp).toString('base64');
}

export class DarajaError extends Error {}

export class DarajaClient implements PaymentProvider {
  readonly name = 'daraja';
  private token?: { value: string; expiresAt: number };

  constructor(private readonly config: DarajaConfig) {}

  async stkPush(request: StkPushRequest): Promise<StkPushAccepted> {
    const timestamp = darajaTimestamp();
    const { status, body } = await this.call('/mpesa/stkpush/v1/processrequest', {
      BusinessShortCode: this.config.shortCode,
      Password: darajaPassword(this.config.shortCode, this.config.passKey, timestamp),
      Timestamp: timestamp,
      TransactionType: this.config.transactionType,
      Amount: request.amountKes,
      PartyA: request.phone,
      PartyB: this.config.shortCode,
      PhoneNumber: request.phone,
      CallBackURL: request.callbackUrl,
      AccountReference: request.accountReference.slice(0, 12),
      TransactionDesc: request.description.slice(0, 13),
    });
    if (status === 200 && String(body.ResponseCode) === '0' && typeof body.CheckoutRequestID === 'string') {
      return { merchantRequestId: String(body.MerchantRequestID ?? ''), checkoutRequestId: body.CheckoutRequestID };
    }
    // A 4xx, or a 200 that does not accept: the request itself is refused
    // (bad number, amount, short code). A 5xx may pass: try again later.
    if (status === 200 || (status >= 400 && status < 500)) {
      const code = Number.parseInt(String(body.ResponseCode ?? ''), 10);
      throw new PushRefused(Number.isInteger(code) ? code : null,
        String(body.ResponseDescription ?? body.errorMessage ?? `HTTP ${status}`) + (body.errorCode ? ` (${body.errorCode})` : ''));
    }
    throw new DarajaError(`Daraja STK push: HTTP ${status} ${body.errorCode ?? ''} ${body.errorMessage ?? ''}`.trim());
  }

  async stkQuery(checkoutRequestId: string): Promise<StkQueryResult> {
    const timestamp = darajaTimestamp();
    const { status, body } = await this.call('/mpesa/stkpushquery/v1/query', {
      BusinessShortCode: this.config.shortCode,
      Password: darajaPassword(this.config.shortCode, this.config.passKey, timestamp),
      Timestamp: timestamp,
      CheckoutRequestID: checkoutRequestId,
    });
    if (body.errorCode === STILL_PROCESSING) return { state: 'pending' };
    const resultCode = Number.parseInt(String(body.ResultCode ?? ''), 10);
    if (status === 200 && Number.isInteger(resultCode)) {
      return { state: 'settled', resultCode, resultDesc: String(body.ResultDesc ?? '') };
    }
    throw new DarajaError(`Daraja STK push query: HTTP ${status} ${body.errorCode ?? ''} ${body.errorMessage ?? ''}`.trim());
  }

  /** POSTs JSON with a bearer token; a token Daraja no longer accepts is renewed once. */
  private async call(path: string, payload: unknown): Promise<{ status: number; body: Record<string, any> }> {
    for (let renewed = false; ; renewed = true) {
      const res = await fetch(this.config.baseUrl + path, {
        method: 'POST',
        headers: { authorization: `Bearer ${await this.accessToken(renewed)}`, 'content-type': 'application/json' },
        body: JSON.stringify(payload),
        signal: AbortSignal.timeout(this.config.timeoutMs),
      });
      const body = await res.json().catch(() => ({}));
      if (res.status === 401 && !renewed) continue;
      return { status: res.status, body };
    }
  }

  private async accessToken(renew: boolean): Promise<string> {
    if (!renew && this.token && this.token.expiresAt > Date.now()) return this.token.value;
    const res = await fetch(`${this.config.baseUrl}/oauth/v1/generate?grant_type=client_credentials`, {
      headers: { authorization: `Basic ${Buffer.from(`${this.config.consumerKey}:${this.config.consumerSecret}`).toString('base64')}` },
      signal: AbortSignal.timeout(this.config.timeoutMs),
    });
    const body = (await res.json().catch(() => ({}))) as { access_token?: string; expires_in?: string | number };
    if (res.status !== 200 || !body.access_token) throw new DarajaError(`Daraja OAuth: HTTP ${res.status}`);
    // Renewed a minute before it expires.
    this.token = { value: body.access_token, expiresAt: Date.now() + (Number(body.expires_in ?? 3599) - 60) * 1000 };
    return this.token.value;
  }
}
