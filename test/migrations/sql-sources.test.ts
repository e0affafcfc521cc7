/*
 * sql/ is the readable source of the migrations: each file is what the last
 * committed migration that included it ran. Changing a file without a
 * migration that includes it again fails here.
 */
import fs from 'node:fs';
import path from 'node:path';

const root = path.join(__dirname, '..', '..');
const committedDir = path.join(root, 'migrations', 'committed');
const sqlDir = path.join(root, 'sql');

function lastInclusions(): Map<string, string> {
  const last = new Map<string, string>();
  for (const file of fs.readdirSync(committedDir).filter((f) => f.endsWith('.sql')).sort()) {
    const text = fs.readFileSync(path.join(committedDir, file), 'utf8');
    for (const m of text.matchAll(/^--! Included (\S+)\n([\s\S]*?)^--! EndIncluded \1$/gm)) last.set(m[1], m[2]);
  }
  return last;
}

test('every sql/ file was run, as it is now, by a committed migration', () => {
  const included = lastInclusions();
  const files = fs.readdirSync(sqlDir).filter((f) => f.endsWith('.sql')).sort();
  expect(files.length).toBeGreaterThan(10);
  for (const file of files) {
    const now = fs.readFileSync(path.join(sqlDir, file), 'utf8');
    expect({ file, runByAMigration: included.has(file) }).toEqual({ file, runByAMigration: true });
    // (graphile-migrate drops a file's trailing blank lines when it includes it)
    expect({ file, upToDate: included.get(file)?.trimEnd() === now.trimEnd() }).toEqual({ file, upToDate: true });
  }
});

test('the migration being written is empty when work is committed', () => {
  const current = fs.readFileSync(path.join(root, 'migrations', 'current.sql'), 'utf8');
  expect(current.replace(/--.*$/gm, '').trim()).toBe('');
});
