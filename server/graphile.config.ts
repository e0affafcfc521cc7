/*
 * The PostGraphile preset: the amber preset over app_public, served over HTTP
 * and websockets at /graphql, with Ruru (GraphiQL) in development.
 *   - Tables are read-only through GraphQL: every write is a flow step, which
 *     PostGraphile exposes as a mutation (a VOLATILE function of app_public).
 *   - Each request runs as the role its JWT names (server/auth.ts).
 *   - Our own errors keep their code; every other one is masked (server/errors.ts).
 */
import { randomUUID } from 'node:crypto';
import { makePgService } from 'postgraphile/adaptors/pg';
import { SafeError } from 'postgraphile/grafast';
import { PostGraphileAmberPreset } from 'postgraphile/presets/amber';
import { AuthenticationError, identities, identify, pgSettingsFor } from './auth';
import type { ServerConfig } from './config';
import { maskError } from './errors';
import { makeChangesPlugin } from './changes';
import { makeHardeningPlugin } from './hardening';

export interface PresetOptions {
  /** The authenticator's connection string: requests run through it. */
  connectionString: string;
  /** The schema owner's: PostGraphile reads the schema with it. */
  ownerConnectionString: string;
  config: ServerConfig;
}

export function makePreset({ connectionString, ownerConnectionString, config }: PresetOptions) {
  return {
    extends: [PostGraphileAmberPreset],
    plugins: [makeChangesPlugin({ pollMs: config.changesPollMs }), makeHardeningPlugin({ maxDepth: config.maxQueryDepth, maxCost: config.maxQueryCost, production: config.production })],
    pgServices: [
      makePgService({
        connectionString,
        superuserConnectionString: ownerConnectionString,
        schemas: ['app_public'],
      }),
    ],
    schema: {
      // No generic CRUD that could write a status around the flow steps.
      defaultBehavior: '-insert -update -delete',
    },
    gather: {
      // A flow step's arguments without a default are required (non-null) in GraphQL.
      pgStrictFunctions: true,
    },
    grafast: {
      context(requestContext) {
        // HTTP: verified as the request arrived (server/app.ts); websockets: the connection's parameters.
        let identity = requestContext.node?.req ? identities.get(requestContext.node.req) : undefined;
        if (!identity) {
          try {
            identity = identify(requestContext.ws?.normalizedConnectionParams?.authorization as string | undefined, config.jwt);
          } catch (err) {
            if (err instanceof AuthenticationError) throw new SafeError(err.message, { code: 'INVALID_TOKEN' });
            throw err;
          }
        }
        // A caller's X-Request-Id is kept (to trace a request across services) when it looks like one.
        const requestId = requestContext.http?.getHeader('x-request-id');
        return { pgSettings: pgSettingsFor(identity, requestId && /^[\w.:-]{1,64}$/.test(requestId) ? requestId : randomUUID()) };
      },
    },
    grafserv: {
      port: config.port,
      host: config.host,
      graphqlPath: '/graphql',
      websockets: true,
      graphiql: !config.production,
      graphiqlOnGraphQLGET: !config.production,
      maxRequestLength: config.maxRequestBytes,
      maskError,
    },
  } satisfies GraphileConfig.Preset;
}
