/*
 * Every machine, from every state to every state, by a plain UPDATE: allowed
 * transitions are accepted, every other one refused with the right code,
 * reason and message. Done as the table owner and as a superuser: the rules
 * hold for DBAs just the same. Cross-state rules are checked at commit, and
 * each cell is rolled back before that, so only single-entity rules speak here.
 */
import pg from 'pg';
import { attempt, entityId, insertFlow, pool, rolledBack, updateStatusSql, walk, Who } from '../helpers/db';
import { FORBIDDEN, INITIAL, Machine, STATES, TRANSITIONS, transitionMessage } from '../helpers/reference';

const machines: Machine[] = ['payment', 'session', 'video', 'form'];
const pools: Partial<Record<Who, pg.Pool>> = {};
beforeAll(() => { pools.owner = pool('owner'); pools.superuser = pool('superuser'); });
afterAll(async () => { await pools.owner!.end(); await pools.superuser!.end(); });

let sqlstates: Record<string, string>;
beforeAll(async () => {
  const { rows } = await pools.owner!.query('select code, sqlstate from app_hidden.error_codes');
  sqlstates = Object.fromEntries(rows.map((r) => [r.code, r.sqlstate]));
});

describe.each(['owner', 'superuser'] as Who[])('as the %s', (who) => {
  test.each(machines)('%s: every state to every state', async (machine) => {
    const cells = STATES[machine].length ** 2;
    let checked = 0;
    await rolledBack(pools[who]!, async (client) => {
      for (const from of STATES[machine]) {
        for (const to of STATES[machine]) {
          await client.query('savepoint cell');
          const flow = await insertFlow(client, machine === 'form' ? ['intake'] : []);
          const id = entityId(flow, machine);
          await walk(client, machine, id, from);
          const err = await attempt(client, updateStatusSql(machine), [to, id]);
          const audited = await client.query(
            'select old_value, new_value from app_public.audit_entries where entity_id = $1 order by id desc limit 1', [id]);
          const cell = `${machine}: ${from} → ${to}`;
          if (TRANSITIONS[machine][from].includes(to)) {
            expect({ cell, err }).toEqual({ cell, err: null });
            expect({ cell, audited: audited.rows[0] }).toEqual({ cell, audited: { old_value: from, new_value: to } });
          } else {
            // (from → from is no transition either: the reference refuses paid → paid too.)
            const expected = transitionMessage(machine, from, to);
            expect({ cell, last: audited.rows[0].new_value }).toEqual({ cell, last: from });
            expect({ cell, code: err?.code, sqlstate: err?.sqlstate, reason: err?.detail.reason ?? null, message: err?.message })
              .toEqual({ cell, code: expected.code, sqlstate: sqlstates[expected.code], reason: expected.reason, message: expected.message });
            expect({ cell, allowed: err?.detail.allowed }).toEqual({ cell, allowed: TRANSITIONS[machine][from] });
          }
          await client.query('rollback to savepoint cell');
          checked++;
        }
      }
    });
    expect(checked).toBe(cells);
  });

  test.each(machines)('%s: a new row must start in the initial state', async (machine) => {
    await rolledBack(pools[who]!, async (client) => {
      for (const state of STATES[machine]) {
        await client.query('savepoint cell');
        const flow = await insertFlow(client);
        const sql = {
          session: `insert into app_public.sessions (client_id, therapist_id, scheduled_at, duration_minutes, price_kes, status)
                    values (gen_random_uuid(), gen_random_uuid(), now() + interval '1 day', 50, 2500, $1)`,
          payment: `insert into app_public.payments (session_id, amount_kes, payer_phone, status)
                    values (gen_random_uuid(), 2500, '254708374149', $1)`,
          video: `insert into app_public.video_calls (session_id, status) values (gen_random_uuid(), $1)`,
          form: `insert into app_public.session_forms (session_id, form_key, status) values ('${flow.sessionId}', 'extra', $1)`,
        }[machine];
        const err = await attempt(client, sql, [state]);
        if (state === INITIAL[machine]) {
          // (payments and calls of a session that does not exist fail its foreign key instead)
          if (machine === 'session' || machine === 'form') expect(err).toBeNull();
          else expect(err?.sqlstate).toBe('23503');
        } else {
          expect({ state, code: err?.code, message: err?.message }).toEqual({
            state, code: 'INVALID_INITIAL_STATE',
            message: `Invalid ${machine} initial state: ${state}. Allowed: [${INITIAL[machine]}]`,
          });
        }
        await client.query('rollback to savepoint cell');
      }
    });
  });
});

describe('forbidden transitions carry their reason code', () => {
  test.each(FORBIDDEN.map((f) => [`${f.entity}.${f.from} → ${f.entity}.${f.to}`, f] as const))('%s', async (_, f) => {
    await rolledBack(pools.owner!, async (client) => {
      const flow = await insertFlow(client);
      const id = entityId(flow, f.entity);
      await walk(client, f.entity, id, f.from);
      const err = await attempt(client, updateStatusSql(f.entity), [f.to, id]);
      expect({ code: err?.code, reason: err?.detail.reason, message: err?.message }).toEqual({
        code: 'FORBIDDEN_TRANSITION', reason: f.reason, message: transitionMessage(f.entity, f.from, f.to).message,
      });
    });
  });
});
