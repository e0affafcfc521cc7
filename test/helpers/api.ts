/*
 * The real server, on a free port, against the test database, and a small
 * GraphQL-over-HTTP client for the tests.
 */
import { randomUUID } from 'node:crypto';
import { AppRole, mintToken } from '../../server/auth';
import { App, startApp } from '../../server/app';
import { DEVELOPMENT_JWT_SECRET, readConfig } from '../../server/config';
import { localAuthenticatorUrl } from '../../server/db/setup';
import type { PaymentProvider } from '../../server/mpesa/provider';
import { connectionString } from './db';

/**
 * The server on the shared test database, without graphile-worker (WORKER
 * off): its jobs would act on the other test files' payments. The payment
 * worker's tests use a database of their own (ownerUrl) and a provider of
 * their own.
 */
export async function startTestApp(env: NodeJS.ProcessEnv = {}, options: { ownerUrl?: string; provider?: PaymentProvider } = {}): Promise<App> {
  const owner = options.ownerUrl ?? connectionString('owner');
  return startApp({
    connectionString: localAuthenticatorUrl(owner),
    ownerConnectionString: owner,
    config: { ...readConfig({ JWT_SECRET: DEVELOPMENT_JWT_SECRET, WORKER: 'off', ...env }), port: 0, host: '127.0.0.1' },
    provider: options.provider,
  });
}

export interface User {
  role: AppRole;
  id: string;
  token: string;
}

export function user(role: AppRole, id: string = randomUUID()): User {
  return { role, id, token: mintToken({ role, userId: id }, DEVELOPMENT_JWT_SECRET) };
}

export interface GraphQLResponse {
  status: number;
  data?: Record<string, any> | null;
  errors?: Array<{ message: string; extensions?: Record<string, any> }>;
}

export async function gql(app: App, who: User | null, query: string, variables: Record<string, unknown> = {}, headers: Record<string, string> = {}): Promise<GraphQLResponse> {
  const res = await fetch(`${app.url}/graphql`, {
    method: 'POST',
    headers: {
      'content-type': 'application/json',
      accept: 'application/graphql-response+json, application/json',
      ...(who ? { authorization: `Bearer ${who.token}` } : {}),
      ...headers,
    },
    body: JSON.stringify({ query, variables }),
  });
  return { status: res.status, ...(await res.json()) };
}
