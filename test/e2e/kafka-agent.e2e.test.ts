// The event plane end to end, one process each: `rollcall join --transport kafka` as the node, `rollcall
// serve` as the registry, and a TopologyFollower here as the consumer of the diff stream. Start,
// heartbeats, a capability change, a graceful stop and a SIGKILL (lease expiry) arrive as the right
// topology changes, in order, under gap-free versions; a registry started after the node learns of
// it through REGISTRY_REQUEST_INTROSPECTION.
import { strict as assert } from 'node:assert';
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { KafkaBus } from '../../src/bus/kafka-bus.js';
import { TopologyFollower, type ResyncEvent } from '../../src/client/topology-follower.js';
import { decodeEnvelope, eventKindOf, topicNames, type DiffChange, type TopicNames } from '../../src/domain/events.js';
import type { NodeRecord, TopologyChange } from '../../src/domain/node.js';
import { KAFKA_BROKERS, requireKafka, testName, testTopicPrefix } from '../support/kafka.js';
import { testLogger } from '../support/logger.js';
import { createTestDatabase, type TestDatabase } from '../support/postgres.js';
import { PATIENCE, freePort, killAllCli, pollUntil, runCli, spawnCli, waitFor, type CliProcess } from '../support/processes.js';

const TEST_TIMEOUT = { timeout: 30_000 * PATIENCE };

interface Server {
  proc: CliProcess;
  url: string;
}

interface JoinedNode {
  proc: CliProcess;
  nodeId: string;
}

/** One registry's world: its database, topics and consumer group, shared by nobody else. */
interface Plane {
  db: TestDatabase;
  prefix: string;
  topics: TopicNames;
  group: string;
}

const databases: TestDatabase[] = [];
const buses: KafkaBus[] = [];
let tmp: string | undefined;

async function newPlane(): Promise<Plane> {
  const db = await createTestDatabase('rollcall_e2e_kafka');
  databases.push(db);
  const prefix = testTopicPrefix();
  return { db, prefix, topics: topicNames(prefix), group: testName('e2e') };
}

async function newBus(clientId: string): Promise<KafkaBus> {
  const bus = new KafkaBus({ brokers: KAFKA_BROKERS.split(','), clientId, logger: testLogger, maxWaitMs: 200 });
  buses.push(bus);
  await bus.connect();
  return bus;
}

function scratch(name: string): string {
  assert.ok(tmp, 'the scratch folder was not created');
  return join(tmp, name);
}

async function getJson<T>(url: string): Promise<{ status: number; body: T }> {
  const response = await fetch(url, { signal: AbortSignal.timeout(10_000) });
  const text = await response.text();
  return { status: response.status, body: (text ? JSON.parse(text) : null) as T };
}

async function getNode(server: Server, nodeId: string): Promise<NodeRecord> {
  const { status, body } = await getJson<NodeRecord>(`${server.url}/api/v1/nodes/${encodeURIComponent(nodeId)}`);
  assert.equal(status, 200, `GET node ${nodeId}: ${JSON.stringify(body)}`);
  return body;
}

async function changesSince(server: Server, since: number): Promise<TopologyChange[]> {
  const { status, body } = await getJson<{ version: number; changes: TopologyChange[] }>(`${server.url}/api/v1/topology/changes?since=${since}&limit=10000`);
  assert.equal(status, 200, JSON.stringify(body));
  return body.changes;
}

async function serve(plane: Plane, env: Record<string, string> = {}): Promise<Server> {
  const proc = spawnCli(['serve', '--database-url', plane.db.url, '--port', String(await freePort())], {
    env: {
      ...env,
      ROLLCALL_KAFKA_BROKERS: KAFKA_BROKERS,
      ROLLCALL_KAFKA_TOPIC_PREFIX: plane.prefix,
      ROLLCALL_KAFKA_GROUP_ID: plane.group,
      ROLLCALL_SWEEP_INTERVAL_MS: '200',
      ROLLCALL_HEARTBEAT_FLUSH_MS: '100',
    },
  });
  const match = await proc.waitForLine('stderr', /^rollcall \S+ serving (http:\/\/\S+) \(PostgreSQL\)$/, 20_000);
  return { proc, url: match[1] as string };
}

async function joinNode(plane: Plane, nodeIdFile: string, extra: string[]): Promise<JoinedNode> {
  const proc = spawnCli([
    'join',
    '--transport',
    'kafka',
    '--brokers',
    KAFKA_BROKERS,
    '--topic-prefix',
    plane.prefix,
    '--role',
    'worker',
    '--labels',
    'gpu,zone-a',
    '--node-id-file',
    nodeIdFile,
    '--log-level',
    'warn',
    ...extra,
  ]);
  const match = await proc.waitForLine('stdout', /^joined (\S+) as (\S+)$/, 15_000);
  assert.equal(match[1], `kafka://${KAFKA_BROKERS}/${plane.prefix}`);
  return { proc, nodeId: match[2] as string };
}

