/*
 * The README's rules section is generated from the rules tables
 * (npm run docs:rules): it must match what the tables say now.
 */
import fs from 'node:fs';
import pg from 'pg';
import { END_MARKER, README, renderRulesMarkdown, START_MARKER } from '../../scripts/rules-doc';
import { pool } from '../helpers/db';

let db: pg.Pool;
beforeAll(() => { db = pool(); });
afterAll(() => db.end());

test('the README shows the rules as the tables hold them (run npm run docs:rules after changing a rule)', async () => {
  const readme = fs.readFileSync(README, 'utf8');
  const section = readme.slice(readme.indexOf(START_MARKER), readme.indexOf(END_MARKER) + END_MARKER.length);
  const generated = await renderRulesMarkdown(async (sql) => (await db.query(sql)).rows);
  expect(section).toBe(generated);
  // It draws every transition and names every error code.
  const transitions = await db.query('select count(*)::int as n from app_hidden.transitions');
  expect(generated.match(/^ {2}\w+ --> \w+/gm)?.length).toBe(transitions.rows[0].n);
  for (const { code } of (await db.query('select code from app_hidden.error_codes')).rows) expect(generated).toContain(`\`${code}\``);
});
