/*
 * The audit log: one entry per status change by any writer, with reason,
 * actor and request id from the transaction-local settings; append-only, even
 * for the table's owner and a superuser.
 */
import pg from 'pg';
import { insertFlow, pool, rejection, requestSession, rolledBack, Who } from '../helpers/db';

const pools: Partial<Record<Who, pg.Pool>> = {};
beforeAll(() => { pools.owner = pool('owner'); pools.superuser = pool('superuser'); });
afterAll(async () => { await pools.owner!.end(); await pools.superuser!.end(); });

test('a DBA\'s UPDATE is audited with the settings of its transaction', async () => {
  await rolledBack(pools.owner!, async (client) => {
    const flow = await insertFlow(client);
    await client.query(`select set_config('flow.reason', 'therapist asked by phone', true),
                               set_config('flow.actor', 'dba:alice', true),
                               set_config('flow.request_id', 'ticket-4711', true)`);
    await client.query(`update app_public.sessions set status = 'approved' where id = $1`, [flow.sessionId]);
    const { rows } = await client.query(
      `select entity_type, entity_id, session_id, old_value, new_value, step, reason, actor, request_id,
              created_at = now() as at_transaction_time
       from app_public.audit_entries where session_id = $1 order by id desc limit 1`, [flow.sessionId]);
    expect(rows[0]).toEqual({
      entity_type: 'session', entity_id: flow.sessionId, session_id: flow.sessionId,
      old_value: 'requested', new_value: 'approved', step: null,
      reason: 'therapist asked by phone', actor: 'dba:alice', request_id: 'ticket-4711', at_transaction_time: true,
    });
  });
});

test('without flow.actor the actor is the database login; flow steps name themselves', async () => {
  await rolledBack(pools.owner!, async (client) => {
    const id = await requestSession(client);
    await client.query('select app_public.approve_session($1)', [id]);
    const { rows } = await client.query(
      `select entity_type, old_value, new_value, step, reason, actor, request_id from app_public.audit_entries
       where session_id = $1 order by id`, [id]);
    expect(rows).toEqual([
      { entity_type: 'session', old_value: null, new_value: 'requested', step: 'request_session', reason: null, actor: 'flow_owner', request_id: null },
      { entity_type: 'payment', old_value: null, new_value: 'pending', step: 'request_session', reason: null, actor: 'flow_owner', request_id: null },
      { entity_type: 'video', old_value: null, new_value: 'not_started', step: 'request_session', reason: null, actor: 'flow_owner', request_id: null },
      { entity_type: 'session', old_value: 'requested', new_value: 'approved', step: 'approve_session', reason: null, actor: 'flow_owner', request_id: null },
    ]);
  });
});

test('a step\'s reason stays with the step; the transaction\'s own reason comes back after it', async () => {
  await rolledBack(pools.owner!, async (client) => {
    const a = await requestSession(client);
    const b = await requestSession(client);
    await client.query(`select set_config('flow.reason', 'spring clean-up', true)`);
    await client.query(`select app_public.cancel_session($1, 'client moved away')`, [a]);
    await client.query(`update app_public.sessions set status = 'approved' where id = $1`, [b]);
    const { rows } = await client.query(
      `select session_id = $1 as is_a, step, reason from app_public.audit_entries
       where session_id in ($1, $2) and old_value is not null order by id`, [a, b]);
    expect(rows).toEqual([
      { is_a: true, step: 'cancel_session', reason: 'client moved away' },
      { is_a: true, step: 'cancel_session', reason: 'client moved away' },
      { is_a: false, step: null, reason: 'spring clean-up' },
    ]);
  });
});

test('a refused change leaves no audit entry', async () => {
  await rolledBack(pools.owner!, async (client) => {
    const flow = await insertFlow(client);
    await client.query('savepoint s');
    await expect(client.query(`update app_public.sessions set status = 'ready' where id = $1`, [flow.sessionId])).rejects.toThrow();
    await client.query('rollback to savepoint s');
    const { rows } = await client.query('select count(*)::int as n from app_public.audit_entries where session_id = $1', [flow.sessionId]);
    expect(rows[0].n).toBe(3);
  });
});

describe.each(['owner', 'superuser'] as Who[])('append-only, as the %s', (who) => {
  test.each([
    ['UPDATE', `update app_public.audit_entries set new_value = 'completed'`],
    ['DELETE', 'delete from app_public.audit_entries'],
    ['TRUNCATE', 'truncate app_public.audit_entries'],
  ])('%s is refused with AUDIT_APPEND_ONLY', async (op, sql) => {
    await rolledBack(pools[who]!, async (client) => {
      await insertFlow(client);
      const before = await client.query('select count(*)::int as n from app_public.audit_entries');
      await client.query('savepoint s');
      const err = await rejection(client.query(sql));
      await client.query('rollback to savepoint s');
      expect([err.code, err.message]).toEqual([
        'AUDIT_APPEND_ONLY', `The audit log is append-only: ${op} on app_public.audit_entries is not allowed`]);
      const after = await client.query('select count(*)::int as n from app_public.audit_entries');
      expect(after.rows[0].n).toBe(before.rows[0].n);
    });
  });
});

describe('flow rows are kept', () => {
  test.each(['sessions', 'payments', 'video_calls', 'session_forms'])('DELETE and TRUNCATE of %s are refused', async (table) => {
    await rolledBack(pools.owner!, async (client) => {
      await insertFlow(client, ['intake']);
      // (TRUNCATE refuses tables with pending commit-time checks; run them first)
      await client.query('set constraints all immediate');
      await client.query('savepoint s');
      const del = await rejection(client.query(`delete from app_public.${table}`));
      await client.query('rollback to savepoint s');
      expect([del.code, del.message]).toEqual(['DELETE_NOT_ALLOWED', `Delete not allowed: ${table} rows are kept; cancel the session instead`]);
      const trunc = await rejection(client.query(`truncate app_public.${table} cascade`));
      await client.query('rollback to savepoint s');
      expect(trunc.code).toBe('DELETE_NOT_ALLOWED');
    });
  });

  test('ids and the session a row belongs to never change', async () => {
    await rolledBack(pools.owner!, async (client) => {
      const a = await insertFlow(client);
      const b = await insertFlow(client);
      await client.query('savepoint s');
      const moved = await rejection(client.query('update app_public.payments set session_id = $1 where id = $2', [b.sessionId, a.paymentId]));
      await client.query('rollback to savepoint s');
      expect([moved.code, moved.message]).toEqual(['IMMUTABLE_FIELD', 'Immutable field: payments.session_id cannot change']);
      const renamed = await rejection(client.query('update app_public.sessions set id = gen_random_uuid() where id = $1', [a.sessionId]));
      await client.query('rollback to savepoint s');
      expect([renamed.code, renamed.message]).toEqual(['IMMUTABLE_FIELD', 'Immutable field: sessions.id cannot change']);
    });
  });
});
