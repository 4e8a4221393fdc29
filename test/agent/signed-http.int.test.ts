// Signed heartbeats and tombstones over HTTP (POST /api/v1/events) against a real registry on
// PostgreSQL with API keys, its own CA and signatureMode enforce: an agent holding only a
// nodes:write key announces, heartbeats and leaves with signed envelopes; unsigned envelopes and
// envelopes signed for another node are refused with the verifier's codes, counted and audited.
import { strict as assert } from 'node:assert';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { HttpTransport } from '../../src/agent/http-transport.js';
import { NodeAgent } from '../../src/agent/node-agent.js';
import { SvidRotator } from '../../src/agent/svid-rotator.js';
import { RollcallClient } from '../../src/client/rollcall-client.js';
import { envelope } from '../../src/domain/events.js';
import type { Envelope } from '../../src/domain/schemas.js';
import { createApiKey } from '../../src/security/api-keys.js';
import { initCaFiles } from '../../src/security/ca.js';
import { signEnvelope, type SvidCredentials } from '../../src/security/signing.js';
import { testLogger } from '../support/logger.js';
import { waitFor } from '../support/processes.js';
import { json, startTestServer, type TestServer } from '../support/server.js';
import { RecordingTransport } from '../support/recording-transport.js';
import type { StoredAuditEntry as AuditEntry } from '../../src/store/store.js';
import { expectProblem } from '../support/problems.js';

interface Node {
  status: string;
  last_heartbeat: string;
  lease_expires_at: string | null;
  removal_reason: string | null;
  incarnation: number;
}

const keys = { admin: '', writer: '', elsewhere: '' };
const bearer = (key: string): Record<string, string> => ({ authorization: `Bearer ${key}` });
let dir: string;
let t: TestServer;

before(async () => {
  dir = await mkdtemp(join(tmpdir(), 'rollcall-signed-http-'));
  const { certFile, keyFile } = await initCaFiles(join(dir, 'ca'), 'fleet.test');
  t = await startTestServer({
    config: { caCertFile: certFile, caKeyFile: keyFile, trustDomain: 'fleet.test', signatureMode: 'enforce', rateLimitPerMinute: 1_000_000 },
    seed: async (store) => {
      keys.admin = (await createApiKey(store, { scope: 'admin', namespace: '*', name: 'ops' })).token;
      keys.writer = (await createApiKey(store, { scope: 'nodes:write', namespace: 'default', name: 'agents' })).token;
      keys.elsewhere = (await createApiKey(store, { scope: 'nodes:write', namespace: 'elsewhere', name: 'other-team' })).token;
    },
  });
});
after(async () => {
  await t.close();
  await rm(dir, { recursive: true, force: true });
});

async function joinToken(nodeType: string): Promise<string> {
  const created = await json<{ token: string }>(`${t.url}/api/v1/identity/tokens`, { body: { namespace: 'default', node_type: nodeType }, headers: bearer(keys.admin) });
  assert.equal(created.status, 201, JSON.stringify(created.body));
  return created.body.token;
}

/** An SVID for a node, by the join-token exchange. */
async function enrol(nodeId: string, nodeType = 'worker'): Promise<SvidCredentials> {
  const rotator = new SvidRotator({ registryUrl: t.url, identity: { node_id: nodeId, node_type: nodeType }, joinToken: await joinToken(nodeType) });
  await rotator.start();
  await rotator.stop();
  return rotator.current();
}

async function getNode(nodeId: string): Promise<Node> {
  const response = await json<Node>(`${t.url}/api/v1/nodes/${nodeId}`, { headers: bearer(keys.admin) });
  assert.equal(response.status, 200, JSON.stringify(response.body));
  return response.body;
}

async function postEvent(event: Envelope, key = keys.writer): Promise<{ status: number; contentType: string; body: Record<string, unknown> }> {
  return json(`${t.url}/api/v1/events`, { body: event, headers: bearer(key) });
}

