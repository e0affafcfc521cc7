export default async function globalTeardown(): Promise<void> {
  await globalThis.__FLOW_TEST_DB__?.stop();
}
