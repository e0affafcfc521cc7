/*
 * One PostgreSQL for the whole suite: the server named by
 * TEST_ROOT_DATABASE_URL (a superuser connection; .ci/run uses it for the
 * PostgreSQL 15 pass), or else an embedded PostgreSQL 18 in a temporary
 * directory on a free port. A fresh test database is created and migrated;
 * the test files find it through TEST_OWNER_URL and TEST_SUPERUSER_URL.
 */
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { startEmbeddedPostgres, EmbeddedPostgres } from '../server/db/embedded';
import { migrateDatabase } from '../server/db/migrate';
import { freePort } from '../server/db/ports';
import { dropDatabase, ensureDatabase, withDatabase } from '../server/db/setup';

const TEST_DATABASE = 'flow_integrity_test';

declare global {
  // eslint-disable-next-line no-var
  var __FLOW_TEST_PG__: { server?: EmbeddedPostgres; tmpDir?: string } | undefined;
}

export default async function globalSetup(): Promise<void> {
  let rootUrl = process.env.TEST_ROOT_DATABASE_URL;
  globalThis.__FLOW_TEST_PG__ = {};
  if (!rootUrl) {
    const tmpDir = await fs.mkdtemp(path.join(os.tmpdir(), 'flow-integrity-test-'));
    const server = await startEmbeddedPostgres({
      dataDir: path.join(tmpDir, 'data'),
      port: await freePort(),
      persistent: false,
    });
    globalThis.__FLOW_TEST_PG__ = { server, tmpDir };
    rootUrl = server.rootUrl;
  }
  await dropDatabase(rootUrl, TEST_DATABASE);
  const ownerUrl = await ensureDatabase(rootUrl, TEST_DATABASE);
  await migrateDatabase(ownerUrl, rootUrl, { includeCurrent: true });
  process.env.TEST_OWNER_URL = ownerUrl;
  process.env.TEST_SUPERUSER_URL = withDatabase(rootUrl, TEST_DATABASE);
}
