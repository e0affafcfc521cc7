/*
 * A local HTTP server that speaks Daraja's format (OAuth token, STK push,
 * STK push query, and its error bodies), behind which the simulator decides
 * what happens and posts the callbacks. The Daraja client is tested against
 * it, never against the internet.
 */
import { createServer, IncomingMessage, Server, ServerResponse } from 'node:http';
import { randomBytes } from 'node:crypto';
import { darajaPassword } from '../../server/mpesa/daraja';
import { PushRefused } from '../../server/mpesa/provider';
import { MpesaSimulator } from '../../server/mpesa/simulator';

export const DARAJA_TEST = { consumerKey: 'test-key', consumerSecret: 'test-secret', shortCode: '174379', passKey: 'test-pass-key' };

export interface FakeDaraja {
  url: string;
  simulator: MpesaSimulator;
  /** Every request, as received: path and body. */
  requests: Array<{ path: string; body: any; authorization?: string }>;
  /** Makes the current access token invalid (Daraja answers 401 with it). */
  expireToken(): void;
  /** Answers the next n requests to the API with HTTP 503. */
  failNext(n: number): void;
  close(): Promise<void>;
}

export async function startFakeDaraja(simulator = new MpesaSimulator()): Promise<FakeDaraja> {
  let token = '';
  let failures = 0;
  const requests: FakeDaraja['requests'] = [];
  const send = (res: ServerResponse, status: number, body: unknown) =>
    res.writeHead(status, { 'content-type': 'application/json' }).end(JSON.stringify(body));
  const requestId = () => `${randomBytes(4).toString('hex')}-${Date.now()}`;

  const server: Server = createServer(async (req: IncomingMessage, res: ServerResponse) => {
    const chunks: Buffer[] = [];
    for await (const chunk of req) chunks.push(chunk as Buffer);
    const text = Buffer.concat(chunks).toString();
    const body = text ? JSON.parse(text) : undefined;
    const path = (req.url ?? '').split('?')[0];
    requests.push({ path, body, authorization: req.headers.authorization });

    if (path === '/oauth/v1/generate') {
      const basic = `Basic ${Buffer.from(`${DARAJA_TEST.consumerKey}:${DARAJA_TEST.consumerSecret}`).toString('base64')}`;
      if (req.headers.authorization !== basic) return send(res, 400, { errorCode: '400.008.01', errorMessage: 'Invalid Authentication passed' });
      token = randomBytes(12).toString('base64url');
      return send(res, 200, { access_token: token, expires_in: '3599' });
    }
    if (req.headers.authorization !== `Bearer ${token}` || !token) {
      return send(res, 401, { requestId: requestId(), errorCode: '404.001.03', errorMessage: 'Invalid Access Token' });
    }
    if (failures > 0) {
      failures--;
      return send(res, 503, { requestId: requestId(), errorCode: '503.001.01', errorMessage: 'Service Unavailable' });
    }
    if (body?.Password !== darajaPassword(DARAJA_TEST.shortCode, DARAJA_TEST.passKey, body?.Timestamp ?? '') || body?.BusinessShortCode !== DARAJA_TEST.shortCode) {
      return send(res, 400, { requestId: requestId(), errorCode: '400.002.02', errorMessage: 'Bad Request - Invalid Password' });
    }
    if (path === '/mpesa/stkpush/v1/processrequest') {
      try {
        const accepted = await simulator.stkPush({
          attemptId: '', phone: String(body.PhoneNumber), amountKes: Number(body.Amount),
          accountReference: body.AccountReference, description: body.TransactionDesc, callbackUrl: body.CallBackURL,
        });
        return send(res, 200, {
          MerchantRequestID: accepted.merchantRequestId, CheckoutRequestID: accepted.checkoutRequestId,
          ResponseCode: '0', ResponseDescription: 'Success. Request accepted for processing', CustomerMessage: 'Success. Request accepted for processing',
        });
      } catch (err) {
        if (err instanceof PushRefused) return send(res, 400, { requestId: requestId(), errorCode: '400.002.02', errorMessage: 'Bad Request - Invalid PhoneNumber' });
        throw err;
      }
    }
    if (path === '/mpesa/stkpushquery/v1/query') {
      const answer = await simulator.stkQuery(body.CheckoutRequestID).catch(() => null);
      if (!answer) return send(res, 503, { requestId: requestId(), errorCode: '503.001.01', errorMessage: 'Service Unavailable' });
      if (answer.state === 'pending') return send(res, 500, { requestId: requestId(), errorCode: '500.001.1001', errorMessage: 'The transaction is being processed' });
      return send(res, 200, {
        ResponseCode: '0', ResponseDescription: 'The service request has been accepted successsfully',
        MerchantRequestID: simulator.pushFor(body.CheckoutRequestID)!.accepted.merchantRequestId, CheckoutRequestID: body.CheckoutRequestID,
        ResultCode: String(answer.resultCode), ResultDesc: answer.resultDesc,
      });
    }
    send(res, 404, { errorCode: '404.001.01', errorMessage: 'Resource not found' });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const address = server.address() as { port: number };
  return {
    url: `http://127.0.0.1:${address.port}`,
    simulator,
    requests,
    expireToken: () => { token = randomBytes(12).toString('base64url'); },
    failNext: (n) => { failures = n; },
    async close() {
      await simulator.close();
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}
