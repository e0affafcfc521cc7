/*
 * Every cell of the payment ↔ session and session ↔ video matrices, and the
 * session ↔ forms rule (D7), checked when the transaction commits (D5). Each
 * cell walks the entities to the states under test with plain UPDATEs, then
 * fires the commit-time checks (SET CONSTRAINTS ALL IMMEDIATE).
 */
import pg from 'pg';
import { attempt, checkNow, insertFlow, pool, rolledBack, walk, Flow } from '../helpers/db';
import { FORMS_COMPLETE_REQUIRED, PAYMENT_SESSION_SYNC, SESSION_VIDEO_SYNC, STATES } from '../helpers/reference';

let db: pg.Pool;
beforeAll(() => { db = pool(); });
afterAll(() => db.end());

/** A payment state the session state allows, and a video state it allows. */
const paymentFor = (session: string) => STATES.payment.find((p) => PAYMENT_SESSION_SYNC[p].includes(session))!;
const videoFor = (session: string) => SESSION_VIDEO_SYNC[session][0];

async function walkFlow(client: pg.ClientBase, flow: Flow, states: { session: string; payment: string; video: string }) {
  await walk(client, 'session', flow.sessionId, states.session);
  await walk(client, 'payment', flow.paymentId, states.payment);
  await walk(client, 'video', flow.videoId, states.video);
}

test('payment ↔ session: all 66 cells', async () => {
  let cells = 0;
  await rolledBack(db, async (client) => {
    for (const payment of STATES.payment) {
      for (const session of STATES.session) {
        await client.query('savepoint cell');
        const flow = await insertFlow(client);
        await walkFlow(client, flow, { session, payment, video: videoFor(session) });
        const err = await checkNow(client);
        const cell = `payment=${payment}, session=${session}`;
        if (PAYMENT_SESSION_SYNC[payment].includes(session)) {
          expect({ cell, err }).toEqual({ cell, err: null });
        } else {
          expect({ cell, code: err?.code, start: err?.message.split('. Allowed')[0], rule: err?.detail.rule }).toEqual({
            cell, code: 'SYNC_VIOLATION', start: `Payment-Session sync violation: ${cell}`, rule: 'payment_session',
          });
          const allowedSessions = STATES.session.filter((s) => PAYMENT_SESSION_SYNC[payment].includes(s));
          expect(err?.message).toContain(`session in [${allowedSessions.join(', ')}]`);
        }
        await client.query('rollback to savepoint cell');
        cells++;
      }
    }
  });
  expect(cells).toBe(66);
});

test('session ↔ video: all 55 cells', async () => {
  let cells = 0;
  await rolledBack(db, async (client) => {
    for (const session of STATES.session) {
      for (const video of STATES.video) {
        await client.query('savepoint cell');
        const flow = await insertFlow(client);
        await walkFlow(client, flow, { session, payment: paymentFor(session), video });
        const err = await checkNow(client);
        const cell = `session=${session}, video=${video}`;
        if (SESSION_VIDEO_SYNC[session].includes(video)) {
          expect({ cell, err }).toEqual({ cell, err: null });
        } else {
          expect({ cell, code: err?.code, start: err?.message.split('. Allowed')[0], rule: err?.detail.rule }).toEqual({
            cell, code: 'SYNC_VIOLATION', start: `Session-Video sync violation: ${cell}`, rule: 'session_video',
          });
        }
        await client.query('rollback to savepoint cell');
        cells++;
      }
    }
  });
  expect(cells).toBe(55);
});

test('session ↔ forms: a pending form added to each session state (D7)', async () => {
  await rolledBack(db, async (client) => {
    for (const session of STATES.session) {
      await client.query('savepoint cell');
      const flow = await insertFlow(client);
      await walkFlow(client, flow, { session, payment: paymentFor(session), video: videoFor(session) });
      await client.query(`insert into app_public.session_forms (session_id, form_key) values ($1, 'late_form')`, [flow.sessionId]);
      const err = await checkNow(client);
      if (FORMS_COMPLETE_REQUIRED.includes(session)) {
        expect({ session, code: err?.code, message: err?.message }).toEqual({
          session, code: 'SYNC_VIOLATION',
          message: `Session-Forms sync violation: session=${session} with incomplete forms [late_form]`,
        });
      } else {
        expect({ session, err }).toEqual({ session, err: null });
      }
      await client.query('rollback to savepoint cell');
    }
  });
});

