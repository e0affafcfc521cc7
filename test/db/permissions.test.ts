/*
 * Who may do what, in the database: every flow step × every API role × own
 * or someone else's session; what each role can read (row-level security);
 * and the structure that makes it hold (RLS on every table, SECURITY DEFINER
 * functions with a pinned search_path, API roles that own nothing).
 */
import { randomUUID } from 'node:crypto';
import pg from 'pg';
import { asDbError, insertFlow, pool, rolledBack } from '../helpers/db';
import { MAY, Role } from '../helpers/reference';

let db: pg.Pool;
beforeAll(() => { db = pool('superuser'); });
afterAll(() => db.end());

const ROLES: Role[] = ['client', 'therapist', 'admin', 'payment_provider', 'integration', 'anonymous'];

async function actAs(client: pg.ClientBase, role: Role, userId: string | null): Promise<void> {
  await client.query(`select set_config('role', $1, true), set_config('jwt.claims.user_id', $2, true)`, [`flow_${role}`, userId ?? '']);
}

test.each(Object.keys(MAY))('%s: every role, on its own session and on someone else\'s', async (step) => {
  await rolledBack(db, async (client) => {
    const flow = await insertFlow(client, ['intake']);
    const { rows } = await client.query('select client_id, therapist_id from app_public.sessions where id = $1', [flow.sessionId]);
    const { client_id: clientId, therapist_id: therapistId } = rows[0];
    const [fn, party] = step.split(':');
    const call = (sql: string, params: unknown[]) => ({ sql, params });
    const invocation = {
      request_session: call(`select app_public.request_session($1, $2, now() + interval '1 day', 50, 2500, '254708374149')`, [clientId, therapistId]),
      complete_form: call('select app_public.complete_form($1)', [flow.formIds[0]]),
      record_payment_outcome: call(`select app_public.record_payment_outcome($1, 'confirmed')`, [flow.sessionId]),
      mark_no_show: call('select app_public.mark_no_show($1, $2)', [flow.sessionId, party]),
    }[fn] ?? call(`select app_public.${fn}($1)`, [flow.sessionId]);

    for (const role of ROLES) {
      for (const own of [true, false]) {
        const userId = role === 'client' ? (own ? clientId : randomUUID())
          : role === 'therapist' ? (own ? therapistId : randomUUID())
          : role === 'anonymous' ? null : randomUUID();
        await client.query('savepoint attempt');
        await actAs(client, role, userId);
        const outcome = await client.query(invocation.sql, invocation.params).then(
          () => 'ok', (err) => { const e = asDbError(err); return e.code ?? e.sqlstate; });
        await client.query('rollback to savepoint attempt');
        const scope = MAY[step][role];
        const allowed = scope === 'any' || (scope === 'own' && own);
        const refusedForAuthority = ['NOT_AUTHORIZED', 'NOT_FOUND'].includes(outcome);
        expect({ step, role, own, allowed: !refusedForAuthority }).toEqual({ step, role, own, allowed });
        // A role that may take the step only on its own sessions does not learn that another's exists.
        if (!allowed) expect({ step, role, own, outcome }).toEqual({ step, role, own, outcome: scope === 'own' && fn !== 'request_session' ? 'NOT_FOUND' : 'NOT_AUTHORIZED' });
      }
    }
  });
});

test('a client may not confirm their own payment', async () => {
  await rolledBack(db, async (client) => {
    const flow = await insertFlow(client);
    const { rows } = await client.query('select client_id from app_public.sessions where id = $1', [flow.sessionId]);
    await actAs(client, 'client', rows[0].client_id);
    const err = await client.query(`select app_public.record_payment_outcome($1, 'confirmed')`, [flow.sessionId]).then(() => null, asDbError);
    expect([err?.code, err?.message]).toEqual(['NOT_AUTHORIZED', 'Not authorized: a client may not record_payment_outcome']);
  });
});

