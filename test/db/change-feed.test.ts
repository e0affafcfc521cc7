/*
 * The change feed (app_public.change_feed): commit order, never a skipped
 * change — proved with two transactions that commit in the opposite order of
 * their audit ids — pages, cursors, and each viewer's own changes only.
 */
import { randomUUID } from 'node:crypto';
import pg from 'pg';
import { asDbError, pool, requestSession } from '../helpers/db';

let db: pg.Pool;
beforeAll(() => { db = pool('superuser', 6); });
afterAll(() => db.end());

interface Page { events: Array<{ id: string; cursor: string; event_type: string; session_id: string }>; cursor: string; has_more: boolean }

async function page(after: string | null, sessionId: string | null, max = 100, client: pg.ClientBase | pg.Pool = db): Promise<Page> {
  const { rows } = await client.query('select to_json(f) as p from app_public.change_feed($1, $2, $3) f', [after, max, sessionId]);
  return rows[0].p;
}

/** Every event after `after`, page by page. */
async function readAll(after: string | null, sessionId: string | null, max = 100): Promise<{ events: Page['events']; cursor: string | null }> {
  const events: Page['events'] = [];
  let cursor = after;
  for (;;) {
    const p = await page(cursor, sessionId, max);
    events.push(...p.events);
    cursor = p.cursor;
    if (!p.has_more) return { events, cursor };
  }
}

async function newSession(): Promise<string> {
  const c = await db.connect();
  try { return await requestSession(c); } finally { c.release(); }
}

test('a transaction that commits after a later one is not skipped (a bigserial cursor would skip it)', async () => {
  const [first, second] = [await newSession(), await newSession()];
  const sessions = [first, second];
  // The feed of both sessions, read to the end: the reader's cursor.
  const start = (await readAll(null, null)).cursor;
  const t1 = await db.connect();
  const t2 = await db.connect();
  try {
    await t1.query('begin');
    await t1.query('select app_public.approve_session($1)', [first]);        // takes the lower audit id…
    await t2.query('begin');
    await t2.query('select app_public.approve_session($1)', [second]);       // …this one the higher
    await t2.query('commit');                                                   // but commits first
    const ids = async (s: string) => (await db.query(`select id from app_public.audit_entries where session_id = $1 and new_value = 'approved'`, [s])).rows[0]?.id;
    const read1 = await readAll(start, null, 1000);
    const mine1 = read1.events.filter((e) => sessions.includes(e.session_id));
    expect(mine1.map((e) => [e.session_id, e.event_type])).toEqual([[second, 'session.approved']]);
    await t1.query('commit');
    const [lowId, highId] = [await ids(first), await ids(second)];
    expect(Number(lowId)).toBeLessThan(Number(highId));
    // A reader that went on from the highest id it saw would never see lowId:
    const byId = await db.query('select count(*)::int as n from app_public.audit_entries where id > $1 and id = $2', [highId, lowId]);
    expect(byId.rows[0].n).toBe(0);
    // The feed, from the cursor it gave:
    const read2 = await readAll(read1.cursor, null, 1000);
    const mine2 = read2.events.filter((e) => sessions.includes(e.session_id));
    expect(mine2.map((e) => [e.session_id, e.event_type, String(e.id)])).toEqual([[first, 'session.approved', String(lowId)]]);
  } finally {
    await t1.query('rollback').catch(() => {});
    await t2.query('rollback').catch(() => {});
    t1.release();
    t2.release();
  }
});

