/*
 * Live changes over websockets (graphql-ws): a client receives the changes
 * of its own sessions as they commit, never another client's; a subscriber
 * that disconnects mid-flow and comes back with its last cursor receives
 * what it missed, then the live changes, with no gap and no duplicate.
 */
import { randomUUID } from 'node:crypto';
import { Client, createClient } from 'graphql-ws';
import pg from 'pg';
import WebSocket from 'ws';
import type { App } from '../../server/app';
import { mintToken } from '../../server/auth';
import { DEVELOPMENT_JWT_SECRET } from '../../server/config';
import { gql, startTestApp, user, User } from '../helpers/api';
import { pool } from '../helpers/db';

let app: App;
let db: pg.Pool;
beforeAll(async () => {
  app = await startTestApp();
  db = pool('superuser', 4);
});
afterAll(async () => {
  await app.close();
  await db.end();
});

const SUBSCRIPTION = `subscription ($after: String, $sessionId: UUID) {
  changes(after: $after, sessionId: $sessionId) { rowId cursor eventType sessionId entityType newValue oldValue step actor }
}`;

interface Event { rowId: string; cursor: string; eventType: string; sessionId: string; step: string | null; actor: string }

// Every subscription is closed after its test, whatever happened in it.
const open = new Set<{ close(): Promise<void> }>();
afterEach(async () => {
  for (const sub of open) await sub.close();
  open.clear();
});

/** A subscription that collects what it receives. */
function subscribe(who: User, variables: Record<string, unknown> = {}) {
  const client: Client = createClient({
    url: `${app.url.replace('http', 'ws')}/graphql`,
    webSocketImpl: WebSocket,
    connectionParams: { Authorization: `Bearer ${who.token}` },
    retryAttempts: 0,
  });
  const events: Event[] = [];
  const errors: unknown[] = [];
  const stop = client.subscribe<{ changes: Event }>({ query: SUBSCRIPTION, variables }, {
    next: (value) => {
      if (value.errors) errors.push(...value.errors);
      if (value.data) events.push(value.data.changes);
    },
    error: (err) => errors.push(err),
    complete: () => {},
  });
  const sub = {
    events,
    errors,
    async until(n: number, timeoutMs = 10_000) {
      const deadline = Date.now() + timeoutMs;
      while (events.length < n && errors.length === 0) {
        if (Date.now() > deadline) throw new Error(`received ${events.length} events of ${n}: ${events.map((e) => e.eventType).join(', ')}`);
        await new Promise((r) => setTimeout(r, 20));
      }
      return events;
    },
    async close() {
      open.delete(sub);
      stop();
      await client.dispose();
    },
  };
  open.add(sub);
  return sub;
}

async function requestSession(client: User, therapistId: string = randomUUID()): Promise<string> {
  const { rows: [s] } = await db.query(
    `select id from app_public.request_session($1, $2, now() + interval '1 day', 50, 2500, '254708374149')`, [client.id, therapistId]);
  return s.id;
}

const step = (who: User, mutation: string, id: string) =>
  gql(app, who, `mutation ($id: UUID!) { ${mutation}(input: { sessionId: $id }) { session { status } } }`, { id });

async function auditTrail(sessionId: string): Promise<string[]> {
  const { rows } = await db.query(`select entity_type || '.' || new_value as t from app_public.audit_entries where session_id = $1 order by id`, [sessionId]);
  return rows.map((r) => r.t);
}

test('a client receives the changes of its own sessions as they commit, and never another client\'s', async () => {
  const alice = user('client');
  const therapist = user('therapist');
  const sub = subscribe(alice);
  await new Promise((r) => setTimeout(r, 300)); // (subscribed before the changes)
  const other = await requestSession(user('client'));
  const mine = await requestSession(alice, therapist.id);
  expect((await step(therapist, 'approveSession', mine)).errors).toBeUndefined();
  await db.query('select app_public.approve_session($1)', [other]);
  expect((await step(alice, 'initiatePayment', mine)).errors).toBeUndefined();
  const events = await sub.until(6);
  await new Promise((r) => setTimeout(r, 300));
  await sub.close();
  expect(sub.errors).toEqual([]);
  expect(events.map((e) => e.eventType)).toEqual(await auditTrail(mine));
  expect(new Set(events.map((e) => e.sessionId))).toEqual(new Set([mine]));
  expect(events.find((e) => e.eventType === 'session.approved')).toMatchObject({ step: 'approve_session', actor: `therapist:${therapist.id}` });
});

