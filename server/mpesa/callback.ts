/*
 * The M-Pesa callback endpoint: POST /mpesa/callback/<secret>, with Daraja's
 * STK callback body as is. Callbacks carry no signature, so the URL carries a
 * secret segment (compared in constant time; anything else is 404). This
 * file only checks the body's shape and reads its fields; what the callback
 * does, exactly once, is decided by app_public.receive_payment_callback in
 * one transaction, as the payment provider's role.
 *   200 {"ResultCode":0,"ResultDesc":"Accepted"}  recorded (applied or not: see the README)
 *   409 {"ResultCode":1,...}                       refused: conflicts with an earlier callback
 *   400 / 405 / 413 / 415                          not a callback (400 also when the database
 *                                                  refuses a field: INVALID_ARGUMENT); nothing changed
 */
import { createHash, timingSafeEqual } from 'node:crypto';
import type { IncomingMessage, ServerResponse } from 'node:http';
import pg from 'pg';

export const CALLBACK_PATH = '/mpesa/callback/';

export interface CallbackFields {
  checkoutRequestId: string;
  merchantRequestId: string | null;
  resultCode: number;
  resultDesc: string | null;
  amount: number | null;
  mpesaReceipt: string | null;
  phone: string | null;
  transactionDate: string | null;
}

export class InvalidCallback extends Error {}

/** Reads Daraja's callback body; InvalidCallback names what is wrong. Metadata items are read by name. */
export function readCallback(body: unknown): CallbackFields {
  const callback = (body as any)?.Body?.stkCallback;
  if (!isObject(body) || !isObject((body as any).Body) || !isObject(callback)) throw new InvalidCallback('Body.stkCallback must be an object');
  const { CheckoutRequestID, MerchantRequestID, ResultCode, ResultDesc, CallbackMetadata } = callback as Record<string, unknown>;
  // (What a CheckoutRequestID may contain is the database's to say: INVALID_ARGUMENT.)
  if (typeof CheckoutRequestID !== 'string') throw new InvalidCallback('Body.stkCallback.CheckoutRequestID must be a string');
  if (MerchantRequestID !== undefined && typeof MerchantRequestID !== 'string') throw new InvalidCallback('Body.stkCallback.MerchantRequestID must be a string');
  if (typeof ResultCode !== 'number' || !Number.isSafeInteger(ResultCode)) throw new InvalidCallback('Body.stkCallback.ResultCode must be an integer');
  if (ResultDesc !== undefined && typeof ResultDesc !== 'string') throw new InvalidCallback('Body.stkCallback.ResultDesc must be a string');
  const items = new Map<string, unknown>();
  if (CallbackMetadata !== undefined) {
    const list = isObject(CallbackMetadata) ? (CallbackMetadata as any).Item : undefined;
    if (!Array.isArray(list)) throw new InvalidCallback('Body.stkCallback.CallbackMetadata.Item must be an array');
    for (const item of list) {
      if (!isObject(item) || typeof item.Name !== 'string') throw new InvalidCallback('each CallbackMetadata.Item must have a Name');
      if (item.Value !== undefined && item.Value !== null && typeof item.Value !== 'number' && typeof item.Value !== 'string') {
        throw new InvalidCallback(`CallbackMetadata item ${item.Name} must have a number or string Value`);
      }
      items.set(item.Name, item.Value ?? null);
    }
  }
  const amount = items.get('Amount');
  if (amount != null && (typeof amount !== 'number' || !Number.isFinite(amount))) throw new InvalidCallback('CallbackMetadata item Amount must be a number');
  const text = (name: string) => (items.get(name) == null ? null : String(items.get(name)));
  return {
    checkoutRequestId: CheckoutRequestID,
    merchantRequestId: (MerchantRequestID as string | undefined) ?? null,
    resultCode: ResultCode,
    resultDesc: (ResultDesc as string | undefined) ?? null,
    amount: (amount as number | null | undefined) ?? null,
    mpesaReceipt: text('MpesaReceiptNumber'),
    phone: text('PhoneNumber'),
    transactionDate: text('TransactionDate'),
  };
}

/** The database refused the callback's content (app_private.raise_error's JSON detail). */
function isInvalidArgument(err: unknown): err is Error {
  try {
    return JSON.parse((err as { detail?: string }).detail ?? '').code === 'INVALID_ARGUMENT';
  } catch {
    return false;
  }
}

function isObject(value: unknown): value is Record<string, any> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

export interface CallbackResult {
  outcome: string;
  acknowledged: boolean;
  duplicate: boolean;
  session_id: string | null;
  attempt_id: string | null;
  payment_status: string | null;
  session_status: string | null;
  message: string;
}

/** Hands a callback to the database, as the payment provider. */
export async function receiveCallback(db: pg.Pool, fields: CallbackFields, body: unknown): Promise<CallbackResult> {
  const { rows } = await db.query<CallbackResult>(
    'select (r).* from app_public.receive_payment_callback($1, $2, $3, $4, $5, $6, $7, $8, $9) r',
    [fields.checkoutRequestId, fields.resultCode, fields.resultDesc, fields.amount, fields.mpesaReceipt,
     fields.phone, fields.transactionDate, fields.merchantRequestId, JSON.stringify(body)],
  );
  return rows[0];
}

/**
 * A pool of connections that act as the payment provider: the API's
 * authenticator, switched to flow_payment_provider for the connection's
 * life, with "mpesa" as the audit log's actor.
 */
