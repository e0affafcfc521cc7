/*
 * Identity: a bearer JWT (HS256 with a shared secret, or RS256 with a public
 * key) whose claims give the user id (`sub`) and the role (client,
 * therapist, admin, payment_provider, integration). It becomes the transaction's settings:
 * the database role, jwt.claims.*, and the audit log's actor and request id.
 * No token: the anonymous role, which may read nothing. A bad token is
 * refused, not downgraded to anonymous.
 */
import { createPublicKey, createSecretKey, KeyObject, randomUUID } from 'node:crypto';
import jwt from 'jsonwebtoken';
import type { ServerConfig } from './config';

export const APP_ROLES = ['client', 'therapist', 'admin', 'payment_provider', 'integration'] as const;
export type AppRole = (typeof APP_ROLES)[number];

export class AuthenticationError extends Error {}

export interface Identity {
  role: AppRole | 'anonymous';
  userId: string | null;
  /** When the token expires (seconds since the epoch; `exp`), if it does. */
  expiresAt?: number;
}

// Keys as KeyObjects, made once: given a string, jsonwebtoken first tries to
// parse it as a public key on every call, which costs more than the check.
const keys = new Map<string, KeyObject>();
function keyOf(config: ServerConfig['jwt']): KeyObject {
  const material = config.algorithm === 'HS256' ? config.secret : config.publicKey;
  let key = keys.get(material);
  if (!key) {
    key = config.algorithm === 'HS256' ? createSecretKey(Buffer.from(material)) : createPublicKey(material);
    keys.set(material, key);
  }
  return key;
}

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

/** The identity of each HTTP request, verified once, when it arrives (server/app.ts). */
export const identities = new WeakMap<object, Identity>();

export function identify(authorization: string | undefined, config: ServerConfig['jwt']): Identity {
  if (!authorization) return { role: 'anonymous', userId: null };
  const match = /^Bearer\s+(\S+)$/i.exec(authorization);
  if (!match) throw new AuthenticationError('The Authorization header must be "Bearer <token>"');
  let claims: jwt.JwtPayload;
  try {
    const verified = jwt.verify(match[1], keyOf(config), {
      algorithms: [config.algorithm],
    });
    if (typeof verified === 'string') throw new Error('not a JSON token');
    claims = verified;
  } catch (err) {
    throw new AuthenticationError(`Invalid token: ${(err as Error).message}`);
  }
  if (!APP_ROLES.includes(claims.role)) throw new AuthenticationError(`Invalid token: role must be one of ${APP_ROLES.join(', ')}`);
  if (typeof claims.sub !== 'string' || !UUID.test(claims.sub)) throw new AuthenticationError('Invalid token: sub must be the user id (a UUID)');
  return { role: claims.role, userId: claims.sub, ...(typeof claims.exp === 'number' ? { expiresAt: claims.exp } : {}) };
}

/** The transaction-local settings a request runs with. */
export function pgSettingsFor(identity: Identity, requestId: string = randomUUID()): Record<string, string> {
  return {
    role: `flow_${identity.role}`,
    'jwt.claims.user_id': identity.userId ?? '',
    'jwt.claims.role': identity.role,
    'flow.actor': identity.userId ? `${identity.role}:${identity.userId}` : identity.role,
    'flow.request_id': requestId,
    // (Long-lived operations, subscriptions, end when the token does.)
    ...(identity.expiresAt ? { 'jwt.claims.exp': String(identity.expiresAt) } : {}),
  };
}

/** A token for local development and tests (npm run token). */
export function mintToken(identity: { role: AppRole; userId: string }, secret: string, expiresIn: jwt.SignOptions['expiresIn'] = '12h'): string {
  return jwt.sign({ role: identity.role }, secret, { algorithm: 'HS256', subject: identity.userId, expiresIn });
}