before(async () => {
  await requireKafka();
  tmp = await mkdtemp(join(tmpdir(), 'rollcall-e2e-kafka-'));
});

after(async () => {
  await killAllCli();
  await Promise.all(buses.map((bus) => bus.close().catch(() => undefined)));
  await Promise.all(databases.map((db) => db.drop()));
  if (tmp) await rm(tmp, { recursive: true, force: true });
});

describe('a Kafka node agent, the registry and a diff-stream follower in three processes', () => {
  let plane: Plane;
  let server: Server;
  let follower: TopologyFollower;
  let startVersion: number;
  const seen: DiffChange[] = [];
  const resyncs: ResyncEvent[] = [];
  let worker: JoinedNode;
  const capabilitiesFile = (): string => scratch('worker/capabilities.json');

  /** The first change the follower saw of `nodeId` that `match` accepts. */
  const changeOf = (nodeId: string, what: string, match: (change: DiffChange) => boolean, timeoutMs = 10_000): Promise<DiffChange> =>
    waitFor(`the follower to see ${what} of ${nodeId}`, async () => seen.find((change) => change.node_id === nodeId && match(change)), timeoutMs);
  const changesOf = (nodeId: string): DiffChange[] => seen.filter((change) => change.node_id === nodeId);

  before(async () => {
    plane = await newPlane();
    server = await serve(plane);
    follower = new TopologyFollower({ bus: await newBus('rollcall-e2e-follower'), topics: plane.topics, registryUrl: server.url, logger: testLogger });
    follower.on('change', (change) => seen.push(change));
    follower.on('resync', (event) => resyncs.push(event));
    await follower.start();
    startVersion = follower.version;
  });

  after(async () => {
    await follower.stop();
  });

  it('join announces the node: the follower sees it added with its type, role, labels and capabilities', TEST_TIMEOUT, async () => {
    const nodeIdFile = scratch('worker/node_id');
    await mkdir(scratch('worker'), { recursive: true });
    await writeFile(capabilitiesFile(), JSON.stringify({ gpu: true, slots: 2 }));
    worker = await joinNode(plane, nodeIdFile, ['--node-type', 'gpu-worker', '--hostname', 'e2e-kafka-host', '--ttl', '4', '--interval', '1', '--capabilities-file', capabilitiesFile()]);
    assert.match(worker.nodeId, /^node-[0-9a-f-]{36}$/);
    assert.equal((await readFile(nodeIdFile, 'utf8')).trim(), worker.nodeId);

    const added = await changeOf(worker.nodeId, 'added', (change) => change.change_type === 'added');
    assert.equal(added.node_type, 'gpu-worker');
    assert.equal(added.reason, 'startup');
    const { node } = added;
    assert.deepEqual(
      [node.namespace, node.role, node.labels, node.hostname, node.status, node.health_status, node.lease_ttl_ms],
      ['default', 'worker', ['gpu', 'zone-a'], 'e2e-kafka-host', 'online', 'healthy', 4000],
    );
    assert.deepEqual(node.capabilities, { gpu: true, slots: 2 });
    assert.equal(node.metadata.agent, 'rollcall-join');
    assert.equal(node.metadata.pid, worker.proc.pid);
    assert.equal((await getNode(server, worker.nodeId)).status, 'online');
  });

  it('heartbeats keep the node online past its 4 s lease, and the registry records each of them', TEST_TIMEOUT, async () => {
    const heartbeats = new Set<string>();
    const until = Date.now() + 5500;
    while (Date.now() < until) {
      const node = await getNode(server, worker.nodeId);
      assert.equal(node.status, 'online', `offline at ${new Date().toISOString()}: ${JSON.stringify(node)}`);
      heartbeats.add(node.last_heartbeat);
      await new Promise((resolve) => setTimeout(resolve, 400));
    }
    assert.ok(heartbeats.size >= 3, `last_heartbeat took ${heartbeats.size} values in 5.5 s: ${[...heartbeats].join(', ')}`);
    const latest = (await getNode(server, worker.nodeId)).last_heartbeat;
    // Heartbeats every second: one older than the lease would have let the node expire.
    assert.ok(Date.now() - Date.parse(latest) < 4000, `last heartbeat ${latest} is stale`);
    // A heartbeat renews the lease; it is no change of the topology.
    assert.deepEqual(
      changesOf(worker.nodeId).map((change) => change.change_type),
      ['added'],
    );
  });

  it('a capability change (SIGHUP re-reads the capabilities file) arrives as updated, naming the changed field', TEST_TIMEOUT, async () => {
    const added = changesOf(worker.nodeId)[0] as DiffChange;
    await writeFile(capabilitiesFile(), JSON.stringify({ gpu: true, slots: 4 }));
    worker.proc.kill('SIGHUP');
    const updated = await changeOf(worker.nodeId, 'updated', (change) => change.change_type === 'updated');
    assert.deepEqual(updated.changed_fields, ['capabilities']);
    assert.equal(updated.reason, 'capability_change');
    assert.deepEqual(updated.node.capabilities, { gpu: true, slots: 4 });
    assert.equal(updated.node.incarnation, added.node.incarnation);
    assert.equal(worker.proc.exit, null, 'SIGHUP does not stop the node');
  });

  it('SIGTERM sends the tombstone: the follower sees the node removed with reason graceful_shutdown', TEST_TIMEOUT, async () => {
    worker.proc.kill('SIGTERM');
    assert.deepEqual(await worker.proc.waitForExit(), { code: 0, signal: null });
    const removed = await changeOf(worker.nodeId, 'removed', (change) => change.change_type === 'removed');
    assert.equal(removed.reason, 'graceful_shutdown');
    assert.equal(removed.removal_reason, 'graceful_shutdown');
    assert.equal(removed.node.status, 'removed');
    assert.deepEqual(
      changesOf(worker.nodeId).map((change) => change.change_type),
      ['added', 'updated', 'removed'],
    );
    assert.equal((await getNode(server, worker.nodeId)).status, 'removed');
  });

  it('a node killed with SIGKILL goes offline with reason lease_expired once its lease lapses', TEST_TIMEOUT, async () => {
    const crashed = await joinNode(plane, scratch('crashed/node_id'), ['--ttl', '2', '--interval', '0.5']);
    await changeOf(crashed.nodeId, 'added', (change) => change.change_type === 'added');
    crashed.proc.kill('SIGKILL');
    assert.equal((await crashed.proc.waitForExit()).signal, 'SIGKILL');

    const expired = await changeOf(crashed.nodeId, 'the lease expiry', (change) => change.change_type !== 'added', 15_000);
    assert.equal(expired.change_type, 'removed');
    assert.equal(expired.reason, 'lease_expired');
    assert.equal(expired.removal_reason, 'lease_expired');
    assert.equal(expired.node.status, 'offline');
    const { removed_at: removedAt, last_heartbeat: lastHeartbeat } = expired.node;
    assert.ok(removedAt !== null);
    const silentMs = Date.parse(removedAt) - Date.parse(lastHeartbeat);
    assert.ok(silentMs >= 2000, `offline ${silentMs} ms after the last heartbeat`);
    assert.deepEqual(
      changesOf(crashed.nodeId).map((change) => change.change_type),
      ['added', 'removed'],
    );
  });

  it("the follower saw every version once, in order and without gaps: the registry's own log", TEST_TIMEOUT, async () => {
    const log = await changesSince(server, startVersion);
    const last = log.at(-1);
    assert.ok(last, 'the registry logged changes');
    await follower.waitForVersion(last.version);
    assert.deepEqual(resyncs, [], 'the stream had no gap to resync over');
    assert.deepEqual(
      seen.map((change) => [change.version, change.node_id, change.change_type, change.reason]),
      log.map((change) => [change.version, change.node_id, change.change_type, change.reason]),
    );
    seen.forEach((change, index) => assert.equal(change.version, startVersion + index + 1, `version ${change.version} at position ${index}`));
  });
});

