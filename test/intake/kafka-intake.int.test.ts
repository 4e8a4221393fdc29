// The registry's side of the event plane against a real Kafka broker, driven by kcat (another
// client): intake of the seeds' events, dead letters, dedupe, registry requests, and the diff relay.
import { randomUUID } from 'node:crypto';
import { strict as assert } from 'node:assert';
import { after, before, describe, it } from 'node:test';
import type { TopicNames } from '../../src/domain/events.js';
import { DEAD_LETTER_HEADERS } from '../../src/intake/event-intake.js';
import { requireKafka, testTopics } from '../support/kafka.js';
import { kcatConsume, kcatProduce, type KcatMessage } from '../support/kcat.js';
import { createTestDatabase, type TestDatabase } from '../support/postgres.js';
import { pollUntil, waitFor } from '../support/processes.js';
import { json, startTestServer, type TestServer } from '../support/server.js';

interface Node {
  node_id: string;
  status: string;
  node_type: string;
  capabilities: Record<string, unknown>;
  last_heartbeat: string;
  removal_reason: string | null;
  incarnation: number;
}

function introspection(nodeId: string, extra: Record<string, unknown> = {}, envelopeExtra: Record<string, unknown> = {}): Record<string, unknown> {
  // The seeds' OnexEnvelopeV1 around the seeds' introspection payload.
  return {
    envelope_version: '1.0',
    event_id: randomUUID(),
    event_type: 'NODE_INTROSPECTION',
    event_timestamp: new Date().toISOString(),
    source_node_id: nodeId,
    correlation_id: randomUUID(),
    payload: {
      node_id: nodeId,
      node_type: 'effect',
      node_version: '1.0.0',
      capabilities: { operations: ['stamp'], max_throughput: 100 },
      endpoints: { health: `http://${nodeId}:8053/health` },
      metadata: { environment: 'test' },
      ...extra,
    },
    ...envelopeExtra,
  };
}

function event(type: string, nodeId: string, payload: Record<string, unknown>): Record<string, unknown> {
  return { envelope_version: '1.0', event_id: randomUUID(), event_type: type, event_timestamp: new Date().toISOString(), source_node_id: nodeId, payload: { node_id: nodeId, ...payload } };
}

const until = (ok: () => Promise<boolean>, what: string, timeoutMs = 20_000): Promise<boolean> => pollUntil(ok, (value) => value, { timeoutMs, what });

async function nodeOf(t: TestServer, nodeId: string): Promise<Node | undefined> {
  const got = await json<Node>(`${t.url}/api/v1/nodes/${nodeId}`);
  return got.status === 200 ? got.body : undefined;
}

async function deadLetters(topics: TopicNames, count: number): Promise<KcatMessage[]> {
  let found: KcatMessage[] = [];
  await until(async () => {
    found = await kcatConsume(topics.deadLetter).catch(() => []);
    return found.length >= count;
  }, `${count} dead letter(s)`);
  return found;
}

