/*
 * The flow-step functions: the canonical flow end to end, each step's
 * success, and each of its refusals, which must change nothing.
 */
import { randomUUID } from 'node:crypto';
import pg from 'pg';
import { asDbError, DbError, pool, requestSession, rolledBack, statuses } from '../helpers/db';

let db: pg.Pool;
beforeAll(() => { db = pool(); });
afterAll(() => db.end());

type Client = pg.ClientBase;
const call = async (client: Client, fn: string, ...args: unknown[]) => {
  const params = args.map((_, i) => `$${i + 1}`).join(', ');
  const { rows } = await client.query(`select status from app_public.${fn}(${params})`, args);
  return rows[0].status as string;
};
const formIds = async (client: Client, sessionId: string) =>
  (await client.query('select id from app_public.session_forms where session_id = $1 order by form_key', [sessionId])).rows.map((r) => r.id);

/** Everything a refusal must leave as it was: the flow's states and the audit log. */
async function snapshot(client: Client, sessionId: string) {
  const audit = await client.query('select count(*)::int as n from app_public.audit_entries where session_id = $1', [sessionId]);
  const actions = await client.query('select count(*)::int as n from app_public.required_actions where session_id = $1', [sessionId]);
  return { ...(await statuses(client, sessionId)), audit: audit.rows[0].n, actions: actions.rows[0].n };
}

/** Calls a step that must be refused; checks that nothing changed; returns the error. */
async function refused(client: Client, sessionId: string | null, fn: string, ...args: unknown[]): Promise<DbError> {
  const before = sessionId && (await snapshot(client, sessionId));
  await client.query('savepoint step');
  let error: DbError | null = null;
  try {
    await call(client, fn, ...args);
  } catch (err) {
    error = asDbError(err);
  }
  await client.query('rollback to savepoint step');
  if (!error) throw new Error(`${fn} was expected to be refused`);
  if (sessionId) expect(await snapshot(client, sessionId)).toEqual(before);
  return error;
}

/** Drives a new session through the flow steps to a given state. */
async function sessionIn(client: Client, state: string, formKeys: string[] = []): Promise<string> {
  const id = await requestSession(client, formKeys);
  const path: Record<string, Array<[string, ...unknown[]]>> = {
    requested: [],
    approved: [['approve_session']],
    payment_pending: [['approve_session'], ['initiate_payment']],
    payment_failed: [['approve_session'], ['initiate_payment'], ['record_payment_outcome', 'failed']],
    ready: [['approve_session'], ['initiate_payment'], ['record_payment_outcome', 'confirmed']],
    forms_required: [['approve_session'], ['initiate_payment'], ['record_payment_outcome', 'confirmed']],
    in_progress: [['approve_session'], ['initiate_payment'], ['record_payment_outcome', 'confirmed'], ['join_call'], ['start_session']],
    completed: [['approve_session'], ['initiate_payment'], ['record_payment_outcome', 'confirmed'], ['start_session'], ['complete_session']],
    cancelled: [['cancel_session']],
    no_show_client: [['approve_session'], ['initiate_payment'], ['record_payment_outcome', 'confirmed'], ['mark_no_show', 'client']],
  };
  for (const [fn, ...args] of path[state]) await call(client, fn, id, ...args);
  return id;
}

test('the canonical flow: request → approve → pay → forms → join → start → complete', async () => {
  await rolledBack(db, async (client) => {
    const id = await requestSession(client, ['intake', 'consent']);
    expect(await statuses(client, id)).toEqual({ session: 'requested', payment: 'pending', video: 'not_started', forms: ['pending', 'pending'] });
    expect(await call(client, 'approve_session', id)).toBe('approved');
    expect(await call(client, 'initiate_payment', id)).toBe('payment_pending');
    expect((await statuses(client, id)).payment).toBe('initiated');
    expect(await call(client, 'record_payment_outcome', id, 'confirmed')).toBe('forms_required');
    expect((await statuses(client, id)).payment).toBe('confirmed');
    const [consent, intake] = await formIds(client, id);
    expect(await call(client, 'complete_form', intake)).toBe('forms_required');
    expect(await call(client, 'complete_form', consent)).toBe('ready');
    expect(await call(client, 'join_call', id)).toBe('ready');
    expect((await statuses(client, id)).video).toBe('waiting_for_participants');
    expect(await call(client, 'start_session', id)).toBe('in_progress');
    expect((await statuses(client, id)).video).toBe('active');
    expect(await call(client, 'complete_session', id)).toBe('completed');
    expect(await statuses(client, id)).toEqual({ session: 'completed', payment: 'confirmed', video: 'ended', forms: ['completed', 'completed'] });
    const audit = await client.query(
      `select entity_type || ':' || coalesce(old_value, '∅') || '→' || new_value || '@' || step as row
       from app_public.audit_entries where session_id = $1 order by id`, [id]);
    expect(audit.rows.map((r) => r.row)).toEqual([
      'session:∅→requested@request_session', 'payment:∅→pending@request_session', 'video:∅→not_started@request_session',
      'form:∅→pending@request_session', 'form:∅→pending@request_session',
      'session:requested→approved@approve_session',
      'payment:pending→initiated@initiate_payment', 'session:approved→payment_pending@initiate_payment',
      'payment:initiated→confirmed@record_payment_outcome', 'session:payment_pending→paid@record_payment_outcome',
      'session:paid→forms_required@record_payment_outcome',
      'form:pending→completed@complete_form', 'form:pending→completed@complete_form', 'session:forms_required→ready@complete_form',
      'video:not_started→waiting_for_participants@join_call',
      'session:ready→in_progress@start_session', 'video:waiting_for_participants→active@start_session',
      'session:in_progress→completed@complete_session', 'video:active→ended@complete_session',
    ]);
  });
});

