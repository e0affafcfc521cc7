/*
 * Limits on what a request may ask, and what production mode hides.
 */
import type { App } from '../../server/app';
import { gql, startTestApp, user } from '../helpers/api';

let dev: App;
let production: App;
beforeAll(async () => {
  dev = await startTestApp({ MAX_QUERY_DEPTH: '6', MAX_QUERY_COST: '50', MAX_REQUEST_BYTES: '20000' });
  production = await startTestApp({
    NODE_ENV: 'production', JWT_SECRET: 'a-production-secret-for-the-tests',
    MPESA_PROVIDER: 'simulator', MPESA_CALLBACK_SECRET: 'a-production-callback-secret-for-tests',
  });
});
afterAll(async () => {
  await dev.close();
  await production.close();
});

test('a query deeper than the limit is refused before it runs', async () => {
  const admin = user('admin');
  const shallow = await gql(dev, admin, '{ allSessions(first: 1) { nodes { paymentBySessionId { status } } } }');
  expect(shallow.errors).toBeUndefined();
  const deep = await gql(dev, admin, `{ allSessions(first: 1) { nodes { paymentBySessionId { sessionBySessionId {
    videoCallBySessionId { sessionBySessionId { paymentBySessionId { status } } } } } } } }`);
  expect(deep.status).toBe(400);
  expect(deep.errors![0]).toMatchObject({ message: 'Query too deep: depth 8, at most 6', extensions: { code: 'QUERY_TOO_DEEP' } });
});

test('a query selecting more fields than the limit (aliases and fragments count) is refused', async () => {
  const aliases = Array.from({ length: 30 }, (_, i) => `a${i}: allSessions(first: 1) { totalCount }`).join(' ');
  const res = await gql(dev, user('admin'), `{ ...F } fragment F on Query { ${aliases} }`);
  expect(res.errors![0]).toMatchObject({ message: 'Query too large: 60 fields, at most 50', extensions: { code: 'QUERY_TOO_COSTLY' } });
});

test('a request body over the limit is refused with 413', async () => {
  const res = await fetch(`${dev.url}/graphql`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ query: `{ allSessions { totalCount } } # ${'x'.repeat(30_000)}` }),
  });
  expect(res.status).toBe(413);
});

test('development serves Ruru; production does not', async () => {
  const html = { headers: { accept: 'text/html' } };
  const devPage = await fetch(`${dev.url}/graphql`, html);
  expect([devPage.status, devPage.headers.get('content-type')]).toEqual([200, expect.stringContaining('text/html')]);
  const prodPage = await fetch(`${production.url}/graphql`, html);
  expect(prodPage.headers.get('content-type') ?? '').not.toContain('text/html');
});

test('production refuses introspection and gives no "did you mean" suggestions', async () => {
  const introspection = await gql(production, null, '{ __schema { types { name } } }');
  expect(introspection.errors![0].message).toMatch(/introspection/i);
  const typo = await gql(production, null, '{ allSesions { totalCount } }');
  expect(typo.errors![0].message).toBe('Cannot query field "allSesions" on type "Query".');
  const devTypo = await gql(dev, null, '{ allSesions { totalCount } }');
  expect(devTypo.errors![0].message).toMatch(/Did you mean "allSessions"/);
});

test('production refuses to start with the development secret', async () => {
  await expect(startTestApp({ NODE_ENV: 'production' })).rejects.toThrow(/development secret/);
});
