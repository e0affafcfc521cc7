/*
 * The rule queries: what a viewer may do next, whether the call may be
 * joined, and the reference's validation functions, answered by the rules
 * tables.
 */
import type { App } from '../../server/app';
import { gql, startTestApp, user } from '../helpers/api';

let app: App;
beforeAll(async () => { app = await startTestApp(); });
afterAll(() => app.close());

test('availableTransitions and canJoinCall follow the session and the viewer', async () => {
  const client = user('client');
  const therapist = user('therapist');
  const admin = user('admin');
  const created = await gql(app, client, `
    mutation($client: UUID!, $therapist: UUID!) {
      requestSession(input: { clientId: $client, therapistId: $therapist, scheduledAt: "2099-01-01T10:00:00Z",
                              durationMinutes: 50, priceKes: 2500, payerPhone: "254708374149" }) { session { rowId } }
    }`, { client: client.id, therapist: therapist.id });
  const id = created.data!.requestSession.session.rowId;
  const next = async (who: typeof client) => {
    const res = await gql(app, who, `query($id: UUID!) { sessionByRowId(rowId: $id) {
      availableTransitions { nodes { step toState } } canJoinCall { allowed code message } } }`, { id });
    expect(res.errors).toBeUndefined();
    return res.data!.sessionByRowId;
  };
  expect((await next(client)).availableTransitions.nodes).toEqual([{ step: 'cancel_session', toState: 'cancelled' }]);
  expect((await next(therapist)).availableTransitions.nodes).toEqual([{ step: 'approve_session', toState: 'approved' }]);
  expect((await next(admin)).availableTransitions.nodes.map((n: any) => n.step)).toEqual(['approve_session', 'cancel_session']);
  expect((await next(client)).canJoinCall).toEqual({
    allowed: false, code: 'UNPAID_ACCESS', message: 'FORBIDDEN: Cannot join video call with pending payment (session=requested)' });

  await gql(app, therapist, 'mutation($id: UUID!) { approveSession(input: { sessionId: $id }) { clientMutationId } }', { id });
  expect((await next(client)).availableTransitions.nodes.map((n: any) => n.step)).toEqual(['cancel_session', 'initiate_payment']);
});

test('validateTransition answers as the triggers would', async () => {
  const res = await gql(app, user('client'), `{
    ok: validateTransition(entityType: "session", fromState: "paid", toState: "ready") { allowed code }
    forbidden: validateTransition(entityType: "session", fromState: "paid", toState: "in_progress") { allowed code reason message allowedStates }
  }`);
  expect(res.data).toEqual({
    ok: { allowed: true, code: null },
    forbidden: {
      allowed: false, code: 'FORBIDDEN_TRANSITION', reason: 'FORMS_REQUIRED',
      message: 'FORBIDDEN TRANSITION: session.paid → session.in_progress. Reason: FORMS_REQUIRED. Allowed: [forms_required, ready, cancelled]',
      allowedStates: ['forms_required', 'ready', 'cancelled'],
    },
  });
});

test('checkCrossStateSync answers as the commit-time check would, with the required actions', async () => {
  const res = await gql(app, user('client'), `{
    retry: checkCrossStateSync(paymentState: "failed", sessionState: "payment_pending") { valid violations requiredActions }
    broken: checkCrossStateSync(paymentState: "confirmed", sessionState: "cancelled", videoState: "active") { valid violations requiredActions }
  }`);
  expect(res.data!.retry).toEqual({ valid: true, violations: [], requiredActions: ['ALERT_CLIENT_RETRY'] });
  expect(res.data!.broken.valid).toBe(false);
  expect(res.data!.broken.violations).toEqual([
    expect.stringMatching(/^Payment-Session sync violation: payment=confirmed, session=cancelled/),
    expect.stringMatching(/^Session-Video sync violation: session=cancelled, video=active/),
  ]);
});