describe('request_session', () => {
  test.each([
    ['0712 345 678', '254712345678'], ['+254712345678', '254712345678'], ['254712345678', '254712345678'],
    ['712345678', '254712345678'], ['0110-123-456', '254110123456'], ['+254 (110) 123456', '254110123456'],
  ])('normalises the payer\'s number %s to %s', async (written, stored) => {
    await rolledBack(db, async (client) => {
      const session = await client.query(
        `select id from app_public.request_session($1, $2, now() + interval '1 day', 50, 2500, $3)`, [randomUUID(), randomUUID(), written]);
      const { rows } = await client.query('select payer_phone from app_public.payments where session_id = $1', [session.rows[0].id]);
      expect(rows[0].payer_phone).toBe(stored);
    });
  });

  test('creates the flow in its initial states, one form per distinct key', async () => {
    await rolledBack(db, async (client) => {
      const id = await requestSession(client, ['intake', 'consent', 'intake']);
      expect(await statuses(client, id)).toEqual({ session: 'requested', payment: 'pending', video: 'not_started', forms: ['pending', 'pending'] });
      const { rows } = await client.query('select amount_kes, currency from app_public.payments where session_id = $1', [id]);
      expect(rows[0]).toEqual({ amount_kes: 2500, currency: 'KES' });
    });
  });

  test.each([
    ['a time in the past', { scheduledAt: '2020-01-01T10:00:00Z' }, /^Invalid argument scheduled_at: .*Allowed: a time in the future$/],
    ['no price', { price: 0 }, /^Invalid argument: price_kes must be a positive whole number of shillings$/],
    ['a bad phone number', { phone: '0812345678' }, /^Invalid argument payer_phone: 0812345678\. Allowed: a Kenyan mobile number/],
    ['a landline', { phone: '+254 20 1234567' }, /^Invalid argument payer_phone: \+254 20 1234567\./],
    ['no phone number', { phone: null }, /^Invalid argument: payer_phone is required$/],
    ['a 5-minute session', { duration: 5 }, /^Invalid argument: duration_minutes must be between 15 and 240$/],
    ['a bad form key', { forms: ['Intake Form'] }, /^Invalid argument: form_key must be lowercase/],
    ['the client as therapist', { sameParty: true }, /^Invalid argument: the client and the therapist must be different people$/],
  ])('refuses %s with INVALID_ARGUMENT, creating nothing', async (_, input: Record<string, unknown>, message) => {
    await rolledBack(db, async (client) => {
      const before = await client.query('select (select count(*) from app_public.sessions) + (select count(*) from app_public.audit_entries) as n');
      const clientId = randomUUID();
      const err = await refused(client, null, 'request_session',
        clientId, input.sameParty ? clientId : randomUUID(),
        input.scheduledAt ?? new Date(Date.now() + 86400000).toISOString(),
        input.duration ?? 50, input.price ?? 2500, 'phone' in input ? input.phone : '254708374149', input.forms ?? []);
      expect(err.code).toBe('INVALID_ARGUMENT');
      expect(err.message).toMatch(message);
      const after = await client.query('select (select count(*) from app_public.sessions) + (select count(*) from app_public.audit_entries) as n');
      expect(after.rows[0].n).toBe(before.rows[0].n);
    });
  });
});

