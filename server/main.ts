/*
 * The start command (npm start): opens the database (an embedded PostgreSQL
 * when no DATABASE_URL is given), migrates it, and serves the GraphQL API.
 * SIGINT/SIGTERM: in-flight requests finish, pools and listeners close, the
 * embedded PostgreSQL stops.
 */
import { startApp } from './app';
import { readConfig } from './config';
import { openMigratedDatabase } from './db/database';
import { localAuthenticatorUrl } from './db/setup';

async function main(): Promise<void> {
  const config = readConfig();
  const db = await openMigratedDatabase();
  const connectionString = process.env.AUTHENTICATOR_DATABASE_URL
    ?? (db.source === 'embedded' ? localAuthenticatorUrl(db.ownerUrl) : undefined);
  if (!connectionString) {
    await db.close();
    throw new Error('With DATABASE_URL, also set AUTHENTICATOR_DATABASE_URL (the flow_authenticator role; README, "Roles").');
  }
  const app = await startApp({ connectionString, ownerConnectionString: db.ownerUrl, config });
  console.log(`flow-integrity API on ${app.url}/graphql (database: ${db.source})`);
  // (The callback URL carries a secret: not written to a production log.)
  const callbackUrl = config.production ? app.callbackUrl.replace(/[^/]+$/, '<MPESA_CALLBACK_SECRET>') : app.callbackUrl;
  console.log(`  M-Pesa: ${app.provider.name}; callback URL ${callbackUrl}; worker ${config.worker ? 'running here' : 'off (WORKER=off)'}`);
  if (!config.production) {
    console.log(`  Ruru (GraphiQL): ${app.url}/graphql`);
    console.log(`  a token to try it with: npm run token -- client`);
    console.log(`  curl -s ${app.url}/graphql -H 'content-type: application/json' -H "authorization: Bearer $(npm run -s token -- admin)" \\`);
    console.log(`    -d '{"query":"{ allSessions(first: 5) { nodes { rowId status } } }"}'`);
  }
  let stopping = false;
  const stop = async (signal: string) => {
    if (stopping) return;
    stopping = true;
    console.log(`${signal}: stopping`);
    await app.close();
    await db.close();
    process.exit(0);
  };
  process.on('SIGINT', () => void stop('SIGINT'));
  process.on('SIGTERM', () => void stop('SIGTERM'));
}

main().catch((err) => {
  console.error(process.env.DEBUG ? err : err instanceof Error ? err.message : err);
  process.exit(1);
});
