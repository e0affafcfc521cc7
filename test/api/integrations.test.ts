/*
 * Integrations: the required actions as an outbox (claimed by one consumer
 * at a time, returned to the queue when a claim runs out, completed with a
 * result, every change audited), and webhooks delivered by graphile-worker
 * with retries, signed, every attempt recorded — against a local receiver
 * that fails, times out, then succeeds. On a database of its own (the
 * worker must not act on the other test files' data, and the outbox must
 * hold only this file's actions).
 */
import { createHmac, randomUUID } from 'node:crypto';
import { createServer, IncomingMessage, Server } from 'node:http';
import pg from 'pg';
import type { App } from '../../server/app';
import { gql, startTestApp, user } from '../helpers/api';
import { asDbError, requestSession } from '../helpers/db';
import { ownDatabase } from '../helpers/payments';

let app: App;
let db: pg.Pool;
let superuser: pg.Pool;

beforeAll(async () => {
  const own = await ownDatabase('flow_integrity_integrations_test');
  db = new pg.Pool({ connectionString: own.ownerUrl, max: 12 });
  superuser = new pg.Pool({ connectionString: own.superuserUrl, max: 12 });
  app = await startTestApp(
    { WORKER: 'on', WEBHOOK_TIMEOUT_MS: '300', WEBHOOK_RETRY_BASE_MS: '100', WEBHOOK_MAX_ATTEMPTS: '4', WEBHOOK_DISPATCH_POLL_MS: '1000' },
    { ownerUrl: own.ownerUrl },
  );
}, 60_000);
afterAll(async () => {
  await app.close();
  await db.end();
  await superuser.end();
});

/** A session whose payment failed: it raises ALERT_CLIENT_RETRY. Returns the session id. */
async function failedPayment(): Promise<string> {
  const s = { id: await requestSession(db) };
  await db.query('select app_public.approve_session($1)', [s.id]);
  await db.query('select app_public.initiate_payment($1)', [s.id]);
  await db.query(`select app_private.settle_payment_attempt((select id from app_public.payment_attempts where session_id = $1), 1032, 'cancelled', 'query')`, [s.id]);
  return s.id;
}