describe('kafka intake', () => {
  let database: TestDatabase;
  let t: TestServer;
  let topics: TopicNames;
  let kafka: ReturnType<typeof testTopics>['config'];

  before(async () => {
    await requireKafka();
    ({ topics, config: kafka } = testTopics());
    database = await createTestDatabase();
    t = await startTestServer({ database, config: { ...kafka, sweepIntervalMs: 100, kafkaPartitions: 3 } });
  });
  after(async () => {
    await t.stop();
    await database.drop();
  });

  it('asks running nodes to announce themselves when it starts', async () => {
    const requests = await kcatConsume(topics.requestIntrospection);
    const request = requests.map((message) => JSON.parse(message.payload ?? '{}') as { event_type: string; correlation_id: string; payload: { reason: string; registry_id: string } });
    const startup = request.find((body) => body.payload.reason === 'registry_startup');
    assert.ok(startup, `a startup request among ${requests.length}`);
    assert.equal(startup.event_type, 'REGISTRY_REQUEST_INTROSPECTION');
    assert.equal(startup.payload.registry_id, t.server.registryId);
    assert.ok(startup.correlation_id);
  });

  it('registers a node from an OnexEnvelopeV1 produced by another Kafka client', async () => {
    await kcatProduce(topics.introspection, 'kcat-node-1', JSON.stringify(introspection('kcat-node-1')), { 'content-type': 'application/json' });
    const node = await waitFor('kcat-node-1 registered', () => nodeOf(t, 'kcat-node-1'));
    assert.equal(node.status, 'online');
    assert.equal(node.node_type, 'effect');
    assert.deepEqual(node.capabilities, { operations: ['stamp'], max_throughput: 100 });
  });

  it('dead-letters a malformed message with its reason and goes on with the next valid one', async () => {
    const before = (await kcatConsume(topics.deadLetter).catch(() => [])).length;
    await kcatProduce(topics.introspection, 'broken-1', '{"envelope_version": "1.0", this is not json', { origin: 'kcat' });
    await kcatProduce(topics.introspection, 'after-broken', JSON.stringify(introspection('after-broken')));
    await waitFor('the valid message after the malformed one', () => nodeOf(t, 'after-broken'));
    const letters = await deadLetters(topics, before + 1);
    const letter = letters.find((message) => message.key === 'broken-1');
    assert.ok(letter, 'the malformed message is in the dead-letter topic');
    assert.equal(letter.headers[DEAD_LETTER_HEADERS.reason], 'MALFORMED_EVENT');
    assert.equal(letter.headers[DEAD_LETTER_HEADERS.topic], topics.introspection);
    assert.equal(letter.headers.origin, 'kcat', 'original headers are kept');
    assert.equal(letter.payload, '{"envelope_version": "1.0", this is not json', 'the original bytes are kept');
    assert.equal(await nodeOf(t, 'broken-1'), undefined);
  });

  it('dead-letters invalid, unknown, oversize and stale events, and changes nothing', async () => {
    await kcatProduce(topics.introspection, 'stale-1', JSON.stringify(introspection('stale-1', { incarnation: 200 })));
    await waitFor('stale-1', () => nodeOf(t, 'stale-1'));
    const version = (await json<{ version: number }>(`${t.url}/api/v1/topology`)).body.version;
    const before = (await kcatConsume(topics.deadLetter).catch(() => [])).length;
    const cases: Array<[string, string, string]> = [
      ['invalid-1', JSON.stringify(introspection('invalid-1', { node_type: 'has spaces!' })), 'VALIDATION_FAILED'],
      ['unknown-1', JSON.stringify(event('NODE_SELF_DESTRUCT', 'unknown-1', {})), 'UNKNOWN_EVENT_TYPE'],
      ['big-1', JSON.stringify(introspection('big-1', { metadata: { blob: 'x'.repeat(300 * 1024) } })), 'EVENT_TOO_LARGE'],
      ['stale-1', JSON.stringify(introspection('stale-1', { incarnation: 100, capabilities: { hijacked: true } })), 'STALE_INCARNATION'],
    ];
    for (const [key, value] of cases) await kcatProduce(topics.introspection, key, value);
    const letters = await deadLetters(topics, before + cases.length);
    for (const [key, , reason] of cases) {
      assert.equal(letters.find((message) => message.key === key)?.headers[DEAD_LETTER_HEADERS.reason], reason, key);
    }
    assert.equal((await json<{ version: number }>(`${t.url}/api/v1/topology`)).body.version, version, 'no topology change');
    assert.deepEqual((await nodeOf(t, 'stale-1'))?.capabilities, { operations: ['stamp'], max_throughput: 100 });
    const metrics = await (await fetch(`${t.url}/metrics`)).text();
    assert.match(metrics, /rollcall_dead_letters_total\{reason="STALE_INCARNATION"\} [1-9]/);
  });

  it('dead-letters text the store cannot hold, naming the field, and applies the messages around it', async () => {
    const before = (await kcatConsume(topics.deadLetter).catch(() => [])).length;
    // One key: one partition, in this order; the nodes differ. JSON.stringify writes the NUL and the
    // lone surrogate as the escapes \u0000 and \ud800, as any producer would.
    const messages: Array<[string, string]> = [
      ['txt-before', JSON.stringify(introspection('txt-before'))],
      ['txt-nul', JSON.stringify(introspection('txt-nul', { capabilities: { models: ['llama', 'bad\u0000'] } }))],
      ['txt-surrogate', JSON.stringify(introspection('txt-surrogate', { metadata: { ['key\uD800']: 1 } }))],
      ['txt-after', JSON.stringify(introspection('txt-after'))],
    ];
    for (const [name, value] of messages) await kcatProduce(topics.introspection, 'txt-one-key', value, { name });
    await waitFor('txt-after registered', () => nodeOf(t, 'txt-after'));
    assert.equal((await nodeOf(t, 'txt-before'))?.status, 'online');
    const letters = await deadLetters(topics, before + 2);
    const letterOf = (name: string): KcatMessage | undefined => letters.find((message) => message.headers.name === name);
    for (const [name, field] of [
      ['txt-nul', 'payload.capabilities.models[1]'],
      ['txt-surrogate', 'payload.metadata["key\\ud800"]'],
    ] as const) {
      const letter = letterOf(name);
      assert.ok(letter, `${name} is in the dead-letter topic`);
      assert.equal(letter.headers[DEAD_LETTER_HEADERS.reason], 'VALIDATION_FAILED', name);
      assert.ok(letter.headers[DEAD_LETTER_HEADERS.message]?.includes(field), `${name}: ${letter.headers[DEAD_LETTER_HEADERS.message]}`);
      assert.equal(letter.payload, messages.find(([key]) => key === name)?.[1], 'the original bytes are kept');
    }
    assert.equal(await nodeOf(t, 'txt-nul'), undefined);
    assert.equal(await nodeOf(t, 'txt-surrogate'), undefined);
    // The consumer goes on: a later message on the same partition is applied too.
    await kcatProduce(topics.introspection, 'txt-one-key', JSON.stringify(introspection('txt-later')));
    await waitFor('txt-later registered', () => nodeOf(t, 'txt-later'));
  });

  it('renews leases from heartbeats and removes a node on its tombstone', async () => {
    await kcatProduce(topics.introspection, 'hb-1', JSON.stringify(introspection('hb-1', { incarnation: 5 })));
    const first = await waitFor('hb-1', () => nodeOf(t, 'hb-1'));
    await new Promise((resolve) => setTimeout(resolve, 50));
    await kcatProduce(topics.heartbeat, 'hb-1', JSON.stringify(event('NODE_HEARTBEAT', 'hb-1', { incarnation: 5 })));
    await until(async () => ((await nodeOf(t, 'hb-1'))?.last_heartbeat ?? '') > first.last_heartbeat, 'heartbeat applied');
    // Durable too: the store has it, not only the live view.
    await until(async () => {
      const stored = await t.server.registry.store.getNode('default', 'hb-1');
      return stored !== null && stored.last_heartbeat > first.last_heartbeat;
    }, 'heartbeat durable');
    await kcatProduce(topics.tombstone, 'hb-1', JSON.stringify(event('NODE_TOMBSTONE', 'hb-1', { node_type: 'effect', removal_reason: 'graceful_shutdown', incarnation: 5 })));
    await until(async () => (await nodeOf(t, 'hb-1'))?.status === 'removed', 'tombstone applied');
    assert.equal((await nodeOf(t, 'hb-1'))?.removal_reason, 'graceful_shutdown');
  });

  it('asks a node it does not know to announce when its heartbeat arrives', async () => {
    await kcatProduce(topics.heartbeat, 'ghost-1', JSON.stringify(event('NODE_HEARTBEAT', 'ghost-1', {})));
    await until(async () => {
      const requests = await kcatConsume(topics.requestIntrospection);
      return requests.some((message) => {
        const body = JSON.parse(message.payload ?? '{}') as { payload: { target_node_ids?: string[] } };
        return body.payload.target_node_ids?.includes('ghost-1') === true;
      });
    }, 'a request addressed to ghost-1');
    const letters = await kcatConsume(topics.deadLetter);
    assert.equal(letters.find((message) => message.key === 'ghost-1')?.headers[DEAD_LETTER_HEADERS.reason], 'NODE_NOT_FOUND');
  });

  it('applies a redelivered event once', async () => {
    const body = JSON.stringify(introspection('dup-1', { capabilities: { v: 1 } }));
    await kcatProduce(topics.introspection, 'dup-1', body);
    await waitFor('dup-1', () => nodeOf(t, 'dup-1'));
    const changed = JSON.stringify({ ...(JSON.parse(body) as Record<string, unknown>), payload: { ...(JSON.parse(body) as { payload: Record<string, unknown> }).payload, capabilities: { v: 2 } } });
    // Same event id, different content: a replay, not news. Then a marker to know it was consumed.
    await kcatProduce(topics.introspection, 'dup-1', changed);
    await kcatProduce(topics.introspection, 'dup-marker', JSON.stringify(introspection('dup-marker')));
    await waitFor('marker', () => nodeOf(t, 'dup-marker'));
    assert.deepEqual((await nodeOf(t, 'dup-1'))?.capabilities, { v: 1 });
    const metrics = await (await fetch(`${t.url}/metrics`)).text();
    assert.match(metrics, /rollcall_bus_events_total\{event_type="NODE_INTROSPECTION",outcome="duplicate"\} [1-9]/);
  });

  it('publishes every topology change as TOPOLOGY_DIFF events, in version order without gaps', async () => {
    const version = (await json<{ version: number }>(`${t.url}/api/v1/topology`)).body.version;
    let diffs: Array<{
      event_type: string;
      payload: {
        topology_version: number;
        previous_version: number;
        changes: Array<{ version: number; node_id: string; change_type: string }>;
        summary: { nodes_added: number; nodes_updated: number; nodes_removed: number };
      };
    }> = [];
    await until(async () => {
      diffs = (await kcatConsume(topics.topologyDiff)).map((message) => JSON.parse(message.payload ?? '{}') as (typeof diffs)[number]);
      return (diffs.at(-1)?.payload.topology_version ?? 0) >= version;
    }, `diffs through version ${version}`);
    assert.ok(diffs.every((diff) => diff.event_type === 'TOPOLOGY_DIFF'));
    let expected = diffs[0]?.payload.previous_version ?? -1;
    assert.equal(expected, 0, 'the first diff starts from the empty topology');
    for (const diff of diffs) {
      assert.equal(diff.payload.previous_version, expected, 'each diff starts where the last ended');
      for (const change of diff.payload.changes) assert.equal(change.version, ++expected, 'changes in version order');
      assert.equal(diff.payload.topology_version, expected);
      assert.equal(diff.payload.summary.nodes_added + diff.payload.summary.nodes_updated + diff.payload.summary.nodes_removed, diff.payload.changes.length);
    }
    const all = diffs.flatMap((diff) => diff.payload.changes);
    assert.ok(all.some((change) => change.node_id === 'kcat-node-1' && change.change_type === 'added'));
    assert.ok(all.some((change) => change.node_id === 'hb-1' && change.change_type === 'removed'));
  });

  it('resumes the relay after a restart without skipping or repeating what was published', async () => {
    const published = (await kcatConsume(topics.topologyDiff)).length;
    await t.stop();
    const lastBefore =
      (await kcatConsume(topics.topologyDiff)).map((message) => JSON.parse(message.payload ?? '{}') as { payload: { topology_version: number } }).at(-1)?.payload.topology_version ?? 0;
    assert.ok((await kcatConsume(topics.topologyDiff)).length >= published, 'the stopping instance published its own tombstone');
    t = await startTestServer({ database, config: { ...kafka, sweepIntervalMs: 100 } });
    await kcatProduce(topics.introspection, 'after-restart', JSON.stringify(introspection('after-restart')));
    await waitFor('after-restart', () => nodeOf(t, 'after-restart'));
    let diffs: Array<{ payload: { topology_version: number; previous_version: number; changes: Array<{ node_id: string }> } }> = [];
    await until(async () => {
      diffs = (await kcatConsume(topics.topologyDiff)).map((message) => JSON.parse(message.payload ?? '{}') as (typeof diffs)[number]);
      return diffs.some((diff) => diff.payload.changes.some((change) => change.node_id === 'after-restart'));
    }, 'the diff of after-restart');
    const resumed = diffs.filter((diff) => diff.payload.topology_version > lastBefore);
    assert.equal(resumed[0]?.payload.previous_version, lastBefore, 'the new relay starts where the old one stopped');
    for (let i = 1; i < resumed.length; i++) assert.equal(resumed[i]?.payload.previous_version, resumed[i - 1]?.payload.topology_version);
  });
});