async function rejections(): Promise<Record<string, number>> {
  const values = (await t.server.registry.metrics.registry.getSingleMetric('rollcall_signature_rejections_total')?.get())?.values ?? [];
  return Object.fromEntries(values.map((value) => [String(value.labels.reason), value.value]));
}

async function audit(query: string): Promise<AuditEntry[]> {
  const response = await json<{ entries: AuditEntry[] }>(`${t.url}/api/v1/audit?${query}`, { headers: bearer(keys.admin) });
  assert.equal(response.status, 200, JSON.stringify(response.body));
  return response.body.entries;
}

/** A signed introspection of a worker, accepted. */
async function announce(nodeId: string, credentials: SvidCredentials): Promise<void> {
  const response = await postEvent(await signEnvelope(envelope('NODE_INTROSPECTION', nodeId, { node_id: nodeId, node_type: 'worker', incarnation: 1 }), credentials));
  assert.ok(response.status === 201 || response.status === 200, JSON.stringify(response.body));
}

describe('an agent over HTTP in enforce mode, with a nodes:write key', () => {
  it('announces, heartbeats (renewing its lease) and leaves with signed envelopes', async () => {
    const identity = { node_id: 'sig-1', node_type: 'worker' };
    const rotator = new SvidRotator({ registryUrl: t.url, identity, joinToken: await joinToken('worker'), logger: testLogger });
    const transport = new RecordingTransport(new HttpTransport({ registryUrl: t.url, apiKey: keys.writer, logger: testLogger }));
    const agent = new NodeAgent({
      identity,
      introspect: () => ({ capabilities: { slots: 4 }, health_status: 'healthy' }),
      transport,
      svid: rotator,
      heartbeatIntervalMs: 100,
      jitter: 0,
      leaseTtlSeconds: 30,
      logger: testLogger,
    });
    const rejectedBefore = await rejections();

    await agent.start();
    const announced = await getNode('sig-1');
    assert.equal(announced.status, 'online');
    await waitFor('three heartbeats', async () => (agent.stats.heartbeats >= 3 ? true : undefined));
    const renewed = await waitFor('the lease renewed', async () => {
      const node = await getNode('sig-1');
      return Date.parse(node.last_heartbeat) > Date.parse(announced.last_heartbeat) ? node : undefined;
    });
    assert.ok(Date.parse(renewed.lease_expires_at ?? '') > Date.parse(announced.lease_expires_at ?? ''));
    await agent.stop();

    const left = await getNode('sig-1');
    assert.equal(left.status, 'removed');
    assert.equal(left.removal_reason, 'graceful_shutdown');
    assert.deepEqual([...new Set(transport.sent.map((entry) => entry.kind))].sort(), ['heartbeat', 'introspection', 'tombstone']);
    assert.ok(transport.sent.every((entry) => entry.event.security !== undefined && entry.outcome === 'delivered'));
    assert.equal(agent.stats.heartbeatFailures, 0);
    assert.deepEqual(await rejections(), rejectedBefore);

    // The registry verified them: its writes are attributed to the node's SPIFFE ID, not to the key.
    const entries = (await audit('namespace=default')).filter((entry) => entry.node_id === 'sig-1');
    assert.deepEqual(
      entries.map((entry) => [entry.action, entry.actor, entry.decision]),
      [
        ['node.deregister', 'node:spiffe://fleet.test/node/worker/sig-1', 'allowed'],
        ['node.register', 'node:spiffe://fleet.test/node/worker/sig-1', 'allowed'],
      ],
    );
  });

  it('announces again when a signed heartbeat finds its registration gone', async () => {
    const identity = { node_id: 'sig-2', node_type: 'worker' };
    const transport = new RecordingTransport(new HttpTransport({ registryUrl: t.url, apiKey: keys.writer }));
    const agent = new NodeAgent({ identity, introspect: () => ({ capabilities: { slots: 1 } }), transport, signer: await enrol('sig-2'), heartbeatIntervalMs: 50, jitter: 0, logger: testLogger });
    await agent.start();
    try {
      const removed = await json(`${t.url}/api/v1/nodes/sig-2?reason=manual_deregistration`, { method: 'DELETE', headers: bearer(keys.admin) });
      assert.equal(removed.status, 200, JSON.stringify(removed.body));
      await waitFor('the re-announcement', async () => (transport.sent.some((entry) => entry.kind === 'introspection' && entry.event.payload.reason === 'reannounce') ? true : undefined));
      assert.ok(transport.sent.some((entry) => entry.kind === 'heartbeat' && entry.outcome === 'reannounce'));
      await waitFor('the node online again', async () => ((await getNode('sig-2')).status === 'online' ? true : undefined));
    } finally {
      await agent.stop();
    }
  });
});

