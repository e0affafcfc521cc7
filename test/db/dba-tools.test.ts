/*
 * The DBA's tools: the integrity view (empty on a healthy database, listing
 * what triggers-off loading or a changed rule broke) and explain_entity.
 */
import { randomUUID } from 'node:crypto';
import pg from 'pg';
import { pool, rejection, requestSession, rolledBack } from '../helpers/db';

let owner: pg.Pool;
let superuser: pg.Pool;
beforeAll(() => { owner = pool('owner'); superuser = pool('superuser'); });
afterAll(async () => { await owner.end(); await superuser.end(); });

const violations = async (client: pg.ClientBase, ids: string[]) =>
  (await client.query(
    'select session_id, rule, message from app_hidden.integrity_violations where session_id = any($1) order by session_id, rule', [ids],
  )).rows;

describe('integrity_violations', () => {
  test('is empty on a healthy database', async () => {
    await rolledBack(owner, async (client) => {
      const id = await requestSession(client, ['intake']);
      await client.query('select app_public.approve_session($1)', [id]);
      const { rows } = await client.query('select * from app_hidden.integrity_violations');
      expect(rows).toEqual([]);
    });
  });

  test('lists what was loaded with every trigger off (session_replication_role = replica)', async () => {
    await rolledBack(superuser, async (client) => {
      const [broken, orphanSession, strange] = [randomUUID(), randomUUID(), randomUUID()];
      await client.query('set local session_replication_role = replica');
      await client.query(
        `insert into app_public.sessions (id, client_id, therapist_id, scheduled_at, duration_minutes, price_kes, status) values
           ($1, gen_random_uuid(), gen_random_uuid(), now(), 50, 2500, 'ready'),
           ($2, gen_random_uuid(), gen_random_uuid(), now(), 50, 2500, 'teleported')`, [broken, strange]);
      await client.query(
        `insert into app_public.payments (session_id, amount_kes, payer_phone, status) values
           ($1, 2500, '254708374149', 'pending'), ($2, 2500, '254708374149', 'confirmed')`, [broken, orphanSession]);
      await client.query(`insert into app_public.video_calls (session_id, status) values ($1, 'active')`, [broken]);
      await client.query(`insert into app_public.session_forms (session_id, form_key) values ($1, 'intake')`, [broken]);
      await client.query('set local session_replication_role = origin');

      expect(await violations(client, [broken, orphanSession, strange])).toEqual([
        { session_id: broken, rule: 'payment_session', message: expect.stringMatching(/^Payment-Session sync violation: payment=pending, session=ready\./) },
        { session_id: broken, rule: 'session_forms', message: 'Session-Forms sync violation: session=ready with incomplete forms [intake]' },
        { session_id: broken, rule: 'session_video', message: expect.stringMatching(/^Session-Video sync violation: session=ready, video=active\./) },
        { session_id: orphanSession, rule: 'orphan_payment', message: expect.stringMatching(/^payment .* belongs to a session that does not exist/) },
        { session_id: strange, rule: 'payment_missing', message: `Flow incomplete: session ${strange} has no payment` },
        { session_id: strange, rule: 'unknown_state', message: `session ${strange} has status teleported, which is no session state` },
        { session_id: strange, rule: 'video_missing', message: `Flow incomplete: session ${strange} has no video call` },
      ].sort((a, b) => (a.session_id + a.rule).localeCompare(b.session_id + b.rule)));
    });
  });

  test('lists sessions that a rule changed later no longer allows', async () => {
    await rolledBack(owner, async (client) => {
      const id = await requestSession(client);
      await client.query('select app_public.approve_session($1)', [id]);
      await client.query(`delete from app_hidden.payment_session_sync where payment_state = 'pending' and session_state = 'approved'`);
      expect(await violations(client, [id])).toEqual([
        { session_id: id, rule: 'payment_session', message: expect.stringMatching(/^Payment-Session sync violation: payment=pending, session=approved\./) },
      ]);
    });
  });
});

describe('explain_entity', () => {
  test('says, for each state, whether the entity may go there, why not, and what must move with it', async () => {
    await rolledBack(owner, async (client) => {
      const id = await requestSession(client);
      for (const step of ['approve_session', 'initiate_payment']) await client.query(`select app_public.${step}($1)`, [id]);
      await client.query(`select app_public.record_payment_outcome($1, 'confirmed')`, [id]);
      const { rows } = await client.query(
        `select current_state, next_state, allowed, code, reason, message, also_requires
         from app_hidden.explain_entity('session', $1)`, [id]);
      const byState = Object.fromEntries(rows.map((r) => [r.next_state, r]));
      expect(rows.map((r) => r.current_state)).toEqual(Array(10).fill('ready'));
      expect(byState.in_progress).toMatchObject({
        allowed: true, code: null, also_requires: 'video not_started → one of [waiting_for_participants]' });
      expect(byState.cancelled).toMatchObject({ allowed: true, also_requires: 'payment confirmed → one of [refunded]' });
      expect(byState.no_show_client).toMatchObject({ allowed: true, also_requires: null });
      expect(byState.requested).toMatchObject({
        allowed: false, code: 'INVALID_STATE_TRANSITION',
        message: 'Invalid session transition: ready → requested. Allowed: [in_progress, no_show_client, no_show_therapist, cancelled]' });

      const payment = await client.query('select id from app_public.payments where session_id = $1', [id]);
      const paymentRows = (await client.query(
        `select next_state, allowed, code, reason, also_requires from app_hidden.explain_entity('payment', $1)`, [payment.rows[0].id])).rows;
      expect(paymentRows.find((r) => r.next_state === 'pending')).toMatchObject({
        allowed: false, code: 'FORBIDDEN_TRANSITION', reason: 'RETROACTIVE_CHANGE' });
      expect(paymentRows.find((r) => r.next_state === 'refunded')).toMatchObject({
        allowed: true, also_requires: 'session ready → one of [cancelled, no_show_therapist]' });
    });
  });

  test('a form still open blocks ready with FORMS_REQUIRED', async () => {
    await rolledBack(owner, async (client) => {
      const id = await requestSession(client, ['intake']);
      for (const step of ['approve_session', 'initiate_payment']) await client.query(`select app_public.${step}($1)`, [id]);
      await client.query(`select app_public.record_payment_outcome($1, 'confirmed')`, [id]);
      const { rows } = await client.query(
        `select allowed, code, reason, message from app_hidden.explain_entity('session', $1) where next_state = 'ready'`, [id]);
      expect(rows[0]).toEqual({
        allowed: false, code: 'FORBIDDEN_TRANSITION', reason: 'FORMS_REQUIRED',
        message: 'FORBIDDEN TRANSITION: session.forms_required → session.ready. Reason: FORMS_REQUIRED. Incomplete forms: [intake]' });
    });
  });

  test('refuses an unknown entity type or id', async () => {
    await rolledBack(owner, async (client) => {
      await client.query('savepoint s');
      const type = await rejection(client.query(`select * from app_hidden.explain_entity('invoice', gen_random_uuid())`));
      await client.query('rollback to savepoint s');
      expect([type.code, type.message]).toEqual(['INVALID_ARGUMENT', 'Invalid argument entity_type: invoice. Allowed: [payment, session, video, form]']);
      const ghost = randomUUID();
      const missing = await rejection(client.query(`select * from app_hidden.explain_entity('video', $1)`, [ghost]));
      expect([missing.code, missing.message]).toEqual(['NOT_FOUND', `Video not found: ${ghost}`]);
    });
  });
});
