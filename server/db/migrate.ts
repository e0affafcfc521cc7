/*
 * Runs the committed migrations (graphile-migrate) as the database owner,
 * with the settings of the project's .gmrc.
 */
import path from 'node:path';
import { migrate } from 'graphile-migrate';
import { getSettings } from 'graphile-migrate/dist/commands/_common';

export const PROJECT_ROOT = path.resolve(__dirname, '..', '..');

export async function migrateDatabase(ownerUrl: string, rootUrl: string = ownerUrl): Promise<void> {
  const settings = await getSettings({ configFile: path.join(PROJECT_ROOT, '.gmrc') });
  await migrate({
    ...settings,
    connectionString: ownerUrl,
    rootConnectionString: rootUrl,
    migrationsFolder: path.join(PROJECT_ROOT, 'migrations'),
  });
}