export function paymentProviderPool(authenticatorUrl: string, max = 8): pg.Pool {
  // Set when each connection starts: no extra round trip per callback.
  const pool = new pg.Pool({ connectionString: authenticatorUrl, max, options: '-c role=flow_payment_provider -c flow.actor=mpesa' });
  pool.on('error', () => {});
  return pool;
}

export interface CallbackEndpointOptions {
  db: pg.Pool;
  secret: string;
  maxBytes: number;
}

/**
 * Byte-identical deliveries that arrive while the first is still in the
 * database share its answer (M-Pesa resends the same bytes; several at once
 * would otherwise queue up on the session's lock only to read the ledger).
 * They are counted in the ledger afterwards, in one statement for all those
 * of the last 100 ms. Anything else the database judges: a repeat later, or
 * the same key with other content.
 */
function coalescing(db: pg.Pool) {
  const inFlight = new Map<string, { result: Promise<CallbackResult>; repeats: number }>();
  const uncounted = new Map<string, number>();
  let flushing: Promise<void> = Promise.resolve();
  let timer: NodeJS.Timeout | undefined;
  const flush = () => {
    timer = undefined;
    if (uncounted.size === 0) return flushing;
    const ids = [...uncounted.keys()];
    const repeats = [...uncounted.values()];
    uncounted.clear();
    flushing = flushing.then(() => db.query('select app_private.count_repeated_callbacks($1, $2)', [ids, repeats]))
      .then(() => {}, (err) => console.error(`M-Pesa callbacks: ${ids.length} repeats not counted: ${err.message}`));
    return flushing;
  };
  return {
    receive(text: string, fields: CallbackFields, body: unknown): Promise<CallbackResult> {
      const running = inFlight.get(text);
      if (running) {
        running.repeats++;
        return running.result.then((r) => ({ ...r, duplicate: true }));
      }
      const entry = { result: receiveCallback(db, fields, body), repeats: 0 };
      inFlight.set(text, entry);
      const done = () => {
        inFlight.delete(text);
        if (entry.repeats === 0) return;
        uncounted.set(fields.checkoutRequestId, (uncounted.get(fields.checkoutRequestId) ?? 0) + entry.repeats);
        timer ??= setTimeout(flush, 100);
      };
      entry.result.then(done, done);
      return entry.result;
    },
    /** Counts what is left to count. */
    async close(): Promise<void> {
      clearTimeout(timer);
      await flush();
    },
  };
}

/**
 * The request handler (handle: true when the request was for the callback
 * path, and is answered; false otherwise), and close, for shutting down.
 */
export function makeCallbackEndpoint({ db, secret, maxBytes }: CallbackEndpointOptions) {
  const expected = createHash('sha256').update(secret).digest();
  const callbacks = coalescing(db);
  const answer = (res: ServerResponse, status: number, body: Record<string, unknown>) =>
    res.writeHead(status, { 'content-type': 'application/json' }).end(JSON.stringify(body));

  const handle = (req: IncomingMessage, res: ServerResponse): boolean => {
    if (!req.url?.startsWith(CALLBACK_PATH)) return false;
    const segment = decodeURIComponent(req.url.slice(CALLBACK_PATH.length).split('?')[0]);
    if (!timingSafeEqual(createHash('sha256').update(segment).digest(), expected)) {
      answer(res, 404, { ResultCode: 1, ResultDesc: 'Not found' });
      req.resume();
      return true;
    }
    if (req.method !== 'POST') {
      res.setHeader('allow', 'POST');
      answer(res, 405, { ResultCode: 1, ResultDesc: 'Method not allowed: POST the STK callback' });
      req.resume();
      return true;
    }
    const type = req.headers['content-type'];
    if (type && !/^application\/json\b/i.test(type)) {
      answer(res, 415, { ResultCode: 1, ResultDesc: 'Unsupported content type: send application/json' });
      req.resume();
      return true;
    }
    const chunks: Buffer[] = [];
    let size = 0;
    let tooLarge = false;
    req.on('data', (chunk: Buffer) => {
      size += chunk.length;
      if (size > maxBytes) {
        if (!tooLarge) {
          res.setHeader('connection', 'close');
          answer(res, 413, { ResultCode: 1, ResultDesc: `Body too large: at most ${maxBytes} bytes` });
        }
        tooLarge = true;
        chunks.length = 0;
        return;
      }
      chunks.push(chunk);
    });
    req.on('end', () => {
      if (tooLarge) return;
      let text: string;
      let body: unknown;
      let fields: CallbackFields;
      try {
        text = Buffer.concat(chunks).toString('utf8');
        body = JSON.parse(text);
        fields = readCallback(body);
      } catch (err) {
        const why = err instanceof InvalidCallback ? err.message : 'the body is not JSON';
        answer(res, 400, { ResultCode: 1, ResultDesc: `Invalid callback: ${why}` });
        return;
      }
      callbacks.receive(text, fields, body).then(
        (result) => result.acknowledged
          ? answer(res, 200, { ResultCode: 0, ResultDesc: 'Accepted' })
          : answer(res, 409, { ResultCode: 1, ResultDesc: `Rejected (${result.outcome}): ${result.message}` }),
        (err) => {
          if (isInvalidArgument(err)) {
            answer(res, 400, { ResultCode: 1, ResultDesc: `Invalid callback: ${err.message}` });
            return;
          }
          console.error(`M-Pesa callback ${fields.checkoutRequestId}: ${err?.message ?? err}`);
          answer(res, 500, { ResultCode: 1, ResultDesc: 'Temporarily unavailable: deliver again later' });
        },
      );
    });
    return true;
  };
  return { handle, close: () => callbacks.close() };
}
