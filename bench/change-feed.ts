/*
 * Benchmark: the change feed under load. BENCH_FLOW_CLIENTS clients walk
 * fresh sessions through the canonical flow (request → approve → pay →
 * confirm → join → start → complete; SQL flow steps, one transaction each)
 * for BENCH_SECONDS, while, against the API in its own process,
 *   - a reader follows the durable feed over GraphQL (changeFeed, pages of
 *     500, as an integration): events per second through the feed;
 *   - a subscriber receives the changes subscription over websockets: the
 *     latency from a step's COMMIT returning to the flow client to the
 *     subscriber receiving that change (p50, p99; one clock, one process).
 * After the run both must have received every committed change exactly once;
 * then the reader reads the whole run again from its start cursor, alone:
 * how fast a reader that was away catches up.
 *
 *   npm run bench:feed        (BENCH_FLOW_CLIENTS, BENCH_SECONDS)
 */
import { randomUUID } from 'node:crypto';
import http from 'node:http';
import { createClient } from 'graphql-ws';
import pg from 'pg';
import WebSocket from 'ws';
import { mintToken } from '../server/auth';
import { DEVELOPMENT_JWT_SECRET } from '../server/config';
import { openScratchDatabase } from '../server/db/scratch';
import { startApiProcess } from './api-process';
import { percentile } from './stats';

const FLOW_CLIENTS = Number(process.env.BENCH_FLOW_CLIENTS ?? 6);
const SECONDS = Number(process.env.BENCH_SECONDS ?? 20);

const STEPS: Array<[string, string]> = [
  ['select app_public.approve_session($1)', 'session.approved'],
  ['select app_public.initiate_payment($1)', 'payment.initiated'],
  [`select app_public.record_payment_outcome($1, 'confirmed')`, 'payment.confirmed'],
  ['select app_public.join_call($1)', 'video.waiting_for_participants'],
  ['select app_public.start_session($1)', 'session.in_progress'],
  ['select app_public.complete_session($1)', 'session.completed'],
];