test('each role reads what row-level security lets it see', async () => {
  await rolledBack(db, async (client) => {
    const mine = await insertFlow(client, ['intake']);
    const other = await insertFlow(client);
    const { rows } = await client.query('select client_id, therapist_id from app_public.sessions where id = $1', [mine.sessionId]);
    const ids = [mine.sessionId, other.sessionId];
    const visible = async (role: Role, userId: string | null) => {
      await client.query('savepoint s');
      await actAs(client, role, userId);
      const out: Record<string, number> = {};
      for (const table of ['sessions', 'payments', 'video_calls', 'session_forms', 'audit_entries']) {
        const column = table === 'sessions' ? 'id' : 'session_id';
        const r = await client.query(`select count(*)::int as n from app_public.${table} where ${column} = any($1)`, [ids]);
        out[table] = r.rows[0].n;
      }
      await client.query('rollback to savepoint s');
      return out;
    };
    expect(await visible('client', rows[0].client_id)).toEqual({ sessions: 1, payments: 1, video_calls: 1, session_forms: 1, audit_entries: 4 });
    expect(await visible('therapist', rows[0].therapist_id)).toEqual({ sessions: 1, payments: 1, video_calls: 1, session_forms: 1, audit_entries: 4 });
    expect(await visible('client', randomUUID())).toEqual({ sessions: 0, payments: 0, video_calls: 0, session_forms: 0, audit_entries: 0 });
    expect(await visible('admin', randomUUID())).toEqual({ sessions: 2, payments: 2, video_calls: 2, session_forms: 1, audit_entries: 7 });
    // The payment provider may query (its mutations return the session) but sees no row.
    expect(await visible('payment_provider', randomUUID())).toEqual({ sessions: 0, payments: 0, video_calls: 0, session_forms: 0, audit_entries: 0 });
    // Anonymous requests may not even query.
    await client.query('savepoint s');
    await actAs(client, 'anonymous', null);
    const err = await client.query('select * from app_public.sessions').then(() => null, asDbError);
    await client.query('rollback to savepoint s');
    expect(err?.sqlstate).toBe('42501');
  });
});

test('the API roles cannot write a table directly, not even their own rows', async () => {
  await rolledBack(db, async (client) => {
    const flow = await insertFlow(client);
    const { rows } = await client.query('select client_id from app_public.sessions where id = $1', [flow.sessionId]);
    for (const role of ['client', 'admin'] as Role[]) {
      await client.query('savepoint s');
      await actAs(client, role, rows[0].client_id);
      const err = await client.query(`update app_public.sessions set status = 'approved' where id = $1`, [flow.sessionId]).then(() => null, asDbError);
      await client.query('rollback to savepoint s');
      expect({ role, sqlstate: err?.sqlstate }).toEqual({ role, sqlstate: '42501' });
    }
  });
});

describe('structure', () => {
  test('row-level security is on for every table of app_public', async () => {
    const { rows } = await db.query(
      `select c.relname from pg_class c join pg_namespace n on n.oid = c.relnamespace
       where n.nspname = 'app_public' and c.relkind = 'r' and not c.relrowsecurity`);
    expect(rows).toEqual([]);
  });

  test('every SECURITY DEFINER function pins its search_path', async () => {
    const { rows } = await db.query(
      `select p.oid::regprocedure::text as fn from pg_proc p join pg_namespace n on n.oid = p.pronamespace
       where n.nspname like 'app\\_%' and p.prosecdef
         and not exists (select 1 from unnest(p.proconfig) c where c like 'search\\_path=%')`);
    expect(rows).toEqual([]);
    const count = await db.query(
      `select count(*)::int as n from pg_proc p join pg_namespace n on n.oid = p.pronamespace where n.nspname = 'app_public' and p.prosecdef`);
    expect(count.rows[0].n).toBe(23); // the 13 flow steps, the payment callback, the 4 rule queries, the outbox's 3 and the webhooks' 2
  });

  test('the API roles own nothing, cannot bypass row-level security, and the authenticator inherits nothing', async () => {
    const { rows } = await db.query(
      `select r.rolname, r.rolbypassrls, r.rolsuper, r.rolinherit,
              (select count(*)::int from pg_class c where c.relowner = r.oid)
              + (select count(*)::int from pg_proc p where p.proowner = r.oid)
              + (select count(*)::int from pg_namespace s where s.nspowner = r.oid) as owns
       from pg_roles r where r.rolname like 'flow\\_%' and r.rolname <> 'flow_owner' order by r.rolname`);
    expect(rows.map((r) => r.rolname)).toEqual([
      'flow_admin', 'flow_anonymous', 'flow_authenticator', 'flow_client', 'flow_integration', 'flow_payment_provider', 'flow_therapist']);
    for (const r of rows) expect({ role: r.rolname, bypassrls: r.rolbypassrls, super: r.rolsuper, owns: r.owns })
      .toEqual({ role: r.rolname, bypassrls: false, super: false, owns: 0 });
    expect(rows.find((r) => r.rolname === 'flow_authenticator').rolinherit).toBe(false);
  });
});
