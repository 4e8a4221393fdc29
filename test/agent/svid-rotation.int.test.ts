// SVID rotation in the agent SDK against a real registry with its own CA in enforce mode (PGlite):
// enrolment with a join token, renewal before expiry with a fresh key while the agent's envelopes
// keep verifying, failed renewals retried with backoff while the old SVID still works, and a
// revoked SVID that cannot be renewed.
import { strict as assert } from 'node:assert';
import { X509Certificate } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { HttpTransport } from '../../src/agent/http-transport.js';
import { NodeAgent } from '../../src/agent/node-agent.js';
import { renewalTime, retryDelay, SvidRotator, type SvidRotation, type SvidRotationFailure } from '../../src/agent/svid-rotator.js';
import { envelope } from '../../src/domain/events.js';
import type { Envelope } from '../../src/domain/schemas.js';
import type { Registry } from '../../src/engine/registry.js';
import { initCaFiles } from '../../src/security/ca.js';
import { signEnvelope } from '../../src/security/signing.js';
import { CuttableProxy } from '../support/cuttable-proxy.js';
import { testLogger } from '../support/logger.js';
import { waitFor } from '../support/processes.js';
import { json, startTestServer, type TestServer } from '../support/server.js';
import { RecordingTransport } from '../support/recording-transport.js';

/** The serial of the SVID that signed an envelope. */
function signerSerial(event: Envelope): string {
  const security = event.security as { svid_certificate?: unknown } | undefined;
  assert.equal(typeof security?.svid_certificate, 'string', 'the envelope is signed');
  return new X509Certificate(security?.svid_certificate as string).serialNumber.toLowerCase();
}

async function rejections(registry: Registry): Promise<number> {
  const values = (await registry.metrics.registry.getSingleMetric('rollcall_signature_rejections_total')?.get())?.values ?? [];
  return values.reduce((sum, value) => sum + value.value, 0);
}

describe('renewal schedule and backoff', () => {
  it('renews at 2/3 of the lifetime by default, renewBeforeMs before expiry when shorter than the lifetime', () => {
    const svid = { notBefore: new Date(0), notAfter: new Date(3_600_000) };
    assert.equal(renewalTime(svid).getTime(), 2_400_000);
    assert.equal(renewalTime(svid, 600_000).getTime(), 3_000_000);
    assert.equal(renewalTime(svid, 3_600_000).getTime(), 2_400_000);
  });

  it('doubles the retry wait from the first one up to the cap, with bounded jitter', () => {
    const middle = (): number => 0.5;
    assert.deepEqual(
      [1, 2, 3, 4, 5, 12].map((attempt) => retryDelay(attempt, 1000, 10_000, middle)),
      [1000, 2000, 4000, 8000, 10_000, 10_000],
    );
    assert.equal(
      retryDelay(1, 1000, 10_000, () => 0),
      800,
    );
    assert.equal(
      retryDelay(40, 1000, 10_000, () => 1),
      12_000,
    );
  });
});

