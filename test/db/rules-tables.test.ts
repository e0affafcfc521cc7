/*
 * The rules tables hold exactly the reference's rows plus decisions D1–D7,
 * checked against the independent copy in test/helpers/reference.ts.
 */
import pg from 'pg';
import { pool } from '../helpers/db';
import {
  CALL_ACCESS, FORBIDDEN, FORMS_COMPLETE_REQUIRED, INITIAL, Machine, PAYMENT_SESSION_SYNC,
  REQUIRED_ACTIONS, SESSION_VIDEO_SYNC, STATES, TERMINAL, TRANSITIONS,
} from '../helpers/reference';

let db: pg.Pool;
beforeAll(() => { db = pool(); });
afterAll(() => db.end());

const machines: Machine[] = ['payment', 'session', 'video', 'form'];
const pairs = (rows: Array<Record<string, string>>, a: string, b: string) => rows.map((r) => `${r[a]}→${r[b]}`).sort();
const expectedPairs = (table: Record<string, string[]>) =>
  Object.entries(table).flatMap(([from, tos]) => tos.map((to) => `${from}→${to}`)).sort();

describe.each(machines)('%s machine', (machine) => {
  test('states, in order, with the initial and terminal ones marked', async () => {
    const { rows } = await db.query(
      'select name, is_initial, is_terminal from app_hidden.states where entity_type = $1 order by position', [machine]);
    expect(rows.map((r) => r.name)).toEqual(STATES[machine]);
    expect(rows.filter((r) => r.is_initial).map((r) => r.name)).toEqual([INITIAL[machine]]);
    expect(rows.filter((r) => r.is_terminal).map((r) => r.name).sort()).toEqual([...TERMINAL[machine]].sort());
  });

  test('transitions, each state\'s in the reference\'s order', async () => {
    const { rows } = await db.query(
      'select from_state, to_state from app_hidden.transitions where entity_type = $1 order by from_state, position', [machine]);
    expect(pairs(rows, 'from_state', 'to_state')).toEqual(expectedPairs(TRANSITIONS[machine]));
    for (const [from, tos] of Object.entries(TRANSITIONS[machine])) {
      expect(rows.filter((r) => r.from_state === from).map((r) => r.to_state)).toEqual(tos);
    }
  });

  test('terminal states have no way out', () => {
    for (const state of TERMINAL[machine]) expect(TRANSITIONS[machine][state]).toEqual([]);
  });
});

test('forbidden transitions and their reason codes', async () => {
  const { rows } = await db.query('select entity_type, from_state, to_state, reason_code from app_hidden.forbidden_transitions');
  expect(rows.map((r) => `${r.entity_type}.${r.from_state}→${r.to_state}:${r.reason_code}`).sort())
    .toEqual(FORBIDDEN.map((f) => `${f.entity}.${f.from}→${f.to}:${f.reason}`).sort());
});

test('payment ↔ session matrix (with D1)', async () => {
  const { rows } = await db.query('select payment_state, session_state from app_hidden.payment_session_sync');
  expect(pairs(rows, 'payment_state', 'session_state')).toEqual(expectedPairs(PAYMENT_SESSION_SYNC));
});

test('required actions per payment state', async () => {
  const { rows } = await db.query('select payment_state, action from app_hidden.payment_state_actions');
  expect(pairs(rows, 'payment_state', 'action')).toEqual(expectedPairs(REQUIRED_ACTIONS));
});

test('session ↔ video matrix (with D2 and D4)', async () => {
  const { rows } = await db.query('select session_state, video_state from app_hidden.session_video_sync');
  expect(pairs(rows, 'session_state', 'video_state')).toEqual(expectedPairs(SESSION_VIDEO_SYNC));
});

test('can_join_call and the refusal code of every session state', async () => {
  const { rows } = await db.query('select session_state, can_join_call, refusal_code from app_hidden.session_call_access');
  expect(Object.fromEntries(rows.map((r) => [r.session_state, r.refusal_code]))).toEqual(CALL_ACCESS);
  for (const r of rows) expect(r.can_join_call).toBe(CALL_ACCESS[r.session_state] === null);
});

test('session states that need every form complete (D7)', async () => {
  const { rows } = await db.query(
    'select session_state from app_hidden.session_form_requirements where forms_complete_required order by session_state');
  expect(rows.map((r) => r.session_state)).toEqual([...FORMS_COMPLETE_REQUIRED].sort());
  const all = await db.query('select count(*)::int as n from app_hidden.session_form_requirements');
  expect(all.rows[0].n).toBe(STATES.session.length);
});

test('every rules row has a note, and every decision it names exists', async () => {
  const tables = [
    'app_public.payment_states', 'app_public.session_states', 'app_public.video_call_states', 'app_public.form_states',
    'app_hidden.transitions', 'app_hidden.forbidden_transitions', 'app_hidden.payment_session_sync',
    'app_hidden.payment_state_actions', 'app_hidden.session_video_sync', 'app_hidden.session_call_access',
    'app_hidden.session_form_requirements', 'app_hidden.entity_types',
  ];
  for (const table of tables) {
    const { rows } = await db.query(`select count(*)::int as n from ${table} where coalesce(note, '') = ''`);
    expect({ table, missingNotes: rows[0].n }).toEqual({ table, missingNotes: 0 });
  }
  const decisions = await db.query('select code from app_hidden.decisions order by code');
  expect(decisions.rows.map((r) => r.code)).toEqual(['D1', 'D2', 'D3', 'D4', 'D5', 'D6', 'D7']);
});

test('the rows added by decisions name them', async () => {
  const named = async (sql: string) => (await db.query(sql)).rows.map((r) => r.k).sort();
  expect(await named(`select payment_state || '→' || session_state as k from app_hidden.payment_session_sync where decision = 'D1'`))
    .toEqual(['confirmed→no_show_client']);
  expect(await named(`select session_state || '→' || video_state as k from app_hidden.session_video_sync where decision = 'D2'`))
    .toEqual(['in_progress→failed', 'ready→failed']);
  expect(await named(`select from_state || '→' || to_state as k from app_hidden.transitions where decision = 'D3'`))
    .toEqual(['failed→ended']);
  expect(await named(`select session_state || '→' || video_state as k from app_hidden.session_video_sync where decision = 'D4'`))
    .toEqual([
      'approved→not_started', 'forms_required→not_started', 'no_show_client→ended', 'no_show_client→not_started',
      'no_show_therapist→ended', 'no_show_therapist→not_started', 'paid→not_started', 'payment_pending→not_started',
      'requested→not_started',
    ]);
  expect(await named(`select entity_type || '.' || from_state as k from app_hidden.forbidden_transitions where decision is distinct from 'D6'`))
    .toEqual([]);
});

test('a rules row naming an unknown state, or forbidding an allowed transition, is refused', async () => {
  const client = await db.connect();
  try {
    await client.query('begin');
    await expect(client.query(
      `insert into app_hidden.transitions (entity_type, from_state, to_state, position, note) values ('session', 'ready', 'teleported', 9, 'x')`,
    )).rejects.toThrow(/unknown session state/);
    await client.query('rollback');
    await client.query('begin');
    await expect(client.query(
      `insert into app_hidden.forbidden_transitions (entity_type, from_state, to_state, reason_code, note) values ('session', 'ready', 'in_progress', 'PAYMENT_REQUIRED', 'x')`,
    )).rejects.toThrow(/cannot also be allowed/);
  } finally {
    await client.query('rollback');
    client.release();
  }
});
