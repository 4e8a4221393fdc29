// `npm start` builds before it serves: with nothing changed since the last build, that build must write
// nothing (tsc -b with its build info in dist/, migrations copied only when changed), so a restart costs
// seconds instead of a full compile.
import { strict as assert } from 'node:assert';
import { execFile } from 'node:child_process';
import { existsSync, readdirSync, statSync } from 'node:fs';
import { join, relative } from 'node:path';
import { it } from 'node:test';
import { promisify } from 'node:util';
import { REPO_ROOT } from '../support/processes.js';

const exec = promisify(execFile);
const DIST = join(REPO_ROOT, 'dist');

/** Every file under `dir` with its modification time in nanoseconds. */
function modificationTimes(dir: string): Map<string, bigint> {
  const times = new Map<string, bigint>();
  for (const entry of readdirSync(dir, { withFileTypes: true, recursive: true })) {
    if (!entry.isFile()) continue;
    const path = join(entry.parentPath, entry.name);
    times.set(relative(DIST, path), statSync(path, { bigint: true }).mtimeNs);
  }
  return times;
}

const build = async (): Promise<string> => (await exec('npm', ['run', 'build'], { cwd: REPO_ROOT, timeout: 240_000 })).stdout;

it('a build with nothing changed since the last one rewrites no file of dist/', { timeout: 600_000 }, async () => {
  await build(); // up to date first (nothing to do when the test runner has just built)
  assert.ok(existsSync(join(DIST, 'tsconfig.build.tsbuildinfo')), 'no incremental build info in dist/');
  const before = modificationTimes(DIST);
  assert.ok(before.has('src/store/migrations/001_registry.sql'), 'the migrations are not in dist/');

  const output = await build();
  const after = modificationTimes(DIST);
  const rewritten = [...after].filter(([path, time]) => before.get(path) !== time).map(([path]) => path);
  assert.deepEqual(rewritten, [], `the second build rewrote files:\n${output}`);

  const { stdout } = await exec(process.execPath, [join(REPO_ROOT, 'node_modules/typescript/bin/tsc'), '-b', 'tsconfig.build.json', '--dry', '--verbose'], { cwd: REPO_ROOT });
  assert.match(stdout, /is up to date/, stdout);
});