describe('SvidRotator against a registry with its own CA (enforce mode)', () => {
  let dir: string;
  let t: TestServer;
  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'rollcall-rotation-'));
    const { certFile, keyFile } = await initCaFiles(join(dir, 'ca'), 'fleet.test');
    // The shortest lifetime the CA issues; tests renew early with renewBeforeMs instead of waiting.
    t = await startTestServer({ store: 'pglite', config: { dataDir: 'memory://', caCertFile: certFile, caKeyFile: keyFile, trustDomain: 'fleet.test', signatureMode: 'enforce', svidTtlSeconds: 60 } });
  });
  after(async () => {
    await t.close();
    await rm(dir, { recursive: true, force: true });
  });

  async function joinToken(nodeType: string): Promise<string> {
    const created = await json<{ token: string }>(`${t.url}/api/v1/identity/tokens`, { body: { namespace: 'default', node_type: nodeType } });
    assert.equal(created.status, 201, JSON.stringify(created.body));
    return created.body.token;
  }

  it("enrols with a join token and renews before expiry with a new key, while the agent's envelopes keep verifying", async () => {
    const identity = { node_id: 'rot-1', node_type: 'worker' };
    // Renewal 58 s before the 60 s SVID expires: about 2 s after each issue.
    const rotator = new SvidRotator({ registryUrl: t.url, identity, joinToken: await joinToken('worker'), renewBeforeMs: 58_000, logger: testLogger });
    const rotations: Array<SvidRotation & { at: number; previousNotAfter: number }> = [];
    let previousNotAfter = 0;
    rotator.on('rotated', (rotation) => {
      rotations.push({ ...rotation, at: Date.now(), previousNotAfter });
      previousNotAfter = rotation.notAfter.getTime();
    });
    const failures: SvidRotationFailure[] = [];
    rotator.on('failure', (failure) => failures.push(failure));
    const transport = new RecordingTransport(new HttpTransport({ registryUrl: t.url }));
    const agent = new NodeAgent({ identity, introspect: () => ({ capabilities: { slots: 2 } }), transport, svid: rotator, heartbeatIntervalMs: 100, jitter: 0, logger: testLogger });
    const rejectedBefore = await rejections(t.server.registry);

    await agent.start();
    const first = rotator.svidInfo;
    assert.ok(first);
    assert.equal(first.spiffeId, 'spiffe://fleet.test/node/worker/rot-1');
    previousNotAfter = first.notAfter.getTime();
    const firstKey = rotator.current().privateKey;
    assert.equal(signerSerial(transport.sent[0]?.event as Envelope), first.serial, 'the startup announcement is signed by the enrolled SVID');

    await waitFor('two rotations', async () => (rotations.length >= 2 ? true : undefined), 20_000);
    const [one, two] = rotations as [SvidRotation & { at: number; previousNotAfter: number }, SvidRotation & { at: number; previousNotAfter: number }];
    assert.equal(one.previousSerial, first.serial);
    assert.notEqual(one.serial, first.serial);
    assert.equal(two.previousSerial, one.serial);
    assert.notEqual(two.serial, one.serial);
    for (const rotation of [one, two]) {
      assert.equal(rotation.keyRotated, true);
      assert.equal(rotation.spiffeId, first.spiffeId);
      // Renewed well before the SVID it replaced expired.
      assert.ok(rotation.at < rotation.previousNotAfter - 50_000, `renewed ${rotation.previousNotAfter - rotation.at} ms before expiry`);
    }
    assert.notEqual(rotator.current().privateKey, firstKey, 'a fresh key');
    assert.deepEqual(failures, []);

    // Heartbeats signed by the current SVID after the second rotation are accepted too.
    const beatsAfter = transport.sent.length;
    await waitFor('heartbeats after the second rotation', async () =>
      transport.sent.slice(beatsAfter).some((entry) => entry.kind === 'heartbeat' && signerSerial(entry.event) === rotator.svidInfo?.serial) ? true : undefined,
    );
    await agent.stop();
    assert.equal(rotator.state, 'stopped');

    const serials = new Set(transport.sent.map((entry) => signerSerial(entry.event)));
    for (const serial of [first.serial, one.serial, two.serial]) assert.ok(serials.has(serial), `envelopes signed by ${serial} were delivered`);
    assert.ok(transport.sent.every((entry) => entry.outcome === 'delivered'));
    assert.equal(agent.stats.heartbeatFailures, 0);
    assert.equal(await rejections(t.server.registry), rejectedBefore, 'no envelope was refused across the rotations');
    const node = await json<{ status: string; removal_reason: string }>(`${t.url}/api/v1/nodes/rot-1`);
    assert.equal(node.body.status, 'removed', 'the signed tombstone was accepted');
  });

  it('retries failed renewals with backoff and reports them while the old SVID still works', async () => {
    const proxy = new CuttableProxy({ host: '127.0.0.1', port: Number(new URL(t.url).port) });
    await proxy.listen();
    const rotator = new SvidRotator({
      registryUrl: `http://127.0.0.1:${proxy.port}`,
      identity: { node_id: 'rot-2', node_type: 'worker' },
      joinToken: await joinToken('worker'),
      renewBeforeMs: 58_000,
      retryInitialMs: 50,
      retryMaxMs: 400,
      timeoutMs: 2000,
      logger: testLogger,
    });
    const failures: SvidRotationFailure[] = [];
    const rotations: SvidRotation[] = [];
    rotator.on('failure', (failure) => failures.push(failure));
    rotator.on('rotated', (rotation) => rotations.push(rotation));
    try {
      await rotator.start();
      const held = rotator.svidInfo;
      assert.ok(held);
      // The registry becomes unreachable before the first renewal is due.
      await proxy.cut();
      await waitFor('four failed renewals', async () => (failures.length >= 4 ? true : undefined), 20_000);
      assert.deepEqual(rotations, []);
      for (const [index, failure] of failures.slice(0, 4).entries()) {
        assert.equal(failure.code, 'REGISTRY_UNAVAILABLE');
        assert.equal(failure.attempt, index + 1);
        assert.equal(failure.willRetry, true);
        assert.equal(failure.serial, held.serial);
        assert.equal(failure.expiresAt.getTime(), held.notAfter.getTime());
        assert.ok(failure.retryInMs !== null && failure.retryInMs <= 400 * 1.2, `retry in ${failure.retryInMs} ms`);
      }
      // 50, 100, 200, 400 ms ±20 %: growing, then capped.
      assert.ok((failures[3]?.retryInMs ?? 0) > (failures[0]?.retryInMs ?? Infinity));
      assert.equal(rotator.state, 'running');

      // The SVID still held signs envelopes the registry accepts.
      assert.equal(rotator.svidInfo?.serial, held.serial);
      const announced = await json(`${t.url}/api/v1/events`, { body: await signEnvelope(envelope('NODE_INTROSPECTION', 'rot-2', { node_id: 'rot-2', node_type: 'worker' }), rotator.current()) });
      assert.equal(announced.status, 201, JSON.stringify(announced.body));

      // The registry is back: the next retry renews.
      await proxy.listen();
      const rotation = await waitFor<SvidRotation>('the renewal once the registry is back', async () => rotations[0]);
      assert.equal(rotation.previousSerial, held.serial);
      assert.equal(rotator.svidInfo?.serial, rotation.serial);
      const beat = await json(`${t.url}/api/v1/events`, { body: await signEnvelope(envelope('NODE_HEARTBEAT', 'rot-2', { node_id: 'rot-2' }), rotator.current()) });
      assert.equal(beat.status, 200, JSON.stringify(beat.body));
    } finally {
      await rotator.stop();
      await proxy.cut();
    }
  });

  it('fails clearly, and stops retrying, when the SVID was revoked', async () => {
    const rotator = new SvidRotator({ registryUrl: t.url, identity: { node_id: 'rot-3', node_type: 'worker' }, joinToken: await joinToken('worker'), logger: testLogger });
    const failures: SvidRotationFailure[] = [];
    rotator.on('failure', (failure) => failures.push(failure));
    try {
      await rotator.start();
      const held = rotator.svidInfo;
      assert.ok(held);
      // Renewal by default at 2/3 of the 60 s lifetime.
      assert.equal(held.renewAt?.getTime(), held.notAfter.getTime() - 20_000);
      const revoked = await json(`${t.url}/api/v1/identity/revocations`, { body: { serial: held.serial, reason: 'key_compromise' } });
      assert.equal(revoked.status, 201, JSON.stringify(revoked.body));

      await assert.rejects(rotator.rotateNow(), (error: Error & { code?: string }) => error.code === 'SVID_REVOKED');
      assert.equal(failures.length, 1);
      const [failure] = failures as [SvidRotationFailure];
      assert.equal(failure.code, 'SVID_REVOKED');
      assert.equal(failure.willRetry, false);
      assert.equal(failure.retryInMs, null);
      assert.equal(failure.serial, held.serial);
      assert.equal(rotator.state, 'failed');
      assert.equal(rotator.svidInfo?.renewAt, null, 'nothing scheduled');
      await assert.rejects(rotator.rotateNow(), (error: Error & { code?: string }) => error.code === 'SVID_INVALID');

      // What it still holds is refused by the registry, with the revocation's code.
      const refused = await json<{ code: string }>(`${t.url}/api/v1/events`, {
        body: await signEnvelope(envelope('NODE_INTROSPECTION', 'rot-3', { node_id: 'rot-3', node_type: 'worker' }), rotator.current()),
      });
      assert.equal(refused.status, 401);
      assert.equal(refused.body.code, 'CERTIFICATE_REVOKED');
    } finally {
      await rotator.stop();
    }
  });

  it('starts from credentials it is given, and refuses to start without a way to an SVID', async () => {
    const enrolled = new SvidRotator({ registryUrl: t.url, identity: { node_id: 'rot-4', node_type: 'worker' }, joinToken: await joinToken('worker') });
    await enrolled.start();
    await enrolled.stop();
    const resumed = new SvidRotator({ registryUrl: t.url, identity: { node_id: 'rot-4' }, credentials: enrolled.current(), rotateKey: false });
    try {
      await resumed.start();
      assert.equal(resumed.svidInfo?.serial, enrolled.svidInfo?.serial);
      const rotation = await resumed.rotateNow();
      assert.equal(rotation.keyRotated, false);
      assert.equal(rotation.previousSerial, enrolled.svidInfo?.serial);
      assert.equal(resumed.current().privateKey, enrolled.current().privateKey, 'the same key, renewed');
    } finally {
      await resumed.stop();
    }
    assert.throws(() => new SvidRotator({ registryUrl: t.url, identity: { node_id: 'x' } }), RangeError);
    const unused = new SvidRotator({ registryUrl: t.url, identity: { node_id: 'rot-5', node_type: 'worker' }, joinToken: 'rcjt_unknown' });
    await assert.rejects(unused.start(), (error: Error & { code?: string }) => error.code === 'JOIN_TOKEN_INVALID');
    assert.throws(
      () => unused.current(),
      (error: Error & { code?: string }) => error.code === 'SVID_INVALID',
    );
  });
});
