/*
 * The server's configuration, from environment variables (README,
 * "Configuration"). Read once, at start.
 */
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
}

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
  };
}
