// One owner per embedded data folder, as a user meets it: a second `serve` on the folder refuses and
// names the first; `key create` beside a running server goes through its API, so the server accepts
// the key at once; a SIGKILLed owner's folder opens again, with every acknowledged write in it.
import { strict as assert } from 'node:assert';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { hostname, tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { PATIENCE, freePort, killAllCli, runCli, spawnCli, type CliProcess } from '../support/processes.js';

// PGlite creating or reopening a folder takes a while (waits allow TEST_PATIENCE times this).
const SERVE_START_MS = 45_000;
const TEST_TIMEOUT = { timeout: 75_000 * PATIENCE };

interface Server {
  proc: CliProcess;
  url: string;
}

let dir: string | undefined;
let server: Server | undefined;

function dataDir(): string {
  assert.ok(dir, 'the scratch folder was not created');
  return join(dir, 'data');
}

function running(): Server {
  assert.ok(server, 'the server was not started');
  return server;
}

async function serve(): Promise<Server> {
  const proc = spawnCli(['serve', '--data-dir', dataDir(), '--port', String(await freePort())]);
  const match = await proc.waitForLine('stderr', /^rollcall \S+ serving (http:\/\/\S+) /, SERVE_START_MS);
  return { proc, url: match[1] as string };
}

async function lockFile(): Promise<{ pid: number; host: string; url: string | null; command: string }> {
  return JSON.parse(await readFile(join(dataDir(), 'rollcall.lock'), 'utf8')) as { pid: number; host: string; url: string | null; command: string };
}

function escaped(text: string): string {
  return text.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
}

before(
  async () => {
    dir = await mkdtemp(join(tmpdir(), 'rollcall-owner-'));
    server = await serve();
  },
  { timeout: (SERVE_START_MS + 10_000) * PATIENCE },
);
after(async () => {
  await killAllCli();
  if (dir) await rm(dir, { recursive: true, force: true });
});

let adminKey = '';

describe('one owner per embedded data folder', () => {
  it('a second serve on the same folder refuses, naming the holder (PID, host, URL), and the first goes on serving', TEST_TIMEOUT, async () => {
    const first = running();
    const second = await runCli(['serve', '--data-dir', dataDir(), '--port', String(await freePort())], { timeoutMs: 15_000 });
    assert.notEqual(second.code, 0, second.stderr);
    assert.equal(second.signal, null);
    assert.match(second.stderr, /DATA_DIR_LOCKED/);
    assert.match(second.stderr, new RegExp(`pid ${first.proc.pid} on ${escaped(hostname())}, ${escaped(first.url)}`));
    assert.doesNotMatch(second.stderr, /serving/);
    assert.doesNotMatch(second.stderr, /^\s+at /m, 'no stack trace');

    assert.equal(first.proc.exit, null);
    assert.equal((await fetch(`${first.url}/health`)).status, 200);
    const holder = await lockFile();
    assert.deepEqual([holder.pid, holder.host, holder.command, holder.url], [first.proc.pid, hostname(), 'serve', first.url], 'the refused server left the lock alone');
  });

  it('key create beside the running server goes through its API, and the server accepts the key at once', TEST_TIMEOUT, async () => {
    const { url, proc } = running();
    const created = await runCli(['key', 'create', '--scope', 'admin', '--namespace', '*', '--name', 'ops', '--data-dir', dataDir()], { timeoutMs: 15_000 });
    assert.equal(created.code, 0, created.stderr);
    adminKey = created.stdout.trim();
    assert.match(adminKey, /^rk_[0-9a-f]{16}_/);

    assert.equal((await fetch(`${url}/api/v1/nodes`)).status, 401, 'keys exist now: the server requires one');
    assert.equal((await fetch(`${url}/api/v1/nodes`, { headers: { authorization: `Bearer ${adminKey}` } })).status, 200);
    assert.match(created.stderr, new RegExp(`a server \\(pid ${proc.pid} on .*\\) owns .*: going through its API`));

    // The server now requires a key for its key API too: without one, a clear refusal saying how.
    const refused = await runCli(['key', 'list', '--data-dir', dataDir()], { timeoutMs: 15_000 });
    assert.equal(refused.code, 1, refused.stderr);
    assert.match(refused.stderr, /UNAUTHENTICATED/);
    assert.match(refused.stderr, /--api-key/);
    assert.match(refused.stderr, /stop it/);

    const listed = await runCli(['key', 'list', '--json', '--data-dir', dataDir()], { env: { ROLLCALL_API_KEY: adminKey }, timeoutMs: 15_000 });
    assert.equal(listed.code, 0, listed.stderr);
    const keys = JSON.parse(listed.stdout) as Array<{ id: string; name: string | null }>;
    assert.deepEqual(
      keys.map((key) => [key.id, key.name]),
      [[adminKey.split('_')[1], 'ops']],
    );

    // A second key through the API, then revoked through it: refused by the server at once.
    const reader = await runCli(['key', 'create', '--scope', 'nodes:read', '--namespace', 'default', '--data-dir', dataDir(), '--api-key', adminKey], { timeoutMs: 15_000 });
    assert.equal(reader.code, 0, reader.stderr);
    const readerKey = reader.stdout.trim();
    assert.equal((await fetch(`${url}/api/v1/nodes`, { headers: { authorization: `Bearer ${readerKey}` } })).status, 200);
    const revoked = await runCli(['key', 'revoke', readerKey.split('_')[1] as string, '--data-dir', dataDir(), '--api-key', adminKey], { timeoutMs: 15_000 });
    assert.equal(revoked.code, 0, revoked.stderr);
    assert.equal((await fetch(`${url}/api/v1/nodes`, { headers: { authorization: `Bearer ${readerKey}` } })).status, 401);
  });

  it("a SIGKILLed owner's folder opens again (its stale lock taken over) with every acknowledged write", TEST_TIMEOUT, async () => {
    assert.ok(adminKey, 'the key test ran first');
    const headers = { authorization: `Bearer ${adminKey}`, 'content-type': 'application/json' };
    const first = running();
    const responses = await Promise.all(
      Array.from({ length: 30 }, async (_, i) => {
        const response = await fetch(`${first.url}/api/v1/nodes/register`, {
          method: 'POST',
          headers,
          body: JSON.stringify({ node_id: `owned-${i}`, hostname: `h${i}`, role: 'owned' }),
        });
        return { status: response.status, body: (await response.json()) as { node_id: string; topology_version: number } };
      }),
    );
    for (const response of responses) assert.equal(response.status, 201, JSON.stringify(response.body));
    const versions = responses.map((response) => response.body.topology_version);
    assert.equal(new Set(versions).size, versions.length, 'each write has a version of its own');

    first.proc.kill('SIGKILL');
    assert.equal((await first.proc.waitForExit()).signal, 'SIGKILL');
    const left = await lockFile();
    assert.equal(left.pid, first.proc.pid, 'a SIGKILLed process leaves its lock behind');

    server = await serve();
    const holder = await lockFile();
    assert.deepEqual([holder.pid, holder.url], [server.proc.pid, server.url]);

    const listed = (await (await fetch(`${server.url}/api/v1/nodes?role=owned&limit=1000`, { headers })).json()) as { nodes: Array<{ node_id: string; status: string }> };
    assert.deepEqual(listed.nodes.map((node) => node.node_id).sort(), responses.map((response) => response.body.node_id).sort());
    assert.ok(listed.nodes.every((node) => node.status === 'online'));
    // Versions go on from the last acknowledged one: none is handed out twice.
    const next = await fetch(`${server.url}/api/v1/nodes/register`, { method: 'POST', headers, body: JSON.stringify({ node_id: 'owned-after', hostname: 'h', role: 'owned' }) });
    assert.equal(next.status, 201);
    assert.ok(((await next.json()) as { topology_version: number }).topology_version > Math.max(...versions));

    // Stopped, the server frees the folder: a CLI command then opens it directly.
    server.proc.kill('SIGTERM');
    assert.deepEqual(await server.proc.waitForExit(15_000), { code: 0, signal: null });
    await assert.rejects(readFile(join(dataDir(), 'rollcall.lock')), /ENOENT/);
    const direct = await runCli(['key', 'list', '--json', '--data-dir', dataDir()], { timeoutMs: SERVE_START_MS });
    assert.equal(direct.code, 0, direct.stderr);
    assert.doesNotMatch(direct.stderr, /going through its API/);
    assert.equal((JSON.parse(direct.stdout) as unknown[]).length, 2);
  });
});
