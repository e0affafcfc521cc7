/*
 * A throwaway database for the tests and the benchmarks: on the server named
 * by a superuser connection string, or else on an embedded PostgreSQL in a
 * temporary directory on a free port. Created fresh and migrated with the
 * working tree's schema (committed migrations and migrations/current.sql).
 */
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { startEmbeddedPostgres } from './embedded';
import { migrateDatabase } from './migrate';
import { freePort } from './ports';
import { dropDatabase, ensureDatabase, withDatabase } from './setup';

export interface ScratchDatabase {
  /** The schema owner's connection string. */
  ownerUrl: string;
  /** A superuser's, to the same database. */
  superuserUrl: string;
  /** Stops the embedded server and removes its files (a server of yours is left running). */
  stop(): Promise<void>;
}

export async function openScratchDatabase(
  database: string,
  options: { rootUrl?: string; postgresFlags?: string[] } = {},
): Promise<ScratchDatabase> {
  let rootUrl = options.rootUrl;
  let stop = async () => {};
  if (!rootUrl) {
    const tmpDir = await fs.mkdtemp(path.join(os.tmpdir(), 'flow-integrity-'));
    const server = await startEmbeddedPostgres({
      dataDir: path.join(tmpDir, 'data'),
      port: await freePort(),
      persistent: false,
      postgresFlags: options.postgresFlags,
    });
    rootUrl = server.rootUrl;
    stop = async () => {
      await server.stop();
      await fs.rm(tmpDir, { recursive: true, force: true });
    };
  }
  try {
    await dropDatabase(rootUrl, database);
    const ownerUrl = await ensureDatabase(rootUrl, database);
    await migrateDatabase(ownerUrl, rootUrl, { includeCurrent: true });
    return { ownerUrl, superuserUrl: withDatabase(rootUrl, database), stop };
  } catch (err) {
    await stop();
    throw err;
  }
}
