// Runs the test suites with node's test runner: every tier by default, or `--tier unit|int|e2e`.
// Integration and end-to-end tests need PostgreSQL (TEST_DATABASE_URL) and, for e2e, a build.
import { spawnSync } from 'node:child_process';
import { readdirSync, statSync } from 'node:fs';
import { join } from 'node:path';

const args = process.argv.slice(2);
const tierIndex = args.indexOf('--tier');
const tiers = tierIndex >= 0 ? (args[tierIndex + 1] ?? '').split(',') : ['unit', 'int', 'e2e'];
const extra = tierIndex >= 0 ? args.filter((_, i) => i !== tierIndex && i !== tierIndex + 1) : args;

function walk(dir) {
  return readdirSync(dir).flatMap((name) => {
    const path = join(dir, name);
    return statSync(path).isDirectory() ? walk(path) : [path];
  });
}

function tierOf(file) {
  if (file.endsWith('.e2e.test.ts')) return 'e2e';
  if (file.endsWith('.int.test.ts')) return 'int';
  return 'unit';
}

const files = walk('test').filter((file) => file.endsWith('.test.ts') && tiers.includes(tierOf(file))).sort();
if (files.length === 0) {
  console.error(`no test files for tiers ${tiers.join(',')}`);
  process.exit(1);
}
// End-to-end tests run the built binary.
if (files.some((file) => tierOf(file) === 'e2e') && process.env.ROLLCALL_SKIP_BUILD !== '1') {
  const build = spawnSync('npm', ['run', '--silent', 'build'], { stdio: 'inherit' });
  if (build.status !== 0) process.exit(build.status ?? 1);
}
const result = spawnSync(
  process.execPath,
  ['--import', 'tsx', '--test', '--test-concurrency=4', '--test-timeout=120000', '--test-reporter=spec', ...extra, ...files],
  { stdio: 'inherit', env: { ...process.env, ROLLCALL_LOG_LEVEL: process.env.ROLLCALL_LOG_LEVEL ?? 'silent' } },
);
process.exit(result.status ?? 1);