test('every session step refuses an unknown session with NOT_FOUND', async () => {
  await rolledBack(db, async (client) => {
    const ghost = randomUUID();
    for (const [fn, ...args] of [
      ['approve_session'], ['initiate_payment'], ['record_payment_outcome', 'confirmed'], ['join_call'], ['start_session'],
      ['complete_session'], ['cancel_session'], ['mark_no_show', 'client'], ['refund_payment'], ['report_call_failure'],
    ] as Array<[string, ...unknown[]]>) {
      const err = await refused(client, null, fn, ghost, ...args);
      expect({ fn, code: err.code, message: err.message }).toEqual({ fn, code: 'NOT_FOUND', message: `Session not found: ${ghost}` });
    }
    const err = await refused(client, null, 'complete_form', ghost);
    expect([err.code, err.message]).toEqual(['NOT_FOUND', `Form not found: ${ghost}`]);
  });
});

describe('approve_session', () => {
  test('approves a requested session; refuses a second approval and a cancelled session', async () => {
    await rolledBack(db, async (client) => {
      const id = await sessionIn(client, 'requested');
      expect(await call(client, 'approve_session', id)).toBe('approved');
      expect((await refused(client, id, 'approve_session', id)).message)
        .toBe('Invalid session transition: approved → approved. Allowed: [payment_pending, cancelled]');
      const cancelled = await sessionIn(client, 'cancelled');
      expect((await refused(client, cancelled, 'approve_session', cancelled)).message)
        .toBe('Invalid session transition: cancelled → approved. Allowed: []');
    });
  });
});

describe('initiate_payment', () => {
  test('refuses before approval and while a payment is under way', async () => {
    await rolledBack(db, async (client) => {
      const requested = await sessionIn(client, 'requested');
      expect((await refused(client, requested, 'initiate_payment', requested)).message)
        .toBe('Invalid session transition: requested → payment_pending. Allowed: [approved, cancelled]');
      const pending = await sessionIn(client, 'payment_pending');
      expect((await refused(client, pending, 'initiate_payment', pending)).message)
        .toBe('Invalid payment transition: initiated → initiated. Allowed: [confirmed, failed, cancelled]');
    });
  });

  test('after a failure it is the retry: payment initiated again, session still payment_pending', async () => {
    await rolledBack(db, async (client) => {
      const id = await sessionIn(client, 'payment_failed');
      expect(await statuses(client, id)).toMatchObject({ session: 'payment_pending', payment: 'failed' });
      expect(await call(client, 'initiate_payment', id)).toBe('payment_pending');
      expect((await statuses(client, id)).payment).toBe('initiated');
    });
  });
});

describe('record_payment_outcome', () => {
  test('confirmed without forms → ready; confirmed with forms open → forms_required', async () => {
    await rolledBack(db, async (client) => {
      const plain = await sessionIn(client, 'payment_pending');
      expect(await call(client, 'record_payment_outcome', plain, 'confirmed')).toBe('ready');
      const withForms = await requestSession(client, ['intake']);
      await call(client, 'approve_session', withForms);
      await call(client, 'initiate_payment', withForms);
      expect(await call(client, 'record_payment_outcome', withForms, 'confirmed')).toBe('forms_required');
    });
  });

  test('forms completed before the payment: confirmed → ready at once', async () => {
    await rolledBack(db, async (client) => {
      const id = await requestSession(client, ['intake']);
      const [intake] = await formIds(client, id);
      expect(await call(client, 'complete_form', intake)).toBe('requested');
      await call(client, 'approve_session', id);
      await call(client, 'initiate_payment', id);
      expect(await call(client, 'record_payment_outcome', id, 'confirmed')).toBe('ready');
    });
  });

  test('failed → payment failed and the ALERT_CLIENT_RETRY required action', async () => {
    await rolledBack(db, async (client) => {
      const id = await sessionIn(client, 'payment_pending');
      expect(await call(client, 'record_payment_outcome', id, 'failed')).toBe('payment_pending');
      const { rows } = await client.query('select action, entity_type from app_public.required_actions where session_id = $1', [id]);
      expect(rows).toEqual([{ action: 'ALERT_CLIENT_RETRY', entity_type: 'payment' }]);
    });
  });

  test('refuses an unknown outcome, and an outcome before the payment was initiated', async () => {
    await rolledBack(db, async (client) => {
      const pending = await sessionIn(client, 'payment_pending');
      const bad = await refused(client, pending, 'record_payment_outcome', pending, 'refunded');
      expect([bad.code, bad.message]).toEqual(['INVALID_ARGUMENT', 'Invalid argument outcome: refunded. Allowed: [confirmed, failed]']);
      const approved = await sessionIn(client, 'approved');
      expect((await refused(client, approved, 'record_payment_outcome', approved, 'confirmed')).message)
        .toBe('Invalid payment transition: pending → confirmed. Allowed: [initiated, cancelled]');
    });
  });
});

