// The topology-diff relay with namespaces on topics of their own, on the in-process bus over PGlite:
// one batch of the log split per topic, each topic's position kept, and a publish that fails on one
// topic retried without repeating what another topic already got.
import { strict as assert } from 'node:assert';
import { after, before, describe, it } from 'node:test';
import type { BusMessage, OutgoingMessage } from '../../src/bus/bus.js';
import { MemoryBus } from '../../src/bus/memory-bus.js';
import { RollcallClient } from '../../src/client/rollcall-client.js';
import { namespaceTopicName, topicNames, type TopologyDiffPayload } from '../../src/domain/events.js';
import { TopologyDiffRelay, relayTopicProjection } from '../../src/projections/topology-diff-relay.js';
import { testLogger } from '../support/logger.js';
import { pollUntil } from '../support/processes.js';
import { startTestServer, type TestServer } from '../support/server.js';

/** A bus that refuses the first `failures` publishes to one topic. */
class FlakyTopicBus extends MemoryBus {
  constructor(
    private readonly flakyTopic: string,
    public failures: number,
  ) {
    super();
  }

  override async publish(topic: string, messages: OutgoingMessage[]): Promise<void> {
    if (topic === this.flakyTopic && this.failures > 0) {
      this.failures--;
      throw new Error('broker away');
    }
    return super.publish(topic, messages);
  }
}

describe('topology-diff relay with namespace topics', () => {
  const topics = topicNames('relay-ns.omninode_bridge.onex.evt');
  const betaTopic = namespaceTopicName(topics.topologyDiff, 'beta');
  let t: TestServer;
  let client: RollcallClient;

  before(async () => {
    // The server's own relay is off: the relay under test holds the duty.
    t = await startTestServer({ store: 'pglite', config: { dataDir: 'memory://', topologyDiffRelay: false } });
    client = new RollcallClient(t.url);
  });
  after(async () => {
    await t.close();
  });

  it('splits a batch per topic and retries a failed topic without repeating the others', async () => {
    for (const [nodeId, namespace] of [
      ['a-1', 'default'],
      ['b-1', 'beta'],
      ['a-2', 'default'],
      ['b-2', 'beta'],
    ] as const) {
      await client.introspect({ node_id: nodeId, node_type: 'worker', namespace, reason: 'startup' });
    }
    const through = t.server.registry.view.version;
    const bus = new FlakyTopicBus(betaTopic, 2);
    const seen: BusMessage[] = [];
    const reader = await bus.subscribe({ group: 'reader', topics: [topics.topologyDiff, betaTopic], start: 'earliest', handler: async (batch) => void seen.push(...batch) });
    const relay = new TopologyDiffRelay({
      bus,
      registry: t.server.registry,
      metrics: t.server.metrics,
      topic: topics.topologyDiff,
      namespaceTopics: ['beta'],
      registryId: 'relay-test',
      logger: testLogger,
      standbyPollMs: 50,
    });
    relay.start();
    try {
      await pollUntil(
        async () => relay.publishedVersion,
        (version) => version !== null && version >= through,
        { timeoutMs: 20_000, what: 'the relay to publish the backlog' },
      );
      await relay.drain();
      const diffsOn = (topic: string): TopologyDiffPayload[] =>
        seen.filter((message) => message.topic === topic).map((message) => (JSON.parse(message.value) as { payload: TopologyDiffPayload }).payload);
      await pollUntil(
        async () => diffsOn(betaTopic).length,
        (count) => count >= 1,
        { timeoutMs: 10_000, what: "beta's diff" },
      );
      assert.equal(bus.failures, 0, "beta's topic was retried");
      const shared = diffsOn(topics.topologyDiff);
      const beta = diffsOn(betaTopic);
      assert.equal(shared.length, 1, 'the shared topic got its diff once, despite the retries of the batch');
      assert.equal(beta.length, 1);
      assert.deepEqual(
        shared[0]?.changes.map((change) => change.node_id).filter((id) => id.startsWith('a-')),
        ['a-1', 'a-2'],
      );
      assert.equal(shared[0]?.namespace, undefined);
      assert.deepEqual(
        beta[0]?.changes.map((change) => change.node_id),
        ['b-1', 'b-2'],
      );
      assert.equal(beta[0]?.namespace, 'beta');
      assert.equal(beta[0]?.previous_version, 0);
      assert.equal(beta[0]?.summary.total_nodes, 2, "beta's nodes only");
      assert.equal(shared[0]?.summary.total_nodes, 3, 'the shared topic counts the namespaces it carries');
      const { store } = t.server.registry;
      assert.equal(await store.projectionPosition(relayTopicProjection(betaTopic)), beta[0]?.topology_version);
      assert.equal(await store.projectionPosition(relayTopicProjection(topics.topologyDiff)), shared[0]?.topology_version);

      // The next change of beta follows beta's last diff, however many versions went elsewhere.
      await client.introspect({ node_id: 'a-3', node_type: 'worker', namespace: 'default', reason: 'startup' });
      await client.introspect({ node_id: 'b-3', node_type: 'worker', namespace: 'beta', reason: 'startup' });
      await pollUntil(
        async () => diffsOn(betaTopic).length,
        (count) => count >= 2,
        { timeoutMs: 10_000, what: "beta's second diff" },
      );
      const next = diffsOn(betaTopic)[1];
      assert.equal(next?.previous_version, beta[0]?.topology_version);
      assert.deepEqual(
        next?.changes.map((change) => change.node_id),
        ['b-3'],
      );
    } finally {
      await relay.stop();
      await reader.close();
      await bus.close();
    }
  });
});
