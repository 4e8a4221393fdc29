// A registry killed with SIGKILL in the middle of a burst of Kafka registrations, restarted on the
// same database and topics: every announcement produced is reflected once, and the batches replayed
// after the crash (consumed, maybe written, never committed) add no second change; nor does a
// replay of the whole topic.
import { strict as assert } from 'node:assert';
import { after, before, describe, it } from 'node:test';
import { Kafka, logLevel } from 'kafkajs';
import pg from 'pg';
import { KafkaBus } from '../../src/bus/kafka-bus.js';
import { EVENT_TYPES, envelope, topicNames, type TopicNames } from '../../src/domain/events.js';
import type { NodeRecord, TopologyChange } from '../../src/domain/node.js';
import { KAFKA_BROKERS, requireKafka, testName, testTopicPrefix } from '../support/kafka.js';
import { testLogger } from '../support/logger.js';
import { createTestDatabase, type TestDatabase } from '../support/postgres.js';
import { PATIENCE, freePort, killAllCli, pollUntil, spawnCli, type CliProcess } from '../support/processes.js';

const TOTAL = 3000;
const CHUNK = 250;
/** The registry is killed once at least this many announcements are written. */
const KILL_AFTER = 600;
const NAMESPACE = 'burst';

interface Server {
  proc: CliProcess;
  url: string;
}

let db: TestDatabase | undefined;
let bus: KafkaBus | undefined;

function database(): TestDatabase {
  assert.ok(db, 'the test database was not created');
  return db;
}

async function getJson<T>(url: string): Promise<T> {
  const response = await fetch(url, { signal: AbortSignal.timeout(10_000) });
  const body = (await response.json()) as T;
  assert.equal(response.status, 200, `GET ${url}: ${JSON.stringify(body)}`);
  return body;
}

/** Every node of the namespace, page by page. */
async function listNamespace(server: Server): Promise<NodeRecord[]> {
  const nodes: NodeRecord[] = [];
  let cursor: string | null = null;
  do {
    const page: { nodes: NodeRecord[]; next_cursor: string | null } = await getJson(`${server.url}/api/v1/nodes?namespace=${NAMESPACE}&limit=1000${cursor === null ? '' : `&cursor=${cursor}`}`);
    nodes.push(...page.nodes);
    cursor = page.next_cursor;
  } while (cursor !== null);
  return nodes;
}

/** The whole topology log, page by page. */
async function allChanges(server: Server): Promise<TopologyChange[]> {
  const changes: TopologyChange[] = [];
  let since = 0;
  for (;;) {
    const page: { version: number; changes: TopologyChange[] } = await getJson(`${server.url}/api/v1/topology/changes?since=${since}&limit=1000`);
    if (page.changes.length === 0) return changes;
    changes.push(...page.changes);
    since = page.version;
  }
}

/** Nodes of the burst written to the database: what survived the crash. */
async function committedBurstNodes(): Promise<number> {
  const client = new pg.Client({ connectionString: database().url });
  await client.connect();
  try {
    const result = await client.query<{ count: string }>('SELECT count(*) FROM node_registrations WHERE namespace = $1', [NAMESPACE]);
    return Number(result.rows[0]?.count ?? 0);
  } finally {
    await client.end();
  }
}

/** The registry's count of announcements that changed nothing: received again after being written. */
async function unchangedRegistrations(server: Server): Promise<number> {
  const response = await fetch(`${server.url}/metrics`, { signal: AbortSignal.timeout(10_000) });
  const metrics = await response.text();
  return Number(/^rollcall_registrations_total\{outcome="unchanged"\} (\d+)$/m.exec(metrics)?.[1] ?? 0);
}

/** Every node of the burst has exactly one change in the topology log, and it is `added`. */
async function assertOneAddedChangeEach(server: Server): Promise<void> {
  const changes = (await allChanges(server)).filter((change) => change.namespace === NAMESPACE);
  const byNode = new Map<string, string[]>();
  for (const change of changes) byNode.set(change.node_id, [...(byNode.get(change.node_id) ?? []), change.change_type]);
  assert.equal(byNode.size, TOTAL);
  const repeated = [...byNode].filter(([, types]) => types.length !== 1 || types[0] !== 'added');
  assert.deepEqual(repeated, [], 'a node with other than exactly one added change');
}

function announcement(index: number): { key: string; value: string } {
  const nodeId = `burst-${String(index).padStart(4, '0')}`;
  const event = envelope(EVENT_TYPES.introspection, nodeId, {
    node_id: nodeId,
    node_type: 'burst-node',
    namespace: NAMESPACE,
    incarnation: 1,
    lease_ttl_seconds: 600,
    capabilities: { index },
    metadata: { hostname: `host-${index}`, role: 'burst', labels: ['burst'] },
    reason: 'startup',
  });
  return { key: nodeId, value: JSON.stringify(event) };
}

before(async () => {
  await requireKafka();
  db = await createTestDatabase('rollcall_e2e_kafka_crash');
});

after(async () => {
  await killAllCli();
  await bus?.close();
  await db?.drop();
});