describe('complete_form', () => {
  test('the last form makes the session ready; a completed form cannot be completed again', async () => {
    await rolledBack(db, async (client) => {
      const id = await sessionIn(client, 'forms_required', ['consent', 'intake']);
      const [consent, intake] = await formIds(client, id);
      expect(await call(client, 'complete_form', consent)).toBe('forms_required');
      expect((await refused(client, id, 'complete_form', consent)).message)
        .toBe('Invalid form transition: completed → completed. Allowed: []');
      expect(await call(client, 'complete_form', intake)).toBe('ready');
    });
  });
});

describe('join_call', () => {
  test.each([
    ['requested', 'UNPAID_ACCESS', 'FORBIDDEN: Cannot join video call with pending payment (session=requested)'],
    ['approved', 'UNPAID_ACCESS', 'FORBIDDEN: Cannot join video call with pending payment (session=approved)'],
    ['payment_pending', 'UNPAID_ACCESS', 'FORBIDDEN: Cannot join video call with pending payment (session=payment_pending)'],
    ['forms_required', 'FORMS_INCOMPLETE', 'FORBIDDEN: Cannot join video call with incomplete forms (session=forms_required)'],
    ['completed', 'SESSION_CLOSED', 'FORBIDDEN: Cannot join video call of a closed session (session=completed)'],
    ['cancelled', 'SESSION_CLOSED', 'FORBIDDEN: Cannot join video call of a closed session (session=cancelled)'],
    ['no_show_client', 'SESSION_CLOSED', 'FORBIDDEN: Cannot join video call of a closed session (session=no_show_client)'],
  ])('is refused in %s with %s', async (state, code, message) => {
    await rolledBack(db, async (client) => {
      const id = await sessionIn(client, state, state === 'forms_required' ? ['intake'] : []);
      const err = await refused(client, id, 'join_call', id);
      expect([err.code, err.message]).toEqual([code, message]);
    });
  });

  test('in ready the call waits for participants; a second join changes nothing; after a failure joining retries', async () => {
    await rolledBack(db, async (client) => {
      const id = await sessionIn(client, 'ready');
      await call(client, 'join_call', id);
      expect((await statuses(client, id)).video).toBe('waiting_for_participants');
      await call(client, 'join_call', id);
      expect((await statuses(client, id)).video).toBe('waiting_for_participants');
      await call(client, 'report_call_failure', id);
      expect((await statuses(client, id)).video).toBe('failed');
      await call(client, 'join_call', id);
      expect((await statuses(client, id)).video).toBe('waiting_for_participants');
    });
  });
});

describe('start_session', () => {
  test('refuses an unpaid session (PAYMENT_REQUIRED) and a session with forms open', async () => {
    await rolledBack(db, async (client) => {
      const approved = await sessionIn(client, 'approved');
      const err = await refused(client, approved, 'start_session', approved);
      expect([err.code, err.detail.reason]).toEqual(['FORBIDDEN_TRANSITION', 'PAYMENT_REQUIRED']);
      const forms = await sessionIn(client, 'forms_required', ['intake']);
      expect((await refused(client, forms, 'start_session', forms)).message)
        .toBe('Invalid session transition: forms_required → in_progress. Allowed: [ready, cancelled]');
    });
  });

  test('starts a ready session whose call nobody joined yet: call active', async () => {
    await rolledBack(db, async (client) => {
      const id = await sessionIn(client, 'ready');
      expect(await call(client, 'start_session', id)).toBe('in_progress');
      expect((await statuses(client, id)).video).toBe('active');
    });
  });
});

describe('complete_session', () => {
  test('refuses a session not in progress; completes one whose call failed (D3)', async () => {
    await rolledBack(db, async (client) => {
      const ready = await sessionIn(client, 'ready');
      expect((await refused(client, ready, 'complete_session', ready)).message)
        .toBe('Invalid session transition: ready → completed. Allowed: [in_progress, no_show_client, no_show_therapist, cancelled]');
      const id = await sessionIn(client, 'in_progress');
      await call(client, 'report_call_failure', id);
      expect(await call(client, 'complete_session', id)).toBe('completed');
      expect((await statuses(client, id)).video).toBe('ended');
    });
  });
});

