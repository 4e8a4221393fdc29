// Namespaces with Kafka topics of their own (kafkaNamespaceTopics) against a real broker: events of a
// listed namespace travel on {prefix}.ns.{namespace}.* and nowhere else, events on the wrong set of
// topics are dead-lettered on that set with NAMESPACE_MISMATCH, each namespace's changes come out on
// its own diff topic with a continuity chain of their own, and the agent and follower SDKs use them.
import { strict as assert } from 'node:assert';
import { randomUUID } from 'node:crypto';
import { after, before, describe, it } from 'node:test';
import { BusTransport } from '../../src/agent/bus-transport.js';
import { NodeAgent } from '../../src/agent/node-agent.js';
import { KafkaBus } from '../../src/bus/kafka-bus.js';
import { TopologyFollower, followerKey, type ResyncEvent } from '../../src/client/topology-follower.js';
import { isRollcallError } from '../../src/domain/errors.js';
import { namespaceTopicNames, type TopicNames, type TopologyDiffPayload } from '../../src/domain/events.js';
import { DEAD_LETTER_HEADERS } from '../../src/intake/event-intake.js';
import { KAFKA_BROKERS, requireKafka, testTopics } from '../support/kafka.js';
import { kcatConsume, kcatProduce, type KcatMessage } from '../support/kcat.js';
import { testLogger } from '../support/logger.js';
import { createTestDatabase, type TestDatabase } from '../support/postgres.js';
import { pollUntil, waitFor } from '../support/processes.js';
import { json, startTestServer, type TestServer } from '../support/server.js';

interface Node {
  node_id: string;
  namespace: string;
  status: string;
  last_heartbeat: string;
}

interface Diff {
  event_type: string;
  payload: TopologyDiffPayload;
}

function introspection(nodeId: string, extra: Record<string, unknown> = {}): string {
  return JSON.stringify({
    envelope_version: '1.0',
    event_id: randomUUID(),
    event_type: 'NODE_INTROSPECTION',
    event_timestamp: new Date().toISOString(),
    source_node_id: nodeId,
    payload: { node_id: nodeId, node_type: 'effect', node_version: '1.0.0', capabilities: { operations: ['stamp'] }, ...extra },
  });
}

function event(type: string, nodeId: string, payload: Record<string, unknown>): string {
  return JSON.stringify({
    envelope_version: '1.0',
    event_id: randomUUID(),
    event_type: type,
    event_timestamp: new Date().toISOString(),
    source_node_id: nodeId,
    payload: { node_id: nodeId, ...payload },
  });
}

const until = (ok: () => Promise<boolean>, what: string, timeoutMs = 20_000): Promise<boolean> => pollUntil(ok, (value) => value, { timeoutMs, what });

/** A topic's messages, none when it does not exist (yet). */
const read = (topic: string): Promise<KcatMessage[]> => kcatConsume(topic).catch(() => []);

async function diffsOn(topic: string): Promise<Diff[]> {
  return (await read(topic)).map((message) => JSON.parse(message.payload ?? '{}') as Diff);
}

/** Node ids (namespace/node_id) of every change on a diff topic. */
async function changedOn(topic: string): Promise<string[]> {
  return (await diffsOn(topic)).flatMap((diff) => diff.payload.changes.map((change) => followerKey(change.namespace, change.node_id)));
}

/** Reads a topic until `count` of its messages match. */
async function messagesOn(topic: string, count: number, match: (message: KcatMessage) => boolean, what: string): Promise<KcatMessage[]> {
  let found: KcatMessage[] = [];
  await until(async () => {
    found = (await read(topic)).filter(match);
    return found.length >= count;
  }, what);
  return found;
}

/** Each diff on the topic starts where the topic's last one ended. */
function assertChained(diffs: Diff[], topic: string): void {
  for (let i = 1; i < diffs.length; i++) {
    assert.equal(diffs[i]?.payload.previous_version, diffs[i - 1]?.payload.topology_version, `${topic}: diff ${i} follows diff ${i - 1}`);
  }
}

