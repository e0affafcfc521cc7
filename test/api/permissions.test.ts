/*
 * The permission matrix over HTTP: every mutation × every role × the user's
 * own session or someone else's. A step the role may not take answers
 * NOT_AUTHORIZED; someone else's session, for a step taken only on one's own,
 * NOT_FOUND; nothing is changed either way.
 */
import { randomUUID } from 'node:crypto';
import type { App } from '../../server/app';
import { AppRole } from '../../server/auth';
import { gql, startTestApp, user, User } from '../helpers/api';
import { insertFlow, pool } from '../helpers/db';
import { MAY, Role } from '../helpers/reference';

let app: App;
beforeAll(async () => { app = await startTestApp(); });
afterAll(() => app.close());

const MUTATION: Record<string, string> = {
  request_session: `mutation($client: UUID!, $therapist: UUID!) { requestSession(input: { clientId: $client, therapistId: $therapist,
    scheduledAt: "2099-01-01T10:00:00Z", durationMinutes: 50, priceKes: 2500, payerPhone: "254708374149" }) { clientMutationId } }`,
  approve_session: 'mutation($id: UUID!) { approveSession(input: { sessionId: $id }) { clientMutationId } }',
  initiate_payment: 'mutation($id: UUID!) { initiatePayment(input: { sessionId: $id }) { clientMutationId } }',
  record_payment_outcome: 'mutation($id: UUID!) { recordPaymentOutcome(input: { sessionId: $id, outcome: "confirmed" }) { clientMutationId } }',
  complete_form: 'mutation($form: UUID!) { completeForm(input: { formId: $form }) { clientMutationId } }',
  join_call: 'mutation($id: UUID!) { joinCall(input: { sessionId: $id }) { clientMutationId } }',
  leave_call: 'mutation($id: UUID!) { leaveCall(input: { sessionId: $id }) { clientMutationId } }',
  start_session: 'mutation($id: UUID!) { startSession(input: { sessionId: $id }) { clientMutationId } }',
  complete_session: 'mutation($id: UUID!) { completeSession(input: { sessionId: $id }) { clientMutationId } }',
  cancel_session: 'mutation($id: UUID!) { cancelSession(input: { sessionId: $id }) { clientMutationId } }',
  'mark_no_show:client': 'mutation($id: UUID!) { markNoShow(input: { sessionId: $id, party: "client" }) { clientMutationId } }',
  'mark_no_show:therapist': 'mutation($id: UUID!) { markNoShow(input: { sessionId: $id, party: "therapist" }) { clientMutationId } }',
  refund_payment: 'mutation($id: UUID!) { refundPayment(input: { sessionId: $id }) { clientMutationId } }',
  report_call_failure: 'mutation($id: UUID!) { reportCallFailure(input: { sessionId: $id }) { clientMutationId } }',
};

test('every mutation has a row in the matrix', () => {
  expect(Object.keys(MUTATION).sort()).toEqual(Object.keys(MAY).sort());
});

test.each(Object.keys(MAY))('%s: every role, own session and someone else\'s', async (step) => {
  // A fresh session, committed, in its initial state, with one form.
  const db = pool();
  const client = await db.connect();
  let flow;
  try {
    await client.query('begin');
    flow = await insertFlow(client, ['intake']);
    await client.query('commit');
  } finally {
    client.release();
  }
  const { rows } = await db.query('select client_id, therapist_id from app_public.sessions where id = $1', [flow.sessionId]);
  const owner = { client: rows[0].client_id as string, therapist: rows[0].therapist_id as string };
  const statusOf = async () => (await db.query(
    `select s.status || '/' || p.status || '/' || v.status as s from app_public.sessions s join app_public.payments p on p.session_id = s.id
     join app_public.video_calls v on v.session_id = s.id where s.id = $1`, [flow.sessionId])).rows[0].s;

  for (const role of ['client', 'therapist', 'admin', 'payment_provider', 'integration', 'anonymous'] as Role[]) {
    for (const own of [true, false]) {
      const who: User | null = role === 'anonymous' ? null
        : user(role as AppRole, role === 'client' || role === 'therapist' ? (own ? owner[role] : randomUUID()) : randomUUID());
      const before = await statusOf();
      const res = await gql(app, who, MUTATION[step], {
        id: flow.sessionId, form: flow.formIds[0], client: own ? owner.client : randomUUID(), therapist: owner.therapist,
      });
      const code = res.errors?.[0]?.extensions?.code ?? (res.errors ? 'error' : 'ok');
      const scope = MAY[step][role];
      const allowed = scope === 'any' || (scope === 'own' && own);
      const refusal = step === 'request_session' || scope !== 'own' ? 'NOT_AUTHORIZED' : 'NOT_FOUND';
      if (allowed) expect({ step, role, own, refused: ['NOT_AUTHORIZED', 'NOT_FOUND'].includes(code) }).toEqual({ step, role, own, refused: false });
      else {
        expect({ step, role, own, code }).toEqual({ step, role, own, code: refusal });
        expect({ step, role, own, state: await statusOf() }).toEqual({ step, role, own, state: before });
      }
    }
  }
  await db.end();
});
