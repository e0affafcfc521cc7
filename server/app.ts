/*
 * The HTTP server: PostGraphile at /graphql (HTTP and websockets), Ruru in
 * development, and /healthz, which answers 200 only when the database does.
 */
import { createServer, Server } from 'node:http';
import pg from 'pg';
import { postgraphile, PostGraphileInstance } from 'postgraphile';
import { grafserv } from 'postgraphile/grafserv/node';
import { AuthenticationError, identities, identify } from './auth';
import type { ServerConfig } from './config';
import { makePreset } from './graphile.config';

export interface App {
  server: Server;
  url: string;
  close(): Promise<void>;
}

export async function startApp(options: { connectionString: string; ownerConnectionString: string; config: ServerConfig }): Promise<App> {
  const preset = makePreset(options);
  const pgl: PostGraphileInstance = postgraphile(preset);
  const serv = pgl.createServ(grafserv);
  const health = new pg.Pool({ connectionString: options.connectionString, max: 1 });
  health.on('error', () => {});

  const graphql = serv.createHandler();
  const server = createServer((req, res) => {
    if (req.url === '/healthz') {
      health.query('select 1').then(
        () => res.writeHead(200, { 'content-type': 'application/json' }).end('{"status":"ok"}'),
        () => res.writeHead(503, { 'content-type': 'application/json' }).end('{"status":"database unavailable"}'),
      );
      return;
    }
    // A bad token is refused here, with 401, rather than run as anonymous.
    try {
      identities.set(req, identify(req.headers.authorization, options.config.jwt));
    } catch (err) {
      const invalid = err instanceof AuthenticationError;
      res.writeHead(invalid ? 401 : 500, { 'content-type': 'application/json', ...(invalid ? { 'www-authenticate': 'Bearer' } : {}) })
        .end(JSON.stringify({ errors: [invalid ? { message: err.message, extensions: { code: 'INVALID_TOKEN' } } : { message: 'Internal error' }] }));
      return;
    }
    graphql(req, res);
  });
  const upgrade = await serv.getUpgradeHandler();
  server.on('upgrade', (req, socket, head) => {
    if (upgrade && serv.shouldHandleUpgrade(req, socket, head)) upgrade(req, socket, head);
    else socket.destroy();
  });
  await pgl.getSchema();
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(options.config.port, options.config.host, () => resolve());
  });
  const address = server.address();
  const port = typeof address === 'object' && address ? address.port : options.config.port;

  return {
    server,
    url: `http://${options.config.host}:${port}`,
    async close() {
      // In-flight requests finish; then the listeners and every pool close.
      const closed = new Promise<void>((resolve) => server.close(() => resolve()));
      server.closeIdleConnections();
      await closed;
      await serv.release(); // (releases the PostGraphile instance too)
      // ...which leaves the pg pools open: release the services as well.
      for (const service of preset.pgServices) await service.release?.();
      await health.end();
    },
  };
}
