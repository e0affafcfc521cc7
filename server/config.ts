/*
 * The server's configuration, from environment variables (README,
 * "Configuration" and "M-Pesa payments"). Read once, at start.
 */
import type { DarajaConfig } from './mpesa/daraja';
import { DEFAULT_SCENARIO, Scenario } from './mpesa/simulator';

export interface PaymentsConfig {
  /** simulator (default outside production) or daraja. */
  provider: 'simulator' | 'daraja';
  daraja?: DarajaConfig;
  /** The simulator's scenario for every payer. */
  simulator: Scenario;
  /** The secret path segment of the callback URL. */
  callbackSecret: string;
  /** This server's public URL, which the provider posts callbacks to (default: where it listens). */
  publicUrl?: string;
  /** An attempt with no callback this long after it started is settled by asking the provider. */
  queryAfterSeconds: number;
  /** ...and failed when the provider has given no result this long after it started. */
  giveUpAfterSeconds: number;
  /** Largest callback body accepted, in bytes. */
  maxCallbackBytes: number;
}
export interface ServerConfig {
  port: number;
  host: string;
  production: boolean;
  jwt: { algorithm: 'HS256'; secret: string } | { algorithm: 'RS256'; publicKey: string };
  /** The largest request body accepted, in bytes. */
  maxRequestBytes: number;
  /** The deepest query accepted. */
  maxQueryDepth: number;
  /** The most fields one operation may select. */
  maxQueryCost: number;
  payments: PaymentsConfig;
  /** Run graphile-worker (payment jobs, webhooks) inside the server process. */
  worker: boolean;
  webhooks: WebhooksConfig;
  /** A subscription reads the change feed at least this often, notified or not. */
  changesPollMs: number;
}

export interface WebhooksConfig {
  /** Per delivery attempt. */
  timeoutMs: number;
  maxAttempts: number;
  retryBaseMs: number;
  retryMaxMs: number;
  /** The dispatcher (pushes to queue, webhooks to move on) runs at least this often. */
  dispatchPollMs: number;
}

/** A callback secret only for development: production mode refuses to start with it. */
export const DEVELOPMENT_CALLBACK_SECRET = 'dev-callback-secret';

/** A secret only for development: production mode refuses to start with it. */
export const DEVELOPMENT_JWT_SECRET = 'flow-integrity-development-secret-do-not-use-in-production';

export function readConfig(env: NodeJS.ProcessEnv = process.env): ServerConfig {
  const production = env.NODE_ENV === 'production';
  const publicKey = env.JWT_PUBLIC_KEY;
  const secret = env.JWT_SECRET ?? (production ? undefined : DEVELOPMENT_JWT_SECRET);
  if (!publicKey && !secret) throw new Error('Set JWT_SECRET (HS256) or JWT_PUBLIC_KEY (RS256): production mode has no default.');
  if (production && secret === DEVELOPMENT_JWT_SECRET) throw new Error('JWT_SECRET is the development secret: production mode refuses it.');
  return {
    port: Number(env.PORT ?? 5678),
    host: env.HOST ?? '127.0.0.1',
    production,
    jwt: publicKey ? { algorithm: 'RS256', publicKey: publicKey.replace(/\\n/g, '\n') } : { algorithm: 'HS256', secret: secret! },
    maxRequestBytes: Number(env.MAX_REQUEST_BYTES ?? 100_000),
    maxQueryDepth: Number(env.MAX_QUERY_DEPTH ?? 10),
    maxQueryCost: Number(env.MAX_QUERY_COST ?? 500),
    payments: readPaymentsConfig(env, production),
    worker: env.WORKER !== 'off',
    changesPollMs: Number(env.CHANGES_POLL_MS ?? 5000),
    webhooks: {
      timeoutMs: Number(env.WEBHOOK_TIMEOUT_MS ?? 10_000),
      maxAttempts: Number(env.WEBHOOK_MAX_ATTEMPTS ?? 10),
      retryBaseMs: Number(env.WEBHOOK_RETRY_BASE_MS ?? 10_000),
      retryMaxMs: Number(env.WEBHOOK_RETRY_MAX_MS ?? 3_600_000),
      dispatchPollMs: Number(env.WEBHOOK_DISPATCH_POLL_MS ?? 5000),
    },
  };
}

function readPaymentsConfig(env: NodeJS.ProcessEnv, production: boolean): PaymentsConfig {
  // Production names its provider: the simulator is never a silent default there.
  const provider = env.MPESA_PROVIDER ?? (production ? undefined : 'simulator');
  if (provider !== 'simulator' && provider !== 'daraja') throw new Error(`MPESA_PROVIDER must be simulator or daraja${provider ? `, not ${provider}` : ' (production has no default)'}.`);
  const callbackSecret = env.MPESA_CALLBACK_SECRET ?? (production ? undefined : DEVELOPMENT_CALLBACK_SECRET);
  if (!callbackSecret || (production && callbackSecret === DEVELOPMENT_CALLBACK_SECRET) || callbackSecret.length < (production ? 24 : 1)) {
    throw new Error('Set MPESA_CALLBACK_SECRET (production: at least 24 random characters).');
  }
  if (!/^[A-Za-z0-9_-]+$/.test(callbackSecret)) throw new Error('MPESA_CALLBACK_SECRET: letters, digits, _ and - only (it is a URL segment).');
  let daraja: DarajaConfig | undefined;
  if (provider === 'daraja') {
    const need = (name: string) => {
      const value = env[name];
      if (!value) throw new Error(`MPESA_PROVIDER=daraja needs ${name}.`);
      return value;
    };
    daraja = {
      baseUrl: env.MPESA_BASE_URL ?? 'https://sandbox.safaricom.co.ke',
      consumerKey: need('MPESA_CONSUMER_KEY'),
      consumerSecret: need('MPESA_CONSUMER_SECRET'),
      shortCode: need('MPESA_SHORT_CODE'),
      passKey: need('MPESA_PASS_KEY'),
      transactionType: env.MPESA_TRANSACTION_TYPE ?? 'CustomerPayBillOnline',
      timeoutMs: Number(env.MPESA_TIMEOUT_MS ?? 10_000),
    };
    if (production && !env.PUBLIC_URL) throw new Error('MPESA_PROVIDER=daraja in production needs PUBLIC_URL (where M-Pesa posts callbacks).');
  }
  return {
    provider,
    daraja,
    simulator: {
      ...DEFAULT_SCENARIO,
      ...(env.MPESA_SIMULATOR_RESULT_CODE !== undefined ? { resultCode: Number(env.MPESA_SIMULATOR_RESULT_CODE) } : {}),
      ...(env.MPESA_SIMULATOR_DELAY_MS !== undefined ? { delayMs: Number(env.MPESA_SIMULATOR_DELAY_MS) } : {}),
      ...(env.MPESA_SIMULATOR_DELIVERIES !== undefined ? { deliveries: Number(env.MPESA_SIMULATOR_DELIVERIES) } : {}),
    },
    callbackSecret,
    publicUrl: env.PUBLIC_URL?.replace(/\/+$/, ''),
    queryAfterSeconds: Number(env.PAYMENT_QUERY_AFTER_SECONDS ?? 90),
    giveUpAfterSeconds: Number(env.PAYMENT_GIVE_UP_AFTER_SECONDS ?? 600),
    maxCallbackBytes: Number(env.MAX_CALLBACK_BYTES ?? 16_384),
  };
}
