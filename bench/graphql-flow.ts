/*
 * Benchmark: the canonical flow through GraphQL vs the same steps called
 * directly as SQL functions, in one run.
 *
 * Several concurrent clients each walk fresh sessions through request →
 * approve → pay → confirm → join → start → complete: on the GraphQL side as
 * HTTP requests to the real server, started in its own process as
 * `npm start` would (each request with its user's JWT), on the SQL side
 * as one transaction per step over pg, taking the same API role and claims
 * the server would (so both pay for the same authorization and rules). Sides
 * alternate, round after round. It prints flows per second for both, the
 * ratio, and p50/p99 latency per step.
 *
 *   npm run bench:graphql        (BENCH_CLIENTS, BENCH_FLOWS_PER_ROUND, BENCH_ROUNDS)
 */
import { randomUUID } from 'node:crypto';
import http from 'node:http';
import pg from 'pg';
import { AppRole, mintToken, pgSettingsFor } from '../server/auth';
import { DEVELOPMENT_JWT_SECRET } from '../server/config';
import { openScratchDatabase } from '../server/db/scratch';
import { startApiProcess } from './api-process';
import { localAuthenticatorUrl } from '../server/db/setup';
import { percentile, median } from './stats';

const CLIENTS = Number(process.env.BENCH_CLIENTS ?? 8);
const FLOWS_PER_ROUND = Number(process.env.BENCH_FLOWS_PER_ROUND ?? 300);
const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 3);

interface Actor { role: AppRole; id: string; token: string }
const actor = (role: AppRole): Actor => {
  const id = randomUUID();
  return { role, id, token: mintToken({ role, userId: id }, DEVELOPMENT_JWT_SECRET) };
};

interface Step {
  name: string;
  who: 'client' | 'therapist' | 'provider';
  graphql: string;
  sql: string;
}
const STEPS: Step[] = [
  { name: 'approve', who: 'therapist', graphql: 'mutation($id: UUID!) { approveSession(input: { sessionId: $id }) { session { status } } }', sql: 'select status from app_public.approve_session($1)' },
  { name: 'initiate payment', who: 'client', graphql: 'mutation($id: UUID!) { initiatePayment(input: { sessionId: $id }) { session { status } } }', sql: 'select status from app_public.initiate_payment($1)' },
  { name: 'confirm payment', who: 'provider', graphql: 'mutation($id: UUID!) { recordPaymentOutcome(input: { sessionId: $id, outcome: "confirmed" }) { session { status } } }', sql: `select status from app_public.record_payment_outcome($1, 'confirmed')` },
  { name: 'join', who: 'client', graphql: 'mutation($id: UUID!) { joinCall(input: { sessionId: $id }) { session { status } } }', sql: 'select status from app_public.join_call($1)' },
  { name: 'start', who: 'therapist', graphql: 'mutation($id: UUID!) { startSession(input: { sessionId: $id }) { session { status } } }', sql: 'select status from app_public.start_session($1)' },
  { name: 'complete', who: 'therapist', graphql: 'mutation($id: UUID!) { completeSession(input: { sessionId: $id }) { session { status } } }', sql: 'select status from app_public.complete_session($1)' },
];
const REQUEST_GRAPHQL = `mutation($client: UUID!, $therapist: UUID!) { requestSession(input: { clientId: $client, therapistId: $therapist,
  scheduledAt: "2099-01-01T10:00:00Z", durationMinutes: 50, priceKes: 2500, payerPhone: "254708374149" }) { session { rowId status } } }`;
const REQUEST_SQL = `select id, status from app_public.request_session($1, $2, '2099-01-01T10:00:00Z', 50, 2500, '254708374149')`;
const STEP_NAMES = ['request', ...STEPS.map((s) => s.name)];

type Latencies = Map<string, number[]>;
// The load generator keeps its connections open, as a browser or autocannon does.
const agent = new http.Agent({ keepAlive: true, maxSockets: CLIENTS });
const time = async <T>(latencies: Latencies, name: string, fn: () => Promise<T>): Promise<T> => {
  const started = process.hrtime.bigint();
  const result = await fn();
  latencies.get(name)!.push(Number(process.hrtime.bigint() - started) / 1e6);
  return result;
};

async function graphqlFlow(url: string, latencies: Latencies): Promise<void> {
  const people = { client: actor('client'), therapist: actor('therapist'), provider: actor('payment_provider') };
  const post = (who: Actor, query: string, variables: Record<string, unknown>) =>
    new Promise<any>((resolve, reject) => {
      const payload = JSON.stringify({ query, variables });
      const req = http.request(url, {
        method: 'POST',
        agent,
        headers: { 'content-type': 'application/json', 'content-length': Buffer.byteLength(payload), authorization: `Bearer ${who.token}` },
      }, (res) => {
        let text = '';
        res.setEncoding('utf8');
        res.on('data', (chunk) => { text += chunk; });
        res.on('end', () => {
          const body = JSON.parse(text);
          if (body.errors) reject(new Error(JSON.stringify(body.errors)));
          else resolve(body.data);
        });
      });
      req.on('error', reject);
      req.end(payload);
    });
  const created = await time(latencies, 'request', () => post(people.client, REQUEST_GRAPHQL, { client: people.client.id, therapist: people.therapist.id }));
  const id = created.requestSession.session.rowId;
  for (const step of STEPS) await time(latencies, step.name, () => post(people[step.who], step.graphql, { id }));
}