describe('a registry started after the Kafka node agent', () => {
  it('learns of the running node through REGISTRY_REQUEST_INTROSPECTION, without restarting it', TEST_TIMEOUT, async () => {
    const plane = await newPlane();
    const bus = await newBus('rollcall-e2e-setup');
    // The topics as `serve` creates them; the agent does not create topics.
    const { topics } = plane;
    await bus.ensureTopics([
      ...[topics.introspection, topics.heartbeat, topics.tombstone, topics.deadLetter].map((name) => ({ name, partitions: 6 })),
      { name: topics.requestIntrospection, partitions: 1 },
      { name: topics.topologyDiff, partitions: 1 },
    ]);
    // A long interval: no heartbeat reaches the registry during the test, so only the request can
    // bring the node in.
    const node = await joinNode(plane, scratch('early/node_id'), ['--ttl', '180', '--interval', '60']);

    // The registry's group is already past the startup announcement (as after a database restore,
    // or once the announcement aged out of the topic): only a request can bring the node back.
    let skipped = false;
    const skipper = await bus.subscribe({
      group: plane.group,
      topics: [topics.introspection, topics.heartbeat, topics.tombstone],
      start: 'earliest',
      handler: async (batch) => {
        for (const message of batch) {
          const event = decodeEnvelope(message.value);
          if (eventKindOf(event.event_type) === 'introspection' && event.payload.node_id === node.nodeId) skipped = true;
        }
      },
    });
    await pollUntil(async () => skipped, Boolean, { timeoutMs: 15_000, what: "the startup announcement to be consumed by the registry's group" });
    await skipper.close();

    const server = await serve(plane);
    const record = await pollUntil(
      async () => (await getJson<NodeRecord>(`${server.url}/api/v1/nodes/${node.nodeId}`)).body,
      (body) => body.status === 'online',
      { timeoutMs: 15_000, what: `${node.nodeId} to be registered` },
    );
    assert.deepEqual([record.node_type, record.role, record.labels], ['worker', 'worker', ['gpu', 'zone-a']]);
    const changes = (await changesSince(server, 0)).filter((change) => change.node_id === node.nodeId);
    assert.deepEqual(
      changes.map((change) => [change.change_type, change.reason]),
      [['added', 'registry_request']],
    );
    assert.equal(node.proc.exit, null, 'the node kept running');

    node.proc.kill('SIGTERM');
    assert.deepEqual(await node.proc.waitForExit(), { code: 0, signal: null });
    await pollUntil(
      () => getNode(server, node.nodeId),
      (found) => found.status === 'removed',
      { timeoutMs: 10_000, what: `${node.nodeId} to be removed` },
    );
  });
});

