// The agent SDK against a real registry over HTTP (PGlite) and over the in-process bus: startup
// announcement, heartbeats, registry requests, announcements of changes, tombstone, cache, size.
import { strict as assert } from 'node:assert';
import { after, before, describe, it } from 'node:test';
import { BusTransport } from '../../src/agent/bus-transport.js';
import { HttpTransport } from '../../src/agent/http-transport.js';
import { NodeAgent, type IntrospectionState } from '../../src/agent/node-agent.js';
import type { BusMessage } from '../../src/bus/bus.js';
import { MemoryBus } from '../../src/bus/memory-bus.js';
import { RollcallClient } from '../../src/client/rollcall-client.js';
import { TopologyFollower, followerKey } from '../../src/client/topology-follower.js';
import { DEFAULT_TOPIC_PREFIX, EVENT_TYPES, envelope, topicNames } from '../../src/domain/events.js';
import type { Envelope } from '../../src/domain/schemas.js';
import { testLogger } from '../support/logger.js';
import { waitFor } from '../support/processes.js';
import { serverForSuite, startTestServer, type TestServer } from '../support/server.js';
import { RecordingTransport } from '../support/recording-transport.js';

/** A node's state the way a typical service reports it (the seeds' orchestrator example). */
function typicalState(): IntrospectionState {
  return {
    capabilities: {
      node_type: 'orchestrator',
      operations: ['coordinate_workflow', 'stamp_content', 'route_request'],
      fsm_states: ['PENDING', 'PROCESSING', 'COMPLETED', 'FAILED'],
      max_concurrent_workflows: 100,
      supported_hash_algorithms: ['blake3', 'sha256'],
    },
    endpoints: { health: 'http://10.0.0.12:8080/health', api: 'http://10.0.0.12:8080', metrics: 'http://10.0.0.12:8080/metrics' },
    configuration: { node_ttl_hours: 24, cleanup_interval_hours: 1 },
    current_state: { status: 'active', uptime_seconds: 3600, active_workflows: 5 },
    metadata: { hostname: 'orchestrator-7c9f', region: 'eu-west-1', labels: ['gpu', 'tier-1'] },
    health_status: 'healthy',
  };
}

/** Collects the messages of some topics of a bus from now on. */
async function tap(bus: MemoryBus, topics: string[]): Promise<{ messages: BusMessage[]; close(): Promise<void> }> {
  const messages: BusMessage[] = [];
  const subscription = await bus.subscribe({
    group: `tap-${Math.random()}`,
    topics,
    start: 'latest',
    handler: async (batch) => {
      messages.push(...batch);
    },
  });
  await subscription.ready;
  return { messages, close: () => subscription.close() };
}

const parsed = (message: BusMessage): Envelope => JSON.parse(message.value) as Envelope;

