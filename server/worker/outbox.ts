/*
 * The required actions' outbox: every minute (crontab, server/worker/run.ts)
 * claims that ran out return to the queue, so that a listing shows them open
 * even when no consumer has claimed since (a claim does the same first).
 */
import type { TaskList } from 'graphile-worker';
import pg from 'pg';
import { asActor } from './transaction';

export function outboxTasks(db: pg.Pool): TaskList {
  return {
    async outbox_sweep() {
      await asActor(db, 'outbox-sweep', 'select app_private.release_expired_claims()');
    },
  };
}
