// The issue's attacks on signed introspection against a real server in enforce mode (HTTP), and on
// the bus intake: each is refused with its code, counted, and leaves the registry as it was.
import { strict as assert } from 'node:assert';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { MemoryBus } from '../../src/bus/memory-bus.js';
import { envelope, topicNames } from '../../src/domain/events.js';
import type { Envelope } from '../../src/domain/schemas.js';
import type { Registry } from '../../src/engine/registry.js';
import { DEAD_LETTER_HEADERS, EventIntake } from '../../src/intake/event-intake.js';
import { signEnvelope } from '../../src/security/signing.js';
import { testLogger } from '../support/logger.js';
import { pollUntil } from '../support/processes.js';
import { json, startTestServer, type TestServer } from '../support/server.js';
import { createTestCa, type TestCa, type TestSvid } from '../support/test-ca.js';

async function rejections(registry: Registry, mode = 'enforce'): Promise<Record<string, number>> {
  const metric = registry.metrics.registry.getSingleMetric('rollcall_signature_rejections_total');
  const values = (await metric?.get())?.values ?? [];
  return Object.fromEntries(values.filter((value) => value.labels.mode === mode).map((value) => [String(value.labels.reason), value.value]));
}

function introspection(nodeId: string, nodeType = 'worker', extra: Record<string, unknown> = {}): Envelope {
  return envelope('NODE_INTROSPECTION', nodeId, { node_id: nodeId, node_type: nodeType, capabilities: { slots: 4 }, ...extra });
}

