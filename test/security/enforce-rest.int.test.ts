// signatureMode enforce over the REST paths, on real HTTPS and PostgreSQL: a nodes:write key can no
// longer speak for nodes through DAGI register, heartbeat, DELETE or the Consul agent API (403
// NODE_IDENTITY_REQUIRED, counted, audited, nothing changed); an admin key can, audited as an
// operator; the node itself can, over mTLS with its SVID; signed envelopes still pass with any key.
import { strict as assert } from 'node:assert';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { envelope } from '../../src/domain/events.js';
import { createApiKey } from '../../src/security/api-keys.js';
import { initCaFiles } from '../../src/security/ca.js';
import { signEnvelope } from '../../src/security/signing.js';
import { startTestServer, type TestServer } from '../support/server.js';
import { TlsRegistry } from '../support/tls-registry.js';
import { tlsJson, writeServerTls, type ServerTlsFiles, type TlsClient, type TlsResponse } from '../support/test-ca.js';

interface Problem {
  code: string;
  detail: string;
  details?: Record<string, unknown>;
}

let dir: string;
let tls: ServerTlsFiles;
let t: TestServer;
let registry: TlsRegistry;
const keys = { admin: '', adminId: '', writer: '', writerId: '' };

before(async () => {
  dir = await mkdtemp(join(tmpdir(), 'rollcall-enforce-'));
  tls = await writeServerTls(dir);
  const { certFile, keyFile } = await initCaFiles(join(dir, 'ca'), 'fleet.test');
  t = await startTestServer({
    config: { tlsCertFile: tls.certFile, tlsKeyFile: tls.keyFile, caCertFile: certFile, caKeyFile: keyFile, trustDomain: 'fleet.test', signatureMode: 'enforce', rateLimitPerMinute: 100_000 },
    seed: async (store) => {
      const admin = await createApiKey(store, { scope: 'admin', namespace: '*', name: 'ops' });
      const writer = await createApiKey(store, { scope: 'nodes:write', namespace: '*', name: 'deployer' });
      Object.assign(keys, { admin: admin.token, adminId: admin.record.id, writer: writer.token, writerId: writer.record.id });
    },
  });
  registry = new TlsRegistry(t.url, tls.certificatePem, () => keys.admin);
});
after(async () => {
  await t?.close();
  await rm(dir, { recursive: true, force: true });
});

const bearer = (key: string): Record<string, string> => ({ authorization: `Bearer ${key}` });
const plain = (): TlsClient => ({ ca: tls.certificatePem });

function dagi(nodeId: string, extra: Record<string, unknown> = {}): Record<string, unknown> {
  return { node_id: nodeId, node_type: 'worker', hostname: 'host-1', role: 'worker', node_version: '1.0.0', ...extra };
}

/** As the key holder: over TLS, no client certificate. */
function asKey(key: string, path: string, init: { method?: string; body?: unknown } = {}): Promise<TlsResponse<unknown>> {
  return tlsJson(`${t.url}${path}`, plain(), { ...init, headers: bearer(key) });
}

