/*
 * Benchmark: status changes per second, bare vs enforced.
 *
 * The same data (100,000 sessions with their payments and calls) sits twice in
 * one database: in app_public, where every rule is enforced (row check, audit
 * entry, commit-time cross-state check), and in a copy of the tables without
 * any trigger or foreign key (bench_bare). Several clients then walk sessions
 * through the canonical flow with plain UPDATE ... SET status statements, each
 * flow step one transaction sent in one round trip, on both sides in
 * alternating rounds. It prints the rate of each side and their ratio.
 *
 *   npm run bench:status          (embedded PostgreSQL in a temporary directory)
 *   BENCH_ROOT_DATABASE_URL=postgres://postgres@host/postgres npm run bench:status
 */
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import pg from 'pg';
import { startEmbeddedPostgres } from '../server/db/embedded';
import { migrateDatabase } from '../server/db/migrate';
import { dropDatabase, ensureDatabase } from '../server/db/setup';
import { freePort } from '../server/db/ports';

const SESSIONS = Number(process.env.BENCH_SESSIONS ?? 100_000);
const CLIENTS = Number(process.env.BENCH_CLIENTS ?? 4);
const FLOWS_PER_ROUND = Number(process.env.BENCH_FLOWS_PER_ROUND ?? 2_000);
const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 3);
const MODE = process.env.BENCH_MODE === 'transaction' ? 'transaction' : 'statement';
const DATABASE = 'flow_integrity_bench';

/** The canonical flow as plain status UPDATEs: 7 transactions, 11 status changes. */
function flowSteps(schema: string): string[][] {
  // (The bare tables' names differ, so that pg_stat_statements tells the two sides apart.)
  const t = (name: string) => (schema === 'app_public' ? `app_public.${name}` : `bench_bare.bare_${name}`);
  const s = (status: string) => `update ${t('sessions')} set status = '${status}' where id = $1`;
  const p = (status: string) => `update ${t('payments')} set status = '${status}' where session_id = $1`;
  const v = (status: string) => `update ${t('video_calls')} set status = '${status}' where session_id = $1`;
  return [
    [s('approved')],
    [p('initiated'), s('payment_pending')],
    [p('confirmed'), s('paid')],
    [s('ready')],
    [v('waiting_for_participants')],
    [s('in_progress'), v('active')],
    [s('completed'), v('ended')],
  ];
}
const CHANGES_PER_FLOW = 11;

async function load(db: pg.Client): Promise<void> {
  // Enforced side: inserted with every trigger on, so the data is valid by the rules.
  await db.query('begin');
  await db.query(
    `insert into app_public.sessions (client_id, therapist_id, scheduled_at, duration_minutes, price_kes)
     select gen_random_uuid(), gen_random_uuid(), now() + interval '1 day' + g * interval '1 minute', 50, 2500
     from generate_series(1, $1) g`, [SESSIONS]);
  await db.query(
    `insert into app_public.payments (session_id, amount_kes, payer_phone) select id, price_kes, '254708374149' from app_public.sessions`);
  await db.query(`insert into app_public.video_calls (session_id) select id from app_public.sessions`);
  await db.query('commit');
  // Bare side: the same rows in tables with the same columns, indexes and checks, and no triggers.
  await db.query(`
    drop schema if exists bench_bare cascade;
    create schema bench_bare;
    create table bench_bare.bare_sessions (like app_public.sessions including all);
    create table bench_bare.bare_payments (like app_public.payments including all);
    create table bench_bare.bare_video_calls (like app_public.video_calls including all);
    insert into bench_bare.bare_sessions select * from app_public.sessions;
    insert into bench_bare.bare_payments select * from app_public.payments;
    insert into bench_bare.bare_video_calls select * from app_public.video_calls;
  `);
  await db.query(`
    vacuum analyze app_public.sessions, app_public.payments, app_public.video_calls, app_public.audit_entries,
                   bench_bare.bare_sessions, bench_bare.bare_payments, bench_bare.bare_video_calls;
  `);
}

/** Walks `ids` through the flow on `schema` with CLIENTS connections; returns status changes per second. */
async function round(pool: pg.Pool, schema: string, ids: string[]): Promise<number> {
  const queue = [...ids];
  const steps = flowSteps(schema);
  const started = process.hrtime.bigint();
  await Promise.all(
    Array.from({ length: CLIENTS }, async () => {
      const client = await pool.connect();
      client.on('error', () => {}); // reported by the query that fails
      try {
        for (let id = queue.pop(); id; id = queue.pop()) {
          for (const step of steps) {
            if (MODE === 'statement') {
              // As an application sends it: each statement its own round trip, with a parameter.
              await client.query('begin');
              for (const sql of step) await client.query(sql, [id]);
              await client.query('commit');
            } else {
              // The whole transaction in one round trip: the least client overhead to hide behind.
              await client.query(`begin; ${step.map((sql) => sql.replace('$1', `'${id}'`)).join('; ')}; commit;`);
            }
          }
        }
      } finally {
        client.release();
      }
    }),
  );
  const seconds = Number(process.hrtime.bigint() - started) / 1e9;
  return (ids.length * CHANGES_PER_FLOW) / seconds;
}

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];