test('entering ready with a form open is refused at once (FORMS_REQUIRED)', async () => {
  await rolledBack(db, async (client) => {
    for (const from of ['paid', 'forms_required']) {
      await client.query('savepoint cell');
      const flow = await insertFlow(client, ['consent', 'intake']);
      await walk(client, 'session', flow.sessionId, from);
      await client.query(`update app_public.session_forms set status = 'completed' where id = $1`, [flow.formIds[0]]);
      const err = await attempt(client, `update app_public.sessions set status = 'ready' where id = $1`, [flow.sessionId]);
      expect([err?.code, err?.detail.reason]).toEqual(['FORBIDDEN_TRANSITION', 'FORMS_REQUIRED']);
      expect(err?.message).toBe(
        `FORBIDDEN TRANSITION: session.${from} → session.ready. Reason: FORMS_REQUIRED. Incomplete forms: [intake]`);
      await client.query('rollback to savepoint cell');
    }
  });
});

test('a session without its payment or its call cannot commit', async () => {
  await rolledBack(db, async (client) => {
    await client.query('savepoint cell');
    const { rows } = await client.query(
      `insert into app_public.sessions (client_id, therapist_id, scheduled_at, duration_minutes, price_kes)
       values (gen_random_uuid(), gen_random_uuid(), now() + interval '1 day', 50, 2500) returning id`);
    const err = await checkNow(client);
    expect(err?.code).toBe('SYNC_VIOLATION');
    expect(err?.message).toBe(`Flow incomplete: session ${rows[0].id} has no payment`);
    await client.query('rollback to savepoint cell');
  });
});

test('one flow step may move its entities in either order inside a transaction', async () => {
  await rolledBack(db, async (client) => {
    for (const order of [['payment', 'session'], ['session', 'payment']] as const) {
      await client.query('savepoint cell');
      const flow = await insertFlow(client);
      await walk(client, 'session', flow.sessionId, 'approved');
      for (const entity of order) {
        if (entity === 'payment') await client.query(`update app_public.payments set status = 'initiated' where id = $1`, [flow.paymentId]);
        else await client.query(`update app_public.sessions set status = 'payment_pending' where id = $1`, [flow.sessionId]);
      }
      expect(await checkNow(client)).toBeNull();
      await client.query('rollback to savepoint cell');
    }
  });
});

test('a commit that breaks a cross-state rule is rolled back whole', async () => {
  const client = await db.connect();
  try {
    const flow = await (async () => {
      await client.query('begin');
      const f = await insertFlow(client);
      await client.query('commit');
      return f;
    })();
    await client.query('begin');
    await walk(client, 'session', flow.sessionId, 'approved');
    await client.query(`update app_public.payments set status = 'initiated' where id = $1`, [flow.paymentId]);
    // The session stays approved: payment=initiated does not allow it.
    await expect(client.query('commit')).rejects.toMatchObject({ message: expect.stringMatching(/^Payment-Session sync violation: payment=initiated, session=approved/) });
    const { rows } = await client.query(
      `select s.status as session, p.status as payment from app_public.sessions s join app_public.payments p on p.session_id = s.id where s.id = $1`,
      [flow.sessionId]);
    expect(rows[0]).toEqual({ session: 'requested', payment: 'pending' });
    const audit = await client.query('select count(*)::int as n from app_public.audit_entries where session_id = $1', [flow.sessionId]);
    expect(audit.rows[0].n).toBe(3);
  } finally {
    client.release();
  }
});

test('a form added to a ready session is caught at commit, whatever in-sync change comes after it', async () => {
  await rolledBack(db, async (client) => {
    const flow = await insertFlow(client);
    await walkFlow(client, flow, { session: 'ready', payment: 'confirmed', video: 'not_started' });
    expect(await checkNow(client)).toBeNull();
    await client.query('savepoint cell');
    await client.query(`insert into app_public.session_forms (session_id, form_key) values ($1, 'late_form')`, [flow.sessionId]);
    // This change leaves session, payment and call in sync; the open form still breaks D7.
    await client.query(`update app_public.video_calls set status = 'waiting_for_participants' where id = $1`, [flow.videoId]);
    const err = await checkNow(client);
    expect([err?.code, err?.detail.rule]).toEqual(['SYNC_VIOLATION', 'session_forms']);
    await client.query('rollback to savepoint cell');
  });
});

test('a later change that judges the session in sync does not hide an earlier break of another rule', async () => {
  await rolledBack(db, async (client) => {
    const flow = await insertFlow(client);
    await walkFlow(client, flow, { session: 'in_progress', payment: 'pending', video: 'not_started' });
    // session in_progress with payment pending breaks payment ↔ session; the call change below is in sync with the session.
    await client.query(`update app_public.video_calls set status = 'waiting_for_participants' where id = $1`, [flow.videoId]);
    const err = await checkNow(client);
    expect([err?.code, err?.detail.rule]).toEqual(['SYNC_VIOLATION', 'payment_session']);
  });
});
