/*
 * The dispatcher: when the flow changes (the audit trigger's notification),
 * and every few seconds besides, it queues what committed changes call for,
 * in the database (app_private.dispatch): the STK pushes of new payment
 * attempts, and the webhooks' deliveries. One run at a time per process;
 * several processes may run it (the rows it takes are locked, skip locked).
 */
import pg from 'pg';
import { CHANGES_CHANNEL, Subscriber } from '../changes';

const BATCH = 500;

export function startDispatcher(db: pg.Pool, subscriber: Subscriber, pollMs = 5000): { stop(): Promise<void> } {
  let running: Promise<void> | null = null;
  let again = false;
  let stopped = false;
  const dispatch = (): Promise<void> => {
    if (running) {
      again = true;
      return running;
    }
    running = (async () => {
      do {
        again = false;
        // Until it has caught up (a run does at most a batch of each).
        while (!stopped && (await db.query('select app_private.dispatch($1) as n', [BATCH])).rows[0].n >= BATCH) { /* on */ }
      } while (again && !stopped);
    })().catch((err) => console.error(`dispatcher: ${err.message}`)).finally(() => { running = null; });
    return running;
  };
  const notifications = subscriber.subscribe(CHANGES_CHANNEL);
  // (A dropped listening connection ends this; the poll carries on.)
  void (async () => {
    for await (const _ of notifications) void dispatch();
  })().catch(() => {});
  const timer = setInterval(() => void dispatch(), pollMs);
  void dispatch();
  return {
    async stop() {
      stopped = true;
      clearInterval(timer);
      await notifications.return?.();
      await running;
    },
  };
}