async function main(): Promise<void> {
  let rootUrl = process.env.BENCH_ROOT_DATABASE_URL;
  let stop = async () => {};
  if (!rootUrl) {
    const tmpDir = await fs.mkdtemp(path.join(os.tmpdir(), 'flow-integrity-bench-'));
    const server = await startEmbeddedPostgres({ dataDir: path.join(tmpDir, 'data'), port: await freePort(), persistent: false, postgresFlags: process.env.BENCH_PG_FLAGS?.split(' '), onLog: process.env.BENCH_PG_LOG ? (l) => console.error(l) : undefined });
    rootUrl = server.rootUrl;
    stop = async () => {
      await server.stop();
      await fs.rm(tmpDir, { recursive: true, force: true });
    };
  }
  try {
    await dropDatabase(rootUrl, DATABASE);
    const ownerUrl = await ensureDatabase(rootUrl, DATABASE);
    await migrateDatabase(ownerUrl, rootUrl, { includeCurrent: true });
    if (process.env.BENCH_EXPERIMENT) {
      const c = new pg.Client({ connectionString: ownerUrl }); await c.connect();
      await c.query(await fs.readFile(process.env.BENCH_EXPERIMENT, 'utf8')); await c.end();
    }
    const admin = new pg.Client({ connectionString: ownerUrl });
    await admin.connect();
    const loadStarted = Date.now();
    const { rows } = await load(admin)
      .then(() => admin.query('select id from app_public.sessions order by random()'))
      .finally(() => admin.end());
    const ids: string[] = rows.map((r) => r.id);
    const needed = FLOWS_PER_ROUND * ROUNDS * 2;
    if (ids.length < needed) throw new Error(`${needed} sessions needed, ${ids.length} loaded`);
    console.log(`loaded ${ids.length} sessions (twice) in ${((Date.now() - loadStarted) / 1000).toFixed(1)} s; ` +
      `${MODE} mode, ${CLIENTS} clients, ${FLOWS_PER_ROUND} flows (${FLOWS_PER_ROUND * CHANGES_PER_FLOW} status changes) per round, ${ROUNDS} rounds a side`);

    const pool = new pg.Pool({ connectionString: ownerUrl, max: CLIENTS });
    pool.on('error', () => {}); // idle clients closed when the server stops
    const bare: number[] = [];
    const enforced: number[] = [];
    for (let r = 0; r < ROUNDS; r++) {
      // Each round takes fresh sessions, the same number on each side; the sides alternate.
      const slice = (k: number) => ids.slice((2 * r + k) * FLOWS_PER_ROUND, (2 * r + k + 1) * FLOWS_PER_ROUND);
      bare.push(await round(pool, 'bench_bare', slice(0)));
      enforced.push(await round(pool, 'app_public', slice(1)));
      console.log(`round ${r + 1}: bare ${bare[r].toFixed(0)}/s, enforced ${enforced[r].toFixed(0)}/s, ratio ${(enforced[r] / bare[r]).toFixed(2)}`);
    }
    const check = await pool.query(
      `select (select count(*) from app_hidden.integrity_violations)::int as violations,
              (select count(*) from app_public.sessions where status = 'completed')::int as completed`);
    await pool.end();
    if (process.env.BENCH_STATEMENTS) {
      const c = new pg.Client({ connectionString: rootUrl }); await c.connect();
      await c.query('create extension if not exists pg_stat_statements');
      const top = await c.query(`select calls, plans, round(total_plan_time::numeric, 1) as plan_ms, round(total_exec_time::numeric, 1) as ms, round(mean_exec_time::numeric * 1000, 1) as us, round(mean_plan_time::numeric * 1000, 1) as plan_us, left(regexp_replace(query, '\\s+', ' ', 'g'), 110) as q from pg_stat_statements where calls > 5000 order by total_exec_time desc limit 30`);
      console.table(top.rows); await c.end();
    }
    if (check.rows[0].violations !== 0) throw new Error(`${check.rows[0].violations} integrity violations after the run`);
    console.log(`enforced side after the run: ${check.rows[0].completed} sessions completed, 0 integrity violations`);
    console.log(`status changes per second (median of ${ROUNDS}): bare ${median(bare).toFixed(0)}, enforced ${median(enforced).toFixed(0)}`);
    console.log(`ratio enforced/bare: ${(median(enforced) / median(bare)).toFixed(2)} (goal ≥ 0.80)`);
  } catch (err) {
    console.error(err);
    await stop();
    process.exit(1);
  }
  await stop();
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});