describe('NodeAgent over HTTP against a real registry', () => {
  let t: TestServer;
  let client: RollcallClient;
  before(async () => {
    t = await startTestServer({ store: 'pglite', config: { dataDir: 'memory://' } });
    client = new RollcallClient(t.url);
  });
  after(async () => {
    await t.close();
  });

  it('announces at start with reason startup, and the registry holds the node', async () => {
    const transport = new RecordingTransport(new HttpTransport({ registryUrl: t.url }));
    const before = (await client.topology()).version;
    const agent = new NodeAgent({
      identity: { node_id: 'orch-http-1', node_type: 'orchestrator', namespace: 'agents', node_version: '1.4.0' },
      introspect: typicalState,
      transport,
      leaseTtlSeconds: 45,
      logger: testLogger,
    });
    await agent.start();
    try {
      const [announced] = transport.of('introspection');
      assert.ok(announced);
      assert.equal(announced.event_type, EVENT_TYPES.introspection);
      assert.equal(announced.source_node_id, 'orch-http-1');
      assert.equal(announced.payload.reason, 'startup');
      assert.equal(announced.payload.incarnation, agent.identity.incarnation);
      assert.equal(typeof announced.payload.introspection_timestamp, 'string');

      const node = await client.getNode('orch-http-1', 'agents');
      assert.equal(node.status, 'online');
      assert.equal(node.node_version, '1.4.0');
      assert.equal(node.incarnation, agent.identity.incarnation);
      assert.equal(node.health_status, 'healthy');
      assert.equal(node.lease_ttl_ms, 45_000);
      assert.deepEqual(node.capabilities, typicalState().capabilities);
      const { changes } = await client.changes(before, { namespace: 'agents' });
      const added = changes.find((change) => change.node_id === 'orch-http-1');
      assert.equal(added?.change_type, 'added');
      assert.equal(added?.reason, 'startup');
    } finally {
      await agent.stop();
    }
  });

  it('announce(reason) re-reads the state and publishes the changed capabilities', async () => {
    let state = typicalState();
    let reads = 0;
    const agent = new NodeAgent({
      identity: { node_id: 'orch-http-2', node_type: 'orchestrator', namespace: 'agents' },
      introspect: () => {
        reads += 1;
        return state;
      },
      transport: new HttpTransport({ registryUrl: t.url }),
      logger: testLogger,
    });
    await agent.start();
    try {
      state = { ...state, capabilities: { ...state.capabilities, gpu: true, max_concurrent_workflows: 250 } };
      const before = (await client.topology()).version;
      await agent.announce('capability_change');
      assert.equal(reads, 2);
      const node = await client.getNode('orch-http-2', 'agents');
      assert.equal(node.capabilities.gpu, true);
      assert.equal(node.capabilities.max_concurrent_workflows, 250);
      const { changes } = await client.changes(before, { namespace: 'agents' });
      const updated = changes.find((change) => change.node_id === 'orch-http-2');
      assert.equal(updated?.change_type, 'updated');
      assert.equal(updated?.reason, 'capability_change');
      assert.ok(updated?.changed_fields.includes('capabilities'));
    } finally {
      await agent.stop();
    }
  });

  it('stop() sends the tombstone: the node shows removed with graceful_shutdown', async () => {
    const transport = new RecordingTransport(new HttpTransport({ registryUrl: t.url }));
    const agent = new NodeAgent({
      identity: { node_id: 'orch-http-3', node_type: 'orchestrator', namespace: 'agents' },
      introspect: typicalState,
      transport,
      logger: testLogger,
    });
    await agent.start();
    await agent.stop();
    const [tombstone] = transport.of('tombstone');
    assert.ok(tombstone);
    assert.equal(tombstone.event_type, EVENT_TYPES.tombstone);
    assert.equal(tombstone.payload.removal_reason, 'graceful_shutdown');
    assert.equal(tombstone.payload.node_type, 'orchestrator');
    assert.equal(tombstone.payload.namespace, 'agents');
    assert.equal(tombstone.payload.incarnation, agent.identity.incarnation);
    assert.equal(tombstone.payload.final_status, 'healthy');
    assert.equal(typeof (tombstone.payload.metadata as { uptime_seconds?: unknown }).uptime_seconds, 'number');
    const node = await client.getNode('orch-http-3', 'agents');
    assert.equal(node.status, 'removed');
    assert.equal(node.removal_reason, 'graceful_shutdown');
    // Stopping twice is harmless and sends nothing more.
    await agent.stop();
    assert.equal(transport.of('tombstone').length, 1);
  });

  it('heartbeats renew the lease, and announce again when the registry no longer holds the node', async () => {
    const transport = new RecordingTransport(new HttpTransport({ registryUrl: t.url }));
    const agent = new NodeAgent({
      identity: { node_id: 'orch-http-4', node_type: 'orchestrator', namespace: 'agents' },
      introspect: typicalState,
      transport,
      heartbeatIntervalMs: 50,
      jitter: 0,
      logger: testLogger,
    });
    await agent.start();
    try {
      const announced = await client.getNode('orch-http-4', 'agents');
      await waitFor('a renewed lease', async () => {
        const current = await client.getNode('orch-http-4', 'agents');
        return Date.parse(current.last_heartbeat) > Date.parse(announced.last_heartbeat) ? true : undefined;
      });
      assert.ok(transport.sent.some((entry) => entry.kind === 'heartbeat' && entry.outcome === 'delivered'));
      // An operator removes the node; its next heartbeat is refused and the agent announces again.
      await client.deregister('orch-http-4', { namespace: 'agents', reason: 'manual_deregistration' });
      assert.equal((await client.getNode('orch-http-4', 'agents')).status, 'removed');
      await waitFor('re-announcement', async () => (transport.of('introspection').some((event) => event.payload.reason === 'reannounce') ? true : undefined));
      assert.ok(transport.sent.some((entry) => entry.kind === 'heartbeat' && entry.outcome === 'reannounce'));
      const node = await waitFor('node online again', async () => {
        const current = await client.getNode('orch-http-4', 'agents');
        return current.status === 'online' ? current : undefined;
      });
      assert.equal(node.incarnation, agent.identity.incarnation);
    } finally {
      await agent.stop();
    }
  });

  it('a failing heartbeat is retried at the next beat and never stops the agent', async () => {
    const transport = new RecordingTransport(new HttpTransport({ registryUrl: t.url }));
    const agent = new NodeAgent({
      identity: { node_id: 'orch-http-5', node_type: 'orchestrator', namespace: 'agents' },
      introspect: typicalState,
      transport,
      heartbeatIntervalMs: 30,
      jitter: 0,
      logger: testLogger,
    });
    await agent.start();
    try {
      transport.failHeartbeats = true;
      await waitFor('two failed beats', async () => (agent.stats.heartbeatFailures >= 2 ? true : undefined));
      assert.ok(agent.running);
      transport.failHeartbeats = false;
      const delivered = agent.stats.heartbeats;
      await waitFor('heartbeats again', async () => (agent.stats.heartbeats > delivered ? true : undefined));
    } finally {
      await agent.stop();
    }
  });
});

