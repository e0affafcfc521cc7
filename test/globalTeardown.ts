import fs from 'node:fs/promises';

export default async function globalTeardown(): Promise<void> {
  const state = globalThis.__FLOW_TEST_PG__;
  if (state?.server) await state.server.stop();
  if (state?.tmpDir) await fs.rm(state.tmpDir, { recursive: true, force: true });
}
