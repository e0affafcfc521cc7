/*
 * Runs the committed migrations (graphile-migrate) as the database owner,
 * with the settings of the project's .gmrc, after graphile-worker's own
 * (its schema, graphile_worker, holds the jobs that the flow queues).
 */
import path from 'node:path';
import { migrate, watch } from 'graphile-migrate';
import { runMigrations as migrateWorker } from 'graphile-worker';
import { getSettings } from 'graphile-migrate/dist/commands/_common';
import { clearAllPools } from 'graphile-migrate/dist/pgReal';
import { withDatabase } from './setup';
import { quietLogger } from '../worker/logger';

export const PROJECT_ROOT = path.resolve(__dirname, '..', '..');

export interface MigrateOptions {
  /**
   * Also run migrations/current.sql, the migration being written (the test
   * suite does, so that work in progress is tested; it is empty on main).
   */
  includeCurrent?: boolean;
}

export async function migrateDatabase(ownerUrl: string, rootUrl?: string, options: MigrateOptions = {}): Promise<void> {
  const fileSettings = await getSettings({ configFile: path.join(PROJECT_ROOT, '.gmrc') });
  const settings = {
    ...fileSettings,
    connectionString: ownerUrl,
    // Only `graphile-migrate reset` uses a root connection; migrating needs none,
    // but the settings must name one that differs from the owner's.
    rootConnectionString: rootUrl ?? withDatabase(ownerUrl, 'postgres'),
    migrationsFolder: path.join(PROJECT_ROOT, 'migrations'),
  };
  await migrateWorker({ connectionString: ownerUrl, logger: quietLogger });
  try {
    await migrate(settings);
    if (options.includeCurrent) await watch(settings, true);
  } finally {
    // graphile-migrate keeps its pools open for a while, and exits the
    // process if one of their idle connections is later closed by the server.
    clearAllPools();
  }
}
