/*
 * The worker's database calls: one SQL statement in a transaction of its
 * own, as the schema owner, signed in the audit log with the given actor.
 */
import pg from 'pg';

export async function asActor<T = unknown>(db: pg.Pool, actor: string, sql: string, params: unknown[] = []): Promise<T | undefined> {
  const client = await db.connect();
  try {
    await client.query('begin');
    await client.query(`select set_config('flow.actor', $1, true)`, [actor]);
    const { rows } = await client.query(sql, params);
    await client.query('commit');
    return rows[0]?.result as T | undefined;
  } catch (err) {
    await client.query('rollback').catch(() => {});
    throw err;
  } finally {
    client.release();
  }
}
