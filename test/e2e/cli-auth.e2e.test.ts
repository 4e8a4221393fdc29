// The everyday CLI against a registry that requires API keys: `nodes`, `node`, `deregister`, `join`
// and `demo` authenticate with --api-key or ROLLCALL_API_KEY (and find the server with --url or
// ROLLCALL_URL); without a key each fails with UNAUTHENTICATED, a non-zero exit and no stack trace.
import { strict as assert } from 'node:assert';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { createTestDatabase, type TestDatabase } from '../support/postgres.js';
import { PATIENCE, freePort, killAllCli, runCli, spawnCli, type CliProcess } from '../support/processes.js';

const TEST_TIMEOUT = { timeout: 30_000 * PATIENCE };

let db: TestDatabase | undefined;
let tmp: string | undefined;
let server: CliProcess | undefined;
let url = '';
let key = '';

before(async () => {
  db = await createTestDatabase('rollcall_cli_auth');
  tmp = await mkdtemp(join(tmpdir(), 'rollcall-cli-auth-'));
  const created = await runCli(['key', 'create', '--scope', 'admin', '--namespace', '*', '--database-url', db.url]);
  assert.equal(created.code, 0, created.stderr);
  key = created.stdout.trim();
  server = spawnCli(['serve', '--database-url', db.url, '--port', String(await freePort())]);
  url = (await server.waitForLine('stderr', /^rollcall \S+ serving (http:\/\/\S+) /, 20_000))[1] as string;
  // The registry requires a key now.
  assert.equal((await fetch(`${url}/api/v1/nodes`)).status, 401);
});

after(async () => {
  await killAllCli();
  await db?.drop();
  if (tmp) await rm(tmp, { recursive: true, force: true });
});

async function register(nodeId: string): Promise<void> {
  const response = await fetch(`${url}/api/v1/nodes/register`, {
    method: 'POST',
    headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json' },
    body: JSON.stringify({ node_id: nodeId, hostname: 'h', role: 'cli-auth' }),
  });
  assert.equal(response.status, 201);
}

async function statusOf(nodeId: string, namespace = 'default'): Promise<string> {
  const response = await fetch(`${url}/api/v1/nodes/${nodeId}?namespace=${namespace}`, { headers: { authorization: `Bearer ${key}` } });
  assert.equal(response.status, 200);
  return ((await response.json()) as { status: string }).status;
}

/** A refusal as the CLI shows it: the code and message, exit 1, no stack. */
function assertUnauthenticated(result: { code: number | null; stderr: string }): void {
  assert.equal(result.code, 1, result.stderr);
  assert.match(result.stderr, /^rollcall: UNAUTHENTICATED: /m);
  assert.match(result.stderr, /--api-key or ROLLCALL_API_KEY/);
  assert.doesNotMatch(result.stderr, /^\s+at /m, 'no stack trace');
}

describe('CLI authentication', () => {
  it('nodes: --api-key and ROLLCALL_API_KEY (with --url or ROLLCALL_URL) list; without a key, UNAUTHENTICATED', TEST_TIMEOUT, async () => {
    await register('auth-listed');
    const flags = await runCli(['nodes', '--json', '--url', url, '--api-key', key]);
    assert.equal(flags.code, 0, flags.stderr);
    assert.ok((JSON.parse(flags.stdout) as Array<{ node_id: string }>).some((node) => node.node_id === 'auth-listed'));

    const env = await runCli(['nodes', '--json'], { env: { ROLLCALL_URL: url, ROLLCALL_API_KEY: key } });
    assert.equal(env.code, 0, env.stderr);
    assert.ok((JSON.parse(env.stdout) as Array<{ node_id: string }>).some((node) => node.node_id === 'auth-listed'));

    assertUnauthenticated(await runCli(['nodes', '--url', url]));
    assertUnauthenticated(await runCli(['nodes', '--url', url, '--api-key', 'rk_0000000000000000_wrong']));
  });

  it('node: shows one node with a key; refuses without', TEST_TIMEOUT, async () => {
    await register('auth-shown');
    const shown = await runCli(['node', 'auth-shown', '--json', '--url', url, '--api-key', key]);
    assert.equal(shown.code, 0, shown.stderr);
    assert.equal((JSON.parse(shown.stdout) as { node_id: string }).node_id, 'auth-shown');
    const fromEnv = await runCli(['node', 'auth-shown', '--json', '--url', url], { env: { ROLLCALL_API_KEY: key } });
    assert.equal(fromEnv.code, 0, fromEnv.stderr);
    assertUnauthenticated(await runCli(['node', 'auth-shown', '--url', url]));
  });

  it('deregister: removes a node with a key; without one, refuses and removes nothing', TEST_TIMEOUT, async () => {
    await register('auth-removed');
    assertUnauthenticated(await runCli(['deregister', 'auth-removed', '--url', url]));
    assert.equal(await statusOf('auth-removed'), 'online');
    const removed = await runCli(['deregister', 'auth-removed', '--url', url], { env: { ROLLCALL_API_KEY: key } });
    assert.equal(removed.code, 0, removed.stderr);
    assert.equal(await statusOf('auth-removed'), 'removed');
  });

  it('join: registers and leaves with a key (flag or environment); without one, exits with UNAUTHENTICATED', TEST_TIMEOUT, async () => {
    assert.ok(tmp);
    for (const [name, args, env] of [
      ['flag', ['--url', url, '--api-key', key], {}],
      ['env', [], { ROLLCALL_URL: url, ROLLCALL_API_KEY: key }],
    ] as const) {
      const proc = spawnCli(['join', '--role', 'cli-auth', '--interval', '1', '--node-id-file', join(tmp, `${name}-node-id`), ...args], { env });
      const nodeId = (await proc.waitForLine('stdout', /^joined \S+ as (\S+)$/, 10_000))[1] as string;
      assert.equal(await statusOf(nodeId), 'online');
      proc.kill('SIGTERM');
      assert.deepEqual(await proc.waitForExit(15_000), { code: 0, signal: null });
      assert.equal(await statusOf(nodeId), 'removed');
    }
    assertUnauthenticated(await runCli(['join', '--role', 'cli-auth', '--url', url, '--node-id-file', join(tmp, 'refused-node-id')]));
  });

  it('demo: runs a small fleet with a key; without one, exits with UNAUTHENTICATED', TEST_TIMEOUT, async () => {
    const demo = await runCli(['demo', '--url', url, '--api-key', key, '--nodes', '2', '--interval', '1', '--duration', '2'], { timeoutMs: 15_000 });
    assert.equal(demo.code, 0, demo.stderr);
    assert.match(demo.stdout, /fleet up: \d+ nodes online/);
    assertUnauthenticated(await runCli(['demo', '--url', url, '--nodes', '2', '--interval', '1', '--duration', '2'], { timeoutMs: 15_000 }));
  });
});