async function sqlFlow(pool: pg.Pool, latencies: Latencies): Promise<void> {
  const people = { client: actor('client'), therapist: actor('therapist'), provider: actor('payment_provider') };
  const client = await pool.connect();
  const call = async (who: Actor, sql: string, params: unknown[]) => {
    const settings = pgSettingsFor({ role: who.role, userId: who.id });
    await client.query('begin');
    await client.query(
      `select set_config('role', $1, true), set_config('jwt.claims.user_id', $2, true), set_config('jwt.claims.role', $3, true),
              set_config('flow.actor', $4, true), set_config('flow.request_id', $5, true)`,
      [settings.role, settings['jwt.claims.user_id'], settings['jwt.claims.role'], settings['flow.actor'], settings['flow.request_id']]);
    const { rows } = await client.query(sql, params);
    await client.query('commit');
    return rows[0];
  };
  try {
    const created = await time(latencies, 'request', () => call(people.client, REQUEST_SQL, [people.client.id, people.therapist.id]));
    for (const step of STEPS) await time(latencies, step.name, () => call(people[step.who], step.sql, [created.id]));
  } finally {
    client.release();
  }
}

async function round(run: () => Promise<void>): Promise<number> {
  let remaining = FLOWS_PER_ROUND;
  const started = process.hrtime.bigint();
  await Promise.all(Array.from({ length: CLIENTS }, async () => {
    while (remaining > 0) {
      remaining--;
      await run();
    }
  }));
  return FLOWS_PER_ROUND / (Number(process.hrtime.bigint() - started) / 1e9);
}


async function main(): Promise<void> {
  const db = await openScratchDatabase('flow_integrity_bench_graphql');
  try {
    const { ownerUrl } = db;
    const authenticatorUrl = localAuthenticatorUrl(ownerUrl);
    // The API in its own process, as in production; the load comes from this one.
    const app = await startApiProcess(ownerUrl);
    const pool = new pg.Pool({ connectionString: authenticatorUrl, max: CLIENTS });
    const latencies = { graphql: new Map(STEP_NAMES.map((n) => [n, [] as number[]])), sql: new Map(STEP_NAMES.map((n) => [n, [] as number[]])) };
    const rates = { graphql: [] as number[], sql: [] as number[] };
    // One warm-up round each (plans, connections), not counted.
    await round(() => graphqlFlow(`${app.url}/graphql`, new Map(STEP_NAMES.map((n) => [n, []]))));
    await round(() => sqlFlow(pool, new Map(STEP_NAMES.map((n) => [n, []]))));
    console.log(`${CLIENTS} clients, ${FLOWS_PER_ROUND} flows (${STEP_NAMES.length} steps each) per side per round, ${ROUNDS} rounds`);
    for (let r = 0; r < ROUNDS; r++) {
      rates.graphql.push(await round(() => graphqlFlow(`${app.url}/graphql`, latencies.graphql)));
      rates.sql.push(await round(() => sqlFlow(pool, latencies.sql)));
      console.log(`round ${r + 1}: GraphQL ${rates.graphql[r].toFixed(1)} flows/s, SQL ${rates.sql[r].toFixed(1)} flows/s, ratio ${(rates.graphql[r] / rates.sql[r]).toFixed(2)}`);
    }
    console.log('\nlatency per step, ms (p50 / p99):');
    console.log(`${'step'.padEnd(18)}${'GraphQL'.padStart(18)}${'SQL'.padStart(18)}`);
    for (const name of STEP_NAMES) {
      const g = latencies.graphql.get(name)!;
      const s = latencies.sql.get(name)!;
      console.log(`${name.padEnd(18)}${`${median(g).toFixed(2)} / ${percentile(g, 99).toFixed(2)}`.padStart(18)}${`${median(s).toFixed(2)} / ${percentile(s, 99).toFixed(2)}`.padStart(18)}`);
    }
    console.log(`\nflows per second (median of ${ROUNDS}): GraphQL ${median(rates.graphql).toFixed(1)}, SQL ${median(rates.sql).toFixed(1)}`);
    console.log(`ratio GraphQL/SQL: ${(median(rates.graphql) / median(rates.sql)).toFixed(2)} (goal ≥ 0.50)`);
    await pool.end();
    await app.stop();
  } finally {
    await db.stop();
  }
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});