describe('POST /api/v1/events refusals in enforce mode', () => {
  it('refuses an unsigned heartbeat with SIGNATURE_REQUIRED, counts and audits it, and leaves the lease alone', async () => {
    await announce('sig-3', await enrol('sig-3'));
    const before = await getNode('sig-3');
    const counted = (await rejections()).SIGNATURE_REQUIRED ?? 0;
    const unsigned = envelope('NODE_HEARTBEAT', 'sig-3', { node_id: 'sig-3', incarnation: 1 });
    await expectProblem(postEvent(unsigned), 401, 'SIGNATURE_REQUIRED');
    await expectProblem(postEvent(envelope('NODE_TOMBSTONE', 'sig-3', { node_id: 'sig-3', removal_reason: 'graceful_shutdown' })), 401, 'SIGNATURE_REQUIRED');
    assert.equal((await rejections()).SIGNATURE_REQUIRED, counted + 2);
    const after = await getNode('sig-3');
    assert.equal(after.status, 'online');
    assert.equal(after.last_heartbeat, before.last_heartbeat);

    const denied = (await audit('namespace=default&action=node.signature&decision=denied')).filter((entry) => entry.node_id === 'sig-3');
    assert.equal(denied.length, 2);
    assert.ok(denied.every((entry) => entry.reason === 'SIGNATURE_REQUIRED' && entry.actor === 'anonymous'));
  });

  it("takes a signed introspection without a namespace on /api/v1/introspection, in the key's namespace, as signed", async () => {
    const credentials = await enrol('sig-ns');
    const event = await signEnvelope(envelope('NODE_INTROSPECTION', 'sig-ns', { node_id: 'sig-ns', node_type: 'worker', incarnation: 1 }), credentials);
    const response = await json(`${t.url}/api/v1/introspection`, { body: event, headers: bearer(keys.writer) });
    assert.equal(response.status, 201, JSON.stringify(response.body));
    assert.equal(response.body.namespace, 'default');
    // Recorded as the node it was signed by, not the key that carried it.
    const registered = (await audit('namespace=default&action=node.register')).find((entry) => entry.node_id === 'sig-ns');
    assert.equal(registered?.actor, 'node:spiffe://fleet.test/node/worker/sig-ns');
  });

  it('refuses envelopes for another node signed with a valid SVID (IDENTITY_MISMATCH)', async () => {
    const victim = await enrol('sig-4');
    const intruder = await enrol('sig-5');
    await announce('sig-4', victim);
    const before = await getNode('sig-4');
    const counted = (await rejections()).IDENTITY_MISMATCH ?? 0;

    // Both the payload and the envelope name sig-4; the certificate is sig-5's.
    await expectProblem(postEvent(await signEnvelope(envelope('NODE_HEARTBEAT', 'sig-4', { node_id: 'sig-4', incarnation: 1 }), intruder)), 403, 'IDENTITY_MISMATCH');
    await expectProblem(
      postEvent(await signEnvelope(envelope('NODE_TOMBSTONE', 'sig-4', { node_id: 'sig-4', node_type: 'worker', removal_reason: 'graceful_shutdown' }), intruder)),
      403,
      'IDENTITY_MISMATCH',
    );
    await expectProblem(postEvent(await signEnvelope(envelope('NODE_INTROSPECTION', 'sig-4', { node_id: 'sig-4', node_type: 'worker', incarnation: 2 }), intruder)), 403, 'IDENTITY_MISMATCH');
    assert.equal((await rejections()).IDENTITY_MISMATCH, counted + 3);
    const after = await getNode('sig-4');
    assert.equal(after.status, 'online');
    assert.equal(after.incarnation, 1);
    assert.equal(after.last_heartbeat, before.last_heartbeat);
    const denied = (await audit('namespace=default&action=node.signature&decision=denied')).filter((entry) => entry.node_id === 'sig-4');
    assert.equal(denied.length, 3);
    assert.ok(denied.every((entry) => entry.reason === 'IDENTITY_MISMATCH' && entry.actor === 'spiffe://fleet.test/node/worker/sig-5'));

    // Its own SVID: accepted, and the answer is the renewed lease.
    const beat = await postEvent(await signEnvelope(envelope('NODE_HEARTBEAT', 'sig-4', { node_id: 'sig-4', incarnation: 1 }), victim));
    assert.equal(beat.status, 200, JSON.stringify(beat.body));
    assert.equal(beat.body.node_id, 'sig-4');
    assert.equal(typeof beat.body.lease_expires_at, 'string');
  });

  it('refuses a replayed event, a key of another namespace, and an event that is not a node event', async () => {
    const credentials = await enrol('sig-6');
    await announce('sig-6', credentials);
    const beat = await signEnvelope(envelope('NODE_HEARTBEAT', 'sig-6', { node_id: 'sig-6', incarnation: 1 }), credentials);
    assert.equal((await postEvent(beat)).status, 200);
    await expectProblem(postEvent(beat), 409, 'REPLAYED_EVENT');

    // A key of another namespace: refused when the event names the node's namespace; an event naming
    // none is taken to be in the key's namespace, where this SVID does not hold.
    const named = await signEnvelope(envelope('NODE_HEARTBEAT', 'sig-6', { node_id: 'sig-6', namespace: 'default', incarnation: 1 }), credentials);
    await expectProblem(postEvent(named, keys.elsewhere), 403, 'FORBIDDEN_NAMESPACE');
    const unnamed = await signEnvelope(envelope('NODE_HEARTBEAT', 'sig-6', { node_id: 'sig-6', incarnation: 1 }), credentials);
    await expectProblem(postEvent(unnamed, keys.elsewhere), 403, 'IDENTITY_MISMATCH');
    await expectProblem(json(`${t.url}/api/v1/events`, { body: named }), 401, 'UNAUTHENTICATED');

    await expectProblem(postEvent(envelope('TOPOLOGY_DIFF', 'sig-6', { topology_version: 1 })), 400, 'UNKNOWN_EVENT_TYPE');
    await expectProblem(postEvent({ event_type: 'NODE_HEARTBEAT', payload: {} } as unknown as Envelope), 400, 'VALIDATION_FAILED');
  });

  it('answers a tombstone with the deregistration, through the client SDK', async () => {
    const credentials = await enrol('sig-7');
    await announce('sig-7', credentials);
    const client = new RollcallClient(t.url, { apiKey: keys.writer });
    const result = await client.publishEvent(
      await signEnvelope(envelope('NODE_TOMBSTONE', 'sig-7', { node_id: 'sig-7', node_type: 'worker', incarnation: 1, removal_reason: 'maintenance' }), credentials),
    );
    assert.equal(result.event_type, 'NODE_TOMBSTONE');
    assert.equal(result.status, 'removed');
    assert.equal(result.reason, 'maintenance');
    assert.equal(result.changed, true);
    assert.equal((await getNode('sig-7')).status, 'removed');
  });
});
