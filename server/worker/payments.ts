/*
 * The payment jobs (graphile-worker, in the same database as the flow):
 *   mpesa_stk_push        queued for each new attempt (a payment initiated)
 *                         by the dispatcher (app_private.queue_stk_pushes):
 *                         asks the provider to push the prompt, and records
 *                         its answer;
 *   mpesa_settle_attempt  an attempt still open after PAYMENT_QUERY_AFTER:
 *                         asks the provider (STK push query). "Still being
 *                         processed" means wait; past PAYMENT_GIVE_UP_AFTER
 *                         without an answer the attempt fails (and the client
 *                         is alerted to retry, ALERT_CLIENT_RETRY);
 *   mpesa_sweep           every minute: queues any push not queued yet, and
 *                         mpesa_settle_attempt for any open attempt that has
 *                         none (after a crash, say).
 * Each database call is one transaction as the schema owner, in the name of
 * the provider (asActor); what it does is decided in SQL.
 */
import type { TaskList } from 'graphile-worker';
import pg from 'pg';
import type { PaymentProvider } from '../mpesa/provider';
import { PushRefused } from '../mpesa/provider';
import { asActor } from './transaction';

export interface PaymentJobsConfig {
  provider: PaymentProvider;
  /** Where the provider posts callbacks (with the secret segment). */
  callbackUrl: string;
  queryAfterSeconds: number;
  giveUpAfterSeconds: number;
}

interface OpenAttempt {
  id: string;
  session_id: string;
  status: string;
  phone: string;
  amount_kes: number;
  checkout_request_id: string | null;
  settled: boolean;
  age_seconds: number;
}

export function paymentTasks(db: pg.Pool, config: PaymentJobsConfig): TaskList {
  const actor = config.provider.name === 'simulator' ? 'mpesa-simulator' : 'mpesa';
  const attempt = async (id: string): Promise<OpenAttempt | undefined> =>
    (await db.query<OpenAttempt>(
      `select id, session_id, status, phone, amount_kes, checkout_request_id, settled_at is not null as settled,
              extract(epoch from now() - created_at)::float8 as age_seconds
       from app_public.payment_attempts where id = $1`, [id])).rows[0];
  const settle = (id: string, resultCode: number | null, resultDesc: string, source: 'push' | 'query' | 'timeout') =>
    asActor<string>(db, source === 'timeout' ? 'payment-sweep' : actor,
      'select app_private.settle_payment_attempt($1, $2, $3, $4) as result', [id, resultCode, resultDesc, source]);
  const checkLater = (id: string, seconds: number) =>
    db.query('select app_private.settle_attempt_later($1, make_interval(secs => $2))', [id, seconds]);

  return {
    async mpesa_stk_push(payload) {
      const { attemptId } = payload as { attemptId: string };
      const a = await attempt(attemptId);
      // Settled already (the payment was cancelled meanwhile): no prompt.
      if (!a || a.status !== 'requesting') return;
      let accepted;
      try {
        accepted = await config.provider.stkPush({
          attemptId, phone: a.phone, amountKes: a.amount_kes, callbackUrl: config.callbackUrl,
          accountReference: a.session_id.slice(0, 8), description: 'Therapy session',
        });
      } catch (err) {
        if (err instanceof PushRefused) {
          await settle(attemptId, err.resultCode, err.resultDesc, 'push');
          return;
        }
        throw err; // transient: graphile-worker tries again, with backoff
      }
      await asActor(db, actor, 'select app_private.record_stk_push($1, $2, $3) as result',
        [attemptId, accepted.merchantRequestId, accepted.checkoutRequestId]);
      await checkLater(attemptId, config.queryAfterSeconds);
    },

    async mpesa_settle_attempt(payload, helpers) {
      const { attemptId } = payload as { attemptId: string };
      const a = await attempt(attemptId);
      if (!a || a.settled) return;
      const givingUp = a.age_seconds >= config.giveUpAfterSeconds;
      let why = 'the push was not accepted';
      if (a.checkout_request_id) {
        try {
          const answer = await config.provider.stkQuery(a.checkout_request_id);
          if (answer.state === 'settled') {
            await settle(attemptId, answer.resultCode, answer.resultDesc, 'query');
            return;
          }
          why = 'still being processed';
        } catch (err) {
          why = `the provider did not answer (${(err as Error).message})`;
          helpers.logger.warn(`STK push query for ${a.checkout_request_id}: ${why}`);
        }
      }
      if (givingUp) {
        await settle(attemptId, null, `no result after ${Math.round(a.age_seconds)} s: ${why}`, 'timeout');
        return;
      }
      // Asked again later; the last time at the bound.
      const wait = Math.min(config.queryAfterSeconds, config.giveUpAfterSeconds - a.age_seconds);
      await checkLater(attemptId, Math.max(wait, 0.1));
    },

    async mpesa_sweep() {
      await db.query('select app_private.queue_stk_pushes()');
      await db.query('select app_private.queue_payment_settlements(make_interval(secs => $1))', [config.queryAfterSeconds]);
    },
  };
}