describe('enforce mode on the REST paths', () => {
  it('refuses a nodes:write key registering, heartbeating, deleting and using the Consul agent API, says how to fix it, and changes nothing', async () => {
    assert.equal((await asKey(keys.admin, '/api/v1/nodes/register', { body: dagi('held-1') })).status, 201);
    assert.equal((await asKey(keys.admin, '/v1/agent/service/register', { method: 'PUT', body: { ID: 'held-svc', Name: 'cache', Check: { TTL: '30s' } } })).status, 200);
    const before = await registry.topologyVersion();
    const counted = await registry.denials('node_identity_required');

    const attempts: Array<[string, Promise<TlsResponse<unknown>>]> = [
      ['DAGI register of a new node', asKey(keys.writer, '/api/v1/nodes/register', { body: dagi('new-1') })],
      ['DAGI register of an existing node', asKey(keys.writer, '/api/v1/nodes/register', { body: dagi('held-1', { labels: ['hijacked'] }) })],
      ['heartbeat', asKey(keys.writer, '/api/v1/nodes/heartbeat', { body: { node_id: 'held-1', health_status: 'unhealthy' } })],
      ['DELETE', asKey(keys.writer, '/api/v1/nodes/held-1', { method: 'DELETE' })],
      ['Consul register', asKey(keys.writer, '/v1/agent/service/register', { method: 'PUT', body: { ID: 'new-svc', Name: 'cache' } })],
      ['Consul check pass', asKey(keys.writer, '/v1/agent/check/fail/service:held-svc', { method: 'PUT' })],
      ['Consul check update', asKey(keys.writer, '/v1/agent/check/update/service:held-svc', { method: 'PUT', body: { Status: 'critical' } })],
      ['Consul deregister', asKey(keys.writer, '/v1/agent/service/deregister/held-svc', { method: 'PUT' })],
    ];
    for (const [what, attempt] of attempts) {
      const response = await attempt;
      assert.equal(response.status, 403, `${what}: ${JSON.stringify(response.body)}`);
      assert.match(response.contentType, /^application\/problem\+json/);
      const problem = response.body as Problem;
      assert.equal(problem.code, 'NODE_IDENTITY_REQUIRED', what);
      assert.match(problem.detail, /POST \/api\/v1\/introspection/, what);
      assert.match(problem.detail, /mTLS with the node's SVID/, what);
      assert.match(problem.detail, /admin key/, what);
    }

    assert.equal(await registry.topologyVersion(), before);
    const held = await tlsJson<{ status: string; health_status: string; labels: string[] }>(`${t.url}/api/v1/nodes/held-1`, plain(), { headers: bearer(keys.writer) });
    assert.deepEqual([held.body.status, held.body.health_status, held.body.labels], ['online', 'healthy', []]);
    assert.equal((await asKey(keys.writer, '/api/v1/nodes/new-1')).status, 404);
    assert.equal((await asKey(keys.writer, '/api/v1/nodes/new-svc')).status, 404);
    assert.equal((await tlsJson<{ status: string }>(`${t.url}/api/v1/nodes/held-svc`, plain(), { headers: bearer(keys.writer) })).body.status, 'online');

    assert.equal(await registry.denials('node_identity_required'), counted + attempts.length);
    const refusals = (await registry.audit('action=auth.denied&decision=denied&limit=1000')).filter((entry) => entry.reason === 'node_identity_required');
    assert.equal(refusals.length, attempts.length);
    assert.ok(refusals.every((entry) => entry.actor === keys.writerId && entry.details.code === 'NODE_IDENTITY_REQUIRED'));
    assert.deepEqual(
      refusals
        .map((entry) => entry.node_id)
        .filter((id) => id !== null)
        .sort(),
      ['held-1', 'held-1', 'held-1', 'held-svc', 'new-1', 'new-svc'],
    );
  });

  it('lets an admin key write nodes, and audits it as an operator', async () => {
    assert.equal((await asKey(keys.admin, '/api/v1/nodes/register', { body: dagi('ops-1') })).status, 201);
    assert.equal((await asKey(keys.admin, '/api/v1/nodes/heartbeat', { body: { node_id: 'ops-1' } })).status, 200);
    assert.equal((await asKey(keys.admin, '/v1/agent/service/register', { method: 'PUT', body: { ID: 'ops-svc', Name: 'cache', Check: { TTL: '30s' } } })).status, 200);
    assert.equal((await asKey(keys.admin, '/v1/agent/check/pass/service:ops-svc', { method: 'PUT' })).status, 200);
    assert.equal((await asKey(keys.admin, '/v1/agent/service/deregister/ops-svc', { method: 'PUT' })).status, 200);
    const removed = await asKey(keys.admin, '/api/v1/nodes/ops-1?reason=maintenance', { method: 'DELETE' });
    assert.equal(removed.status, 200, JSON.stringify(removed.body));

    const operator = (await registry.audit('action=node.operator_write&decision=allowed&limit=1000')).filter((entry) => entry.node_id === 'ops-1' || entry.node_id === 'ops-svc');
    assert.equal(operator.length, 6);
    assert.ok(operator.every((entry) => entry.actor === keys.adminId && entry.details.credential === 'api_key'));
    assert.deepEqual(operator.map((entry) => entry.details.route).sort(), [
      '/api/v1/nodes/:node_id',
      '/api/v1/nodes/heartbeat',
      '/api/v1/nodes/register',
      '/v1/agent/check/pass/:id',
      '/v1/agent/service/deregister/:id',
      '/v1/agent/service/register',
    ]);
  });

  it('lets the node itself write over mTLS with its SVID, and only itself', async () => {
    const { client } = await registry.enrol('self-1', 'worker');
    const registered = await tlsJson(`${t.url}/api/v1/nodes/register`, client, { body: dagi('self-1') });
    assert.equal(registered.status, 201, JSON.stringify(registered.body));
    assert.equal((await tlsJson(`${t.url}/api/v1/nodes/heartbeat`, client, { body: { node_id: 'self-1' } })).status, 200);
    assert.equal((await tlsJson(`${t.url}/v1/agent/check/warn/service:self-1`, client, { method: 'PUT' })).status, 200);
    const other = await tlsJson<Problem>(`${t.url}/api/v1/nodes/held-1`, client, { method: 'DELETE' });
    assert.equal(other.status, 403);
    assert.equal(other.body.code, 'NODE_IDENTITY_MISMATCH');
    const removed = await tlsJson<{ status: string }>(`${t.url}/api/v1/nodes/self-1`, client, { method: 'DELETE' });
    assert.equal(removed.status, 200, JSON.stringify(removed.body));
    assert.equal(removed.body.status, 'removed');
  });

  it('still takes a signed envelope from any nodes:write key, and still refuses an unsigned one', async () => {
    const { credentials } = await registry.enrol('signed-1', 'worker');
    const event = await signEnvelope(envelope('NODE_INTROSPECTION', 'signed-1', { node_id: 'signed-1', node_type: 'worker', namespace: 'default' }), credentials);
    const accepted = await asKey(keys.writer, '/api/v1/introspection', { body: event });
    assert.equal(accepted.status, 201, JSON.stringify(accepted.body));
    const unsigned = await asKey(keys.writer, '/api/v1/introspection', { body: { node_id: 'signed-2', node_type: 'worker', namespace: 'default' } });
    assert.equal(unsigned.status, 401, JSON.stringify(unsigned.body));
    assert.equal((unsigned.body as Problem).code, 'SIGNATURE_REQUIRED');
  });
});
