/*
 * The required actions' outbox: every minute (crontab, server/worker/run.ts)
 * claims that ran out return to the queue, so that a listing shows them open
 * even when no consumer has claimed since (a claim does the same first).
 */
import type { TaskList } from 'graphile-worker';
import pg from 'pg';

export function outboxTasks(db: pg.Pool): TaskList {
  return {
    async outbox_sweep() {
      const client = await db.connect();
      try {
        await client.query('begin');
        await client.query(`select set_config('flow.actor', 'outbox-sweep', true)`);
        await client.query('select app_private.release_expired_claims()');
        await client.query('commit');
      } catch (err) {
        await client.query('rollback').catch(() => {});
        throw err;
      } finally {
        client.release();
      }
    },
  };
}
