/*
 * Where the database is: the server in DATABASE_URL, or, when none is given,
 * an embedded PostgreSQL whose data lives in the git-ignored .data/ folder.
 */
import path from 'node:path';
import { startEmbeddedPostgres } from './embedded';
import { migrateDatabase, PROJECT_ROOT } from './migrate';
import { ensureDatabase } from './setup';

export interface Database {
  /** The schema owner's connection string (migrations run as it). */
  ownerUrl: string;
  /** A superuser connection string, where one is known. */
  rootUrl?: string;
  /** Where it came from, for the start banner. */
  source: 'DATABASE_URL' | 'embedded';
  close(): Promise<void>;
}

export const DEFAULT_EMBEDDED_PORT = 54320;
const EMBEDDED_DATABASE = 'flow_integrity';

export async function openDatabase(env: NodeJS.ProcessEnv = process.env, log: (line: string) => void = () => {}): Promise<Database> {
  if (env.DATABASE_URL) {
    return {
      ownerUrl: env.DATABASE_URL,
      rootUrl: env.ROOT_DATABASE_URL,
      source: 'DATABASE_URL',
      close: async () => {},
    };
  }
  const port = Number(env.EMBEDDED_PG_PORT ?? DEFAULT_EMBEDDED_PORT);
  const server = await startEmbeddedPostgres({
    dataDir: path.join(PROJECT_ROOT, '.data', 'postgres'),
    port,
    persistent: true,
    onLog: log,
  });
  try {
    const ownerUrl = await ensureDatabase(server.rootUrl, EMBEDDED_DATABASE);
    return { ownerUrl, rootUrl: server.rootUrl, source: 'embedded', close: () => server.stop() };
  } catch (err) {
    await server.stop();
    throw err;
  }
}

/** Opens the database and brings its schema up to date. */
export async function openMigratedDatabase(env: NodeJS.ProcessEnv = process.env): Promise<Database> {
  const db = await openDatabase(env);
  try {
    await migrateDatabase(db.ownerUrl, db.rootUrl);
  } catch (err) {
    await db.close();
    throw err;
  }
  return db;
}
