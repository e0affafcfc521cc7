/*
 * GraphQL over websockets (graphql-ws protocol): the connection is
 * authenticated with the same JWT as HTTP (connection parameter
 * Authorization), and runs as that user.
 */
import { createClient } from 'graphql-ws';
import WebSocket from 'ws';
import type { App } from '../../server/app';
import { startTestApp, user, User } from '../helpers/api';

let app: App;
beforeAll(async () => { app = await startTestApp(); });
afterAll(() => app.close());

async function overWebsocket(who: User | null, query: string): Promise<{ data?: any; errors?: any[] }> {
  const client = createClient({
    url: `${app.url.replace('http', 'ws')}/graphql`,
    webSocketImpl: WebSocket,
    connectionParams: who ? { Authorization: `Bearer ${who.token}` } : {},
    retryAttempts: 0,
  });
  try {
    return await new Promise((resolve, reject) => {
      let result: any;
      client.subscribe({ query }, {
        next: (value) => { result = value; },
        error: reject,
        complete: () => resolve(result),
      });
    });
  } finally {
    await client.dispose();
  }
}

test('a query over websockets runs as the token\'s user', async () => {
  const client = user('client');
  const res = await overWebsocket(client, '{ currentUserId }');
  expect(res).toEqual({ data: { currentUserId: client.id } });
});

test('without a token it runs as anonymous, who may read nothing', async () => {
  const res = await overWebsocket(null, '{ allSessions { totalCount } }');
  expect(res.errors?.length).toBeGreaterThan(0);
  expect(res.data?.allSessions ?? null).toBeNull();
});