describe('NodeAgent over the event bus', () => {
  const topics = topicNames('test.agent');
  let bus: MemoryBus;
  before(() => {
    bus = new MemoryBus();
  });
  after(async () => {
    await bus.close();
  });

  const busAgent = (nodeId: string, options: Partial<ConstructorParameters<typeof NodeAgent>[0]> = {}): NodeAgent =>
    new NodeAgent({
      identity: { node_id: nodeId, node_type: 'worker', namespace: 'fleet' },
      introspect: typicalState,
      transport: new BusTransport({ bus, topics, nodeId, logger: testLogger }),
      logger: testLogger,
      ...options,
    });

  it('publishes keyed by node_id and heartbeats at the configured interval', async () => {
    const seen = await tap(bus, [topics.introspection, topics.heartbeat]);
    const agent = busAgent('worker-beat', { heartbeatIntervalMs: 80, jitter: 0 });
    await agent.start();
    try {
      const beats = await waitFor('four heartbeats', async () => {
        const found = seen.messages.filter((message) => message.topic === topics.heartbeat);
        return found.length >= 4 ? found : undefined;
      });
      const announced = seen.messages.find((message) => message.topic === topics.introspection);
      assert.equal(announced?.key, 'worker-beat');
      assert.equal(announced && parsed(announced).payload.reason, 'startup');
      for (const beat of beats) {
        assert.equal(beat.key, 'worker-beat');
        const event = parsed(beat);
        assert.equal(event.event_type, EVENT_TYPES.heartbeat);
        assert.deepEqual(event.payload, { node_id: 'worker-beat', incarnation: agent.identity.incarnation, namespace: 'fleet', health_status: 'healthy' });
      }
      // Timers never fire early: consecutive beats are at least one interval apart.
      for (let i = 1; i < beats.length; i += 1) {
        const gap = (beats[i] as BusMessage).timestamp - (beats[i - 1] as BusMessage).timestamp;
        assert.ok(gap >= 75, `beats ${gap} ms apart`);
      }
    } finally {
      await agent.stop();
      await seen.close();
    }
    const after = seen.messages.length;
    await new Promise((resolve) => setTimeout(resolve, 200));
    assert.equal(seen.messages.length, after, 'no heartbeat after stop()');
  });

  it("answers a registry request addressed to it with the request's correlation id, and ignores others", async () => {
    const seen = await tap(bus, [topics.introspection]);
    const agent = busAgent('worker-req');
    await agent.start();
    try {
      const ask = (payload: Record<string, unknown>, correlationId?: string): Promise<void> =>
        bus.publish(topics.requestIntrospection, [{ key: null, value: JSON.stringify(envelope(EVENT_TYPES.requestIntrospection, 'registry-1', payload as never, { correlationId })) }]);
      await ask({ reason: 'audit', target_node_ids: ['someone-else'] }, 'corr-other');
      await ask({ reason: 'audit', namespace: 'elsewhere' }, 'corr-namespace');
      await bus.publish(topics.requestIntrospection, [{ key: null, value: 'not an envelope' }]);
      await ask({ reason: 'audit', target_node_ids: ['worker-req'] }, 'corr-mine');
      const request = envelope(EVENT_TYPES.requestIntrospection, 'registry-1', { reason: 'resync', namespace: 'fleet' });
      await bus.publish(topics.requestIntrospection, [{ key: null, value: JSON.stringify(request) }]);

      const answers = await waitFor('two answers', async () => {
        const found = seen.messages.map(parsed).filter((event) => event.payload.reason === 'registry_request');
        return found.length >= 2 ? found : undefined;
      });
      assert.deepEqual(
        answers.map((event) => event.correlation_id),
        ['corr-mine', request.event_id],
      );
      for (const answer of answers) {
        assert.equal(answer.source_node_id, 'worker-req');
        assert.equal(answer.payload.node_id, 'worker-req');
      }
      assert.equal(agent.stats.requestsAnswered, 2);
    } finally {
      await agent.stop();
      await seen.close();
    }
  });

  it('answers registry requests from the cached introspection within the cache TTL', async () => {
    let reads = 0;
    const introspect = (): IntrospectionState => {
      reads += 1;
      return typicalState();
    };
    const cached = busAgent('worker-cached', { introspect });
    const uncached = busAgent('worker-uncached', { introspect, cacheTtlMs: 0 });
    await cached.start();
    await uncached.start();
    try {
      assert.equal(cached.stats.extractions, 1);
      assert.equal(uncached.stats.extractions, 1);
      for (let i = 0; i < 3; i += 1) {
        await bus.publish(topics.requestIntrospection, [{ key: null, value: JSON.stringify(envelope(EVENT_TYPES.requestIntrospection, 'registry-1', { reason: 'audit' })) }]);
      }
      await waitFor('answers', async () => (cached.stats.requestsAnswered >= 3 && uncached.stats.requestsAnswered >= 3 ? true : undefined));
      assert.equal(cached.stats.extractions, 1, 'within the TTL the cache answers');
      assert.equal(uncached.stats.extractions, 4, 'past the TTL every request reads the state again');
      assert.equal(reads, 5);
    } finally {
      await cached.stop();
      await uncached.stop();
    }
  });

  it('keeps the introspection of a typical node under 2 KB and records its extraction time', async () => {
    const agent = busAgent('orchestrator-7c9f-eu-west-1');
    await agent.start();
    try {
      const bytes = agent.stats.lastIntrospectionBytes;
      assert.ok(bytes !== null && bytes > 0 && bytes < 2048, `introspection event is ${String(bytes)} bytes`);
      assert.equal(typeof agent.stats.lastExtractionMs, 'number');
    } finally {
      await agent.stop();
    }
  });

  it('stop() publishes a tombstone on the tombstone topic and stops listening', async () => {
    const seen = await tap(bus, [topics.tombstone]);
    const agent = busAgent('worker-stop');
    await agent.start();
    await agent.stop();
    const tombstone = await waitFor('tombstone', async () => seen.messages[0]);
    await seen.close();
    assert.equal(tombstone.key, 'worker-stop');
    const event = parsed(tombstone);
    assert.equal(event.event_type, EVENT_TYPES.tombstone);
    assert.equal(event.payload.removal_reason, 'graceful_shutdown');
    assert.equal(event.payload.namespace, 'fleet');
    await assert.rejects(agent.start(), /stopped/);
  });
});