test('pages of any size give every event once, in order; the cursor moves on even when a page is empty', async () => {
  const id = await newSession();
  for (const step of ['approve_session', 'initiate_payment']) await db.query(`select app_public.${step}($1)`, [id]);
  await db.query(`select app_public.record_payment_outcome($1, 'failed')`, [id]);
  await db.query('select app_public.initiate_payment($1)', [id]);
  const all = (await readAll(null, id, 1000)).events;
  expect(all.map((e) => e.event_type)).toEqual([
    'session.requested', 'payment.pending', 'video.not_started', 'session.approved', 'payment.initiated', 'session.payment_pending',
    'payment.failed', 'required_action.open', 'payment.initiated',
  ]);
  for (const size of [1, 2, 4]) {
    const paged = await readAll(null, id, size);
    expect({ size, ids: paged.events.map((e) => e.id) }).toEqual({ size, ids: all.map((e) => e.id) });
  }
  // Resuming from any event's own cursor gives exactly what follows it.
  for (let i = 0; i < all.length; i++) {
    expect((await readAll(all[i].cursor, id)).events.map((e) => e.id)).toEqual(all.slice(i + 1).map((e) => e.id));
  }
  const end = (await readAll(null, id)).cursor;
  const empty = await page(end, id);
  expect(empty).toMatchObject({ events: [], has_more: false });
  expect(empty.cursor).toMatch(/^v1:/);
  await db.query(`select app_public.cancel_session($1)`, [id]);
  expect((await readAll(empty.cursor, id)).events.map((e) => e.event_type)).toEqual(['session.cancelled', 'payment.cancelled']);
});

test('two changes of one session come in commit order, even in one window', async () => {
  const id = await newSession();
  const start = (await readAll(null, id)).cursor;
  const [a, b] = [await db.connect(), await db.connect()];
  try {
    await a.query('begin');
    await a.query('select 1'); // a takes its snapshot and xid order first…
    await a.query(`select txid_current()`);
    await b.query('begin');
    await b.query('select app_public.approve_session($1)', [id]); // …but b changes the session first
    const aWaits = a.query('select app_public.cancel_session($1)', [id]); // waits for b's lock
    await b.query('commit');
    await aWaits;
    await a.query('commit');
  } finally {
    a.release();
    b.release();
  }
  expect((await readAll(start, id)).events.map((e) => e.event_type)).toEqual(['session.approved', 'session.cancelled', 'payment.cancelled']);
});

test('each viewer reads the changes of the sessions they see; the payment provider none, anonymous is refused', async () => {
  const clientId = randomUUID();
  const c = await db.connect();
  try {
    const { rows: [s] } = await c.query(
      `select id from app_public.request_session($1, $2, now() + interval '1 day', 50, 2500, '254708374149')`, [clientId, randomUUID()]);
    const other = await requestSession(c);
    await c.query('begin');
    // Whether the role sees any change of the session.
    const sees = async (role: string, user: string | null, sessionId: string) => {
      await c.query(`select set_config('role', $1, true), set_config('jwt.claims.user_id', $2, true)`, [`flow_${role}`, user ?? '']);
      return (await page(null, sessionId, 10, c)).events.length > 0;
    };
    expect(await sees('client', clientId, s.id)).toBe(true);
    expect(await sees('client', clientId, other)).toBe(false);
    const unfiltered = await page(null, null, 1000, c); // (still the client)
    expect(new Set(unfiltered.events.map((e) => e.session_id))).toEqual(new Set([s.id]));
    expect(await sees('integration', randomUUID(), other)).toBe(true);
    expect(await sees('admin', randomUUID(), other)).toBe(true);
    expect(await sees('therapist', randomUUID(), other)).toBe(false);
    expect(await sees('payment_provider', randomUUID(), other)).toBe(false);
    // Anonymous requests read nothing at all: refused.
    await c.query('savepoint anonymous');
    expect((await sees('anonymous', null, other).then(() => null, asDbError))?.sqlstate).toBe('42501');
    await c.query('rollback to savepoint anonymous');
    await c.query('rollback');
  } finally {
    c.release();
  }
});

test('a cursor the feed did not give is INVALID_CURSOR', async () => {
  for (const bad of ['garbage', 'v1:10:5:/ /0', 'v1:10:20:30/10:20:/x', `v1:1:1:/1:1:/${'9'.repeat(30)}`]) {
    const err = await page(bad, null).then(() => null, asDbError);
    expect({ bad, code: err?.code, message: err?.message }).toEqual({ bad, code: 'INVALID_CURSOR', message: `Invalid cursor: ${bad}` });
  }
});
