// The topology follower against a real registry (PGlite over HTTP) for snapshots, fed TOPOLOGY_DIFF
// events by hand on the in-process bus, built from the registry's own change log: in order,
// duplicates, a deliberate gap, malformed messages.
import { strict as assert } from 'node:assert';
import { after, before, describe, it } from 'node:test';
import { MemoryBus } from '../../src/bus/memory-bus.js';
import { RollcallClient } from '../../src/client/rollcall-client.js';
import { TopologyFollower, followerKey, type ResyncEvent } from '../../src/client/topology-follower.js';
import { EVENT_TYPES, envelope, topicNames, topologyDiff, type DiffChange } from '../../src/domain/events.js';
import type { JsonObject } from '../../src/domain/json.js';
import type { TopologyChange } from '../../src/domain/node.js';
import { testLogger } from '../support/logger.js';
import { startTestServer, type TestServer } from '../support/server.js';

const NS = 'follow';

describe('TopologyFollower', () => {
  const topics = topicNames('test.follower');
  let t: TestServer;
  let client: RollcallClient;
  let bus: MemoryBus;
  let follower: TopologyFollower;
  const changes: DiffChange[] = [];
  const resyncs: ResyncEvent[] = [];

  /** Registers a node and returns the change it made, as the registry's log holds it. */
  async function register(nodeId: string, capabilities: JsonObject = {}): Promise<TopologyChange> {
    const before = (await client.topology()).version;
    await client.introspect({ node_id: nodeId, node_type: 'worker', namespace: NS, capabilities, reason: 'startup' });
    return lastChangeOf(before, nodeId);
  }

  async function deregister(nodeId: string): Promise<TopologyChange> {
    const before = (await client.topology()).version;
    await client.deregister(nodeId, { namespace: NS, reason: 'graceful_shutdown' });
    return lastChangeOf(before, nodeId);
  }

  async function lastChangeOf(since: number, nodeId: string): Promise<TopologyChange> {
    const { changes: log } = await client.changes(since);
    const change = log.filter((candidate) => candidate.node_id === nodeId).at(-1);
    assert.ok(change, `a change of ${nodeId} after ${since}`);
    return change;
  }

  /** Publishes a TOPOLOGY_DIFF of `log` following `previousVersion`, as the relay would. */
  async function publishDiff(previousVersion: number, log: TopologyChange[]): Promise<number> {
    const payload = topologyDiff(previousVersion, log, 0);
    await bus.publish(topics.topologyDiff, [{ key: null, value: JSON.stringify(envelope(EVENT_TYPES.topologyDiff, 'registry-test', payload as unknown as JsonObject)) }]);
    return payload.topology_version;
  }

  before(async () => {
    t = await startTestServer({ store: 'pglite', config: { dataDir: 'memory://' } });
    client = new RollcallClient(t.url);
    bus = new MemoryBus();
    await register('seed-1', { role: 'seed' });
    follower = new TopologyFollower({ bus, topics, registryUrl: t.url, logger: testLogger });
    follower.on('change', (change) => changes.push(change));
    follower.on('resync', (event) => resyncs.push(event));
    await follower.start();
  });
  after(async () => {
    await follower.stop();
    await bus.close();
    await t.close();
  });

  it('starts from the registry snapshot and its version', async () => {
    const snapshot = await client.topology();
    assert.equal(follower.version, snapshot.version);
    assert.equal(follower.nodes.size, snapshot.nodes.length);
    const seed = follower.nodes.get(followerKey(NS, 'seed-1'));
    assert.equal(seed?.status, 'online');
    assert.deepEqual(seed?.capabilities, { role: 'seed' });
  });

  it('applies diffs in order and ignores duplicates', async () => {
    changes.length = 0;
    const start = follower.version;
    const a = await register('order-a');
    const b = await register('order-b');
    const c = await register('order-a', { gpu: true });
    const first = await publishDiff(start, [a]);
    const last = await publishDiff(first, [b, c]);
    await follower.waitForVersion(last, 5000);
    assert.deepEqual(
      changes.map((change) => [change.node_id, change.change_type]),
      [
        ['order-a', 'added'],
        ['order-b', 'added'],
        ['order-a', 'updated'],
      ],
    );
    assert.deepEqual(follower.nodes.get(followerKey(NS, 'order-a'))?.capabilities, { gpu: true });
    assert.ok(follower.nodes.has(followerKey(NS, 'order-b')));

    // The same diffs again (a redelivery) and one overlapping what is applied: only the new change counts.
    changes.length = 0;
    await publishDiff(start, [a]);
    await publishDiff(first, [b, c]);
    const d = await register('order-d');
    const next = await publishDiff(first, [b, c, d]);
    await follower.waitForVersion(next, 5000);
    assert.deepEqual(
      changes.map((change) => change.node_id),
      ['order-d'],
    );
    assert.equal(follower.version, next);
    assert.equal(resyncs.length, 0);
  });

  it('deletes removed nodes', async () => {
    const start = follower.version;
    const gone = await deregister('order-b');
    await follower.waitForVersion(await publishDiff(start, [gone]), 5000);
    assert.equal(follower.nodes.has(followerKey(NS, 'order-b')), false);
    assert.equal(changes.at(-1)?.change_type, 'removed');
  });

  it('skips malformed messages and goes on', async () => {
    const start = follower.version;
    await bus.publish(topics.topologyDiff, [
      { key: null, value: 'not json at all' },
      { key: null, value: JSON.stringify(envelope(EVENT_TYPES.heartbeat, 'x', { node_id: 'x' })) },
      { key: null, value: JSON.stringify(envelope(EVENT_TYPES.topologyDiff, 'x', { topology_version: 'ten', previous_version: 0, changes: [] })) },
      { key: null, value: JSON.stringify(envelope(EVENT_TYPES.topologyDiff, 'x', { topology_version: start + 5, previous_version: start, changes: [{ version: start + 5 }] })) },
    ]);
    const change = await register('after-junk');
    await follower.waitForVersion(await publishDiff(start, [change]), 5000);
    assert.ok(follower.nodes.has(followerKey(NS, 'after-junk')));
    assert.equal(resyncs.length, 0);
  });

  it('resyncs from the registry snapshot when the stream skips versions, then goes on', async () => {
    changes.length = 0;
    const start = follower.version;
    // Three changes happen; the stream loses the first two (a deliberate gap).
    await register('gap-1');
    const lost = await register('gap-2');
    const arrived = await register('gap-3');
    const resynced = new Promise<ResyncEvent>((resolve) => follower.once('resync', resolve));
    const top = await publishDiff(lost.version, [arrived]);
    const event = await resynced;
    assert.equal(event.from, start);
    assert.ok(event.to >= top, `snapshot version ${event.to} covers the diff's ${top}`);
    assert.equal(event.diffPreviousVersion, lost.version);
    assert.ok(follower.nodes.has(followerKey(NS, 'gap-1')), 'a node only the snapshot brought');
    assert.ok(follower.nodes.has(followerKey(NS, 'gap-2')));
    assert.ok(follower.nodes.has(followerKey(NS, 'gap-3')));
    assert.equal(follower.nodes.has(followerKey(NS, 'order-b')), false);
    const snapshot = await client.topology();
    assert.deepEqual([...follower.nodes.keys()].sort(), snapshot.nodes.map((node) => followerKey(node.namespace, node.node_id)).sort());
    assert.equal(changes.length, 0, 'the diff the snapshot covers is not applied again');

    // Diffs following the resynced version apply as usual.
    const from = follower.version;
    const gone = await deregister('gap-1');
    await follower.waitForVersion(await publishDiff(from, [gone]), 5000);
    assert.equal(follower.nodes.has(followerKey(NS, 'gap-1')), false);
    assert.deepEqual(
      changes.map((change) => [change.node_id, change.change_type]),
      [['gap-1', 'removed']],
    );
    assert.equal(resyncs.length, 1);
  });

  it('follows one namespace when asked', async () => {
    const scoped = new TopologyFollower({ bus, topics, registryUrl: t.url, namespace: NS, logger: testLogger });
    const seen: string[] = [];
    scoped.on('change', (change) => seen.push(change.node_id));
    await scoped.start();
    try {
      assert.ok([...scoped.nodes.values()].every((node) => node.namespace === NS));
      const start = scoped.version;
      const mine = await register('scoped-1');
      const before = (await client.topology()).version;
      await client.introspect({ node_id: 'other-ns', node_type: 'worker', namespace: 'elsewhere' });
      const { changes: log } = await client.changes(before);
      const top = await publishDiff(start, [mine, ...log]);
      await scoped.waitForVersion(top, 5000);
      assert.deepEqual(seen, ['scoped-1']);
      assert.equal(scoped.nodes.has(followerKey('elsewhere', 'other-ns')), false);
    } finally {
      await scoped.stop();
    }
  });

  it('waitForVersion rejects on timeout and when the follower stops', async () => {
    await assert.rejects(follower.waitForVersion(follower.version + 1000, 50), /not reached/);
    const other = new TopologyFollower({ bus, topics, registryUrl: t.url, logger: testLogger });
    await other.start();
    const pending = other.waitForVersion(other.version + 1000, 10_000);
    await other.stop();
    await assert.rejects(pending, (error: Error & { code?: string }) => error.code === 'SHUTTING_DOWN');
  });
});
