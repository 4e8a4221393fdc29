// PostgreSQL going away and coming back, through a TCP proxy the test can cut: writes get a clear
// 503, reads keep being served from memory, health says so, and everything resumes by itself.
import { strict as assert } from 'node:assert';
import { describe, it } from 'node:test';
import pg from 'pg';
import { KafkaBus } from '../../src/bus/kafka-bus.js';
import { envelope } from '../../src/domain/events.js';
import { KAFKA_BROKERS, requireKafka, testTopics } from '../support/kafka.js';
import { testLogger } from '../support/logger.js';
import { waitFor } from '../support/processes.js';
import { databaseOf, json, proxyOf, serverForSuite, startTestServer } from '../support/server.js';

describe('store outage', () => {
  // The fallback tail runs with the sweep (every 30 s here): a prompt update must come from LISTEN.
  const t = serverForSuite({ storeProxy: true, config: { sweepIntervalMs: 30_000, heartbeatFlushMs: 200 } });

  it('refuses writes with 503, keeps serving reads and heartbeats, and recovers by itself', async () => {
    const proxy = proxyOf(t);
    const register = (nodeId: string) => json<{ code?: string; outcome?: string }>(`${t.url}/api/v1/nodes/register`, { body: { node_id: nodeId, hostname: 'h', role: 'outage' } });
    assert.equal((await register('before-outage')).status, 201);

    await proxy.cut();
    const refused = await register('during-outage');
    assert.equal(refused.status, 503);
    assert.match(refused.contentType, /^application\/problem\+json/);
    assert.equal(refused.body.code, 'STORE_UNAVAILABLE');
    const health = await json<{ status: string; checks: { store: { status: string } } }>(`${t.url}/health`);
    assert.equal(health.status, 503);
    assert.equal(health.body.checks.store.status, 'unhealthy');
    // Reads come from memory, heartbeats renew in memory until the store is back.
    assert.equal((await json<{ status: string }>(`${t.url}/api/v1/nodes/before-outage`)).body.status, 'online');
    assert.equal((await json(`${t.url}/api/v1/nodes/heartbeat`, { body: { node_id: 'before-outage' } })).status, 200);

    await proxy.listen();
    const recovered = await waitFor(
      'writes to succeed again',
      async () => {
        const response = await register('after-outage');
        return response.status === 201 ? response : undefined;
      },
      15_000,
    );
    assert.equal(recovered.body.outcome, 'added');
    await waitFor('health to recover', async () => ((await json(`${t.url}/health`)).status === 200 ? true : undefined), 15_000);

    // What was acknowledged is in the database; what was refused is not.
    const direct = new pg.Client({ connectionString: databaseOf(t).url });
    await direct.connect();
    try {
      const rows = await direct.query<{ node_id: string }>(`SELECT node_id FROM node_registrations WHERE role = 'outage' ORDER BY node_id`);
      assert.deepEqual(
        rows.rows.map((row) => row.node_id),
        ['after-outage', 'before-outage'],
      );
      // The heartbeat sent during the outage reached the lease table once the store came back.
      const lease = await waitFor(
        'the held heartbeat to be flushed',
        async () => {
          const result = await direct.query<{ renewed: boolean }>(
            `SELECT l.last_heartbeat > r.registered_at AS renewed FROM node_leases l JOIN node_registrations r USING (namespace, node_id) WHERE node_id = 'before-outage'`,
          );
          return result.rows[0]?.renewed ? true : undefined;
        },
        15_000,
      );
      assert.equal(lease, true);
    } finally {
      await direct.end();
    }
    assert.equal((await json<{ status: string }>(`${t.url}/api/v1/nodes/before-outage`)).body.status, 'online');

    // LISTEN was re-established on a new connection: a peer's write shows up within seconds.
    const peer = await startTestServer({ database: databaseOf(t), config: { sweepIntervalMs: 30_000 } });
    try {
      assert.equal((await json(`${peer.url}/api/v1/nodes/register`, { body: { node_id: 'from-peer', hostname: 'p', role: 'outage' } })).status, 201);
      await waitFor("the peer's write to reach this instance", async () => ((await json(`${t.url}/api/v1/nodes/from-peer`)).status === 200 ? true : undefined), 5000);
    } finally {
      await peer.stop();
    }
  });
});

describe('store outage under the Kafka intake', () => {
  it('leaves events uncommitted while PostgreSQL is away and writes every one when it returns', async () => {
    await requireKafka();
    const { topics, config: kafka } = testTopics();
    const t = await startTestServer({ storeProxy: true, config: { ...kafka, sweepIntervalMs: 30_000, heartbeatFlushMs: 200 } });
    const proxy = proxyOf(t);
    const bus = new KafkaBus({ brokers: KAFKA_BROKERS.split(','), clientId: 'outage-test', logger: testLogger });
    const announce = (nodeId: string) => ({ key: nodeId, value: JSON.stringify(envelope('NODE_INTROSPECTION', nodeId, { node_id: nodeId, node_type: 'outage' })) });
    const status = async (nodeId: string) => (await json(`${t.url}/api/v1/nodes/${nodeId}`)).status;
    try {
      await bus.publish(topics.introspection, [announce('k-before')]);
      await waitFor('k-before', async () => ((await status('k-before')) === 200 ? true : undefined), 20_000);

      await proxy.cut();
      const during = Array.from({ length: 20 }, (_, i) => `k-during-${i}`);
      await bus.publish(topics.introspection, during.map(announce));
      await new Promise((resolve) => setTimeout(resolve, 2000));
      assert.equal((await json(`${t.url}/health`)).status, 503);
      for (const nodeId of during) assert.equal(await status(nodeId), 404, `${nodeId} is not shown before it is durable`);

      await proxy.listen();
      await waitFor(
        'every event of the outage written',
        async () => {
          const codes = await Promise.all(during.map(status));
          return codes.every((code) => code === 200) ? true : undefined;
        },
        30_000,
      );
      const direct = new pg.Client({ connectionString: databaseOf(t).url });
      await direct.connect();
      try {
        const rows = await direct.query<{ count: string }>(`SELECT count(*) FROM node_registrations WHERE node_type = 'outage'`);
        assert.equal(Number(rows.rows[0]?.count), 21);
      } finally {
        await direct.end();
      }
      // Store errors are not the message's fault: nothing went to the dead-letter topic.
      assert.equal(/rollcall_dead_letters_total\{/.test(await (await fetch(`${t.url}/metrics`)).text()), false);
    } finally {
      await bus.close();
      await t.close();
    }
  });
});
