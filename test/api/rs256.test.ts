/*
 * Tokens signed with RS256 are verified with the configured public key; an
 * HS256 token (or one signed by another key) is refused.
 */
import { generateKeyPairSync, randomUUID } from 'node:crypto';
import jwt from 'jsonwebtoken';
import type { App } from '../../server/app';
import { gql, startTestApp } from '../helpers/api';

const keys = generateKeyPairSync('rsa', { modulusLength: 2048 });
const other = generateKeyPairSync('rsa', { modulusLength: 2048 });
const pem = (k: typeof keys.privateKey) => k.export({ type: 'pkcs8', format: 'pem' }).toString();

let app: App;
beforeAll(async () => {
  app = await startTestApp({ JWT_PUBLIC_KEY: keys.publicKey.export({ type: 'spki', format: 'pem' }).toString() });
});
afterAll(() => app.close());

const as = (token: string) => ({ role: 'client' as const, id: '', token });

test('an RS256 token signed by the matching key is accepted', async () => {
  const id = randomUUID();
  const token = jwt.sign({ role: 'client' }, pem(keys.privateKey), { algorithm: 'RS256', subject: id, expiresIn: '5m' });
  const res = await gql(app, as(token), '{ currentUserId }');
  expect(res.data).toEqual({ currentUserId: id });
});

test('a token signed by another key, or with HS256, is refused', async () => {
  const forged = jwt.sign({ role: 'admin' }, pem(other.privateKey), { algorithm: 'RS256', subject: randomUUID() });
  const hs = jwt.sign({ role: 'admin' }, 'guess', { algorithm: 'HS256', subject: randomUUID() });
  for (const token of [forged, hs]) {
    const res = await gql(app, as(token), '{ currentUserId }');
    expect([res.status, res.errors?.[0]?.extensions?.code]).toEqual([401, 'INVALID_TOKEN']);
  }
});