async function main(): Promise<void> {
  const scratch = await openScratchDatabase('flow_integrity_bench_feed');
  const api = await startApiProcess(scratch.ownerUrl);
  const db = new pg.Pool({ connectionString: scratch.ownerUrl, max: FLOW_CLIENTS + 2 });
  const token = mintToken({ role: 'integration', userId: randomUUID() }, DEVELOPMENT_JWT_SECRET);
  const agent = new http.Agent({ keepAlive: true });
  const committedAt = new Map<string, number>(); // "<session>|<event type>" → when its COMMIT returned
  const latencies: number[] = [];
  const subscribed = new Set<string>();
  let failed = false;
  try {
    // The subscriber, from now on.
    const ws = createClient({ url: `${api.url.replace('http', 'ws')}/graphql`, webSocketImpl: WebSocket, connectionParams: { Authorization: `Bearer ${token}` } });
    const pending = new Map<string, number>(); // received before its commit time was noted
    ws.subscribe<{ changes: { rowId: string; eventType: string; sessionId: string } }>(
      { query: 'subscription { changes { rowId eventType sessionId } }' },
      {
        next: ({ data }) => {
          if (!data) return;
          const now = performance.now();
          const e = data.changes;
          if (subscribed.has(e.rowId)) { failed = true; console.error(`duplicate event ${e.rowId} on the subscription`); }
          subscribed.add(e.rowId);
          const key = `${e.sessionId}|${e.eventType}`;
          const at = committedAt.get(key);
          if (at !== undefined) latencies.push(now - at);
          else pending.set(key, now);
        },
        error: (err) => { failed = true; console.error('subscription error', err); },
        complete: () => {},
      },
    );
    await new Promise((r) => setTimeout(r, 500));
    const { rows: [{ cursor: start }] } = await db.query('select app_public.change_feed_now() as cursor');

    // The flow clients.
    const stopAt = performance.now() + SECONDS * 1000;
    let flows = 0;
    const note = (key: string) => {
      const now = performance.now();
      committedAt.set(key, now);
      const early = pending.get(key);
      if (early !== undefined) { latencies.push(early - now); pending.delete(key); }
    };
    const clients = Array.from({ length: FLOW_CLIENTS }, async () => {
      while (performance.now() < stopAt) {
        const { rows: [s] } = await db.query(
          `select id from app_public.request_session(gen_random_uuid(), gen_random_uuid(), now() + interval '1 day', 50, 2500, '0708374149')`);
        note(`${s.id}|session.requested`);
        for (const [sql, event] of STEPS) {
          await db.query(sql, [s.id]);
          note(`${s.id}|${event}`);
        }
        flows++;
      }
    });

    // The durable feed reader, over GraphQL, as fast as it can follow.
    const read = (after: string) => new Promise<any>((resolve, reject) => {
      const body = JSON.stringify({ query: 'query ($after: String) { changeFeed(after: $after, maxEvents: 500) { events { rowId } cursor hasMore } }', variables: { after } });
      const req = http.request(`${api.url}/graphql`, { method: 'POST', agent, headers: { 'content-type': 'application/json', authorization: `Bearer ${token}`, 'content-length': Buffer.byteLength(body) } }, (res) => {
        let text = '';
        res.on('data', (c) => { text += c; });
        res.on('end', () => { const r = JSON.parse(text); r.errors ? reject(new Error(JSON.stringify(r.errors))) : resolve(r.data.changeFeed); });
      });
      req.on('error', reject);
      req.end(body);
    });
    const fed: string[] = [];
    let cursor = start;
    let flowing = true;
    const readerStarted = performance.now();
    const reader = (async () => {
      while (flowing || (await read(cursor)).events.length > 0) {
        const page = await read(cursor);
        fed.push(...page.events.map((e: { rowId: string }) => String(e.rowId)));
        cursor = page.cursor;
        if (!page.hasMore) await new Promise((r) => setTimeout(r, 20));
      }
    })();
    await Promise.all(clients);
    const flowSeconds = (performance.now() - readerStarted) / 1000;
    flowing = false;
    await reader;
    await new Promise((r) => setTimeout(r, 1000)); // the subscriber's last ones
    await ws.dispose();

    // Catching up: the whole run's changes again, from the start cursor, as fast as the feed gives them.
    const catchUpStarted = performance.now();
    let caughtUp = 0;
    for (let c = start, more = true; more;) {
      const page = await read(c);
      caughtUp += page.events.length;
      c = page.cursor;
      more = page.hasMore;
    }
    const catchUpSeconds = (performance.now() - catchUpStarted) / 1000;

    const { rows: [{ n: committed }] } = await db.query(
      `select count(*)::int as n from app_public.audit_entries e
       where not pg_visible_in_snapshot(e.txid::text::xid8, split_part(substr($1, 4), '/', 1)::pg_snapshot)`, [start]);
    const problems: string[] = [];
    if (new Set(fed).size !== fed.length) problems.push('duplicates in the feed');
    if (fed.length !== committed) problems.push(`the feed gave ${fed.length} events of ${committed}`);
    if (caughtUp !== committed) problems.push(`catching up gave ${caughtUp} events of ${committed}`);
    if (subscribed.size !== committed) problems.push(`the subscription gave ${subscribed.size} events of ${committed}`);
    failed ||= problems.length > 0;
    console.log(`${FLOW_CLIENTS} flow clients for ${SECONDS} s: ${flows} flows, ${committed} changes committed (${(committed / flowSeconds).toFixed(0)}/s)`);
    console.log(`durable feed over GraphQL: ${fed.length} events, ${(fed.length / flowSeconds).toFixed(0)} events/s, kept up with the flow`);
    console.log(`catching up (the same changes again, pages of 500, nothing else running): ${caughtUp} events in ${catchUpSeconds.toFixed(1)} s, ${(caughtUp / catchUpSeconds).toFixed(0)} events/s`);
    console.log(`subscription, commit → receipt: p50 ${percentile(latencies, 50).toFixed(1)} ms, p99 ${percentile(latencies, 99).toFixed(1)} ms (${latencies.length} changes)`);
    console.log(problems.length ? `FAILED: ${problems.join('; ')}` : 'every committed change received once by the feed reader and by the subscriber');
  } finally {
    await db.end();
    await api.stop();
    await scratch.stop();
  }
  if (failed) process.exit(1);
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});
