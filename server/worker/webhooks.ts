/*
 * Webhooks. The dispatcher (server/worker/dispatcher.ts) moves each webhook
 * along the change feed (app_private.dispatch_webhooks); every matching
 * event becomes a delivery job. webhook_deliver POSTs the event, signed, and records the attempt; a
 * failure (an error status, a timeout, no connection) is tried again later,
 * with exponential backoff, until the last attempt.
 *
 * Signature (README, "Webhooks"): Flow-Signature: v1=<hex HMAC-SHA256 of
 * "<Flow-Timestamp>.<body>" with the webhook's secret>.
 */
import { createHmac } from 'node:crypto';
import type { TaskList } from 'graphile-worker';
import pg from 'pg';

export interface WebhookConfig {
  timeoutMs: number;
  maxAttempts: number;
  /** The wait after the first failure; it doubles after each, up to retryMaxMs. */
  retryBaseMs: number;
  retryMaxMs: number;
}

export function webhookSignature(secret: string, timestamp: string, body: string): string {
  return `v1=${createHmac('sha256', secret).update(`${timestamp}.${body}`).digest('hex')}`;
}

export function webhookTasks(db: pg.Pool, config: WebhookConfig): TaskList {
  return {
    async webhook_deliver(payload) {
      const { deliveryId } = payload as { deliveryId: number };
      const { rows: [d] } = await db.query(
        `select d.id, d.status, d.attempts, d.event, w.id as webhook_id, w.url, w.secret
         from app_private.webhook_deliveries d join app_private.webhooks w on w.id = d.webhook_id where d.id = $1`, [deliveryId]);
      if (!d || d.status !== 'pending') return;
      const body = JSON.stringify(d.event);
      const timestamp = String(Math.floor(Date.now() / 1000));
      const attemptNo = d.attempts + 1;
      const started = new Date();
      let status: number | null = null;
      let error: string | null = null;
      try {
        const res = await fetch(d.url, {
          method: 'POST',
          redirect: 'manual',
          signal: AbortSignal.timeout(config.timeoutMs),
          headers: {
            'content-type': 'application/json',
            'user-agent': 'flow-integrity-webhooks',
            'flow-webhook-id': d.webhook_id,
            'flow-event-id': String(d.event.id),
            'flow-event-type': d.event.type,
            'flow-delivery-attempt': String(attemptNo),
            'flow-timestamp': timestamp,
            'flow-signature': webhookSignature(d.secret, timestamp, body),
          },
          body,
        });
        status = res.status;
        await res.arrayBuffer().catch(() => {});
      } catch (err) {
        const e = err as Error;
        error = e.name === 'TimeoutError' ? `no answer within ${config.timeoutMs} ms` : `${e.message}${(e as any).cause?.code ? ` (${(e as any).cause.code})` : ''}`;
      }
      const delivered = status !== null && status >= 200 && status < 300;
      if (!delivered && error === null) error = `HTTP ${status}`;
      // Tried again later (doubling waits), unless that was the last attempt.
      const retryAt = delivered || attemptNo >= config.maxAttempts
        ? null
        : new Date(Date.now() + Math.min(config.retryBaseMs * 2 ** (attemptNo - 1), config.retryMaxMs));
      await db.query('select app_private.record_webhook_attempt($1, $2, $3, $4, $5, $6, $7, $8)',
        [d.id, attemptNo, started, Date.now() - started.getTime(), status, error, delivered, retryAt]);
    },
  };
}