describe('rollcall join --transport kafka --namespace-topics', () => {
  it("announces through its namespace's own topics, and leaves through them", TEST_TIMEOUT, async () => {
    const plane = await newPlane();
    const server = await serve(plane, { ROLLCALL_KAFKA_NAMESPACE_TOPICS: 'team-a' });
    try {
      // The registry refuses team-a's events on the shared topics, so a registration proves the node used team-a's.
      const node = await joinNode(plane, scratch('ns-topics/node_id'), ['--namespace', 'team-a', '--namespace-topics', '--ttl', '60']);
      const url = (id: string): string => `${server.url}/api/v1/nodes/${encodeURIComponent(id)}?namespace=team-a`;
      const online = await pollUntil(
        () => getJson<NodeRecord>(url(node.nodeId)),
        (found) => found.status === 200 && found.body.status === 'online',
        { timeoutMs: 15_000, what: `${node.nodeId} online in team-a` },
      );
      assert.equal(online.body.namespace, 'team-a');
      node.proc.kill('SIGTERM');
      assert.deepEqual(await node.proc.waitForExit(), { code: 0, signal: null });
      const removed = await pollUntil(
        () => getJson<NodeRecord>(url(node.nodeId)),
        (found) => found.body.status === 'removed',
        { timeoutMs: 10_000, what: `${node.nodeId} removed` },
      );
      assert.equal(removed.body.removal_reason, 'graceful_shutdown');
    } finally {
      server.proc.kill('SIGTERM');
      await server.proc.waitForExit();
    }
  });

  it('refuses --namespace-topics without --namespace, and without the kafka transport', TEST_TIMEOUT, async () => {
    const withoutNamespace = await runCli(['join', '--transport', 'kafka', '--namespace-topics', '--role', 'worker', '--node-id-file', scratch('ns-topics-bad/node_id')], { timeoutMs: 15_000 });
    assert.equal(withoutNamespace.code, 1);
    assert.match(withoutNamespace.stderr, /--namespace-topics needs --namespace/);
    const overHttp = await runCli(['join', '--namespace-topics', '--namespace', 'team-a', '--role', 'worker', '--node-id-file', scratch('ns-topics-bad/node_id')], { timeoutMs: 15_000 });
    assert.equal(overHttp.code, 1);
    assert.match(overHttp.stderr, /--namespace-topics needs --transport kafka/);
  });
});

describe('rollcall join --transport kafka without Kafka', () => {
  it('fails with exit code 1 and says which brokers did not answer', TEST_TIMEOUT, async () => {
    const brokers = `127.0.0.1:${await freePort()}`;
    const result = await runCli(['join', '--transport', 'kafka', '--brokers', brokers, '--role', 'worker', '--node-id-file', scratch('nokafka/node_id'), '--log-level', 'silent'], {
      timeoutMs: 25_000,
    });
    assert.deepEqual([result.code, result.signal], [1, null]);
    assert.match(result.stderr, new RegExp(`^rollcall: BUS_UNAVAILABLE: Kafka at ${brokers.replace(/\./g, '\\.')} does not answer`, 'm'));
    assert.doesNotMatch(result.stdout, /joined/);
  });
});
