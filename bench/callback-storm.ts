/*
 * Benchmark: a storm of M-Pesa callbacks over HTTP on loopback, against the
 * API in its own process. N distinct payments wait for their callback; each
 * callback is delivered k times at once (k = 1, then k = 3, alternating, on
 * fresh payments each run) by BENCH_CONCURRENCY payers' worth of senders.
 * Prints callbacks per second and the effective rate (distinct payments per
 * second), and checks after every run that exactly N payments were
 * confirmed, every session is consistent, and the ledger has N rows.
 *
 *   npm run bench:callbacks      (BENCH_PAYMENTS, BENCH_CONCURRENCY, BENCH_ROUNDS)
 */
import http from 'node:http';
import pg from 'pg';
import { openScratchDatabase } from '../server/db/scratch';
import { startApiProcess } from './api-process';

const PAYMENTS = Number(process.env.BENCH_PAYMENTS ?? 2000);
const CONCURRENCY = Number(process.env.BENCH_CONCURRENCY ?? 16);
const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 4);
const SECRET = 'bench-callback-secret';

const agent = new http.Agent({ keepAlive: true, maxSockets: CONCURRENCY * 3 });

function post(url: string, body: string): Promise<number> {
  return new Promise((resolve, reject) => {
    const req = http.request(url, { method: 'POST', agent, headers: { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) } }, (res) => {
      res.resume();
      res.on('end', () => resolve(res.statusCode ?? 0));
    });
    req.on('error', reject);
    req.end(body);
  });
}

/** N sessions whose payment waits for its callback (push accepted), made in SQL; their CheckoutRequestIDs. */
async function waitingPayments(db: pg.Pool, run: string): Promise<string[]> {
  // (Statement by statement: each sees what the one before it made.)
  const { rows: sessions } = await db.query(
    `select (app_public.request_session(gen_random_uuid(), gen_random_uuid(), now() + interval '1 day', 50, 2500, '0708374149')).id
     from generate_series(1, $1)`, [PAYMENTS]);
  const ids = sessions.map((r) => r.id);
  await db.query('select app_public.approve_session(id) from unnest($1::uuid[]) id', [ids]);
  await db.query('select app_public.initiate_payment(id) from unnest($1::uuid[]) id', [ids]);
  const { rows } = await db.query(
    `select 'ws_CO_bench_' || $2 || '_' || n as checkout,
            app_private.record_stk_push(a.id, 'bench', 'ws_CO_bench_' || $2 || '_' || n)
     from (select id, row_number() over () as n from app_public.payment_attempts where session_id = any($1)) a`,
    [ids, run]);
  return rows.map((r) => r.checkout);
}

function callback(checkout: string, n: number): string {
  return JSON.stringify({ Body: { stkCallback: {
    MerchantRequestID: 'bench', CheckoutRequestID: checkout, ResultCode: 0, ResultDesc: 'The service request is processed successfully.',
    CallbackMetadata: { Item: [
      { Name: 'Amount', Value: 2500.0 }, { Name: 'MpesaReceiptNumber', Value: `B${String(n).padStart(9, '0')}` },
      { Name: 'TransactionDate', Value: 20261130120000 }, { Name: 'PhoneNumber', Value: 254708374149 },
    ] },
  } } });
}

let receipts = 0;
async function storm(url: string, checkouts: string[], k: number): Promise<{ seconds: number; statuses: Map<number, number> }> {
  const bodies = checkouts.map((c) => callback(c, receipts++));
  const statuses = new Map<number, number>();
  let next = 0;
  const started = process.hrtime.bigint();
  await Promise.all(Array.from({ length: CONCURRENCY }, async () => {
    while (next < bodies.length) {
      const body = bodies[next++];
      for (const status of await Promise.all(Array.from({ length: k }, () => post(url, body)))) {
        statuses.set(status, (statuses.get(status) ?? 0) + 1);
      }
    }
  }));
  return { seconds: Number(process.hrtime.bigint() - started) / 1e9, statuses };
}

