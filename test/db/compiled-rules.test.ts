/*
 * The compiled rule functions (sql/15_compiled_rules.sql) answer exactly as
 * their tables do, for every combination of states, and follow the tables
 * when a rule changes.
 */
import pg from 'pg';
import { attempt, insertFlow, pool, rolledBack, walk } from '../helpers/db';
import { Machine, STATES } from '../helpers/reference';

let db: pg.Pool;
beforeAll(() => { db = pool(); });
afterAll(() => db.end());

const machines: Machine[] = ['payment', 'session', 'video', 'form'];

test('is_transition and is_initial_state agree with the tables for every pair of states', async () => {
  for (const machine of machines) {
    const { rows } = await db.query(
      `select f.name as from_state, t.name as to_state,
              app_private.is_transition($1, f.name, t.name) as compiled,
              exists (select 1 from app_hidden.transitions x
                      where x.entity_type = $1 and x.from_state = f.name and x.to_state = t.name) as tabled,
              app_private.is_initial_state($1, t.name) as compiled_initial, t.is_initial
       from app_hidden.states f join app_hidden.states t on t.entity_type = f.entity_type
       where f.entity_type = $1`, [machine]);
    expect(rows.length).toBe(STATES[machine].length ** 2);
    for (const r of rows) {
      expect({ machine, ...r, compiled: r.compiled }).toEqual({ machine, ...r, compiled: r.tabled });
      expect(r.compiled_initial).toBe(r.is_initial);
    }
  }
});

test('the sync, forms and actions functions agree with their tables for every state', async () => {
  const pairs = await db.query(
    `select p.name as payment, s.name as session,
            app_private.payment_session_in_sync(p.name, s.name) as compiled,
            exists (select 1 from app_hidden.payment_session_sync r where r.payment_state = p.name and r.session_state = s.name) as tabled
     from app_public.payment_states p, app_public.session_states s`);
  expect(pairs.rows.length).toBe(66);
  for (const r of pairs.rows) expect(r.compiled).toBe(r.tabled);

  const video = await db.query(
    `select s.name as session, v.name as video,
            app_private.session_video_in_sync(s.name, v.name) as compiled,
            exists (select 1 from app_hidden.session_video_sync r where r.session_state = s.name and r.video_state = v.name) as tabled
     from app_public.session_states s, app_public.video_call_states v`);
  expect(video.rows.length).toBe(55);
  for (const r of video.rows) expect(r.compiled).toBe(r.tabled);

  const forms = await db.query(
    `select app_private.forms_complete_required(r.session_state) as compiled, r.forms_complete_required as tabled
     from app_hidden.session_form_requirements r`);
  for (const r of forms.rows) expect(r.compiled).toBe(r.tabled);

  const actions = await db.query(
    `select p.name, app_private.payment_actions(p.name) as compiled,
            (select array_agg(a.action order by a.action) from app_hidden.payment_state_actions a where a.payment_state = p.name) as tabled
     from app_public.payment_states p`);
  for (const r of actions.rows) expect({ state: r.name, actions: r.compiled }).toEqual({ state: r.name, actions: r.tabled });
});

test('a rule changed in a transaction is enforced in that transaction, and the old one is back after a rollback', async () => {
  await rolledBack(db, async (client) => {
    const flow = await insertFlow(client);
    await walk(client, 'session', flow.sessionId, 'approved');
    await walk(client, 'payment', flow.paymentId, 'failed');
    const refuse = `update app_public.payments set status = 'refunded' where id = $1`;
    expect((await attempt(client, refuse, [flow.paymentId]))?.code).toBe('INVALID_STATE_TRANSITION');

    await client.query('savepoint rule');
    await client.query(
      `insert into app_hidden.transitions (entity_type, from_state, to_state, position, note)
       values ('payment', 'failed', 'refunded', 3, 'test: refund a failed payment')`);
    expect(await attempt(client, refuse, [flow.paymentId])).toBeNull();
    await client.query('rollback to savepoint rule');

    expect((await client.query(`select app_private.is_transition('payment', 'failed', 'refunded') as ok`)).rows[0].ok).toBe(false);
    expect((await attempt(client, refuse, [flow.paymentId]))?.code).toBe('INVALID_STATE_TRANSITION');
  });
});