test('one session\'s changes (sessionId), from now on without a cursor; changeFeed gives its whole history', async () => {
  const admin = user('admin');
  const id = await requestSession(user('client'));
  await db.query('select app_public.approve_session($1)', [id]);
  const sub = subscribe(admin, { sessionId: id, after: null });
  await new Promise((r) => setTimeout(r, 300));
  await db.query('select app_public.cancel_session($1)', [id]);
  // Without a cursor: from now on only.
  expect((await sub.until(2)).map((e) => e.eventType)).toEqual(['session.cancelled', 'payment.cancelled']);
  await sub.close();
  const { data } = await gql(app, admin, 'query ($id: UUID!) { changeFeed(sessionId: $id) { events { eventType } cursor hasMore } }', { id });
  expect(data!.changeFeed.events.map((e: any) => e.eventType)).toEqual(await auditTrail(id));
  expect(data!.changeFeed.hasMore).toBe(false);
});

test('a subscriber that disconnects mid-flow comes back with its last cursor: what it missed, then live, no gap, no duplicate', async () => {
  const client = user('client');
  const id = await requestSession(client);
  const first = subscribe(client, { sessionId: id, after: (await gql(app, client, '{ changeFeed(maxEvents: 1) { cursor } }')).data!.changeFeed.cursor });
  await db.query('select app_public.approve_session($1)', [id]);
  await db.query('select app_public.initiate_payment($1)', [id]);
  const before = await first.until(1);
  const lastSeen = before[before.length - 1];
  await first.close(); // …gone mid-flow
  // Meanwhile:
  await db.query(`select app_public.record_payment_outcome($1, 'failed')`, [id]);
  await db.query('select app_public.initiate_payment($1)', [id]);
  const back = subscribe(client, { sessionId: id, after: lastSeen.cursor });
  // …and live again:
  await new Promise((r) => setTimeout(r, 200));
  await db.query('select app_public.cancel_session($1)', [id]);
  const { rows: trail } = await db.query(`select id::text, entity_type || '.' || new_value as t from app_public.audit_entries where session_id = $1 order by id`, [id]);
  const kept = before.slice(0, before.indexOf(lastSeen) + 1);
  const missedAndLive = trail.filter((e) => Number(e.id) > Number(lastSeen.rowId));
  // Missed while away (the failure, its action, the retry) and live (the cancellation):
  expect(missedAndLive.map((e) => e.t)).toEqual(expect.arrayContaining(['payment.failed', 'required_action.open', 'session.cancelled', 'payment.cancelled']));
  const after = await back.until(missedAndLive.length);
  await new Promise((r) => setTimeout(r, 300)); // (and nothing more)
  await back.close();
  expect(back.errors).toEqual([]);
  expect(after.map((e) => [String(e.rowId), e.eventType])).toEqual(missedAndLive.map((e) => [e.id, e.t]));
  // Together: every change after the first subscription's cursor, once each, in order.
  expect([...kept, ...after].map((e) => String(e.rowId))).toEqual(trail.filter((e) => Number(e.id) > Number(trail[0].id)).map((e) => e.id));
});

test('a bad cursor is refused with INVALID_CURSOR; a bad token at connection with INVALID_TOKEN', async () => {
  const sub = subscribe(user('client'), { after: 'not-a-cursor' });
  await sub.until(1).catch(() => {});
  await sub.close();
  expect(JSON.stringify(sub.errors)).toMatch(/INVALID_CURSOR/);
  const forged = { ...user('client'), token: 'not.a.jwt' };
  const refused = subscribe(forged);
  await refused.until(1).catch(() => {});
  await refused.close();
  expect(JSON.stringify(refused.errors)).toMatch(/INVALID_TOKEN/);
});

test('a subscription ends, with INVALID_TOKEN, when its token expires', async () => {
  const id = randomUUID();
  const shortLived = { role: 'admin' as const, id, token: mintToken({ role: 'admin', userId: id }, DEVELOPMENT_JWT_SECRET, '2s') };
  const sub = subscribe(shortLived);
  const started = Date.now();
  while (sub.errors.length === 0 && Date.now() - started < 6000) await new Promise((r) => setTimeout(r, 50));
  expect(JSON.stringify(sub.errors)).toMatch(/INVALID_TOKEN/);
  expect(JSON.stringify(sub.errors)).toMatch(/token expired/);
  expect(Date.now() - started).toBeLessThan(4000);
});
