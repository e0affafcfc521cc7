/*
 * The API end to end, over real HTTP, as a frontend drives it: the canonical
 * flow, and the shape of its refusals.
 */
import type { App } from '../../server/app';
import { gql, GraphQLResponse, startTestApp, user } from '../helpers/api';

let app: App;
beforeAll(async () => { app = await startTestApp(); });
afterAll(() => app.close());

const SESSION = 'session { rowId status paymentBySessionId { status amountKes } videoCallBySessionId { status } }';
const step = (name: string, input: string) => `mutation($id: UUID!) { ${name}(input: { ${input} }) { ${SESSION} } }`;

function ok(res: GraphQLResponse, field: string) {
  expect({ status: res.status, errors: res.errors }).toEqual({ status: 200, errors: undefined });
  return res.data![field].session;
}

test('the canonical flow: request → approve → pay → forms → join → start → complete', async () => {
  const client = user('client');
  const therapist = user('therapist');
  const provider = user('payment_provider');
  const requested = await gql(app, client, `
    mutation($client: UUID!, $therapist: UUID!, $at: Datetime!) {
      requestSession(input: { clientId: $client, therapistId: $therapist, scheduledAt: $at, durationMinutes: 50,
                              priceKes: 2500, payerPhone: "254708374149", formKeys: ["intake"] }) { ${SESSION} }
    }`, { client: client.id, therapist: therapist.id, at: new Date(Date.now() + 86_400_000).toISOString() });
  const session = ok(requested, 'requestSession');
  expect(session).toMatchObject({ status: 'requested', paymentBySessionId: { status: 'pending', amountKes: 2500 }, videoCallBySessionId: { status: 'not_started' } });
  const id = session.rowId;

  expect(ok(await gql(app, therapist, step('approveSession', 'sessionId: $id'), { id }), 'approveSession').status).toBe('approved');
  expect(ok(await gql(app, client, step('initiatePayment', 'sessionId: $id'), { id }), 'initiatePayment'))
    .toMatchObject({ status: 'payment_pending', paymentBySessionId: { status: 'initiated' } });
  // The provider sees the session it confirms, and nothing under it.
  const confirmed = await gql(app, provider, `mutation($id: UUID!) { recordPaymentOutcome(input: { sessionId: $id, outcome: "confirmed" }) { session { status paymentBySessionId { status } } } }`, { id });
  expect(ok(confirmed, 'recordPaymentOutcome')).toEqual({ status: 'forms_required', paymentBySessionId: null });

  const forms = await gql(app, client, `query($id: UUID!) { sessionByRowId(rowId: $id) { sessionFormsBySessionId { nodes { rowId formKey status } } } }`, { id });
  const [intake] = forms.data!.sessionByRowId.sessionFormsBySessionId.nodes;
  expect(intake).toMatchObject({ formKey: 'intake', status: 'pending' });
  expect(ok(await gql(app, client, step('completeForm', 'formId: $id'), { id: intake.rowId }), 'completeForm').status).toBe('ready');

  expect(ok(await gql(app, client, step('joinCall', 'sessionId: $id'), { id }), 'joinCall').videoCallBySessionId.status).toBe('waiting_for_participants');
  // Both join; one leaves and comes back: who is in the call changes, the call's state does not.
  const participants = async () => (await gql(app, client, `query($id: UUID!) { sessionByRowId(rowId: $id) { videoCallBySessionId { status participants } } }`, { id }))
    .data!.sessionByRowId.videoCallBySessionId;
  await gql(app, therapist, step('joinCall', 'sessionId: $id'), { id });
  expect(await participants()).toEqual({ status: 'waiting_for_participants', participants: ['client', 'therapist'] });
  expect(ok(await gql(app, client, step('leaveCall', 'sessionId: $id'), { id }), 'leaveCall').videoCallBySessionId.status).toBe('waiting_for_participants');
  expect(await participants()).toEqual({ status: 'waiting_for_participants', participants: ['therapist'] });
  const again = await gql(app, client, step('leaveCall', 'sessionId: $id'), { id });
  expect(again.errors![0]).toMatchObject({ message: 'Invalid argument session_id: the client is not in this call', extensions: { code: 'INVALID_ARGUMENT' } });
  await gql(app, client, step('joinCall', 'sessionId: $id'), { id });
  expect(ok(await gql(app, therapist, step('startSession', 'sessionId: $id'), { id }), 'startSession'))
    .toMatchObject({ status: 'in_progress', videoCallBySessionId: { status: 'active' } });
  expect(ok(await gql(app, therapist, step('completeSession', 'sessionId: $id'), { id }), 'completeSession'))
    .toMatchObject({ status: 'completed', paymentBySessionId: { status: 'confirmed' }, videoCallBySessionId: { status: 'ended' } });

  // The audit log signs every change with the user and the request.
  const trail = await gql(app, client, `query($id: UUID!) { sessionByRowId(rowId: $id) { auditTrail { nodes { entityType newValue step actor requestId } } } }`, { id });
  const entries = trail.data!.sessionByRowId.auditTrail.nodes;
  expect(entries.length).toBe(17); // (joining and leaving change no state)
  expect(entries.find((e: any) => e.step === 'approve_session')).toMatchObject({ actor: `therapist:${therapist.id}`, newValue: 'approved' });
  expect(entries.every((e: any) => typeof e.requestId === 'string' && e.requestId.length > 0)).toBe(true);
});

