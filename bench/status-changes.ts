/*
 * Benchmark: status changes per second, bare vs enforced.
 *
 * The same data (100,000 sessions with their payments and calls) sits three
 * times in one database:
 *   enforced    app_public, where every rule is enforced (row check, audit
 *               entry, commit-time cross-state check);
 *   bare        a copy of the tables with the same columns, checks and
 *               indexes, and no trigger or foreign key;
 *   audit only  a copy whose only trigger appends an audit row (to a copy of
 *               the audit table): what auditing every change costs by itself,
 *               a reference point for the enforced figure.
 * Several clients walk sessions through the canonical flow with plain
 * UPDATE ... SET status statements (7 transactions, 11 status changes a
 * flow), on every side in turn, round after round, each round on fresh
 * sessions. It prints each side's rate and the ratio to the bare one.
 *
 *   npm run bench:status
 *
 * BENCH_MODE=statement (default) sends each statement in its own round trip,
 * with a parameter, as an application does; BENCH_MODE=transaction sends a
 * whole transaction in one round trip, which leaves the least client overhead
 * to hide the server's work behind. BENCH_SESSIONS, BENCH_CLIENTS,
 * BENCH_FLOWS_PER_ROUND and BENCH_ROUNDS size the run. BENCH_PROFILE=1 prints
 * where the server's time went (pg_stat_statements). BENCH_ROOT_DATABASE_URL
 * runs it on a server of yours instead of an embedded one.
 */
import pg from 'pg';
import { openScratchDatabase } from '../server/db/scratch';
import { median } from './stats';

const SESSIONS = Number(process.env.BENCH_SESSIONS ?? 100_000);
const CLIENTS = Number(process.env.BENCH_CLIENTS ?? 4);
const FLOWS_PER_ROUND = Number(process.env.BENCH_FLOWS_PER_ROUND ?? 2_000);
const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 4);
const MODE = process.env.BENCH_MODE === 'transaction' ? 'transaction' : 'statement';
const PROFILE = process.env.BENCH_PROFILE === '1';
const DATABASE = 'flow_integrity_bench';

interface Side {
  name: string;
  /** The table a flow entity lives in on this side. */
  table(entity: 'sessions' | 'payments' | 'video_calls'): string;
}
// The copies' table names differ from app_public's (pg_stat_statements keys queries by table name).
const SIDES: Side[] = [
  { name: 'bare', table: (e) => `bench_bare.bare_${e}` },
  { name: 'enforced', table: (e) => `app_public.${e}` },
  { name: 'audit only', table: (e) => `bench_audit.audited_${e}` },
];

/** The canonical flow as plain status UPDATEs: 7 transactions, 11 status changes. */
function flowSteps(side: Side): string[][] {
  const s = (status: string) => `update ${side.table('sessions')} set status = '${status}' where id = $1`;
  const p = (status: string) => `update ${side.table('payments')} set status = '${status}' where session_id = $1`;
  const v = (status: string) => `update ${side.table('video_calls')} set status = '${status}' where session_id = $1`;
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
  // The copies: the same rows, in tables with the same columns, checks and indexes.
  await db.query(`
    drop schema if exists bench_bare cascade;
    drop schema if exists bench_audit cascade;
    create schema bench_bare;
    create schema bench_audit;
    create table bench_audit.audit_entries (like app_public.audit_entries including all);
  `);
  // The same audit row as the enforced side writes; nothing else.
  for (const [fn, sessionId] of [['tg_sessions__audit', 'new.id'], ['tg_entities__audit', 'new.session_id']]) {
    await db.query(`
      create function bench_audit.${fn}() returns trigger language plpgsql as $$
      begin
        insert into bench_audit.audit_entries
          (entity_type, entity_id, session_id, old_value, new_value, step, reason, actor, request_id)
        values (tg_argv[0], new.id, ${sessionId}, old.status, new.status,
                nullif(current_setting('flow.step', true), ''), nullif(current_setting('flow.reason', true), ''),
                coalesce(nullif(current_setting('flow.actor', true), ''), session_user),
                nullif(current_setting('flow.request_id', true), ''));
        return new;
      end;
      $$;
    `);
  }
  for (const entity of ['sessions', 'payments', 'video_calls']) {
    await db.query(`
      create table bench_bare.bare_${entity} (like app_public.${entity} including all);
      insert into bench_bare.bare_${entity} select * from app_public.${entity};
      create table bench_audit.audited_${entity} (like app_public.${entity} including all);
      insert into bench_audit.audited_${entity} select * from app_public.${entity};
      create trigger _100_audit before update of status on bench_audit.audited_${entity}
        for each row execute function bench_audit.${entity === 'sessions' ? 'tg_sessions__audit' : 'tg_entities__audit'}('${entity}');
    `);
  }
  await db.query('vacuum analyze');
}