describe('a registry killed with SIGKILL in the middle of a burst of Kafka registrations', () => {
  let topics: TopicNames;
  let port: number;
  const env: Record<string, string> = {};
  let second: Server | undefined;

  async function serve(): Promise<Server> {
    const proc = spawnCli(['serve', '--database-url', database().url, '--port', String(port)], { env });
    const match = await proc.waitForLine('stderr', /^rollcall \S+ serving (http:\/\/\S+) \(PostgreSQL\)$/, 20_000);
    return { proc, url: match[1] as string };
  }

  before(async () => {
    const prefix = testTopicPrefix();
    topics = topicNames(prefix);
    port = await freePort();
    Object.assign(env, {
      ROLLCALL_KAFKA_BROKERS: KAFKA_BROKERS,
      ROLLCALL_KAFKA_TOPIC_PREFIX: prefix,
      ROLLCALL_KAFKA_GROUP_ID: testName('e2e'),
      ROLLCALL_HEARTBEAT_FLUSH_MS: '100',
    });
    bus = new KafkaBus({ brokers: KAFKA_BROKERS.split(','), clientId: 'rollcall-e2e-burst', logger: testLogger });
    await bus.connect();
  });

  it('after a restart on the same database every produced announcement is one node with one added change', { timeout: 50_000 * PATIENCE }, async (t) => {
    const first = await serve();
    const producer = bus as KafkaBus;
    // Only the registry's own node lives in the default namespace: the snapshot stays small while the version moves.
    const version = async (server: Server): Promise<number> => (await getJson<{ version: number }>(`${server.url}/api/v1/topology?namespace=default`)).version;
    const baseline = await version(first);

    let produced = 0;
    const burst = (async () => {
      for (let start = 0; start < TOTAL; start += CHUNK) {
        const messages = Array.from({ length: Math.min(CHUNK, TOTAL - start) }, (_, offset) => announcement(start + offset));
        await producer.publish(topics.introspection, messages);
        produced += messages.length;
      }
    })();

    await pollUntil(
      () => version(first),
      (current) => current - baseline >= KILL_AFTER,
      { timeoutMs: 20_000, intervalMs: 20, what: `${KILL_AFTER} registrations` },
    );
    first.proc.kill('SIGKILL');
    const producedAtKill = produced;
    assert.equal((await first.proc.waitForExit()).signal, 'SIGKILL');
    const survived = await committedBurstNodes();
    t.diagnostic(`killed with ${survived} of ${TOTAL} announcements written, ${producedAtKill} produced`);
    assert.ok(survived >= KILL_AFTER && survived < TOTAL, `${survived} written at the kill`);

    // Whatever of the burst was not produced yet goes to Kafka while no registry runs.
    await burst;
    assert.equal(produced, TOTAL);
    const restarted = await serve();
    second = restarted;
    // The killed member holds its partitions until its session times out (10 s); then the backlog drains.
    const nodes = await pollUntil(
      () => listNamespace(restarted),
      (list) => list.length >= TOTAL,
      {
        timeoutMs: 30_000,
        intervalMs: 250,
        what: `${TOTAL} nodes after the restart`,
      },
    );

    const expected = Array.from({ length: TOTAL }, (_, index) => `burst-${String(index).padStart(4, '0')}`);
    assert.equal(nodes.length, TOTAL);
    assert.deepEqual(nodes.map((node) => node.node_id).sort(), expected);
    for (const node of nodes) {
      assert.deepEqual([node.node_id, node.status, node.node_type, node.labels], [node.node_id, 'online', 'burst-node', ['burst']]);
    }

    await assertOneAddedChangeEach(restarted);
    // Whether the kill fell between a write and its offset commit is luck: the next test replays for sure.
    t.diagnostic(`${await unchangedRegistrations(restarted)} announcements replayed after the restart were already written`);
  });

  it('replaying the whole topic again (offsets reset to the start) adds no change either', { timeout: 30_000 * PATIENCE }, async () => {
    assert.ok(second, 'the registry was restarted');
    second.proc.kill('SIGTERM');
    assert.deepEqual(await second.proc.waitForExit(), { code: 0, signal: null });
    // The group is empty once its member left: move it back to the start of the topic.
    const kafka = new Kafka({ clientId: 'rollcall-e2e-reset', brokers: KAFKA_BROKERS.split(','), logLevel: logLevel.NOTHING });
    const admin = kafka.admin();
    await admin.connect();
    try {
      await admin.resetOffsets({ groupId: env.ROLLCALL_KAFKA_GROUP_ID as string, topic: topics.introspection, earliest: true });
    } finally {
      await admin.disconnect();
    }

    const third = await serve();
    await pollUntil(
      () => unchangedRegistrations(third),
      (replayed) => replayed >= TOTAL,
      { timeoutMs: 20_000, intervalMs: 200, what: `${TOTAL} replayed announcements` },
    );
    assert.equal(await unchangedRegistrations(third), TOTAL);
    await assertOneAddedChangeEach(third);
  });
});