async function check(db: pg.Pool, checkouts: string[], k: number): Promise<string[]> {
  const { rows: [r] } = await db.query(
    `with a as (select session_id, id from app_public.payment_attempts where checkout_request_id = any($1))
     select (select count(*) from a join app_public.payments p using (session_id) where p.status = 'confirmed')::int as confirmed,
            (select count(*) from app_public.audit_entries e join a using (session_id) where e.entity_type = 'payment' and e.new_value = 'confirmed')::int as confirmations,
            (select count(*) from app_hidden.integrity_violations v join a using (session_id))::int as violations,
            (select count(*) from app_private.payment_callbacks c where c.checkout_request_id = any($1))::int as ledger,
            (select coalesce(sum(deliveries), 0) from app_private.payment_callbacks c where c.checkout_request_id = any($1))::int as deliveries`,
    [checkouts]);
  const problems: string[] = [];
  if (r.confirmed !== checkouts.length) problems.push(`${r.confirmed} payments confirmed, not ${checkouts.length}`);
  if (r.confirmations !== checkouts.length) problems.push(`${r.confirmations} confirmations audited, not ${checkouts.length}`);
  if (r.violations !== 0) problems.push(`${r.violations} inconsistent sessions`);
  if (r.ledger !== checkouts.length) problems.push(`${r.ledger} ledger rows, not ${checkouts.length}`);
  if (r.deliveries !== checkouts.length * k) problems.push(`${r.deliveries} deliveries counted, not ${checkouts.length * k}`);
  return problems;
}

async function main(): Promise<void> {
  const scratch = await openScratchDatabase('flow_integrity_bench_callbacks');
  const api = await startApiProcess(scratch.ownerUrl, { MPESA_CALLBACK_SECRET: SECRET });
  const db = new pg.Pool({ connectionString: scratch.superuserUrl, max: 4 });
  let failed = false;
  try {
    const url = `${api.url}/mpesa/callback/${SECRET}`;
    // Warm-up (plans, connections), not counted.
    await storm(url, await waitingPayments(db, 'warmup'), 2);
    console.log(`${PAYMENTS} payments per run, ${CONCURRENCY} concurrent payers, each callback delivered k times at once; ${ROUNDS} rounds`);
    const effective: Record<number, number[]> = { 1: [], 3: [] };
    const ratios: number[] = [];
    for (let round = 1; round <= ROUNDS; round++) {
      // (Alternating which goes first: the database grows as the runs go.)
      for (const k of round % 2 ? [1, 3] : [3, 1]) {
        const checkouts = await waitingPayments(db, `r${round}k${k}`);
        const { seconds, statuses } = await storm(url, checkouts, k);
        // (Repeats answered from an identical delivery in flight are counted within 100 ms.)
        await new Promise((resolve) => setTimeout(resolve, 300));
        const problems = await check(db, checkouts, k);
        if (statuses.size !== 1 || !statuses.has(200)) problems.push(`HTTP statuses ${JSON.stringify([...statuses])}`);
        failed ||= problems.length > 0;
        effective[k].push(PAYMENTS / seconds);
        console.log(`round ${round}, k=${k}: ${((PAYMENTS * k) / seconds).toFixed(0)} callbacks/s, ${(PAYMENTS / seconds).toFixed(0)} payments/s` +
          ` — ${problems.length ? `FAILED: ${problems.join('; ')}` : `${PAYMENTS} confirmed once each, sessions consistent, ${PAYMENTS} ledger rows`}`);
      }
      ratios.push(effective[3][round - 1] / effective[1][round - 1]);
    }
    const median = (xs: number[]) => {
      const sorted = [...xs].sort((a, b) => a - b);
      return (sorted[Math.floor((sorted.length - 1) / 2)] + sorted[Math.ceil((sorted.length - 1) / 2)]) / 2;
    };
    console.log(`\neffective rate (payments/s, median): k=1 ${median(effective[1]).toFixed(0)}, k=3 ${median(effective[3]).toFixed(0)}`);
    console.log(`ratio k=3/k=1, round by round: ${ratios.map((r) => r.toFixed(2)).join(', ')}; median ${median(ratios).toFixed(2)} (goal ≥ 0.80)`);
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
