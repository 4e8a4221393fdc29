// Envelope signing and the verifier's checks, in memory: every refusal carries its own code.
import { strict as assert } from 'node:assert';
import { X509Certificate } from 'node:crypto';
import { before, describe, it } from 'node:test';
import client from 'prom-client';
import { NodeAgent } from '../../src/agent/node-agent.js';
import { envelope } from '../../src/domain/events.js';
import { isRollcallError } from '../../src/domain/errors.js';
import type { JsonObject } from '../../src/domain/json.js';
import type { Envelope } from '../../src/domain/schemas.js';
import { IntrospectionVerifier, type SignatureMode, type SignatureRejection } from '../../src/security/introspection-verifier.js';
import { signEnvelope, signedBytes, verifyEnvelopeSignature } from '../../src/security/signing.js';
import { testLogger } from '../support/logger.js';
import { createTestCa, type TestCa, type TestSvid } from '../support/test-ca.js';

const claimOf = (event: Envelope) => ({ namespace: 'default', node_id: String(event.payload.node_id), node_type: String(event.payload.node_type) });

describe('envelope signatures', () => {
  let ca: TestCa;
  let svid: TestSvid;
  before(async () => {
    ca = await createTestCa();
    svid = await ca.issue({ nodeType: 'worker', nodeId: 'w-1' });
  });

  function verifier(mode: SignatureMode = 'enforce', revoked: string[] = [], rejections: SignatureRejection[] = []) {
    const metrics = new client.Registry();
    const bundle = [new X509Certificate(ca.certificatePem)];
    return {
      metrics,
      verifier: new IntrospectionVerifier({
        mode,
        trustSource: { trustBundle: async () => bundle, isRevoked: (serial, spiffeId) => revoked.includes(serial) || revoked.includes(spiffeId) },
        maxSkewMs: 300_000,
        replayCacheSize: 1000,
        defaultNamespace: 'default',
        logger: testLogger,
        metrics,
        onRejection: (rejection) => void rejections.push(rejection),
      }),
    };
  }

  async function signed(payload: Record<string, unknown> = { node_id: 'w-1', node_type: 'worker' }, by: TestSvid = svid, now?: Date): Promise<Envelope> {
    return signEnvelope(envelope('NODE_INTROSPECTION', String(payload.node_id), payload as JsonObject), by, now);
  }

  async function refusal(promise: Promise<unknown>): Promise<string> {
    try {
      await promise;
    } catch (error) {
      assert.ok(isRollcallError(error), String(error));
      assert.ok(error.status >= 400 && error.status < 500);
      return error.code;
    }
    return 'accepted';
  }

  it('signs the canonical envelope without the signature, and verifies it', async () => {
    const event = await signed();
    assert.equal(event.security?.signature_algorithm, 'ES256');
    assert.equal(event.security?.spiffe_id, svid.spiffeId);
    const key = await crypto.subtle.importKey('spki', new X509Certificate(svid.certificatePem).publicKey.export({ type: 'spki', format: 'der' }), { name: 'ECDSA', namedCurve: 'P-256' }, false, [
      'verify',
    ]);
    assert.ok(await verifyEnvelopeSignature(event, String(event.security?.signature), key));
    // Key order does not matter; the signed_at does.
    const { payload, ...rest } = event;
    const reordered = JSON.parse(JSON.stringify({ payload, ...rest })) as Envelope;
    assert.deepEqual(signedBytes(reordered), signedBytes(event));
    assert.ok(!(await verifyEnvelopeSignature({ ...event, security: { ...event.security, signed_at: new Date().toISOString() } }, String(event.security?.signature), key)));
  });

  it('accepts a valid event once, and refuses each attack with its code', async () => {
    const rejections: SignatureRejection[] = [];
    const { verifier: v, metrics } = verifier('enforce', [], rejections);
    const good = await signed();
    const identity = await v.verify(good, claimOf(good), { source: 'http' });
    assert.equal(identity?.nodeId, 'w-1');
    assert.equal(await refusal(v.verify(good, claimOf(good), { source: 'http' })), 'REPLAYED_EVENT');

    const other = await signed({ node_id: 'w-2', node_type: 'worker' });
    assert.equal(await refusal(v.verify(other, claimOf(other), { source: 'http' })), 'IDENTITY_MISMATCH');
    const tampered = await signed();
    tampered.payload = { ...tampered.payload, capabilities: { admin: true } };
    assert.equal(await refusal(v.verify(tampered, claimOf(tampered), { source: 'http' })), 'SIGNATURE_INVALID');
    const stale = await signed(undefined, svid, new Date(Date.now() - 3_600_000));
    assert.equal(await refusal(v.verify(stale, claimOf(stale), { source: 'http' })), 'STALE_EVENT');
    const expired = await signed(undefined, await ca.issue({ nodeType: 'worker', nodeId: 'w-1', notBefore: new Date(Date.now() - 7_200_000), notAfter: new Date(Date.now() - 3_600_000) }));
    assert.equal(await refusal(v.verify(expired, claimOf(expired), { source: 'http' })), 'CERTIFICATE_INVALID');
    const foreign = await signed(undefined, await (await createTestCa()).issue({ nodeType: 'worker', nodeId: 'w-1' }));
    assert.equal(await refusal(v.verify(foreign, claimOf(foreign), { source: 'http' })), 'CERTIFICATE_INVALID');
    const otherNamespace = await signed(undefined, await ca.issue({ nodeType: 'worker', nodeId: 'w-1', namespace: 'team-b' }));
    assert.equal(await refusal(v.verify(otherNamespace, claimOf(otherNamespace), { source: 'http' })), 'IDENTITY_MISMATCH');
    const unsigned = envelope('NODE_INTROSPECTION', 'w-1', { node_id: 'w-1', node_type: 'worker' });
    assert.equal(await refusal(v.verify(unsigned, claimOf(unsigned), { source: 'http' })), 'SIGNATURE_REQUIRED');
    assert.equal(await refusal(v.verify(null, { namespace: 'default', node_id: 'w-1' }, { source: 'http' })), 'SIGNATURE_REQUIRED');

    const counted = (await metrics.getSingleMetric('rollcall_signature_rejections_total')?.get())?.values ?? [];
    const byReason = Object.fromEntries(counted.map((value): [string, number] => [String(value.labels.reason), value.value]));
    assert.deepEqual(byReason, { REPLAYED_EVENT: 1, IDENTITY_MISMATCH: 2, SIGNATURE_INVALID: 1, STALE_EVENT: 1, CERTIFICATE_INVALID: 2, SIGNATURE_REQUIRED: 2 });
    assert.equal(rejections.length, 9);
    assert.ok(rejections.every((rejection) => !rejection.accepted));
  });

  it('refuses a revoked SVID by serial or by SPIFFE ID', async () => {
    const revoked = await ca.issue({ nodeType: 'worker', nodeId: 'w-9' });
    const bySerial = verifier('enforce', [revoked.serial]).verifier;
    const event = await signed({ node_id: 'w-9', node_type: 'worker' }, revoked);
    assert.equal(await refusal(bySerial.verify(event, claimOf(event), { source: 'http' })), 'CERTIFICATE_REVOKED');
    const byId = verifier('enforce', [revoked.spiffeId]).verifier;
    assert.equal(await refusal(byId.verify(event, claimOf(event), { source: 'http' })), 'CERTIFICATE_REVOKED');
  });

  it('takes a redelivery at the same bus position, refuses the same event elsewhere', async () => {
    const { verifier: v } = verifier();
    const event = await signed();
    await v.verify(event, claimOf(event), { source: 'bus', position: 't/0/5' });
    await v.verify(event, claimOf(event), { source: 'bus', position: 't/0/5' });
    assert.equal(await refusal(v.verify(event, claimOf(event), { source: 'bus', position: 't/0/9' })), 'REPLAYED_EVENT');
  });

  it('the agent signs every envelope it publishes', async () => {
    const published: Envelope[] = [];
    const agent = new NodeAgent({
      identity: { node_id: 'w-1', node_type: 'worker' },
      introspect: () => ({ capabilities: { slots: 1 } }),
      transport: { publish: async (_kind, event) => (published.push(event), 'delivered'), onRegistryRequest: async () => undefined, close: async () => undefined },
      heartbeatIntervalMs: 60_000,
      signer: { certificatePem: svid.certificatePem, privateKey: svid.privateKey },
    });
    await agent.start();
    await agent.stop();
    assert.deepEqual(
      published.map((event) => event.event_type),
      ['NODE_INTROSPECTION', 'NODE_TOMBSTONE'],
    );
    const { verifier: v } = verifier();
    for (const event of published) assert.ok(await v.verify(event, { namespace: 'default', node_id: 'w-1', node_type: 'worker' }, { source: 'bus' }));
  });

  it('permissive mode reports failures and accepts; off checks nothing', async () => {
    const rejections: SignatureRejection[] = [];
    const { verifier: v, metrics } = verifier('permissive', [], rejections);
    assert.equal(await v.verify(null, { namespace: 'default', node_id: 'x' }, { source: 'http' }), null);
    assert.equal(rejections[0]?.code, 'SIGNATURE_REQUIRED');
    assert.equal(rejections[0]?.accepted, true);
    const counted = (await metrics.getSingleMetric('rollcall_signature_rejections_total')?.get())?.values ?? [];
    assert.deepEqual(
      counted.map((value) => [value.labels, value.value]),
      [[{ reason: 'SIGNATURE_REQUIRED', mode: 'permissive' }, 1]],
    );
    const off = new IntrospectionVerifier({ mode: 'off', trustSource: null, maxSkewMs: 1000, replayCacheSize: 1, defaultNamespace: 'default', logger: testLogger, metrics: new client.Registry() });
    assert.equal(await off.verify(null, { namespace: 'default', node_id: 'x' }, { source: 'http' }), null);
  });
});
