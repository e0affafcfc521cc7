/*
 * Creates what the schema needs before migrations can run: the owner role and
 * the database. It needs a superuser (or CREATEROLE + CREATEDB) connection; on
 * a server you run yourself, do the same by hand (README, "Roles").
 */
import pg from 'pg';

/** The role that owns the schema and runs the migrations. */
export const OWNER_ROLE = 'flow_owner';
/** Its password on the embedded and test servers only (they listen on 127.0.0.1). */
const LOCAL_OWNER_PASSWORD = 'flow_owner';

export function withDatabase(url: string, database: string, user?: { name: string; password: string }): string {
  const u = new URL(url);
  u.pathname = `/${database}`;
  if (user) {
    u.username = user.name;
    u.password = user.password;
  }
  return u.toString();
}

/**
 * Ensures the owner role and the database exist (creating them when missing)
 * and returns the owner's connection string to that database.
 */
export async function ensureDatabase(rootUrl: string, database: string): Promise<string> {
  const client = await connectWhenReady(rootUrl);
  try {
    const role = await client.query('select 1 from pg_roles where rolname = $1', [OWNER_ROLE]);
    if (role.rowCount === 0) {
      await client.query(`create role ${OWNER_ROLE} login password '${LOCAL_OWNER_PASSWORD}'`);
    }
    const db = await client.query('select 1 from pg_database where datname = $1', [database]);
    if (db.rowCount === 0) {
      await client.query(`create database ${pg.escapeIdentifier(database)} owner ${OWNER_ROLE}`);
    }
  } finally {
    await client.end();
  }
  return withDatabase(rootUrl, database, { name: OWNER_ROLE, password: LOCAL_OWNER_PASSWORD });
}

/**
 * Connects, waiting up to `timeoutMs` for a server that is still starting up
 * (connection refused, or "the database system is starting up").
 */
export async function connectWhenReady(url: string, timeoutMs = 15_000): Promise<pg.Client> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const client = new pg.Client({ connectionString: url });
    try {
      await client.connect();
      return client;
    } catch (err) {
      const code = (err as { code?: string }).code;
      if (Date.now() > deadline || (code !== 'ECONNREFUSED' && code !== '57P03')) throw err;
      await new Promise((resolve) => setTimeout(resolve, 200));
    }
  }
}

/** Drops the database when it exists (tests start from an empty one). */
export async function dropDatabase(rootUrl: string, database: string): Promise<void> {
  const client = await connectWhenReady(rootUrl);
  try {
    await client.query(`drop database if exists ${pg.escapeIdentifier(database)} with (force)`);
  } finally {
    await client.end();
  }
}
