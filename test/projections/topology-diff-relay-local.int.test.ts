// The relay on the in-process bus of the embedded default: it builds no diffs while nothing in the
// process reads them, and a follower that starts later still follows exactly.
import { strict as assert } from 'node:assert';
import { after, before, describe, it } from 'node:test';
import type { BusMessage } from '../../src/bus/bus.js';
import { MemoryBus } from '../../src/bus/memory-bus.js';
import { TopologyDiffRelay } from '../../src/projections/topology-diff-relay.js';
import { RollcallClient } from '../../src/client/rollcall-client.js';
import { TopologyFollower, followerKey, type ResyncEvent } from '../../src/client/topology-follower.js';
import { DEFAULT_TOPIC_PREFIX, topicNames, type TopologyDiffPayload } from '../../src/domain/events.js';
import { pollUntil } from '../support/processes.js';
import { testLogger } from '../support/logger.js';
import { startTestServer, json, type TestServer } from '../support/server.js';

interface RelayHealth {
  checks: { topology_diff_relay: { published_version: number | null } };
}

describe('topology-diff relay on the in-process bus', () => {
  const topics = topicNames(DEFAULT_TOPIC_PREFIX('dev'));
  let t: TestServer;
  let client: RollcallClient;

  before(async () => {
    t = await startTestServer({ store: 'pglite', config: { dataDir: 'memory://' } });
    client = new RollcallClient(t.url);
  });
  after(async () => {
    await t.close();
  });

  const relayed = async (): Promise<number | null> => (await json<RelayHealth>(`${t.url}/health`)).body.checks.topology_diff_relay.published_version;

  it('writes no diff nobody reads, then chains the first diff a reader gets to the version it skipped to', async () => {
    for (const id of ['quiet-1', 'quiet-2', 'quiet-3']) await client.introspect({ node_id: id, node_type: 'worker', reason: 'startup' });
    const quiet = (await client.topology()).version;
    // The relay keeps up, without a reader.
    await pollUntil(relayed, (version) => version === quiet, { timeoutMs: 10_000, what: `the relay at version ${quiet}` });

    const seen: BusMessage[] = [];
    const reader = await t.server.bus.subscribe({ group: 'late-reader', topics: [topics.topologyDiff], start: 'earliest', handler: async (batch) => void seen.push(...batch) });
    try {
      await client.introspect({ node_id: 'heard-1', node_type: 'worker', reason: 'startup' });
      const diffs = await pollUntil(
        async () => seen.map((message) => (JSON.parse(message.value) as { payload: TopologyDiffPayload }).payload),
        (payloads) => payloads.some((payload) => payload.topology_version > quiet),
        { timeoutMs: 10_000, what: 'a diff after the reader subscribed' },
      );
      // Even from the earliest retained message, nothing of the unread versions was written.
      assert.deepEqual(
        diffs.map((diff) => [diff.previous_version, diff.topology_version, diff.changes.map((change) => change.node_id)]),
        [[quiet, quiet + 1, ['heard-1']]],
      );
    } finally {
      await reader.close();
    }
    // The group keeps its position after its member left: diffs are written for it again.
    await client.introspect({ node_id: 'heard-2', node_type: 'worker', reason: 'startup' });
    await pollUntil(relayed, (version) => version === quiet + 2, { timeoutMs: 10_000, what: `the relay at version ${quiet + 2}` });
    const again: BusMessage[] = [];
    const back = await t.server.bus.subscribe({ group: 'late-reader', topics: [topics.topologyDiff], start: 'earliest', handler: async (batch) => void again.push(...batch) });
    try {
      await pollUntil(
        async () => again.length,
        (count) => count >= 1,
        { timeoutMs: 10_000, what: 'the diff written while the group had no member' },
      );
      assert.equal((JSON.parse((again[0] as BusMessage).value) as { payload: TopologyDiffPayload }).payload.previous_version, quiet + 1);
    } finally {
      await back.close();
    }
  });

  it('lets a follower that starts after unread changes follow exactly, resyncing at most once', async () => {
    for (const id of ['before-1', 'before-2']) await client.introspect({ node_id: id, node_type: 'worker', reason: 'startup' });
    const resyncs: ResyncEvent[] = [];
    const follower = new TopologyFollower({ bus: t.server.bus, topics, registryUrl: t.url, logger: testLogger });
    follower.on('resync', (event) => resyncs.push(event));
    await follower.start();
    try {
      assert.ok(follower.nodes.has(followerKey('default', 'before-2')));
      await client.introspect({ node_id: 'after-1', node_type: 'worker', reason: 'startup' });
      await client.deregister('before-1', { reason: 'graceful_shutdown' });
      const target = (await client.topology()).version;
      await follower.waitForVersion(target, 10_000);
      assert.ok(follower.nodes.has(followerKey('default', 'after-1')));
      assert.equal(follower.nodes.has(followerKey('default', 'before-1')), false);
      assert.ok(resyncs.length <= 1, `resynced ${resyncs.length} times`);
    } finally {
      await follower.stop();
    }
  });

  it('cuts a batch whose diff would pass maxEventBytes into several diffs, each within it, chained in order', async () => {
    const bus = new MemoryBus();
    const limit = 8192;
    const seen: BusMessage[] = [];
    const reader = await bus.subscribe({ group: 'sizes', topics: ['sized.topology-diff'], start: 'earliest', handler: async (batch) => void seen.push(...batch) });
    // Twenty records of about 1.5 KB, written before the relay starts: it finds them in one batch.
    const padding = 'x'.repeat(1500);
    await Promise.all(Array.from({ length: 20 }, (_, i) => client.introspect({ node_id: `sized-${i}`, node_type: 'worker', capabilities: { padding }, reason: 'startup' })));
    const to = t.server.registry.view.version;
    // Not local: it relays from the position kept in the store (none yet), so from the first version.
    const relay = new TopologyDiffRelay({
      bus,
      registry: t.server.registry,
      metrics: t.server.metrics,
      topic: 'sized.topology-diff',
      registryId: 'relay-test',
      logger: testLogger,
      maxEventBytes: limit,
      standbyPollMs: 50,
    });
    relay.start();
    try {
      await pollUntil(
        async () => relay.publishedVersion,
        (version) => version === to,
        { timeoutMs: 10_000, what: `the relay at ${to}` },
      );
      await pollUntil(
        async () => seen.length,
        (count) => count > 0 && (JSON.parse((seen.at(-1) as BusMessage).value) as { payload: TopologyDiffPayload }).payload.topology_version === to,
        { timeoutMs: 10_000, what: 'the last diff' },
      );
      const from = 0; // the first version there is
      const diffs = seen.map((message) => ({ bytes: Buffer.byteLength(message.value), payload: (JSON.parse(message.value) as { payload: TopologyDiffPayload }).payload }));
      assert.ok(diffs.length >= 4, `${diffs.length} diffs for more than 30 KB of records`);
      for (const diff of diffs) assert.ok(diff.bytes <= limit, `a diff of ${diff.bytes} bytes`);
      // Chained: each follows the one before, from where the relay started, with every version once.
      assert.deepEqual(
        diffs.map((diff) => diff.payload.previous_version),
        [from, ...diffs.slice(0, -1).map((diff) => diff.payload.topology_version)],
      );
      assert.deepEqual(
        diffs.flatMap((diff) => diff.payload.changes.map((change) => change.version)),
        Array.from({ length: to - from }, (_, i) => from + 1 + i),
      );
    } finally {
      await relay.stop();
      await reader.close();
      await bus.close();
    }
  });
});
