/*
 * The HTTP server: PostGraphile at /graphql (HTTP and websockets), Ruru in
 * development, and /healthz, which answers 200 only when the database does.
 */
import { createServer, Server } from 'node:http';
import type { Duplex } from 'node:stream';
import pg from 'pg';
import { postgraphile, PostGraphileInstance } from 'postgraphile';
import { grafserv } from 'postgraphile/grafserv/node';
import { AuthenticationError, identities, identify } from './auth';
import type { ServerConfig } from './config';
import { makePreset } from './graphile.config';
import { CALLBACK_PATH, makeCallbackEndpoint, paymentProviderPool } from './mpesa/callback';
import { DarajaClient } from './mpesa/daraja';
import type { PaymentProvider } from './mpesa/provider';
import { MpesaSimulator } from './mpesa/simulator';
import { paymentTasks } from './worker/payments';
import { startDispatcher } from './worker/dispatcher';
import { outboxTasks } from './worker/outbox';
import { webhookTasks } from './worker/webhooks';
import { CHANGES_CHANNEL, Subscriber } from './changes';
import { startWorker } from './worker/run';

export interface App {
  server: Server;
  url: string;
  /** The URL M-Pesa posts callbacks to (secret included). */
  callbackUrl: string;
  provider: PaymentProvider;
  close(): Promise<void>;
}

export interface AppOptions {
  connectionString: string;
  ownerConnectionString: string;
  config: ServerConfig;
  /** Instead of the configured one (the tests pass their simulator). */
  provider?: PaymentProvider;
}

export async function startApp(options: AppOptions): Promise<App> {
  const { config } = options;
  const preset = makePreset(options);
  const pgl: PostGraphileInstance = postgraphile(preset);
  const serv = pgl.createServ(grafserv);
  const health = new pg.Pool({ connectionString: options.connectionString, max: 1 });
  health.on('error', () => {});

  const graphql = serv.createHandler();
  const callbackDb = paymentProviderPool(options.connectionString);
  const callback = makeCallbackEndpoint({ db: callbackDb, secret: config.payments.callbackSecret, maxBytes: config.payments.maxCallbackBytes });
  const server = createServer((req, res) => {
    if (callback.handle(req, res)) return;
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
  // Websockets live on (subscriptions): closing the server waits for no
  // request on them, so they are closed when it stops (clients reconnect
  // elsewhere and resume from their last cursor).
  const websockets = new Set<Duplex>();
  server.on('upgrade', (req, socket, head) => {
    if (upgrade && serv.shouldHandleUpgrade(req, socket, head)) {
      websockets.add(socket);
      socket.once('close', () => websockets.delete(socket));
      upgrade(req, socket, head);
    } else socket.destroy();
  });
  await pgl.getSchema();
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(options.config.port, options.config.host, () => resolve());
  });
  const address = server.address();
  const port = typeof address === 'object' && address ? address.port : options.config.port;
  const url = `http://${options.config.host}:${port}`;
  const callbackUrl = `${config.payments.publicUrl ?? url}${CALLBACK_PATH}${config.payments.callbackSecret}`;

  const provider: PaymentProvider = options.provider
    ?? (config.payments.provider === 'daraja' ? new DarajaClient(config.payments.daraja!) : new MpesaSimulator(config.payments.simulator));
  const workerDb = config.worker ? new pg.Pool({ connectionString: options.ownerConnectionString, max: 4 }) : undefined;
  workerDb?.on('error', () => {});
  const worker = workerDb
    ? await startWorker({
        ownerConnectionString: options.ownerConnectionString,
        tasks: {
          ...paymentTasks(workerDb, {
            provider, callbackUrl,
            queryAfterSeconds: config.payments.queryAfterSeconds, giveUpAfterSeconds: config.payments.giveUpAfterSeconds,
          }),
          ...webhookTasks(workerDb, config.webhooks),
          ...outboxTasks(workerDb),
        },
      })
    : undefined;
  // The flow's notifications are listened to for as long as the server runs,
  // so that a new subscription's listener is in place at once.
  const subscriber = preset.pgServices[0].pgSubscriber! as unknown as Subscriber;
  const listening = subscriber.subscribe(CHANGES_CHANNEL);
  // (It ends, or throws when the listening connection drops: a subscription's own stream handles that.)
  void (async () => { for await (const _ of listening) { /* kept open */ } })().catch(() => {});
  const dispatcher = workerDb ? startDispatcher(workerDb, subscriber, config.webhooks.dispatchPollMs) : undefined;

  return {
    server,
    url,
    callbackUrl,
    provider,
    async close() {
      await dispatcher?.stop();
      await listening.return?.();
      await worker?.stop();
      await provider.close?.();
      // In-flight requests finish; then the listeners and every pool close.
      const closed = new Promise<void>((resolve) => server.close(() => resolve()));
      server.closeIdleConnections();
      for (const socket of websockets) socket.destroy();
      await closed;
      await serv.release(); // (releases the PostGraphile instance too)
      // ...which leaves the pg pools open: release the services as well.
      for (const service of preset.pgServices) await service.release?.();
      await health.end();
      await callback.close();
      await callbackDb.end();
      await workerDb?.end();
    },
  };
}
