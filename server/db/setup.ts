/*
 * Creates what the schema needs before migrations can run: the roles (the
 * schema owner, the API's authenticator and the API roles) and the database. It needs a superuser (or CREATEROLE + CREATEDB) connection; on
 * a server you run yourself, do the same by hand (README, "Roles").
 */
import pg from 'pg';

/** The role that owns the schema and runs the migrations. */
export const OWNER_ROLE = 'flow_owner';
/** The role the API connects as; it can do nothing until it takes one of the API roles. */
export const AUTHENTICATOR_ROLE = 'flow_authenticator';
/** The roles the API runs requests as (sql/60_grants_and_rls.sql says what each may do). */
export const API_ROLES = ['flow_anonymous', 'flow_client', 'flow_therapist', 'flow_admin', 'flow_payment_provider', 'flow_integration'];
/** Passwords on the embedded and test servers only (they listen on 127.0.0.1). */
const LOCAL_OWNER_PASSWORD = 'flow_owner';
const LOCAL_AUTHENTICATOR_PASSWORD = 'flow_authenticator';

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
    const existing = new Set(
      (await client.query('select rolname from pg_roles where rolname like $1', ['flow\\_%'])).rows.map((r) => r.rolname),
    );
    const create = async (role: string, options: string) => {
      if (!existing.has(role)) await client.query(`create role ${role} ${options}`);
    };
    await create(OWNER_ROLE, `login password '${LOCAL_OWNER_PASSWORD}'`);
    await create(AUTHENTICATOR_ROLE, `login noinherit password '${LOCAL_AUTHENTICATOR_PASSWORD}'`);
    for (const role of API_ROLES) await create(role, 'nologin');
    await client.query(`grant ${API_ROLES.join(', ')} to ${AUTHENTICATOR_ROLE}`);
    const db = await client.query('select 1 from pg_database where datname = $1', [database]);
    if (db.rowCount === 0) {
      await client.query(`create database ${pg.escapeIdentifier(database)} owner ${OWNER_ROLE}`);
    }
  } finally {
    await client.end();
  }
  return withDatabase(rootUrl, database, { name: OWNER_ROLE, password: LOCAL_OWNER_PASSWORD });
}

/** The authenticator's connection string to a database created by ensureDatabase. */
export function localAuthenticatorUrl(ownerUrl: string): string {
  const u = new URL(ownerUrl);
  u.username = AUTHENTICATOR_ROLE;
  u.password = LOCAL_AUTHENTICATOR_PASSWORD;
  return u.toString();
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