describe("NodeAgent and TopologyFollower on the registry's own event plane", () => {
  const t = serverForSuite({ store: 'pglite', config: { dataDir: 'memory://' } });

  it('registers through the intake, re-announces when the registry asks, and leaves; a follower sees it all', async () => {
    const { bus } = t.server;
    // The test server runs with the default environment, so the seeds' default topic names.
    const topics = topicNames(DEFAULT_TOPIC_PREFIX('dev'));
    const client = new RollcallClient(t.url);
    const follower = new TopologyFollower({ bus, topics, registryUrl: t.url, logger: testLogger });
    await follower.start();
    const agent = new NodeAgent({
      identity: { node_id: 'worker-e2e', node_type: 'worker' },
      introspect: () => ({ capabilities: { queue: 'jobs' }, health_status: 'healthy' }),
      transport: new BusTransport({ bus, topics, nodeId: 'worker-e2e', logger: testLogger }),
      heartbeatIntervalMs: 50,
      logger: testLogger,
    });
    await agent.start();
    try {
      const seen = await waitFor('the follower sees the node', async () => follower.nodes.get(followerKey('default', 'worker-e2e')));
      assert.deepEqual(seen.capabilities, { queue: 'jobs' });
      // Removed behind its back: its next heartbeat makes the registry ask it to announce again.
      await client.deregister('worker-e2e', { reason: 'manual_deregistration' });
      await waitFor('the node online again', async () => ((await client.getNode('worker-e2e')).status === 'online' ? true : undefined));
      assert.ok(agent.stats.requestsAnswered >= 1);
    } finally {
      await agent.stop();
    }
    const gone = await waitFor('the tombstone applied', async () => {
      const node = await client.getNode('worker-e2e');
      return node.status === 'removed' ? node : undefined;
    });
    assert.equal(gone.removal_reason, 'graceful_shutdown');
    await waitFor('the follower drops the node', async () => (follower.nodes.has(followerKey('default', 'worker-e2e')) ? undefined : true));
    await follower.stop();
  });
});
