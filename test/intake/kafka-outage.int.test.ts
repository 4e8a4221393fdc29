// The Kafka broker crashing under a running registry, on a broker of the test's own (the shared
// one stays up): the registry keeps serving over HTTP and says it is degraded; when the broker
// is back (with its data), intake and relay resume by themselves and nothing is lost.
import { spawn } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { strict as assert } from 'node:assert';
import { after, before, describe, it } from 'node:test';
import { KafkaBus } from '../../src/bus/kafka-bus.js';
import { envelope, topicNames } from '../../src/domain/events.js';
import { testLogger } from '../support/logger.js';
import { createTestDatabase, type TestDatabase } from '../support/postgres.js';
import { freePort, PATIENCE, pollUntil, waitFor } from '../support/processes.js';
import { json, startTestServer, type TestServer } from '../support/server.js';

function kafkaScript(command: 'start' | 'stop', env: Record<string, string>): Promise<void> {
  return new Promise((resolve, reject) => {
    const child = spawn('bash', ['scripts/kafka', command], { env: { ...process.env, ...env }, stdio: ['ignore', 'ignore', 'pipe'] });
    let stderr = '';
    child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
    child.once('close', (code) => (code === 0 ? resolve() : reject(new Error(`scripts/kafka ${command} exited ${code}: ${stderr}`))));
  });
}

describe('Kafka broker outage', () => {
  let port: number;
  let env: Record<string, string>;
  let stateDir: string;
  let database: TestDatabase;
  let t: TestServer;
  const prefix = `outage${randomUUID().slice(0, 8)}.omninode_bridge.onex.evt`;
  const topics = topicNames(prefix);

  before(async () => {
    port = await freePort();
    // The broker's pid, config and data go where the test can find them; `stop` removes them.
    stateDir = join(tmpdir(), `rollcall-kafka-${port}`);
    // A broker's first start takes seconds on an idle machine and over a minute on a busy one.
    env = {
      KAFKA_PORT: String(port),
      KAFKA_CONTROLLER_PORT: String(await freePort()),
      KAFKA_STATE_DIR: stateDir,
      KAFKA_BROKER_URL: '',
      KAFKA_BOOTSTRAP_SERVERS: '',
      KAFKA_START_TIMEOUT: String(60 * PATIENCE),
    };
    await kafkaScript('start', env);
    database = await createTestDatabase();
    t = await startTestServer({ database, config: { kafkaBrokers: `127.0.0.1:${port}`, kafkaTopicPrefix: prefix, kafkaGroupId: `${prefix}.registry` } });
  });
  after(async () => {
    await t?.stop();
    await database?.drop();
    // Also after a start that failed: the broker's logs and config stay in its state folder.
    await kafkaScript('stop', env).finally(() => rm(stateDir, { recursive: true, force: true }));
  });

  const announce = async (nodeId: string): Promise<void> => {
    const bus = new KafkaBus({ brokers: [`127.0.0.1:${port}`], clientId: 'outage-producer', logger: testLogger });
    try {
      await bus.publish(topics.introspection, [{ key: nodeId, value: JSON.stringify(envelope('NODE_INTROSPECTION', nodeId, { node_id: nodeId, node_type: 'outage' })) }]);
    } finally {
      await bus.close();
    }
  };
  const registered = (nodeId: string): Promise<true> => waitFor(`${nodeId} registered`, async () => ((await json(`${t.url}/api/v1/nodes/${nodeId}`)).status === 200 ? true : undefined), 60_000);
  const health = async (): Promise<{ status: string; checks: { event_bus: { status: string } } }> =>
    (await json<{ status: string; checks: { event_bus: { status: string } } }>(`${t.url}/health`)).body;

  it('keeps serving while the broker is down, says so, and resumes intake and relay when it returns', async () => {
    await announce('o-before');
    await registered('o-before');

    const pid = Number((await readFile(join(stateDir, 'kafka.pid'), 'utf8')).trim());
    process.kill(pid, 'SIGKILL');
    await pollUntil(
      async () => {
        try {
          process.kill(pid, 0);
          return false;
        } catch {
          return true;
        }
      },
      (gone) => gone,
      { timeoutMs: 10_000, what: 'the broker to die' },
    );

    // HTTP intake does not need Kafka; the change waits for the relay.
    assert.equal((await json(`${t.url}/api/v1/nodes/register`, { body: { node_id: 'o-during', hostname: 'h', role: 'outage' } })).status, 201);
    const degraded = await pollUntil(health, (body) => body.checks.event_bus.status !== 'healthy', { timeoutMs: 30_000, what: 'health to show the bus down' });
    assert.equal(degraded.status, 'degraded', 'degraded, not down: the registry still serves');

    await kafkaScript('start', { ...env, KAFKA_KEEP_DATA: '1' });
    await announce('o-after');
    await registered('o-after');
    await pollUntil(health, (body) => body.status === 'healthy', { timeoutMs: 30_000, what: 'health to recover' });

    // Every change, including the one made during the outage, reaches the diff topic in order.
    const reader = new KafkaBus({ brokers: [`127.0.0.1:${port}`], clientId: 'outage-reader', logger: testLogger });
    const versions: number[] = [];
    const seen = new Set<string>();
    const subscription = await reader.subscribe({
      group: `${prefix}.reader`,
      topics: [topics.topologyDiff],
      start: 'earliest',
      handler: async (batch) => {
        for (const message of batch) {
          const diff = JSON.parse(message.value) as { payload: { changes: Array<{ version: number; node_id: string }> } };
          for (const change of diff.payload.changes) {
            versions.push(change.version);
            seen.add(change.node_id);
          }
        }
      },
    });
    try {
      await pollUntil(
        async () => seen.has('o-after'),
        (done) => done,
        { timeoutMs: 30_000, what: 'the diff of o-after' },
      );
      assert.ok(seen.has('o-during'), 'the change made during the outage was relayed');
      assert.deepEqual(
        versions.slice(0, versions.length),
        Array.from({ length: versions.length }, (_, i) => i + 1),
        'no gap, no repeat',
      );
    } finally {
      await subscription.close();
      await reader.close();
    }
  });
});