describe('signed introspection attacks', () => {
  let dir: string;
  let ca: TestCa;
  let nodeA: TestSvid;
  let revoked: TestSvid;
  let t: TestServer;

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'rollcall-signing-'));
    ca = await createTestCa();
    nodeA = await ca.issue({ nodeType: 'worker', nodeId: 'node-a' });
    revoked = await ca.issue({ nodeType: 'worker', nodeId: 'node-r' });
    await writeFile(join(dir, 'bundle.pem'), ca.certificatePem);
    await writeFile(join(dir, 'revoked.txt'), `# revoked in the test\n${revoked.serial}\n`);
    t = await startTestServer({
      store: 'pglite',
      config: { dataDir: 'memory://', signatureMode: 'enforce', trustBundleFile: join(dir, 'bundle.pem'), revocationFile: join(dir, 'revoked.txt') },
    });
  });
  after(async () => {
    await t.close();
    await rm(dir, { recursive: true, force: true });
  });

  async function post(body: unknown): Promise<{ status: number; body: Record<string, unknown> }> {
    return json(`${t.url}/api/v1/introspection`, { body });
  }

  async function expectRefusal(body: unknown, code: string, status: number): Promise<void> {
    const before = await rejections(t.server.registry);
    const version = t.server.registry.view.version;
    const response = await post(body);
    assert.equal(response.status, status, JSON.stringify(response.body));
    assert.equal(response.body.code, code);
    assert.equal((await rejections(t.server.registry))[code], (before[code] ?? 0) + 1, `${code} counted`);
    assert.equal(t.server.registry.view.version, version, 'the registry did not change');
    // The refusal is in the audit log (written in batches): one more node.signature denial with the code.
    await pollUntil(
      async () => (await auditDenials()).filter((entry) => entry.reason === code).length,
      (count) => count === (audited[code] ?? 0) + 1,
      { timeoutMs: 10_000, what: `an audit entry for ${code}` },
    );
    audited[code] = (audited[code] ?? 0) + 1;
  }

  /** Audit entries of refused signatures so far, and how many of each code the tests expect. */
  const audited: Record<string, number> = {};
  async function auditDenials(): Promise<{ reason: string | null; action: string; decision: string; node_id: string | null }[]> {
    const response = await json(`${t.url}/api/v1/audit?action=node.signature&decision=denied&limit=1000`);
    assert.equal(response.status, 200, JSON.stringify(response.body));
    return response.body.entries as { reason: string | null; action: string; decision: string; node_id: string | null }[];
  }

  it('accepts a valid signed introspection', async () => {
    const response = await post(await signEnvelope(introspection('node-a'), nodeA));
    assert.equal(response.status, 201, JSON.stringify(response.body));
    assert.equal(response.body.registered_node_id, 'node-a');
  });

  it("refuses node A's valid SVID signing an introspection for node B", async () => {
    await expectRefusal(await signEnvelope(introspection('node-b'), nodeA), 'IDENTITY_MISMATCH', 403);
    assert.equal((await json(`${t.url}/api/v1/nodes/node-b`)).status, 404);
  });

  it('refuses a tampered payload', async () => {
    const event = await signEnvelope(introspection('node-a'), nodeA);
    event.payload = { ...event.payload, capabilities: { slots: 4000 } };
    await expectRefusal(event, 'SIGNATURE_INVALID', 401);
  });

  it('refuses an expired certificate', async () => {
    const expired = await ca.issue({ nodeType: 'worker', nodeId: 'node-a', notBefore: new Date(Date.now() - 7_200_000), notAfter: new Date(Date.now() - 3_600_000) });
    await expectRefusal(await signEnvelope(introspection('node-a'), expired), 'CERTIFICATE_INVALID', 401);
  });

  it('refuses a revoked certificate', async () => {
    await expectRefusal(await signEnvelope(introspection('node-r'), revoked), 'CERTIFICATE_REVOKED', 401);
  });

  it('refuses a certificate of a foreign CA', async () => {
    const foreign = await (await createTestCa('test.rollcall')).issue({ nodeType: 'worker', nodeId: 'node-a' });
    await expectRefusal(await signEnvelope(introspection('node-a'), foreign), 'CERTIFICATE_INVALID', 401);
  });

  it('refuses a replayed event', async () => {
    const event = await signEnvelope(introspection('node-a', 'worker', { capabilities: { slots: 8 } }), nodeA);
    assert.equal((await post(event)).status, 200);
    await expectRefusal(event, 'REPLAYED_EVENT', 409);
  });

  it('refuses an unsigned event, enveloped or bare', async () => {
    await expectRefusal(introspection('node-u'), 'SIGNATURE_REQUIRED', 401);
    await expectRefusal({ node_id: 'node-u', node_type: 'worker' }, 'SIGNATURE_REQUIRED', 401);
  });

  it('refuses signed events on the bus intake, dead-lettered with their reason', async () => {
    const topics = topicNames('signed.omninode_bridge.onex.evt');
    const bus = new MemoryBus();
    const intake = new EventIntake({
      bus,
      registry: t.server.registry,
      metrics: t.server.metrics,
      topics,
      group: 'signed-registry',
      registryId: 'signed',
      defaults: { namespace: 'default', leaseTtlMs: 60_000 },
      logger: testLogger,
      maxEventBytes: 64 * 1024,
      dedupeSize: 1000,
      dedupeTtlMs: 60_000,
      verifier: t.server.verifier,
    });
    await intake.start();
    const letters: string[] = [];
    const reader = await bus.subscribe({
      group: 'reader',
      topics: [topics.deadLetter],
      start: 'earliest',
      handler: async (batch) => void letters.push(...batch.map((m) => m.headers[DEAD_LETTER_HEADERS.reason] ?? '')),
    });
    try {
      const before = await rejections(t.server.registry);
      const good = await signEnvelope(introspection('node-a', 'worker', { capabilities: { slots: 16 } }), nodeA);
      const heartbeat = await signEnvelope(envelope('NODE_HEARTBEAT', 'node-a', { node_id: 'node-a' }), nodeA);
      await bus.publish(topics.introspection, [
        { key: 'node-a', value: JSON.stringify(good) },
        { key: 'node-b', value: JSON.stringify(await signEnvelope(introspection('node-b'), nodeA)) },
        { key: 'node-u', value: JSON.stringify(introspection('node-u')) },
      ]);
      await bus.publish(topics.heartbeat, [{ key: 'node-a', value: JSON.stringify(heartbeat) }]);
      // The same signed heartbeat published again is a replay, not a redelivery.
      await bus.publish(topics.heartbeat, [{ key: 'node-a', value: JSON.stringify(heartbeat) }]);
      await pollUntil(
        async () => letters.length,
        (count) => count >= 3,
        { timeoutMs: 10_000, what: 'the dead letters' },
      );
      assert.deepEqual([...letters].sort(), ['IDENTITY_MISMATCH', 'REPLAYED_EVENT', 'SIGNATURE_REQUIRED']);
      const after = await rejections(t.server.registry);
      for (const code of ['IDENTITY_MISMATCH', 'REPLAYED_EVENT', 'SIGNATURE_REQUIRED']) assert.equal(after[code], (before[code] ?? 0) + 1, code);
      // Each is audited with the bus as its source.
      const fromBus = await pollUntil(
        async () => (await auditDenials()).filter((entry) => (entry as { details?: { source?: string } }).details?.source === 'bus'),
        (entries) => entries.length >= 3,
        { timeoutMs: 10_000, what: 'audit entries of the bus refusals' },
      );
      assert.deepEqual(fromBus.map((entry) => entry.reason).sort(), ['IDENTITY_MISMATCH', 'REPLAYED_EVENT', 'SIGNATURE_REQUIRED']);
      assert.deepEqual(t.server.registry.get('default', 'node-a').capabilities, { slots: 16 }, 'the valid signed event was applied');
      assert.equal((await json(`${t.url}/api/v1/nodes/node-u`)).status, 404);
    } finally {
      await reader.close();
      await intake.stop();
      await bus.close();
    }
  });
});

describe('signed introspection, permissive mode', () => {
  let dir: string;
  let t: TestServer;
  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'rollcall-signing-'));
    const ca = await createTestCa();
    await writeFile(join(dir, 'bundle.pem'), ca.certificatePem);
    t = await startTestServer({ store: 'pglite', config: { dataDir: 'memory://', signatureMode: 'permissive', trustBundleFile: join(dir, 'bundle.pem') } });
  });
  after(async () => {
    await t.close();
    await rm(dir, { recursive: true, force: true });
  });

  it('accepts an unsigned event and counts it', async () => {
    const response = await json(`${t.url}/api/v1/introspection`, { body: introspection('node-p') });
    assert.equal(response.status, 201, JSON.stringify(response.body));
    assert.deepEqual(await rejections(t.server.registry, 'permissive'), { SIGNATURE_REQUIRED: 1 });
  });
});