describe('required actions (outbox)', () => {
  const CLAIM = `mutation ($consumer: String, $max: Int, $lease: Int) {
    claimRequiredActions(input: { consumer: $consumer, maxActions: $max, leaseSeconds: $lease }) { requiredActions { rowId action status claimedBy sessionId } }
  }`;
  const COMPLETE = `mutation ($id: BigInt!, $consumer: String, $result: JSON) {
    completeRequiredAction(input: { actionId: $id, consumer: $consumer, result: $result }) { requiredAction { rowId status result } }
  }`;

  test('claimed by one consumer at a time, completed with a result, each change audited', async () => {
    const sessionId = await failedPayment();
    const integration = user('integration');
    const claimed = await gql(app, integration, CLAIM, { consumer: 'sms-1', max: 10, lease: 60 });
    expect(claimed.errors).toBeUndefined();
    const mine = claimed.data!.claimRequiredActions.requiredActions.filter((a: any) => a.sessionId === sessionId);
    expect(mine).toEqual([expect.objectContaining({ action: 'ALERT_CLIENT_RETRY', status: 'claimed', claimedBy: 'sms-1' })]);
    // Nobody else gets it meanwhile, nor may complete it.
    const second = await gql(app, integration, CLAIM, { consumer: 'sms-2', max: 10, lease: 60 });
    expect(second.data!.claimRequiredActions.requiredActions.filter((a: any) => a.sessionId === sessionId)).toEqual([]);
    const stolen = await gql(app, integration, COMPLETE, { id: mine[0].rowId, consumer: 'sms-2', result: {} });
    expect(stolen.errors![0].extensions).toMatchObject({ code: 'ACTION_NOT_CLAIMED' });
    const done = await gql(app, integration, COMPLETE, { id: mine[0].rowId, consumer: 'sms-1', result: { smsId: 'abc' } });
    expect(done.data!.completeRequiredAction.requiredAction).toEqual({ rowId: mine[0].rowId, status: 'completed', result: { smsId: 'abc' } });
    const again = await gql(app, integration, COMPLETE, { id: mine[0].rowId, consumer: 'sms-1', result: {} });
    expect(again.errors![0].extensions).toMatchObject({ code: 'ACTION_NOT_CLAIMED' });
    const audit = await db.query(
      `select old_value, new_value, step, actor, reason from app_public.audit_entries where entity_type = 'required_action' and session_id = $1 order by id`, [sessionId]);
    expect(audit.rows).toEqual([
      expect.objectContaining({ old_value: null, new_value: 'open' }),
      expect.objectContaining({ old_value: 'open', new_value: 'claimed', step: 'claim_required_actions', actor: `integration:${integration.id}`, reason: 'Claimed by sms-1 for 60 s.' }),
      expect.objectContaining({ old_value: 'claimed', new_value: 'completed', step: 'complete_required_action' }),
    ]);
  });

  test('the open actions are listed, for integrations as for admins, never for a client who does not own them', async () => {
    const sessionId = await failedPayment();
    const LIST = `query ($id: UUID!) { allRequiredActions(condition: { sessionId: $id, status: "open" }) { nodes { action status uid } } }`;
    for (const role of ['integration', 'admin'] as const) {
      const res = await gql(app, user(role), LIST, { id: sessionId });
      expect({ role, errors: res.errors, nodes: res.data?.allRequiredActions.nodes.map((n: any) => n.action) }).toEqual({ role, errors: undefined, nodes: ["ALERT_CLIENT_RETRY"] });
    }
    expect((await gql(app, user('client'), LIST, { id: sessionId })).data!.allRequiredActions.nodes).toEqual([]);
  });

  test('a claim not completed in time returns to the queue, for another consumer', async () => {
    const sessionId = await failedPayment();
    const integration = user('integration');
    const claimedBy = async (consumer: string, lease: number) =>
      (await gql(app, integration, CLAIM, { consumer, max: 100, lease })).data!.claimRequiredActions.requiredActions
        .filter((a: any) => a.sessionId === sessionId);
    expect(await claimedBy('slow', 1)).toHaveLength(1);
    expect(await claimedBy('fast', 60)).toHaveLength(0);
    await new Promise((r) => setTimeout(r, 1200));
    // The minute's sweep puts it back in the queue, before anyone claims again.
    await db.query(`select graphile_worker.add_job('outbox_sweep')`);
    const status = async () => (await db.query('select status from app_public.required_actions where session_id = $1', [sessionId])).rows[0].status;
    for (let i = 0; i < 50 && (await status()) !== 'open'; i++) await new Promise((r) => setTimeout(r, 100));
    expect(await status()).toBe('open');
    const retaken = await claimedBy('fast', 60);
    expect(retaken).toEqual([expect.objectContaining({ claimedBy: 'fast' })]);
    const late = await gql(app, integration, COMPLETE, { id: retaken[0].rowId, consumer: 'slow', result: {} });
    expect(late.errors![0].extensions).toMatchObject({ code: 'ACTION_NOT_CLAIMED' });
    const reasons = await db.query(
      `select old_value || '→' || new_value as change, reason from app_public.audit_entries where entity_type = 'required_action' and session_id = $1 order by id`, [sessionId]);
    expect(reasons.rows.map((r) => r.change)).toEqual([null, 'open→claimed', 'claimed→open', 'open→claimed']);
    expect(reasons.rows.filter((r) => r.change === 'claimed→open')).toEqual([{ change: 'claimed→open', reason: 'The claim expired without completion.' }]);
    const sweep = await db.query(`select actor from app_public.audit_entries where session_id = $1 and old_value = 'claimed' and new_value = 'open'`, [sessionId]);
    expect(sweep.rows).toEqual([{ actor: 'outbox-sweep' }]);
  });

  test('20 consumers claiming at once over real connections: every action claimed exactly once', async () => {
    const sessions = await Promise.all(Array.from({ length: 30 }, () => failedPayment()));
    const claims = await Promise.all(Array.from({ length: 20 }, async (_, i) => {
      const c = await superuser.connect();
      try {
        await c.query('begin');
        await c.query(`select set_config('role', 'flow_integration', true), set_config('jwt.claims.user_id', $1, true)`, [randomUUID()]);
        const { rows } = await c.query(`select id, session_id from app_public.claim_required_actions($1, 3, 60)`, [`consumer-${i}`]);
        await c.query('commit');
        return rows;
      } finally {
        c.release();
      }
    }));
    const claimed = claims.flat().filter((a) => sessions.includes(a.session_id)).map((a) => a.id);
    expect(new Set(claimed).size).toBe(claimed.length);
    expect(claimed.length).toBe(30);
  });

  test('only integrations and admins work the outbox; a DBA may not skip a state', async () => {
    for (const role of ['client', 'therapist', 'payment_provider'] as const) {
      const res = await gql(app, user(role), CLAIM, {});
      expect({ role, code: res.errors?.[0].extensions?.code }).toEqual({ role, code: 'NOT_AUTHORIZED' });
    }
    const sessionId = await failedPayment();
    const err = await db.query(`update app_public.required_actions set status = 'completed', completed_at = now() where session_id = $1`, [sessionId])
      .then(() => null, asDbError);
    expect(err).toMatchObject({ code: 'INVALID_STATE_TRANSITION', message: 'Invalid required_action transition: open → completed. Allowed: [claimed]' });
  });
});