describe('two instances on one database and one Kafka cluster', () => {
  it('share the intake and relay each version exactly once', async () => {
    await requireKafka();
    const { topics, config: kafka } = testTopics();
    const database = await createTestDatabase();
    const config = { ...kafka, kafkaPartitions: 4 };
    const a = await startTestServer({ database, config });
    const b = await startTestServer({ database, config });
    try {
      const ids = Array.from({ length: 40 }, (_, i) => `pair-${i}`);
      for (const id of ids) await kcatProduce(topics.introspection, id, JSON.stringify(introspection(id)));
      for (const server of [a, b]) {
        await until(async () => {
          const list = await json<{ nodes: Array<{ node_id: string }> }>(`${server.url}/api/v1/nodes?limit=1000`);
          return ids.every((id) => list.body.nodes.some((node) => node.node_id === id));
        }, 'all 40 nodes on both instances');
      }
      const metrics = await Promise.all([a, b].map(async (server) => (await fetch(`${server.url}/metrics`)).text()));
      const registeredBy = metrics.map((text) => Number(/rollcall_bus_events_total\{event_type="NODE_INTROSPECTION",outcome="registered"\} (\d+)/.exec(text)?.[1] ?? 0));
      const [byA = 0, byB = 0] = registeredBy;
      assert.ok(byA + byB >= 40, `registered by a and b: ${byA} + ${byB}`);
      assert.ok(byA > 0 && byB > 0, `both instances consume their share of the partitions: ${byA} + ${byB}`);
      const version = (await json<{ version: number }>(`${a.url}/api/v1/topology`)).body.version;
      let versions: number[] = [];
      await until(async () => {
        const diffs = (await kcatConsume(topics.topologyDiff)).map((message) => JSON.parse(message.payload ?? '{}') as { payload: { changes: Array<{ version: number }> } });
        versions = diffs.flatMap((diff) => diff.payload.changes.map((change) => change.version));
        return versions.includes(version);
      }, `diffs through version ${version}`);
      assert.deepEqual(
        versions,
        Array.from({ length: versions.length }, (_, i) => i + 1),
        'every version once, in order: one relay',
      );
    } finally {
      await a.stop();
      await b.stop();
      await database.drop();
    }
  });
});

