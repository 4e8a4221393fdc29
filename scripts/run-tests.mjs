// Runs the test suites with node's test runner: every tier by default, or `--tier unit|int|e2e`, or
// the test files named on the command line. Integration and end-to-end tests need PostgreSQL
// (TEST_DATABASE_URL) and Kafka; end-to-end tests need a build, made first.
//
// Each test file runs in a process group of its own, under a deadline: a file that overruns it is
// killed whole (servers and agents it spawned included). A file's output is printed when it ends, so
// files running side by side do not interleave. At the end the run fails if anything a test made
// outlived it: a process, a database, a Kafka topic or a temporary folder. Tests tag what they create
// with TEST_RUN_TAG (see test/support), and TMPDIR points into a folder of the file's own.
//
// Environment: TEST_CONCURRENCY (files at once; default 4), TEST_FILE_TIMEOUT_S (per file; default
// 600), TEST_TIMEOUT_MS (per test; default 300000), ROLLCALL_SKIP_BUILD=1 (no build before e2e).
import { execFileSync, spawn, spawnSync } from 'node:child_process';
import { clearTimeout, setTimeout } from 'node:timers';
import { randomBytes } from 'node:crypto';
import { mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, statSync, symlinkSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

const args = process.argv.slice(2);
const tierIndex = args.indexOf('--tier');
const tiers = tierIndex >= 0 ? (args[tierIndex + 1] ?? '').split(',') : ['unit', 'int', 'e2e'];
const rest = tierIndex >= 0 ? args.filter((_, i) => i !== tierIndex && i !== tierIndex + 1) : args;
const named = rest.filter((arg) => arg.endsWith('.test.ts'));
const extra = rest.filter((arg) => !arg.endsWith('.test.ts'));

const concurrency = Math.max(1, Number(process.env.TEST_CONCURRENCY ?? 4));
const fileTimeoutMs = Math.max(1, Number(process.env.TEST_FILE_TIMEOUT_S ?? 600)) * 1000;
const testTimeoutMs = Number(process.env.TEST_TIMEOUT_MS ?? 300_000);

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

const files = (named.length > 0 ? named : walk('test').filter((file) => file.endsWith('.test.ts') && tiers.includes(tierOf(file)))).sort();
if (files.length === 0) {
  console.error(`no test files for tiers ${tiers.join(',')}`);
  process.exit(1);
}
// End-to-end tests run the built binary.
if (files.some((file) => tierOf(file) === 'e2e') && process.env.ROLLCALL_SKIP_BUILD !== '1') {
  const build = spawnSync('npm', ['run', '--silent', 'build'], { stdio: 'inherit' });
  if (build.status !== 0) process.exit(build.status ?? 1);
}

// A tag of this run: test databases, topics and processes carry it, so leftovers are found without
// touching what other runs on the same servers own.
const runTag = randomBytes(3).toString('hex');
const runDir = mkdtempSync(join(tmpdir(), `rollcall-test-run-${runTag}-`));
// tsx keeps its transform cache in TMPDIR (tsx-<uid>); each file's TMPDIR links to the one tsx uses by
// default, which outlives runs: compiling every module afresh costs each file seconds. Entries are
// keyed by content, so a changed file is compiled again.
const tsxCacheName = `tsx-${process.getuid?.() ?? 0}`;
const tsxCache = join(tmpdir(), tsxCacheName);
mkdirSync(tsxCache, { recursive: true, mode: 0o700 });
const problems = [];
const active = new Set();
let filesFailedWhole = 0;
const totals = { tests: 0, pass: 0, fail: 0, cancelled: 0, skipped: 0, todo: 0 };

/** The live (not zombie) processes of a process group, one `pid args` line each. */
function groupMembers(pgid) {
  let listing = '';
  try {
    listing = execFileSync('ps', ['-o', 'pid=,stat=,args=', '-g', String(pgid)], { encoding: 'utf8' });
  } catch {
    return [];
  }
  return listing
    .split('\n')
    .map((line) => line.trim().split(/\s+/))
    .filter(([pid, stat]) => pid && stat && !stat.startsWith('Z'))
    .map(([pid, , ...rest]) => `${pid} ${rest.join(' ')}`);
}

/** Waits a moment for helpers that exit when their parent does (tsx's esbuild service). */
function lingering(pgid) {
  const until = Date.now() + 3000;
  let members = groupMembers(pgid);
  while (members.length > 0 && Date.now() < until) {
    spawnSync('sleep', ['0.2']);
    members = groupMembers(pgid);
  }
  return members;
}

function killGroup(pgid) {
  try {
    process.kill(-pgid, 'SIGKILL');
  } catch {
    // already gone
  }
}

function parseTap(path) {
  const counts = {};
  let text = '';
  try {
    text = readFileSync(path, 'utf8');
  } catch {
    return counts;
  }
  for (const match of text.matchAll(/^# (tests|pass|fail|cancelled|skipped|todo) (\d+)$/gm)) counts[match[1]] = Number(match[2]);
  return counts;
}

function runFile(file, index) {
  return new Promise((resolve) => {
    const tmp = join(runDir, `f${index}`);
    mkdirSync(tmp);
    // tsx's transform cache, outside the check (see tsxCache).
    symlinkSync(tsxCache, join(tmp, tsxCacheName));
    const tap = join(runDir, `f${index}.tap`);
    const started = Date.now();
    const child = spawn(
      process.execPath,
      [
        '--import',
        'tsx',
        '--test',
        `--test-timeout=${testTimeoutMs}`,
        '--test-reporter=spec',
        '--test-reporter-destination=stdout',
        '--test-reporter=tap',
        `--test-reporter-destination=${tap}`,
        ...extra,
        file,
      ],
      {
        detached: true,
        stdio: ['ignore', 'pipe', 'pipe'],
        // TEST_RUN_DIR holds what the run's files share: the migrated PGlite template (test/support/pglite.ts).
        env: { ...process.env, TMPDIR: tmp, TEST_RUN_TAG: runTag, TEST_RUN_DIR: runDir, ROLLCALL_LOG_LEVEL: process.env.ROLLCALL_LOG_LEVEL ?? 'silent' },
      },
    );
    active.add(child.pid);
    let output = '';
    child.stdout.setEncoding('utf8').on('data', (chunk) => (output += chunk));
    child.stderr.setEncoding('utf8').on('data', (chunk) => (output += chunk));
    let timedOut = false;
    const deadline = setTimeout(() => {
      timedOut = true;
      killGroup(child.pid);
    }, fileTimeoutMs);
    child.on('close', (code, signal) => {
      clearTimeout(deadline);
      active.delete(child.pid);
      const seconds = ((Date.now() - started) / 1000).toFixed(1);
      const counts = parseTap(tap);
      for (const key of Object.keys(totals)) totals[key] += counts[key] ?? 0;
      const fileProblems = [];
      // A file killed or crashed before its summary counts as one failure, whatever it ran.
      if ((timedOut || code !== 0) && !counts.fail && !counts.cancelled) filesFailedWhole += 1;
      if (timedOut) fileProblems.push(`timed out after ${fileTimeoutMs / 1000} s; its process group was killed`);
      else if (code !== 0) fileProblems.push(`exited with ${signal ?? `code ${code}`}`);
      const left = timedOut ? [] : lingering(child.pid);
      if (left.length > 0) {
        fileProblems.push(`left processes running (killed now):\n${left.join('\n')}`);
        killGroup(child.pid);
      }
      const leftFiles = readdirSync(tmp).filter((name) => name !== tsxCacheName);
      if (leftFiles.length > 0) fileProblems.push(`left temporary files in TMPDIR: ${leftFiles.slice(0, 10).join(', ')}`);
      process.stdout.write(`\n=== ${file} (${seconds} s)\n${output}`);
      for (const problem of fileProblems) {
        problems.push(`${file}: ${problem}`);
        process.stdout.write(`!!! ${file}: ${problem}\n`);
      }
      resolve();
    });
  });
}

// Longest files first would need history; the e2e and Kafka files are the long ones, so they start first.
const order = [...files.keys()].sort((a, b) => weight(files[b]) - weight(files[a]));
function weight(file) {
  return (tierOf(file) === 'e2e' ? 2 : 0) + (/kafka|consul|outage/.test(file) ? 1 : 0);
}
let next = 0;
async function worker() {
  while (next < order.length) {
    const index = order[next++];
    await runFile(files[index], index);
  }
}
const startedAt = Date.now();
const stop = () => {
  // Ctrl-C or a CI cancel: take the test files' process groups down with us.
  for (const pgid of active) killGroup(pgid);
  rmSync(runDir, { recursive: true, force: true });
  process.exit(130);
};
process.once('SIGINT', stop);
process.once('SIGTERM', stop);
await Promise.all(Array.from({ length: Math.min(concurrency, files.length) }, () => worker()));

// Leftovers that escaped their file's process group (a detached or re-parented process).
for (const pid of readdirSync('/proc').filter((name) => /^\d+$/.test(name))) {
  let environ = '';
  try {
    environ = readFileSync(`/proc/${pid}/environ`, 'latin1');
  } catch {
    continue;
  }
  if (!environ.split('\0').includes(`TEST_RUN_TAG=${runTag}`)) continue;
  let cmdline = '';
  try {
    cmdline = readFileSync(`/proc/${pid}/cmdline`, 'latin1').replaceAll('\0', ' ').trim();
  } catch {
    // gone meanwhile
  }
  problems.push(`a process outlived its test file (killed now): ${pid} ${cmdline}`);
  try {
    process.kill(Number(pid), 'SIGKILL');
  } catch {
    // gone meanwhile
  }
}
// Unit tests use neither PostgreSQL nor Kafka (the unit tier runs without them), so there is nothing to look for.
if (files.some((file) => tierOf(file) !== 'unit')) {
  const leftovers = spawnSync(process.execPath, ['--import', 'tsx', 'test/support/leftovers.ts', runTag], { encoding: 'utf8', env: process.env });
  if (leftovers.status !== 0) problems.push(`could not check for leftover databases and topics: ${leftovers.stderr.trim()}`);
  for (const line of leftovers.stdout.split('\n').filter(Boolean)) problems.push(`left behind (removed now): ${line}`);
}
rmSync(runDir, { recursive: true, force: true });

const seconds = ((Date.now() - startedAt) / 1000).toFixed(0);
process.stdout.write(`\n${files.length} test files in ${seconds} s: ${totals.tests} tests, ${totals.cancelled} cancelled, ${totals.todo} todo\n`);
if (problems.length > 0) process.stdout.write(`\nProblems:\n${problems.map((problem) => `- ${problem}`).join('\n')}\n`);
const failed = totals.fail + totals.cancelled + filesFailedWhole;
process.stdout.write(`${totals.pass} passed, ${failed} failed, ${totals.skipped} skipped\n`);
process.exit(failed > 0 || problems.length > 0 || totals.tests === 0 ? 1 : 0);
