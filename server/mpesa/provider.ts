/*
 * What the server asks of a payment provider: push a payment prompt to the
 * payer's phone (M-Pesa STK push), and tell what became of one (STK push
 * query). Two implementations: the Daraja HTTP client (server/mpesa/daraja.ts)
 * and the local simulator (server/mpesa/simulator.ts). The outcome itself
 * arrives later, as a callback to our endpoint (server/mpesa/callback.ts).
 */
export interface StkPushRequest {
  attemptId: string;
  /** 2547XXXXXXXX (normalised by the database). */
  phone: string;
  /** Whole Kenyan shillings. */
  amountKes: number;
  /** Shown to the payer; at most 12 characters at Daraja. */
  accountReference: string;
  description: string;
  /** Where the provider posts the callback. */
  callbackUrl: string;
}

export interface StkPushAccepted {
  merchantRequestId: string;
  checkoutRequestId: string;
}

export type StkQueryResult =
  /** Still being processed (Daraja: HTTP 500 with errorCode 500.001.1001): wait, it has not failed. */
  | { state: 'pending' }
  | { state: 'settled'; resultCode: number; resultDesc: string };

/** The provider refused the push: the attempt failed (the payer may retry). */
export class PushRefused extends Error {
  constructor(readonly resultCode: number | null, readonly resultDesc: string) {
    super(`STK push refused: ${resultDesc}`);
  }
}

export interface PaymentProvider {
  readonly name: string;
  /** Resolves when the provider accepted the push; PushRefused when it refused it; any other error is transient. */
  stkPush(request: StkPushRequest): Promise<StkPushAccepted>;
  /** Any error is transient (the provider could not be asked). */
  stkQuery(checkoutRequestId: string): Promise<StkQueryResult>;
  close?(): Promise<void>;
}
