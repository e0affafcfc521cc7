/*
 * The start command (npm start): opens the database (embedded when no
 * DATABASE_URL is given), migrates it, and keeps it running until SIGINT or
 * SIGTERM, when it stops the embedded server cleanly.
 */
import { openMigratedDatabase } from './db/database';

async function main(): Promise<void> {
  const db = await openMigratedDatabase();
  const shown = new URL(db.ownerUrl);
  shown.password = shown.password ? '***' : '';
  console.log(`flow-integrity database ready (${db.source}), migrated: ${shown.toString()}`);
  console.log(`  psql "${db.ownerUrl}"`);
  let stopping = false;
  const stop = async (signal: string) => {
    if (stopping) return;
    stopping = true;
    console.log(`${signal}: stopping`);
    await db.close();
    process.exit(0);
  };
  process.on('SIGINT', () => void stop('SIGINT'));
  process.on('SIGTERM', () => void stop('SIGTERM'));
}

main().catch((err) => {
  console.error(err instanceof Error ? err.message : err);
  process.exit(1);
});