describe('refusals come back as errors a program can act on', () => {
  let id: string;
  const client = user('client');
  const therapist = user('therapist');
  beforeAll(async () => {
    const res = await gql(app, client, `
      mutation($client: UUID!, $therapist: UUID!) {
        requestSession(input: { clientId: $client, therapistId: $therapist, scheduledAt: "2099-01-01T10:00:00Z",
                                durationMinutes: 50, priceKes: 2500, payerPhone: "254708374149" }) { session { rowId } }
      }`, { client: client.id, therapist: therapist.id });
    id = res.data!.requestSession.session.rowId;
  });

  test('an invalid transition: code, the reference\'s message, the allowed states', async () => {
    const res = await gql(app, client, step('initiatePayment', 'sessionId: $id'), { id });
    expect(res.errors![0]).toMatchObject({
      message: 'Invalid session transition: requested → payment_pending. Allowed: [approved, cancelled]',
      extensions: { code: 'INVALID_STATE_TRANSITION', allowed: ['approved', 'cancelled'] },
    });
  });

  test('joining before payment: UNPAID_ACCESS', async () => {
    const res = await gql(app, client, step('joinCall', 'sessionId: $id'), { id });
    expect(res.errors![0].extensions).toMatchObject({ code: 'UNPAID_ACCESS' });
  });

  test('a client may not confirm a payment: NOT_AUTHORIZED, and nothing changes', async () => {
    const res = await gql(app, client, step('recordPaymentOutcome', 'sessionId: $id, outcome: "confirmed"'), { id });
    expect(res.errors![0].extensions).toMatchObject({ code: 'NOT_AUTHORIZED' });
    const after = await gql(app, client, `query($id: UUID!) { sessionByRowId(rowId: $id) { status paymentBySessionId { status } } }`, { id });
    expect(after.data!.sessionByRowId).toEqual({ status: 'requested', paymentBySessionId: { status: 'pending' } });
  });

  test('someone else\'s session is not found, and not visible', async () => {
    const stranger = user('therapist');
    const res = await gql(app, stranger, step('approveSession', 'sessionId: $id'), { id });
    expect(res.errors![0]).toMatchObject({ message: `Session not found: ${id}`, extensions: { code: 'NOT_FOUND' } });
    const read = await gql(app, stranger, `query($id: UUID!) { sessionByRowId(rowId: $id) { status } }`, { id });
    expect(read.data!.sessionByRowId).toBeNull();
  });

  test('bad input: a malformed id, a missing argument', async () => {
    const malformed = await gql(app, client, step('approveSession', 'sessionId: $id'), { id: 'not-a-uuid' });
    expect(malformed.errors![0].message).toMatch(/UUID/);
    const missing = await gql(app, therapist, 'mutation { approveSession(input: {}) { clientMutationId } }');
    expect(missing.errors![0].message).toMatch(/sessionId/);
    expect(missing.status).toBe(400);
  });

  test('bad input: a value that is not in the enum', async () => {
    const res = await gql(app, client, '{ allSessions(orderBy: TELEPORTED) { totalCount } }');
    expect(res.status).toBe(400);
    expect(res.errors![0].message).toMatch(/Value "TELEPORTED" does not exist in "SessionOrderBy" enum/);
  });

  test('a bad token is refused, not taken as anonymous', async () => {
    const res = await gql(app, null, '{ allSessions { totalCount } }', {}, { authorization: 'Bearer not.a.token' });
    expect(res.status).toBe(401);
    expect(res.errors![0].extensions).toEqual({ code: 'INVALID_TOKEN' });
  });

  test('anything else is masked: no SQL, no row data', async () => {
    const res = await gql(app, null, '{ allSessions { totalCount } }');
    expect(res.errors![0].message).not.toMatch(/permission denied|sessions|select/i);
  });
});

test('/healthz answers when the database does', async () => {
  const res = await fetch(`${app.url}/healthz`);
  expect([res.status, await res.json()]).toEqual([200, { status: 'ok' }]);
});