describe('a relay far behind', () => {
  it('splits its backlog into diffs the broker accepts', async () => {
    await requireKafka();
    const { topics, config: kafka } = testTopics();
    const database = await createTestDatabase();
    // Changes pile up while no instance relays: 200 nodes of ~8 KB each, 1.6 MB in all, over
    // Kafka's 1 MB message limit.
    const quiet = await startTestServer({ database, config: { ...kafka, topologyDiffRelay: false } });
    const blob = 'x'.repeat(8 * 1024);
    try {
      await Promise.all(Array.from({ length: 200 }, (_, i) => json(`${quiet.url}/api/v1/nodes/register`, { body: { node_id: `fat-${i}`, hostname: 'h', role: 'fat', capabilities: { blob } } })));
    } finally {
      await quiet.stop();
    }
    const relaying = await startTestServer({ database, config: kafka });
    try {
      const version = (await json<{ version: number }>(`${relaying.url}/api/v1/topology`)).body.version;
      let diffs: KcatMessage[] = [];
      await until(
        async () => {
          diffs = await kcatConsume(topics.topologyDiff);
          const last = diffs.at(-1);
          return last !== undefined && (JSON.parse(last.payload ?? '{}') as { payload: { topology_version: number } }).payload.topology_version >= version;
        },
        `diffs through version ${version}`,
        30_000,
      );
      assert.ok(diffs.length > 1, `the backlog went out in ${diffs.length} diffs`);
      const versions = diffs.flatMap((message) => (JSON.parse(message.payload ?? '{}') as { payload: { changes: Array<{ version: number }> } }).payload.changes.map((change) => change.version));
      assert.deepEqual(
        versions.slice(0, version),
        Array.from({ length: version }, (_, i) => i + 1),
      );
    } finally {
      await relaying.stop();
      await database.drop();
    }
  });
});
