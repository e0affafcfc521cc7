/*
 * One PostgreSQL for the whole suite: the server named by
 * TEST_ROOT_DATABASE_URL (a superuser connection; .ci/run uses it for the
 * PostgreSQL 15 pass), or else an embedded PostgreSQL 18 in a temporary
 * directory. A fresh test database is created and migrated; the test files
 * find it through TEST_OWNER_URL and TEST_SUPERUSER_URL.
 */
import { openScratchDatabase, ScratchDatabase } from '../server/db/scratch';

declare global {
  // eslint-disable-next-line no-var
  var __FLOW_TEST_DB__: ScratchDatabase | undefined;
}

export default async function globalSetup(): Promise<void> {
  const db = await openScratchDatabase('flow_integrity_test', { rootUrl: process.env.TEST_ROOT_DATABASE_URL });
  globalThis.__FLOW_TEST_DB__ = db;
  process.env.TEST_OWNER_URL = db.ownerUrl;
  process.env.TEST_SUPERUSER_URL = db.superuserUrl;
}