describe('namespace topics on kafka', () => {
  let database: TestDatabase;
  let t: TestServer;
  let shared: TopicNames;
  let alpha: TopicNames;
  let beta: TopicNames;
  let config: Record<string, unknown>;
  let bus: KafkaBus;

  const nodeOf = async (nodeId: string, namespace: string): Promise<Node | undefined> => {
    const got = await json<Node>(`${t.url}/api/v1/nodes/${nodeId}?namespace=${namespace}`);
    return got.status === 200 ? got.body : undefined;
  };
  const version = async (): Promise<number> => (await json<{ version: number }>(`${t.url}/api/v1/topology`)).body.version;

  before(async () => {
    await requireKafka();
    const plane = testTopics();
    shared = plane.topics;
    alpha = namespaceTopicNames(plane.prefix, 'alpha');
    beta = namespaceTopicNames(plane.prefix, 'beta');
    config = { ...plane.config, kafkaNamespaceTopics: ['alpha', 'beta'], kafkaPartitions: 2, sweepIntervalMs: 100 };
    database = await createTestDatabase();
    t = await startTestServer({ database, config });
    bus = new KafkaBus({ brokers: KAFKA_BROKERS.split(','), clientId: 'namespace-topics-test', logger: testLogger, maxWaitMs: 200 });
    await bus.connect();
  });
  after(async () => {
    await bus.close();
    await t.stop();
    await database.drop();
  });

  it("names a namespace's topics under {prefix}.ns.{namespace}", () => {
    const prefix = shared.introspection.slice(0, -'.node-introspection.v1'.length);
    assert.deepEqual(beta, {
      introspection: `${prefix}.ns.beta.node-introspection.v1`,
      heartbeat: `${prefix}.ns.beta.node-heartbeat.v1`,
      tombstone: `${prefix}.ns.beta.node-tombstone.v1`,
      requestIntrospection: `${prefix}.ns.beta.registry-request-introspection.v1`,
      topologyDiff: `${prefix}.ns.beta.topology-diff.v1`,
      deadLetter: `${prefix}.ns.beta.dead-letter.v1`,
    });
    assert.deepEqual(namespaceTopicNames(shared, 'beta'), beta, 'derived from the shared set too');
  });

  it('asks the nodes of every set of topics to announce themselves at start', async () => {
    for (const topics of [shared, alpha, beta]) {
      const [request] = await messagesOn(topics.requestIntrospection, 1, (message) => message.payload?.includes('registry_startup') === true, `the startup request on ${topics.requestIntrospection}`);
      assert.equal((JSON.parse(request?.payload ?? '{}') as { event_type: string }).event_type, 'REGISTRY_REQUEST_INTROSPECTION');
    }
  });

  it("registers an event of beta from beta's topics; one that names no namespace is of beta", async () => {
    await kcatProduce(beta.introspection, 'beta-1', introspection('beta-1'));
    await kcatProduce(beta.introspection, 'beta-2', introspection('beta-2', { namespace: 'beta' }));
    const first = await waitFor('beta-1 registered in beta', () => nodeOf('beta-1', 'beta'), 20_000);
    assert.equal(first.status, 'online');
    assert.equal(first.namespace, 'beta');
    assert.equal((await waitFor('beta-2 registered in beta', () => nodeOf('beta-2', 'beta'), 20_000)).status, 'online');
    assert.equal(await nodeOf('beta-1', 'default'), undefined, 'not in the default namespace');
  });

  it("dead-letters events claiming alpha on beta's topics on beta's dead-letter topic, and changes nothing", async () => {
    await waitFor('beta-1', () => nodeOf('beta-1', 'beta'), 20_000);
    const before = await version();
    await kcatProduce(beta.introspection, 'intruder-1', introspection('intruder-1', { namespace: 'alpha' }), { origin: 'kcat' });
    await kcatProduce(beta.heartbeat, 'beta-1', event('NODE_HEARTBEAT', 'beta-1', { namespace: 'alpha' }));
    await kcatProduce(beta.tombstone, 'beta-1', event('NODE_TOMBSTONE', 'beta-1', { namespace: 'alpha', removal_reason: 'hijack' }));
    const letters = await messagesOn(
      beta.deadLetter,
      3,
      (message) => message.headers[DEAD_LETTER_HEADERS.reason] === 'NAMESPACE_MISMATCH',
      "three NAMESPACE_MISMATCH letters on beta's dead-letter topic",
    );
    const byTopic = new Map(letters.map((letter) => [letter.headers[DEAD_LETTER_HEADERS.topic], letter]));
    assert.deepEqual([...byTopic.keys()].sort(), [beta.introspection, beta.heartbeat, beta.tombstone].sort());
    assert.equal(byTopic.get(beta.introspection)?.key, 'intruder-1');
    assert.equal(byTopic.get(beta.introspection)?.headers.origin, 'kcat', 'original headers are kept');
    // The letters go out once the batch's writes are done: nothing was written.
    assert.equal(await version(), before, 'no topology change');
    assert.equal(await nodeOf('intruder-1', 'alpha'), undefined);
    assert.equal(await nodeOf('intruder-1', 'beta'), undefined);
    assert.equal((await nodeOf('beta-1', 'beta'))?.status, 'online');
    const elsewhere = [...(await read(shared.deadLetter)), ...(await read(alpha.deadLetter))];
    assert.equal(elsewhere.filter((message) => message.key === 'intruder-1').length, 0, 'nothing on the other dead-letter topics');
  });

  it("refuses beta's events on the shared topics the same way, and still takes the default namespace's there", async () => {
    await waitFor('beta-1', () => nodeOf('beta-1', 'beta'), 20_000);
    const before = await version();
    await kcatProduce(shared.introspection, 'shared-beta', introspection('shared-beta', { namespace: 'beta' }));
    await kcatProduce(shared.tombstone, 'beta-1', event('NODE_TOMBSTONE', 'beta-1', { namespace: 'beta', removal_reason: 'hijack' }));
    const letters = await messagesOn(
      shared.deadLetter,
      2,
      (message) => message.headers[DEAD_LETTER_HEADERS.reason] === 'NAMESPACE_MISMATCH',
      'two NAMESPACE_MISMATCH letters on the shared dead-letter topic',
    );
    assert.deepEqual(letters.map((letter) => letter.headers[DEAD_LETTER_HEADERS.topic]).sort(), [shared.introspection, shared.tombstone].sort());
    assert.equal(await version(), before, 'no topology change');
    assert.equal(await nodeOf('shared-beta', 'beta'), undefined);
    assert.equal((await nodeOf('beta-1', 'beta'))?.status, 'online', 'the tombstone was not applied');
    assert.equal((await read(beta.deadLetter)).filter((message) => message.key === 'shared-beta').length, 0);

    await kcatProduce(shared.introspection, 'plain-1', introspection('plain-1'));
    assert.equal((await waitFor('plain-1 in the default namespace', () => nodeOf('plain-1', 'default'), 20_000)).status, 'online');
  });

  it("asks an unknown beta node to announce on beta's request topic only", async () => {
    await kcatProduce(beta.heartbeat, 'ghost-b', event('NODE_HEARTBEAT', 'ghost-b', {}));
    const [request] = await messagesOn(beta.requestIntrospection, 1, (message) => message.payload?.includes('ghost-b') === true, "the request for ghost-b on beta's request topic");
    const payload = (JSON.parse(request?.payload ?? '{}') as { payload: { reason: string; namespace: string; target_node_ids: string[] } }).payload;
    assert.deepEqual({ reason: payload.reason, namespace: payload.namespace, targets: payload.target_node_ids }, { reason: 'unknown_node', namespace: 'beta', targets: ['ghost-b'] });
    const [letter] = await messagesOn(beta.deadLetter, 1, (message) => message.key === 'ghost-b', 'the heartbeat of ghost-b dead-lettered');
    assert.equal(letter?.headers[DEAD_LETTER_HEADERS.reason], 'NODE_NOT_FOUND');
    const elsewhere = [...(await read(shared.requestIntrospection)), ...(await read(alpha.requestIntrospection))];
    assert.equal(elsewhere.filter((message) => message.payload?.includes('ghost-b') === true).length, 0, 'no other namespace hears of ghost-b');
  });

  it("publishes beta's changes on beta's diff topic only, and the others' on the shared one, each topic chained", async () => {
    await waitFor('plain-1', () => nodeOf('plain-1', 'default'), 20_000);
    await until(async () => (await changedOn(beta.topologyDiff)).includes('beta/beta-1'), "beta-1 on beta's diff topic");
    await until(async () => (await changedOn(shared.topologyDiff)).includes('default/plain-1'), 'plain-1 on the shared diff topic');
    const betaDiffs = await diffsOn(beta.topologyDiff);
    const sharedDiffs = await diffsOn(shared.topologyDiff);
    for (const diff of betaDiffs) {
      assert.equal(diff.event_type, 'TOPOLOGY_DIFF');
      assert.equal(diff.payload.namespace, 'beta');
      for (const change of diff.payload.changes) assert.equal(change.namespace, 'beta');
      assert.ok(diff.payload.summary.total_nodes <= 2, "beta's totals count beta's nodes only");
    }
    for (const diff of sharedDiffs) {
      assert.equal(diff.payload.namespace, undefined);
      for (const change of diff.payload.changes) assert.ok(!['alpha', 'beta'].includes(change.namespace), `${change.namespace}/${change.node_id} on the shared topic`);
    }
    assert.deepEqual(await diffsOn(alpha.topologyDiff), [], 'alpha changed nothing, and hears nothing');
    assertChained(betaDiffs, 'beta');
    assertChained(sharedDiffs, 'shared');
    assert.equal(betaDiffs[0]?.payload.previous_version, 0, "beta's first diff on a fresh registry");
    // Versions stay global: the two topics together carry every version once.
    const relayed = [...betaDiffs, ...sharedDiffs].flatMap((diff) => diff.payload.changes.map((change) => change.version)).sort((a, b) => a - b);
    const through = relayed.at(-1) ?? 0;
    const committed = (await json<{ changes: Array<{ version: number }> }>(`${t.url}/api/v1/topology/changes?since=0&limit=10000`)).body.changes
      .map((change) => change.version)
      .filter((v) => v <= through);
    assert.deepEqual(relayed, committed);
  });

  it('lets an agent with namespace topics announce, heartbeat and leave through its own topics', async () => {
    const nodeId = 'agent-beta';
    const agent = new NodeAgent({
      identity: { node_id: nodeId, node_type: 'worker', namespace: 'beta' },
      introspect: () => ({ capabilities: { jobs: 1 } }),
      transport: new BusTransport({ bus, topics: shared, namespace: 'beta', namespaceTopics: true, nodeId, logger: testLogger }),
      heartbeatIntervalMs: 200,
      jitter: 0,
      logger: testLogger,
    });
    await agent.start();
    let stopped = false;
    try {
      const announced = await waitFor('the agent registered in beta', () => nodeOf(nodeId, 'beta'), 20_000);
      assert.equal(announced.status, 'online');
      await until(async () => ((await nodeOf(nodeId, 'beta'))?.last_heartbeat ?? '') > announced.last_heartbeat, 'a heartbeat renewed the lease');
      await agent.stop();
      stopped = true;
      await until(async () => (await nodeOf(nodeId, 'beta'))?.status === 'removed', 'the tombstone removed it');
    } finally {
      if (!stopped) await agent.stop();
    }
    for (const topic of [beta.introspection, beta.heartbeat, beta.tombstone]) {
      assert.ok(
        (await read(topic)).some((message) => message.key === nodeId),
        `${topic} carried the agent's event`,
      );
    }
    for (const topic of [shared.introspection, shared.heartbeat, shared.tombstone]) {
      assert.equal((await read(topic)).filter((message) => message.key === nodeId).length, 0, `${topic} carried nothing of the agent`);
    }
  });

  it("refuses an agent whose identity is of another namespace than its transport's topics", async () => {
    const transport = new BusTransport({ bus, topics: shared, namespace: 'beta', namespaceTopics: true, nodeId: 'lost-1', logger: testLogger });
    const agent = new NodeAgent({ identity: { node_id: 'lost-1', node_type: 'worker' }, introspect: () => ({}), transport, logger: testLogger });
    try {
      await assert.rejects(agent.start(), (error: unknown) => isRollcallError(error) && error.code === 'NAMESPACE_MISMATCH');
    } finally {
      await transport.close();
    }
    assert.throws(
      () => new BusTransport({ bus, topics: shared, namespaceTopics: true, nodeId: 'lost-2' }),
      (error: unknown) => isRollcallError(error) && error.code === 'VALIDATION_FAILED',
    );
  });

  it("lets a follower follow beta from beta's diff topic alone", async () => {
    const follower = new TopologyFollower({ bus, topics: shared, registryUrl: t.url, namespace: 'beta', namespaceTopics: true, logger: testLogger });
    const resyncs: ResyncEvent[] = [];
    follower.on('resync', (resync) => resyncs.push(resync));
    assert.equal(follower.topic, beta.topologyDiff);
    await follower.start();
    try {
      assert.ok(follower.nodes.has(followerKey('beta', 'beta-1')));
      await kcatProduce(beta.introspection, 'beta-3', introspection('beta-3'));
      await kcatProduce(shared.introspection, 'plain-2', introspection('plain-2'));
      await waitFor('beta-3 at the follower', async () => follower.nodes.get(followerKey('beta', 'beta-3')), 20_000);
      await waitFor('plain-2 registered', () => nodeOf('plain-2', 'default'), 20_000);
      assert.ok(
        [...follower.nodes.keys()].every((key) => key.startsWith('beta/')),
        "beta's nodes only",
      );
      assert.deepEqual(resyncs, [], "the chain on beta's topic had no gap");
    } finally {
      await follower.stop();
    }
  });

  it("resumes each topic's chain where it stopped after a restart", async () => {
    await waitFor('beta-3', () => nodeOf('beta-3', 'beta'), 20_000);
    await t.stop();
    const lastBeta = (await diffsOn(beta.topologyDiff)).at(-1)?.payload.topology_version;
    const lastShared = (await diffsOn(shared.topologyDiff)).at(-1)?.payload.topology_version;
    assert.ok(lastBeta !== undefined && lastShared !== undefined);
    const beforeBeta = (await diffsOn(beta.topologyDiff)).length;
    const beforeShared = (await diffsOn(shared.topologyDiff)).length;
    t = await startTestServer({ database, config });
    await kcatProduce(beta.introspection, 'beta-4', introspection('beta-4'));
    await until(async () => (await changedOn(beta.topologyDiff)).includes('beta/beta-4'), "beta-4 on beta's diff topic");
    // The new instance registers itself in the default namespace: a change for the shared topic.
    await until(async () => (await diffsOn(shared.topologyDiff)).length > beforeShared, 'a diff on the shared topic after the restart');
    const resumedBeta = (await diffsOn(beta.topologyDiff)).slice(beforeBeta);
    const resumedShared = (await diffsOn(shared.topologyDiff)).slice(beforeShared);
    assert.equal(resumedBeta[0]?.payload.previous_version, lastBeta, "beta's chain goes on from its last diff");
    assert.equal(resumedShared[0]?.payload.previous_version, lastShared, 'the shared chain goes on from its last diff');
    assertChained(await diffsOn(beta.topologyDiff), 'beta');
    assertChained(await diffsOn(shared.topologyDiff), 'shared');
  });
});