/** Walks `ids` through the flow on one side with CLIENTS connections; returns status changes per second. */
async function round(pool: pg.Pool, side: Side, ids: string[]): Promise<number> {
  const queue = [...ids];
  const steps = flowSteps(side);
  const started = process.hrtime.bigint();
  await Promise.all(
    Array.from({ length: CLIENTS }, async () => {
      const client = await pool.connect();
      try {
        for (let id = queue.pop(); id; id = queue.pop()) {
          for (const step of steps) {
            if (MODE === 'statement') {
              await client.query('begin');
              for (const sql of step) await client.query(sql, [id]);
              await client.query('commit');
            } else {
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


async function profile(superuserUrl: string): Promise<void> {
  const client = new pg.Client({ connectionString: superuserUrl });
  await client.connect();
  try {
    await client.query('create extension if not exists pg_stat_statements');
    const { rows } = await client.query(
      `select calls, plans, round(mean_exec_time::numeric * 1000, 1) as exec_us, round(mean_plan_time::numeric * 1000, 1) as plan_us,
              left(regexp_replace(query, '\\s+', ' ', 'g'), 100) as query
       from pg_stat_statements where calls >= 1000 order by total_exec_time desc limit 20`);
    console.table(rows);
  } finally {
    await client.end();
  }
}

async function main(): Promise<void> {
  const rootUrl = process.env.BENCH_ROOT_DATABASE_URL;
  const db = await openScratchDatabase(DATABASE, {
    rootUrl,
    postgresFlags: PROFILE
      ? ['-c', 'shared_preload_libraries=pg_stat_statements', '-c', 'pg_stat_statements.track=all', '-c', 'pg_stat_statements.track_planning=on']
      : [],
  });
  const { ownerUrl } = db;
  try {
    const admin = new pg.Client({ connectionString: ownerUrl });
    await admin.connect();
    const loadStarted = Date.now();
    const { rows } = await load(admin)
      .then(() => admin.query('select id from app_public.sessions order by random()'))
      .finally(() => admin.end());
    const ids: string[] = rows.map((r) => r.id);
    const needed = FLOWS_PER_ROUND * ROUNDS;
    if (ids.length < needed) throw new Error(`${needed} sessions needed, ${ids.length} loaded`);
    console.log(`loaded ${ids.length} sessions (on each side) in ${((Date.now() - loadStarted) / 1000).toFixed(1)} s; ` +
      `${MODE} mode, ${CLIENTS} clients, ${FLOWS_PER_ROUND} flows (${FLOWS_PER_ROUND * CHANGES_PER_FLOW} status changes) ` +
      `per side per round, ${ROUNDS} rounds`);

    const pool = new pg.Pool({ connectionString: ownerUrl, max: CLIENTS });
    pool.on('error', () => {}); // idle clients closed when the server stops
    const rates = new Map<string, number[]>(SIDES.map((s) => [s.name, []]));
    for (let r = 0; r < ROUNDS; r++) {
      // Each round walks fresh sessions; every side walks the same ones, in turn.
      const slice = ids.slice(r * FLOWS_PER_ROUND, (r + 1) * FLOWS_PER_ROUND);
      for (const side of SIDES) rates.get(side.name)!.push(await round(pool, side, slice));
      const bare = rates.get('bare')![r];
      console.log(`round ${r + 1}: ` + SIDES.map((s) => {
        const rate = rates.get(s.name)![r];
        return `${s.name} ${rate.toFixed(0)}/s` + (s.name === 'bare' ? '' : ` (${(rate / bare).toFixed(2)})`);
      }).join(', '));
    }
    const check = await pool.query(
      `select (select count(*) from app_hidden.integrity_violations)::int as violations,
              (select count(*) from app_public.sessions where status = 'completed')::int as completed,
              (select count(*) from app_public.audit_entries)::int as audited`);
    await pool.end();
    const { violations, completed, audited } = check.rows[0];
    if (violations !== 0) throw new Error(`${violations} integrity violations after the run`);
    console.log(`enforced side after the run: ${completed} sessions completed, ${audited} audit entries, 0 integrity violations`);
    const bare = median(rates.get('bare')!);
    console.log(`status changes per second (median of ${ROUNDS} rounds): ` +
      SIDES.map((s) => `${s.name} ${median(rates.get(s.name)!).toFixed(0)}`).join(', '));
    console.log(`ratio audit-only/bare: ${(median(rates.get('audit only')!) / bare).toFixed(2)} (auditing alone, for reference)`);
    console.log(`ratio enforced/bare: ${(median(rates.get('enforced')!) / bare).toFixed(2)} (goal ≥ 0.80)`);
    if (PROFILE) await profile(db.superuserUrl);
  } catch (err) {
    console.error(err);
    await db.stop();
    process.exit(1);
  }
  await db.stop();
}

void main();
