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
