/*
 * Live changes: GraphQL subscriptions over websockets (graphql-ws).
 *
 *   subscription { changes(after: $cursor, sessionId: $id) { cursor eventType ... } }
 *
 * Each subscription tails the durable change feed (app_public.change_feed)
 * from its cursor, under the subscriber's own rights (row-level security:
 * a client never receives another client's events). The audit trigger's
 * NOTIFY on flow_changes, which carries a session id only, wakes it to read
 * on; a poll every few seconds covers a notification lost with a dropped
 * listening connection. Everything it sends comes from the feed, one cursor
 * after another: what was missed while away comes first, then what happens
 * live, with no gap and no duplicate at the seam. It ends, with
 * INVALID_TOKEN, when the subscriber's token expires.
 */
import { context, GrafastSubscriber, lambda, listen, SafeError } from 'postgraphile/grafast';
import { extendSchema, gql } from 'postgraphile/utils';

export const CHANGES_CHANNEL = 'flow_changes';

/** Events are read this many at a time. */
const PAGE = 200;

/** What the server listens with: PostGraphile's PgSubscriber, whose subscribe() listens from the moment it returns. */
export interface Subscriber {
  subscribe(topic: string): AsyncIterableIterator<string>;
}

type WithPgClient = (pgSettings: Record<string, string> | null, callback: (client: { query(q: { text: string; values?: unknown[] }): Promise<{ rows: readonly any[] }> }) => Promise<any>) => Promise<any>;

interface FeedPage {
  events: Array<Record<string, any>>;
  cursor: string;
  has_more: boolean;
}

/**
 * The feed's events, from `after` (or from now), read as the subscriber, for
 * as long as the subscription lasts. (An iterator whose return() ends it at
 * once, even while it waits for a change.)
 */
export function changeStream(
  withPgClient: WithPgClient, pgSettings: Record<string, string> | null, subscriber: Subscriber,
  after: string | null, sessionId: string | null, pollMs: number,
): AsyncIterableIterator<Record<string, any>> {
  const expiresAt = pgSettings?.['jwt.claims.exp'] ? Number(pgSettings['jwt.claims.exp']) * 1000 : Infinity;
  const checkToken = () => {
    if (Date.now() >= expiresAt) throw new SafeError('The token expired: subscribe again with a new one', { code: 'INVALID_TOKEN' });
  };
  let closed = false;
  let close!: () => void;
  const closing = new Promise<'closed'>((resolve) => { close = () => resolve('closed'); });
  const query = (text: string, values: unknown[]) => withPgClient(pgSettings, (client) => client.query({ text, values }));

  async function* stream(): AsyncGenerator<Record<string, any>> {
    // Listening before the first read: a change committed meanwhile wakes us.
    const notifications = subscriber.subscribe(CHANGES_CHANNEL);
    let wake: Promise<IteratorResult<string>> | null = null;
    try {
      let cursor: string = after ?? (await query('select app_public.change_feed_now() as cursor', [])).rows[0].cursor;
      while (!closed) {
        checkToken();
        let page: FeedPage;
        do {
          page = (await query('select to_json(f) as page from app_public.change_feed($1, $2, $3) f', [cursor, PAGE, sessionId])).rows[0].page;
          for (const event of page.events) {
            if (closed) return;
            yield toGraphQL(event);
          }
          cursor = page.cursor;
        } while (page.has_more && !closed);
        // Until a change of this subscription's session (any, without one), the poll, or the end.
        for (;;) {
          wake ??= notifications.next().then((n) => { wake = null; return n; });
          const wait = Math.max(0, Math.min(pollMs, expiresAt - Date.now()));
          const woken = await Promise.race([wake, closing, new Promise((resolve) => setTimeout(resolve, wait, 'poll'))]);
          if (woken === 'closed') return;
          if (woken === 'poll' || !sessionId) break;
          const n = woken as IteratorResult<string>;
          if (n.done) return;
          if (n.value === sessionId) break;
        }
      }
    } finally {
      await notifications.return?.();
    }
  }

  const events = stream();
  return {
    [Symbol.asyncIterator]() { return this; },
    next: () => events.next(),
    async return(value?: any) {
      closed = true;
      close();
      return events.return(value);
    },
    async throw(err?: unknown) {
      closed = true;
      close();
      return events.throw(err);
    },
  };
}

function toGraphQL(e: Record<string, any>): Record<string, unknown> {
  return {
    rowId: String(e.id), cursor: e.cursor, eventType: e.event_type, sessionId: e.session_id, entityType: e.entity_type,
    entityId: e.entity_id, oldValue: e.old_value, newValue: e.new_value, step: e.step, reason: e.reason,
    actor: e.actor, requestId: e.request_id, createdAt: e.created_at,
  };
}

/** pollMs: a subscription reads on at least this often without a notification (CHANGES_POLL_MS). */
export const makeChangesPlugin = ({ pollMs }: { pollMs: number }) => extendSchema(() => ({
  typeDefs: gql`
    """A committed change, as the change feed gives it (ChangeEvent, app_public.change_event)."""
    type ChangeFeedEvent {
      """The audit entry's id (rowId, as in ChangeEvent and AuditEntry)."""
      rowId: BigInt!
      """Pass it as after (to the subscription or to changeFeed) to resume after this change."""
      cursor: String!
      """entity.new_state, e.g. payment.confirmed, session.cancelled, required_action.open."""
      eventType: String!
      sessionId: UUID!
      entityType: String!
      entityId: UUID!
      oldValue: String
      newValue: String!
      step: String
      reason: String
      actor: String!
      requestId: String
      createdAt: Datetime!
    }

    extend type Subscription {
      """
      The changes the viewer may see, as they are committed: of one session (sessionId), or of every session the
      viewer sees. With after (a cursor from this subscription or from changeFeed), first every change committed
      since, then the live ones, with no gap and no duplicate; without, from now on.
      """
      changes(after: String, sessionId: UUID): ChangeFeedEvent!
    }
  `,
  objects: {
    Subscription: {
      plans: {
        changes: {
          subscribePlan(_$root, fieldArgs) {
            const $source = lambda(
              [context().get('withPgClient'), context().get('pgSettings'), context().get('pgSubscriber')],
              ([withPgClient, pgSettings, pgSubscriber]) => ({
                subscribe: (topic: string) => {
                  const { after, sessionId } = JSON.parse(topic);
                  return changeStream(withPgClient as unknown as WithPgClient, pgSettings as Record<string, string> | null, pgSubscriber as Subscriber, after, sessionId, pollMs);
                },
              }) as unknown as GrafastSubscriber<Record<string, any>>,
            );
            const $topic = lambda([fieldArgs.getRaw('after'), fieldArgs.getRaw('sessionId')],
              ([after, sessionId]) => JSON.stringify({ after: after ?? null, sessionId: sessionId ?? null }));
            return listen($source, $topic);
          },
          plan($event) {
            return $event;
          },
        },
      },
    },
  },
}));
