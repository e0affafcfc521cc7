/*
 * The API in its own process, as `npm start` runs it, for the benchmarks:
 * the load comes from the benchmark's process, not from the server's.
 */
import { ChildProcess, spawn } from 'node:child_process';
import path from 'node:path';
import { DEVELOPMENT_JWT_SECRET } from '../server/config';
import { freePort } from '../server/db/ports';
import { localAuthenticatorUrl } from '../server/db/setup';

export interface ApiProcess {
  url: string;
  stop(): Promise<void>;
}

export async function startApiProcess(ownerUrl: string, env: NodeJS.ProcessEnv = {}): Promise<ApiProcess> {
  const port = await freePort();
  const api: ChildProcess = spawn(process.execPath, [
    ...(process.env.BENCH_CPU_PROF ? ['--cpu-prof', `--cpu-prof-dir=${process.env.BENCH_CPU_PROF}`] : []),
    '--import', 'tsx', path.join(__dirname, '..', 'server', 'main.ts'),
  ], {
    env: {
      ...process.env,
      DATABASE_URL: ownerUrl,
      AUTHENTICATOR_DATABASE_URL: localAuthenticatorUrl(ownerUrl),
      PORT: String(port),
      JWT_SECRET: DEVELOPMENT_JWT_SECRET,
      // No payment jobs unless a benchmark asks for them: they would act on its sessions.
      WORKER: 'off',
      ...env,
    },
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  await new Promise<void>((resolve, reject) => {
    api.stdout!.on('data', (chunk: Buffer) => { if (chunk.toString().includes('API on')) resolve(); });
    api.once('exit', (code) => reject(new Error(`the API exited (${code})`)));
  });
  return {
    url: `http://127.0.0.1:${port}`,
    async stop() {
      api.kill('SIGTERM');
      await new Promise((resolve) => api.once('exit', resolve));
    },
  };
}
