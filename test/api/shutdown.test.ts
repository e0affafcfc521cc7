/*
 * Clean shutdown: a request in flight when the server is asked to stop still
 * gets its answer, and only then do the listeners and pools close.
 */
import { gql, startTestApp, user } from '../helpers/api';
import { insertFlow, pool } from '../helpers/db';

test('an in-flight mutation finishes before the server stops', async () => {
  const app = await startTestApp();
  const db = pool();
  const setup = await db.connect();
  await setup.query('begin');
  const flow = await insertFlow(setup);
  await setup.query('commit');
  const { rows } = await setup.query('select therapist_id from app_public.sessions where id = $1', [flow.sessionId]);
  // Hold the session's row, so that the mutation waits for it.
  await setup.query('begin');
  await setup.query('select 1 from app_public.sessions where id = $1 for update', [flow.sessionId]);

  const therapist = user('therapist', rows[0].therapist_id);
  const inFlight = gql(app, therapist, 'mutation($id: UUID!) { approveSession(input: { sessionId: $id }) { session { status } } }', { id: flow.sessionId });
  await new Promise((resolve) => setTimeout(resolve, 200));
  let stopped = false;
  const stopping = app.close().then(() => { stopped = true; });
  await new Promise((resolve) => setTimeout(resolve, 200));
  expect(stopped).toBe(false); // still waiting for the request
  await setup.query('commit'); // let it through
  const res = await inFlight;
  expect(res.data).toEqual({ approveSession: { session: { status: 'approved' } } });
  await stopping;
  expect(stopped).toBe(true);
  // New connections are refused once it has stopped.
  await expect(fetch(`${app.url}/healthz`)).rejects.toThrow();
  setup.release();
  await db.end();
});

test('open subscriptions do not keep the server from stopping: their sockets are closed', async () => {
  const { createClient } = await import('graphql-ws');
  const WebSocket = (await import('ws')).default;
  const app = await startTestApp();
  const client = createClient({
    url: `${app.url.replace('http', 'ws')}/graphql`, webSocketImpl: WebSocket, retryAttempts: 0,
    connectionParams: { Authorization: `Bearer ${user('admin').token}` },
  });
  let ended = false;
  client.subscribe({ query: 'subscription { changes { rowId } }' }, { next: () => {}, error: () => { ended = true; }, complete: () => { ended = true; } });
  await new Promise((resolve) => setTimeout(resolve, 300));
  const started = Date.now();
  await app.close();
  expect(Date.now() - started).toBeLessThan(5000);
  await new Promise((resolve) => setTimeout(resolve, 100));
  expect(ended).toBe(true);
  await client.dispose();
});