describe('webhooks', () => {
  interface Received { body: string; headers: IncomingMessage['headers']; at: number }
  let receiver: Server;
  let receiverUrl: string;
  const received: Received[] = [];
  // What the receiver answers, request after request, by path (each test its own).
  const behaviours = new Map<string, Array<'fail' | 'hang' | 'ok'>>();

  beforeAll(async () => {
    receiver = createServer((req, res) => {
      const chunks: Buffer[] = [];
      req.on('data', (c) => chunks.push(c));
      req.on('end', () => {
        received.push({ body: Buffer.concat(chunks).toString(), headers: req.headers, at: Date.now() });
        const what = behaviours.get(req.url ?? '')?.shift() ?? 'ok';
        if (what === 'fail') res.writeHead(500).end('down');
        else if (what === 'ok') res.writeHead(204).end();
        // 'hang': no answer; the sender gives up after WEBHOOK_TIMEOUT_MS
      });
    });
    await new Promise<void>((resolve) => receiver.listen(0, '127.0.0.1', resolve));
    receiverUrl = `http://127.0.0.1:${(receiver.address() as { port: number }).port}`;
  });
  afterAll(async () => {
    receiver.closeAllConnections();
    await new Promise((resolve) => receiver.close(resolve));
  });

  const REGISTER = `mutation ($url: String!, $types: [String]!) {
    registerWebhook(input: { url: $url, eventTypes: $types }) { webhook { rowId url eventTypes secret } }
  }`;

  test('the receiver fails, times out, then succeeds: delivered on the third attempt, every attempt recorded, signed', async () => {
    const integration = user('integration');
    behaviours.set('/hooks/retry', ['fail', 'hang', 'ok']);
    const reg = await gql(app, integration, REGISTER, { url: `${receiverUrl}/hooks/retry`, types: ['payment.failed', 'required_action.*'] });
    expect(reg.errors).toBeUndefined();
    const hook = reg.data!.registerWebhook.webhook;
    expect(hook.secret).toMatch(/^whsec_[0-9a-f]{64}$/);
    const sessionId = await failedPayment(); // payment.failed, required_action.open (and others, not wanted)
    const deadline = Date.now() + 15_000;
    let deliveries: any[] = [];
    while (Date.now() < deadline) {
      deliveries = (await db.query(
        `select d.id, d.status, d.attempts, d.event ->> 'type' as type from app_private.webhook_deliveries d
         where d.webhook_id = $1 and d.event -> 'data' ->> 'sessionId' = $2 order by d.event_id`, [hook.rowId, sessionId])).rows;
      if (deliveries.length === 2 && deliveries.every((d) => d.status === 'delivered')) break;
      await new Promise((r) => setTimeout(r, 100));
    }
    expect(deliveries.map((d) => [d.type, d.status])).toEqual([['payment.failed', 'delivered'], ['required_action.open', 'delivered']]);
    const attempts = (await db.query(
      `select a.attempt_no, a.status_code, a.error, a.duration_ms from app_private.webhook_attempts a
       join app_private.webhook_deliveries d on d.id = a.delivery_id
       where d.webhook_id = $1 and d.event -> 'data' ->> 'sessionId' = $2 order by a.id`, [hook.rowId, sessionId])).rows;
    // The first request fails (500), the second gets no answer, then each is accepted (204): four attempts for
    // two events (in whichever order the two deliveries met the receiver).
    expect(attempts.map((a) => `${a.status_code} ${a.error?.replace(/\d+ ms/, 'N ms') ?? ''}`.trim()).sort()).toEqual([
      '204', '204', '500 HTTP 500', 'null no answer within N ms',
    ]);
    // Each request is signed: HMAC-SHA256 of "<timestamp>.<body>" with the secret.
    const mine = received.filter((x) => x.headers['flow-webhook-id'] === hook.rowId && JSON.parse(x.body).data.sessionId === sessionId);
    expect(mine.length).toBe(4);
    for (const r of mine) {
      const expected = `v1=${createHmac('sha256', hook.secret).update(`${r.headers['flow-timestamp']}.${r.body}`).digest('hex')}`;
      expect(r.headers['flow-signature']).toBe(expected);
      expect(Math.abs(Number(r.headers['flow-timestamp']) - Date.now() / 1000)).toBeLessThan(60);
      const event = JSON.parse(r.body);
      expect(event).toMatchObject({ id: expect.any(Number), type: expect.stringMatching(/^(payment\.failed|required_action\.open)$/), cursor: expect.any(String) });
      expect(event.data.sessionId).toBe(sessionId);
      expect(r.headers['flow-event-type']).toBe(event.type);
    }
    // Each event is one delivery, retried with its attempt number; the retries wait (100 ms, then 200 ms: backoff).
    const byEvent = new Map<string, Received[]>();
    for (const r of mine) byEvent.set(String(r.headers['flow-event-id']), [...(byEvent.get(String(r.headers['flow-event-id'])) ?? []), r]);
    const retried = [...byEvent.values()].find((rs) => rs.length > 1)!;
    expect(retried.map((x) => x.headers['flow-delivery-attempt'])).toEqual(['1', '2', '3'].slice(0, retried.length));
    expect(retried[1].at - retried[0].at).toBeGreaterThanOrEqual(100);
  });

  test('a receiver that never succeeds: failed after the last attempt', async () => {
    behaviours.set('/hooks/never', ['fail', 'fail', 'fail', 'fail', 'fail', 'fail']);
    const reg = await gql(app, user('admin'), REGISTER, { url: `${receiverUrl}/hooks/never`, types: ['session.cancelled'] });
    const hook = reg.data!.registerWebhook.webhook;
    const s = { id: await requestSession(db) };
    await db.query('select app_public.cancel_session($1)', [s.id]);
    const deadline = Date.now() + 15_000;
    let d: any;
    while (Date.now() < deadline) {
      d = (await db.query(`select status, attempts from app_private.webhook_deliveries where webhook_id = $1`, [hook.rowId])).rows[0];
      if (d?.status === 'failed') break;
      await new Promise((r) => setTimeout(r, 100));
    }
    expect(d).toEqual({ status: 'failed', attempts: 4 });
  });

  test('registering: integrations and admins only; a bad URL or event type is INVALID_ARGUMENT', async () => {
    const refused = await gql(app, user('client'), REGISTER, { url: `${receiverUrl}/x`, types: ['*'] });
    expect(refused.errors![0].extensions).toMatchObject({ code: 'NOT_AUTHORIZED' });
    const badUrl = await gql(app, user('integration'), REGISTER, { url: 'ftp://example.com/x', types: ['*'] });
    expect(badUrl.errors![0]).toMatchObject({ message: 'Invalid argument: url must be an http or https URL', extensions: { code: 'INVALID_ARGUMENT' } });
    const badType = await gql(app, user('integration'), REGISTER, { url: `${receiverUrl}/x`, types: ['Payment!'] });
    expect(badType.errors![0].extensions).toMatchObject({ code: 'INVALID_ARGUMENT' });
  });
});
