// The built `rollcall` binary end to end: serve on PostgreSQL, join as a node (identity, leases,
// graceful leave), durability across a crash, the registry's own record, config refusals, the demo.
import { strict as assert } from 'node:assert';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { hostname, tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { createTestDatabase, type TestDatabase } from '../support/postgres.js';
import { PATIENCE, freePort, killAllCli, pollUntil, runCli, spawnCli, type CliProcess } from '../support/processes.js';

/** A node as GET /api/v1/nodes shows it (the fields these tests read). */
interface ApiNode {
  node_id: string;
  namespace: string;
  node_type: string;
  role: string | null;
  labels: string[];
  hostname: string | null;
  status: 'online' | 'offline' | 'removed';
  health_status: string;
  incarnation: number;
  lease_ttl_ms: number;
  last_heartbeat: string;
  removed_at: string | null;
  removal_reason: string | null;
  metadata: Record<string, unknown>;
  endpoints: Record<string, unknown>;
}

interface NodePage {
  nodes: ApiNode[];
  count: number;
  next_cursor: string | null;
}

interface Server {
  proc: CliProcess;
  port: number;
  url: string;
}

const SERVE_ENV = { ROLLCALL_SWEEP_INTERVAL_MS: '200', ROLLCALL_HEARTBEAT_FLUSH_MS: '100' };
const TEST_TIMEOUT = { timeout: 30_000 * PATIENCE };

let db: TestDatabase | undefined;
let tmp: string | undefined;

function database(): TestDatabase {
  assert.ok(db, 'the test database was not created');
  return db;
}

function scratch(name: string): string {
  assert.ok(tmp, 'the scratch folder was not created');
  return join(tmp, name);
}

/** The node id the registry gives itself: registry-<hostname>-<port>. */
function registryIdFor(port: number): string {
  return `registry-${hostname().replace(/[^A-Za-z0-9._-]/g, '-')}-${port}`;
}

async function getJson<T>(url: string, init: { method?: string; body?: unknown } = {}): Promise<{ status: number; body: T }> {
  const response = await fetch(url, {
    method: init.method ?? (init.body === undefined ? 'GET' : 'POST'),
    ...(init.body === undefined ? {} : { headers: { 'content-type': 'application/json' }, body: JSON.stringify(init.body) }),
    signal: AbortSignal.timeout(10_000),
  });
  const text = await response.text();
  return { status: response.status, body: (text ? JSON.parse(text) : null) as T };
}

async function getNode(server: Server, nodeId: string, namespace?: string): Promise<ApiNode> {
  const query = namespace ? `?namespace=${namespace}` : '';
  const { status, body } = await getJson<ApiNode>(`${server.url}/api/v1/nodes/${encodeURIComponent(nodeId)}${query}`);
  assert.equal(status, 200, `GET node ${nodeId}: ${JSON.stringify(body)}`);
  return body;
}

async function listNodes(server: Server, query: string): Promise<ApiNode[]> {
  const { status, body } = await getJson<NodePage>(`${server.url}/api/v1/nodes?limit=1000&${query}`);
  assert.equal(status, 200, `GET nodes?${query}: ${JSON.stringify(body)}`);
  assert.equal(body.next_cursor, null, 'a test query must fit one page');
  return body.nodes;
}

async function serve(port: number): Promise<Server> {
  const proc = spawnCli(['serve', '--database-url', database().url, '--port', String(port)], { env: SERVE_ENV });
  const match = await proc.waitForLine('stderr', /^rollcall \S+ serving (http:\/\/\S+) \(PostgreSQL\)$/, 20_000);
  return { proc, port, url: match[1] as string };
}

async function joinNode(server: Server, nodeIdFile: string, extra: string[] = []): Promise<{ proc: CliProcess; nodeId: string }> {
  const proc = spawnCli([
    'join',
    '--registry-url',
    server.url,
    '--role',
    'worker',
    '--labels',
    'gpu,zone-a',
    '--ttl',
    '2',
    '--interval',
    '0.5',
    '--node-id-file',
    nodeIdFile,
    '--log-level',
    'warn',
    ...extra,
  ]);
  const match = await proc.waitForLine('stdout', /^joined (\S+) as (\S+)$/);
  assert.equal(match[1], server.url);
  return { proc, nodeId: match[2] as string };
}

before(async () => {
  db = await createTestDatabase('rollcall_e2e');
  tmp = await mkdtemp(join(tmpdir(), 'rollcall-e2e-'));
});

after(async () => {
  // Every child goes, whatever happened to the tests; then the database and scratch files.
  await killAllCli();
  await db?.drop();
  if (tmp) await rm(tmp, { recursive: true, force: true });
});

describe('rollcall serve, join and demo on one PostgreSQL database', () => {
  let server: Server;

  before(async () => {
    server = await serve(await freePort());
  });

  it('serve starts on the given port and answers /health', TEST_TIMEOUT, async () => {
    assert.equal(server.url, `http://127.0.0.1:${server.port}`);
    const { status, body } = await getJson<{ status: string; registry_id: string; checks: { store: { status: string; dialect: string } } }>(`${server.url}/health`);
    assert.equal(status, 200);
    assert.equal(body.status, 'healthy');
    assert.equal(body.registry_id, registryIdFor(server.port));
    assert.equal(body.checks.store.status, 'healthy');
    assert.equal(body.checks.store.dialect, 'postgres');
    assert.equal(server.proc.exit, null);
  });

  it('join registers the node; nodes, nodes --json and node --json show it; the node_id file holds its id', TEST_TIMEOUT, async () => {
    const nodeIdFile = scratch('join-basic/node_id');
    const { proc, nodeId } = await joinNode(server, nodeIdFile);
    assert.match(nodeId, /^node-[0-9a-f-]{36}$/);
    assert.equal((await readFile(nodeIdFile, 'utf8')).trim(), nodeId);

    const listed = await runCli(['nodes', '--registry-url', server.url, '--json']);
    assert.equal(listed.code, 0, listed.stderr);
    const nodes = JSON.parse(listed.stdout) as ApiNode[];
    const workers = nodes.filter((node) => node.role === 'worker' && node.labels.includes('gpu'));
    assert.equal(workers.length, 1, listed.stdout);
    const worker = workers[0] as ApiNode;
    assert.equal(worker.node_id, nodeId);
    assert.deepEqual(worker.labels, ['gpu', 'zone-a']);
    assert.equal(worker.status, 'online');
    assert.equal(worker.namespace, 'default');

    const table = await runCli(['nodes', '--registry-url', server.url]);
    assert.equal(table.code, 0, table.stderr);
    const row = table.stdout.split('\n').find((line) => line.startsWith(`${nodeId} `));
    assert.ok(row, `no table row for ${nodeId}:\n${table.stdout}`);
    // NODE_ID NAMESPACE TYPE ROLE STATUS HEALTH VERSION LABELS LAST_HEARTBEAT
    assert.deepEqual(row.split(/\s+/).slice(0, 8), [nodeId, 'default', 'node', 'worker', 'online', 'healthy', '0.0.0', 'gpu,zone-a']);
    assert.match(table.stdout, new RegExp(`^${nodes.length} nodes$`, 'm'));

    const shown = await runCli(['node', nodeId, '--registry-url', server.url, '--json']);
    assert.equal(shown.code, 0, shown.stderr);
    const node = JSON.parse(shown.stdout) as ApiNode;
    assert.equal(node.node_id, nodeId);
    assert.equal(node.role, 'worker');
    assert.deepEqual(node.labels, ['gpu', 'zone-a']);
    assert.equal(node.status, 'online');
    assert.equal(node.lease_ttl_ms, 2000);
    assert.equal(node.metadata.agent, 'rollcall-join');
    assert.equal(node.metadata.pid, proc.pid);

    proc.kill('SIGTERM');
    assert.deepEqual(await proc.waitForExit(), { code: 0, signal: null });
  });

  it('join keeps its node_id across restarts, after a crash and after a graceful stop', TEST_TIMEOUT, async () => {
    const nodeIdFile = scratch('join-restart/node_id');
    const extra = ['--hostname', 'e2e-restart-host'];
    const first = await joinNode(server, nodeIdFile, extra);
    const firstRecord = await getNode(server, first.nodeId);

    first.proc.kill('SIGKILL');
    await first.proc.waitForExit();
    const second = await joinNode(server, nodeIdFile, extra);
    assert.equal(second.nodeId, first.nodeId);
    const secondRecord = await getNode(server, second.nodeId);
    assert.equal(secondRecord.status, 'online');
    assert.equal(secondRecord.metadata.pid, second.proc.pid);
    assert.ok(secondRecord.incarnation > firstRecord.incarnation, `incarnation ${secondRecord.incarnation} after ${firstRecord.incarnation}`);

    second.proc.kill('SIGTERM');
    assert.deepEqual(await second.proc.waitForExit(), { code: 0, signal: null });
    const third = await joinNode(server, nodeIdFile, extra);
    assert.equal(third.nodeId, first.nodeId);
    const thirdRecord = await getNode(server, third.nodeId);
    assert.equal(thirdRecord.status, 'online');
    assert.equal(thirdRecord.removal_reason, null);
    assert.equal(thirdRecord.metadata.pid, third.proc.pid);

    assert.equal((await readFile(nodeIdFile, 'utf8')).trim(), first.nodeId);
    // No restart made a second node for this machine.
    const sameHost = (await listNodes(server, 'role=worker')).filter((node) => node.hostname === 'e2e-restart-host');
    assert.deepEqual(
      sameHost.map((node) => node.node_id),
      [first.nodeId],
    );

    third.proc.kill('SIGTERM');
    assert.deepEqual(await third.proc.waitForExit(), { code: 0, signal: null });
  });

  it('a joined node killed with SIGKILL goes offline when its lease lapses', TEST_TIMEOUT, async () => {
    const { proc, nodeId } = await joinNode(server, scratch('join-sigkill/node_id'));
    proc.kill('SIGKILL');
    assert.equal((await proc.waitForExit()).signal, 'SIGKILL');
    assert.equal((await getNode(server, nodeId)).status, 'online', 'the lease still runs right after the kill');

    const gone = await pollUntil(
      () => getNode(server, nodeId),
      (node) => node.status !== 'online',
      {
        timeoutMs: 15_000,
        intervalMs: 100,
        what: `${nodeId} to leave`,
      },
    );
    assert.equal(gone.status, 'offline');
    assert.equal(gone.removal_reason, 'lease_expired');
    assert.ok(gone.removed_at !== null);
    // Taken offline no sooner than the 2 s lease after its last heartbeat.
    const silentMs = Date.parse(gone.removed_at) - Date.parse(gone.last_heartbeat);
    assert.ok(silentMs >= 2000, `offline ${silentMs} ms after the last heartbeat`);
  });

  it('a joined node stopped with SIGTERM is removed at once with reason graceful_shutdown', TEST_TIMEOUT, async () => {
    const { proc, nodeId } = await joinNode(server, scratch('join-sigterm/node_id'));
    assert.equal((await getNode(server, nodeId)).status, 'online');
    proc.kill('SIGTERM');
    assert.deepEqual(await proc.waitForExit(3_000), { code: 0, signal: null });
    // The tombstone was acknowledged before the agent exited.
    const node = await getNode(server, nodeId);
    assert.equal(node.status, 'removed');
    assert.equal(node.removal_reason, 'graceful_shutdown');
  });

  it('demo runs a fleet of 5+ online nodes in namespace demo and removes it when done', TEST_TIMEOUT, async () => {
    const demo = spawnCli(['demo', '--registry-url', server.url, '--nodes', '5', '--interval', '1', '--duration', '4']);
    await demo.waitForLine('stdout', /fleet up: \d+ nodes online/);
    const online = await listNodes(server, 'namespace=demo&status=online');
    assert.equal(demo.exit, null, 'the demo is still running while the fleet is observed');
    assert.ok(online.length >= 5, `${online.length} demo nodes online`);
    for (const node of online) assert.equal(node.namespace, 'demo');

    assert.deepEqual(await demo.waitForExit(15_000), { code: 0, signal: null });
    const crashed = new Set([...demo.stdout.matchAll(/ x (\S+) crashed/g)].map((match) => match[1] as string));
    const fleet = await listNodes(server, 'namespace=demo');
    assert.ok(fleet.length >= 5, `${fleet.length} demo nodes registered`);
    for (const node of fleet.filter((n) => !crashed.has(n.node_id))) {
      assert.deepEqual([node.node_id, node.status, node.removal_reason], [node.node_id, 'removed', 'graceful_shutdown']);
    }
    // A node the demo crashed on purpose sent no tombstone: its lease lapses instead.
    for (const nodeId of crashed) {
      const node = await pollUntil(
        () => getNode(server, nodeId, 'demo'),
        (n) => n.status !== 'online',
        {
          timeoutMs: 10_000,
          what: `crashed demo node ${nodeId} to leave`,
        },
      );
      assert.deepEqual([node.status, node.removal_reason], ['offline', 'lease_expired']);
    }
  });

  it('a server killed with SIGKILL and restarted on the same database keeps every acknowledged registration', TEST_TIMEOUT, async () => {
    const role = 'e2e-durable';
    const responses = await Promise.all(
      Array.from({ length: 50 }, (_, i) =>
        getJson<{ node_id: string; outcome: string }>(`${server.url}/api/v1/nodes/register`, {
          body: { hostname: `durable-${i}`, role, labels: ['durable'] },
        }),
      ),
    );
    for (const response of responses) assert.equal(response.status, 201, JSON.stringify(response.body));
    const acknowledged = responses.map((response) => response.body.node_id).sort();
    assert.equal(new Set(acknowledged).size, 50);

    server.proc.kill('SIGKILL');
    assert.equal((await server.proc.waitForExit()).signal, 'SIGKILL');
    server = await serve(server.port);

    const nodes = await listNodes(server, `role=${role}`);
    assert.deepEqual(nodes.map((node) => node.node_id).sort(), acknowledged);
    for (const node of nodes) {
      assert.equal(node.status, 'online');
      assert.deepEqual(node.labels, ['durable']);
    }
    assert.deepEqual(nodes.map((node) => node.hostname).sort(), Array.from({ length: 50 }, (_, i) => `durable-${i}`).sort());
  });

  it('the registry registers itself and leaves with graceful_shutdown when stopped with SIGTERM', TEST_TIMEOUT, async () => {
    const oldId = registryIdFor(server.port);
    const registered = await listNodes(server, 'node_type=registry');
    assert.deepEqual(
      registered.map((node) => [node.node_id, node.status, node.role]),
      [[oldId, 'online', 'registry']],
    );
    assert.equal((registered[0] as ApiNode).endpoints.api, server.url);

    server.proc.kill('SIGTERM');
    assert.deepEqual(await server.proc.waitForExit(), { code: 0, signal: null });
    server = await serve(await freePort());
    const newId = registryIdFor(server.port);
    assert.notEqual(newId, oldId);

    const registries = await listNodes(server, 'node_type=registry');
    const byId = new Map(registries.map((node) => [node.node_id, node]));
    assert.deepEqual([...byId.keys()].sort(), [newId, oldId].sort());
    const old = byId.get(oldId) as ApiNode;
    assert.deepEqual([old.status, old.removal_reason], ['removed', 'graceful_shutdown']);
    const current = byId.get(newId) as ApiNode;
    assert.deepEqual([current.status, current.removal_reason], ['online', null]);
  });
});

describe('rollcall serve refuses bad configuration at start', () => {
  it('refuses --port 99999, naming the port', TEST_TIMEOUT, async () => {
    const result = await runCli(['serve', '--port', '99999', '--database-url', database().url]);
    assert.notEqual(result.code, 0);
    assert.equal(result.signal, null);
    assert.match(result.stderr, /port/);
    assert.match(result.stderr, /99999/);
    assert.doesNotMatch(result.stderr, /serving/);
  });

  it('refuses ROLLCALL_LEASE_TTL_SECONDS=abc, naming leaseTtlSeconds', TEST_TIMEOUT, async () => {
    const result = await runCli(['serve', '--port', '0', '--database-url', database().url], { env: { ROLLCALL_LEASE_TTL_SECONDS: 'abc' } });
    assert.notEqual(result.code, 0);
    assert.equal(result.signal, null);
    assert.match(result.stderr, /leaseTtlSeconds/);
    assert.doesNotMatch(result.stderr, /serving/);
  });

  it('fails on an unreachable database URL without ever printing its password', TEST_TIMEOUT, async () => {
    // The most verbose log level: no log line may carry the password either.
    const result = await runCli(['serve', '--port', '0', '--database-url', 'postgres://postgres:s3cretpw@127.0.0.1:1/nope'], {
      env: { ROLLCALL_LOG_LEVEL: 'trace' },
    });
    assert.notEqual(result.code, 0);
    assert.equal(result.signal, null);
    assert.match(result.stderr, /^rollcall: .+/m);
    assert.doesNotMatch(result.stderr, /serving/);
    assert.ok(!result.stdout.includes('s3cretpw'), `password in stdout:\n${result.stdout}`);
    assert.ok(!result.stderr.includes('s3cretpw'), `password in stderr:\n${result.stderr}`);
  });
});