describe('cancel_session', () => {
  test.each([
    ['requested', { payment: 'cancelled', video: 'not_started' }],
    ['approved', { payment: 'cancelled', video: 'not_started' }],
    ['payment_pending', { payment: 'cancelled', video: 'not_started' }],
    ['payment_failed', { payment: 'cancelled', video: 'not_started' }],
    ['forms_required', { payment: 'refunded', video: 'not_started' }],
    ['ready', { payment: 'refunded', video: 'not_started' }],
    ['in_progress', { payment: 'refunded', video: 'ended' }],
  ])('from %s: the session is cancelled with %o', async (state, expected) => {
    await rolledBack(db, async (client) => {
      const id = await sessionIn(client, state, state === 'forms_required' ? ['intake'] : []);
      expect(await call(client, 'cancel_session', id, 'client changed plans')).toBe('cancelled');
      expect(await statuses(client, id)).toMatchObject(expected);
      const { rows } = await client.query(
        `select distinct reason from app_public.audit_entries where session_id = $1 and step = 'cancel_session'`, [id]);
      expect(rows).toEqual([{ reason: 'client changed plans' }]);
    });
  });

  test('a call that is waiting ends with the cancellation', async () => {
    await rolledBack(db, async (client) => {
      const id = await sessionIn(client, 'ready');
      await call(client, 'join_call', id);
      await call(client, 'cancel_session', id);
      expect(await statuses(client, id)).toMatchObject({ session: 'cancelled', payment: 'refunded', video: 'ended' });
    });
  });

  test('refuses a completed session', async () => {
    await rolledBack(db, async (client) => {
      const id = await sessionIn(client, 'completed');
      expect((await refused(client, id, 'cancel_session', id)).message)
        .toBe('Invalid session transition: completed → cancelled. Allowed: []');
    });
  });
});

describe('mark_no_show (D1)', () => {
  test('the client\'s keeps the payment; the therapist\'s refunds it; a waiting call ends', async () => {
    await rolledBack(db, async (client) => {
      const a = await sessionIn(client, 'ready');
      await call(client, 'join_call', a);
      expect(await call(client, 'mark_no_show', a, 'client')).toBe('no_show_client');
      expect(await statuses(client, a)).toMatchObject({ payment: 'confirmed', video: 'ended' });
      const b = await sessionIn(client, 'ready');
      expect(await call(client, 'mark_no_show', b, 'therapist')).toBe('no_show_therapist');
      expect(await statuses(client, b)).toMatchObject({ payment: 'refunded', video: 'not_started' });
    });
  });

  test('refuses an unknown party and a session that is not ready', async () => {
    await rolledBack(db, async (client) => {
      const ready = await sessionIn(client, 'ready');
      const bad = await refused(client, ready, 'mark_no_show', ready, 'visitor');
      expect([bad.code, bad.message]).toEqual(['INVALID_ARGUMENT', 'Invalid argument party: visitor. Allowed: [client, therapist]']);
      const started = await sessionIn(client, 'in_progress');
      expect((await refused(client, started, 'mark_no_show', started, 'client')).message)
        .toBe('Invalid session transition: in_progress → no_show_client. Allowed: [completed, cancelled]');
    });
  });
});

describe('refund_payment', () => {
  test('refunds a confirmed payment and cancels the open session with it', async () => {
    await rolledBack(db, async (client) => {
      const id = await sessionIn(client, 'in_progress');
      expect(await call(client, 'refund_payment', id, 'therapist fell ill')).toBe('cancelled');
      expect(await statuses(client, id)).toMatchObject({ payment: 'refunded', video: 'ended' });
    });
  });

  test('refuses a payment not confirmed, and a client no-show (the payment is kept, D1)', async () => {
    await rolledBack(db, async (client) => {
      const approved = await sessionIn(client, 'approved');
      expect((await refused(client, approved, 'refund_payment', approved)).message)
        .toBe('Invalid payment transition: pending → refunded. Allowed: [initiated, cancelled]');
      const noShow = await sessionIn(client, 'no_show_client');
      expect((await refused(client, noShow, 'refund_payment', noShow)).message)
        .toBe('Invalid session transition: no_show_client → cancelled. Allowed: []');
    });
  });
});

describe('report_call_failure (D2)', () => {
  test('a call may fail while ready, not before', async () => {
    await rolledBack(db, async (client) => {
      const ready = await sessionIn(client, 'ready');
      await call(client, 'join_call', ready);
      await call(client, 'report_call_failure', ready);
      expect((await statuses(client, ready)).video).toBe('failed');
      const requested = await sessionIn(client, 'requested');
      expect((await refused(client, requested, 'report_call_failure', requested)).message)
        .toBe('Invalid video transition: not_started → failed. Allowed: [waiting_for_participants]');
    });
  });
});
