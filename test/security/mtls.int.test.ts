// mTLS over real HTTPS on real PostgreSQL: a node enrolled with the registry's CA connects with its
// SVID as client certificate and is a principal of its own, bound to its node. It registers,
// heartbeats and deregisters itself (DAGI and Consul agent API); naming another node is refused
// with NODE_IDENTITY_MISMATCH, counted, audited, and changes nothing. Certificates of a foreign CA,
// expired or revoked are refused with 401; `require` refuses a client without one.
import { strict as assert } from 'node:assert';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { createApiKey } from '../../src/security/api-keys.js';
import { initCaFiles, nodeSpiffeId, type CertificateAuthority } from '../../src/security/ca.js';
import { RollcallError } from '../../src/domain/errors.js';
import { envelope } from '../../src/domain/events.js';
import { makeCsr } from './ca-support.js';
import { serverForSuite, startTestServer, type TestServer } from '../support/server.js';
import { TlsRegistry } from '../support/tls-registry.js';
import { createTestCa, privateKeyPem, tlsJson, writeServerTls, type ServerTlsFiles, type TlsClient, type TlsResponse } from '../support/test-ca.js';
import { assertProblem } from '../support/problems.js';

const TRUST_DOMAIN = 'fleet.test';
const HOUR = 3_600_000;

let dir: string;
let tls: ServerTlsFiles;
let ca: CertificateAuthority;
let caFiles: { certFile: string; keyFile: string };
let t: TestServer;
let registry: TlsRegistry;
const keys = { admin: '', writer: '' };

before(async () => {
  dir = await mkdtemp(join(tmpdir(), 'rollcall-mtls-'));
  tls = await writeServerTls(dir);
  const created = await initCaFiles(join(dir, 'ca'), TRUST_DOMAIN);
  ca = created.ca;
  caFiles = { certFile: created.certFile, keyFile: created.keyFile };
  // tlsClientAuth is not set: TLS plus a CA make it optional.
  t = await startTestServer({
    config: { tlsCertFile: tls.certFile, tlsKeyFile: tls.keyFile, caCertFile: caFiles.certFile, caKeyFile: caFiles.keyFile, trustDomain: TRUST_DOMAIN, rateLimitPerMinute: 100_000 },
    seed: async (store) => {
      keys.admin = (await createApiKey(store, { scope: 'admin', namespace: '*', name: 'ops' })).token;
      keys.writer = (await createApiKey(store, { scope: 'nodes:write', namespace: 'default', name: 'deployer' })).token;
    },
  });
  registry = new TlsRegistry(t.url, tls.certificatePem, () => keys.admin);
});
after(async () => {
  await t?.close();
  await rm(dir, { recursive: true, force: true });
});

const bearer = (key: string): Record<string, string> => ({ authorization: `Bearer ${key}` });
/** A client without a certificate, trusting the server's. */
const plain = (): TlsClient => ({ ca: tls.certificatePem });

/** An SVID straight from the CA, for certificates enrolment would not hand out (expired ones). */
async function issue(nodeId: string, nodeType: string, options: { namespace?: string; now?: Date; ttlSeconds?: number } = {}): Promise<TlsClient> {
  const { pem, keys: pair } = await makeCsr();
  const issued = await ca.issue(pem, nodeSpiffeId(TRUST_DOMAIN, nodeType, nodeId), options.ttlSeconds ?? 3600, {
    namespace: options.namespace ?? 'default',
    ...(options.now ? { now: options.now } : {}),
  });
  return { ca: tls.certificatePem, cert: issued.certificate, key: privateKeyPem(pair.privateKey) };
}

/** A node enrolled over TLS, as the client it connects with (and its serial). */
async function enrol(nodeId: string, nodeType: string, namespace = 'default'): Promise<TlsClient & { serial: string }> {
  const node = await registry.enrol(nodeId, nodeType, namespace);
  return { ...node.client, serial: node.serial };
}

function dagi(extra: Record<string, unknown> = {}): Record<string, unknown> {
  return { hostname: 'host-1', role: 'worker', node_version: '1.0.0', ...extra };
}

describe('mTLS: a node authenticated by its SVID', () => {
  it('registers, heartbeats and deregisters itself', async () => {
    const node = await enrol('worker-1', 'worker');
    // node_id and node_type default to the SVID's, as the namespace does.
    const registered = await tlsJson<{ node_id: string; namespace: string; outcome: string }>(`${t.url}/api/v1/nodes/register`, node, { body: dagi() });
    assert.equal(registered.status, 201, JSON.stringify(registered.body));
    assert.equal(registered.body.node_id, 'worker-1');
    assert.equal(registered.body.namespace, 'default');

    const read = await tlsJson<{ node_type: string; status: string }>(`${t.url}/api/v1/nodes/worker-1`, node);
    assert.equal(read.status, 200, JSON.stringify(read.body));
    assert.equal(read.body.node_type, 'worker');
    assert.equal(read.body.status, 'online');

    const again = await tlsJson<{ outcome: string }>(`${t.url}/api/v1/nodes/register`, node, { body: dagi({ node_id: 'worker-1', node_type: 'worker', namespace: 'default', labels: ['gpu'] }) });
    assert.equal(again.status, 200, JSON.stringify(again.body));

    const heartbeat = await tlsJson(`${t.url}/api/v1/nodes/heartbeat`, node, { body: { node_id: 'worker-1', health_status: 'degraded' } });
    assert.equal(heartbeat.status, 200, JSON.stringify(heartbeat.body));
    assert.equal((await tlsJson<{ health_status: string }>(`${t.url}/api/v1/nodes/worker-1`, node)).body.health_status, 'degraded');
    const event = await tlsJson(`${t.url}/api/v1/events`, node, { body: envelope('NODE_HEARTBEAT', 'worker-1', { node_id: 'worker-1', health_status: 'healthy' }) });
    assert.equal(event.status, 200, JSON.stringify(event.body));

    const removed = await tlsJson<{ status: string; reason: string }>(`${t.url}/api/v1/nodes/worker-1?reason=graceful_shutdown`, node, { method: 'DELETE' });
    assert.equal(removed.status, 200, JSON.stringify(removed.body));
    assert.equal(removed.body.status, 'removed');
    assert.equal(removed.body.reason, 'graceful_shutdown');
  });

  it('registers its Consul service, passes its check and deregisters it', async () => {
    const node = await enrol('cache-1', 'cache');
    const registered = await tlsJson(`${t.url}/v1/agent/service/register`, node, { method: 'PUT', body: { ID: 'cache-1', Name: 'cache', Port: 6379, Check: { TTL: '30s' } } });
    assert.equal(registered.status, 200, JSON.stringify(registered.body));
    assert.equal((await tlsJson(`${t.url}/v1/agent/check/pass/service:cache-1`, node, { method: 'PUT' })).status, 200);
    assert.equal((await tlsJson<{ health_status: string }>(`${t.url}/api/v1/nodes/cache-1`, node)).body.health_status, 'healthy');
    assert.equal((await tlsJson(`${t.url}/v1/agent/check/update/service:cache-1`, node, { method: 'PUT', body: { Status: 'warning', Output: 'slow' } })).status, 200);
    assert.equal((await tlsJson(`${t.url}/v1/agent/service/deregister/cache-1`, node, { method: 'PUT' })).status, 200);
    assert.equal((await tlsJson<{ status: string }>(`${t.url}/api/v1/nodes/cache-1`, node)).body.status, 'removed');
  });

  it('refuses the SVID naming another node with NODE_IDENTITY_MISMATCH, audits and counts it, and changes nothing', async () => {
    const other = await tlsJson(`${t.url}/api/v1/nodes/register`, plain(), { body: dagi({ node_id: 'worker-2', node_type: 'worker' }), headers: bearer(keys.admin) });
    assert.equal(other.status, 201, JSON.stringify(other.body));
    assert.equal(
      (await tlsJson(`${t.url}/v1/agent/service/register`, plain(), { method: 'PUT', body: { ID: 'cache-2', Name: 'cache', Check: { TTL: '30s' } }, headers: bearer(keys.admin) })).status,
      200,
    );
    const node = await enrol('worker-3', 'worker');
    assert.equal((await tlsJson(`${t.url}/api/v1/nodes/register`, node, { body: dagi() })).status, 201);
    const before = await registry.topologyVersion();
    const counted = await registry.denials('node_identity');

    const attempts: Array<[string, Promise<TlsResponse<unknown>>]> = [
      ['register another node_id', tlsJson(`${t.url}/api/v1/nodes/register`, node, { body: dagi({ node_id: 'worker-2' }) })],
      ['register its id with another node_type', tlsJson(`${t.url}/api/v1/nodes/register`, node, { body: dagi({ node_id: 'worker-3', node_type: 'router' }) })],
      ['heartbeat another node', tlsJson(`${t.url}/api/v1/nodes/heartbeat`, node, { body: { node_id: 'worker-2' } })],
      ['deregister another node', tlsJson(`${t.url}/api/v1/nodes/worker-2`, node, { method: 'DELETE' })],
      ['introspection of another node', tlsJson(`${t.url}/api/v1/introspection`, node, { body: { node_id: 'worker-2', node_type: 'worker' } })],
      ['Consul register of another service', tlsJson(`${t.url}/v1/agent/service/register`, node, { method: 'PUT', body: { ID: 'worker-2', Name: 'worker' } })],
      ['Consul deregister of another service', tlsJson(`${t.url}/v1/agent/service/deregister/cache-2`, node, { method: 'PUT' })],
      ['Consul check of another service', tlsJson(`${t.url}/v1/agent/check/pass/service:cache-2`, node, { method: 'PUT' })],
      ['heartbeat event of another node', tlsJson(`${t.url}/api/v1/events`, node, { body: envelope('NODE_HEARTBEAT', 'worker-2', { node_id: 'worker-2', health_status: 'unhealthy' }) })],
      ['tombstone event of another node', tlsJson(`${t.url}/api/v1/events`, node, { body: envelope('NODE_TOMBSTONE', 'worker-2', { node_id: 'worker-2', node_type: 'worker' }) })],
      ["a write that is no node's", tlsJson(`${t.url}/api/v1/profiles/worker`, node, { method: 'PUT', body: { config: { replicas: 3 } } })],
    ];
    for (const [what, attempt] of attempts) {
      const problem = assertProblem(await attempt, 403, 'NODE_IDENTITY_MISMATCH');
      assert.match(problem.detail, /spiffe:\/\/fleet\.test\/node\/worker\/worker-3/, what);
    }
    // Another namespace is refused by the namespace rule, as for a namespaced key.
    assertProblem(await tlsJson(`${t.url}/api/v1/nodes/register`, node, { body: dagi({ namespace: 'other' }) }), 403, 'FORBIDDEN_NAMESPACE');

    assert.equal(await registry.topologyVersion(), before);
    const worker2 = await tlsJson<{ status: string; health_status: string }>(`${t.url}/api/v1/nodes/worker-2`, node);
    assert.deepEqual([worker2.body.status, worker2.body.health_status], ['online', 'healthy']);
    assert.equal((await tlsJson<{ status: string }>(`${t.url}/api/v1/nodes/cache-2`, node)).body.status, 'online');
    assert.equal((await tlsJson(`${t.url}/api/v1/profiles/worker`, node)).status, 404);

    assert.equal(await registry.denials('node_identity'), counted + attempts.length);
    const entries = (await registry.audit('action=auth.denied&decision=denied&limit=1000')).filter((entry) => entry.reason === 'node_identity');
    const mine = entries.filter((entry) => entry.actor === 'spiffe://fleet.test/node/worker/worker-3');
    assert.equal(mine.length, attempts.length);
    assert.ok(mine.some((entry) => entry.node_id === 'worker-2' && entry.namespace === 'default' && entry.details.code === 'NODE_IDENTITY_MISMATCH'));
    assert.ok(mine.some((entry) => entry.node_id === 'cache-2'));
  });

  it('reads like a nodes:read key of its namespace', async () => {
    const node = await enrol('reader-1', 'worker', 'blue');
    const list = await tlsJson<{ nodes: unknown[] }>(`${t.url}/api/v1/nodes`, node);
    assert.equal(list.status, 200, JSON.stringify(list.body));
    assertProblem(await tlsJson(`${t.url}/api/v1/nodes?namespace=default`, node), 403, 'FORBIDDEN_NAMESPACE');
    assertProblem(await tlsJson(`${t.url}/api/v1/admin/keys`, node), 403, 'FORBIDDEN_SCOPE');
    const registered = await tlsJson<{ namespace: string }>(`${t.url}/api/v1/nodes/register`, node, { body: dagi() });
    assert.equal(registered.status, 201, JSON.stringify(registered.body));
    assert.equal(registered.body.namespace, 'blue');
  });
});

describe('mTLS: bad client certificates', () => {
  it('refuses a certificate of a foreign CA, an expired one and a revoked one with 401, and counts and audits them', async () => {
    const before = { invalid: await registry.denials('certificate_invalid'), expired: await registry.denials('certificate_expired'), revoked: await registry.denials('certificate_revoked') };

    const foreignCa = await createTestCa(TRUST_DOMAIN);
    const foreignSvid = await foreignCa.issue({ nodeType: 'worker', nodeId: 'worker-1', namespace: 'default' });
    const foreign: TlsClient = { ca: tls.certificatePem, cert: foreignSvid.certificatePem, key: privateKeyPem(foreignSvid.privateKey) };
    assert.equal(assertProblem(await tlsJson(`${t.url}/api/v1/nodes`, foreign), 401, 'SVID_INVALID').details?.reason, 'untrusted_issuer');
    assertProblem(await tlsJson(`${t.url}/api/v1/nodes/register`, foreign, { body: dagi() }), 401, 'SVID_INVALID');
    // A bad certificate is refused even next to a valid key.
    assertProblem(await tlsJson(`${t.url}/api/v1/nodes`, foreign, { headers: bearer(keys.admin) }), 401, 'SVID_INVALID');

    const expired = await issue('worker-old', 'worker', { now: new Date(Date.now() - 2 * HOUR), ttlSeconds: 60 });
    const expiredProblem = assertProblem(await tlsJson(`${t.url}/api/v1/nodes`, expired), 401, 'SVID_EXPIRED');
    assert.match(expiredProblem.detail, /client certificate/);
    assert.equal(expiredProblem.details?.reason, 'expired');

    const revokedNode = await enrol('worker-revoked', 'worker');
    assert.equal((await tlsJson(`${t.url}/api/v1/nodes`, revokedNode)).status, 200);
    const revocation = await tlsJson(`${t.url}/api/v1/identity/revocations`, plain(), { body: { serial: revokedNode.serial, reason: 'key_compromise' }, headers: bearer(keys.admin) });
    assert.equal(revocation.status, 201, JSON.stringify(revocation.body));
    // A new connection is checked afresh.
    assertProblem(await tlsJson(`${t.url}/api/v1/nodes/register`, revokedNode, { body: dagi() }), 401, 'SVID_REVOKED');
    assertProblem(await tlsJson(`${t.url}/api/v1/nodes/worker-revoked`, plain(), { headers: bearer(keys.admin) }), 404, 'NODE_NOT_FOUND');

    // Public endpoints look at no credential.
    assert.equal((await tlsJson(`${t.url}/health`, foreign)).status, 200);

    assert.equal(await registry.denials('certificate_invalid'), before.invalid + 3);
    assert.equal(await registry.denials('certificate_expired'), before.expired + 1);
    assert.equal(await registry.denials('certificate_revoked'), before.revoked + 1);
    const reasons = (await registry.audit('action=auth.denied&decision=denied&limit=1000')).map((entry) => entry.reason);
    for (const reason of ['certificate_invalid', 'certificate_expired', 'certificate_revoked']) assert.ok(reasons.includes(reason), reason);
  });

  it('without a certificate: API keys work as before, and nothing is anonymous', async () => {
    const missing = assertProblem(await tlsJson(`${t.url}/api/v1/nodes`, plain()), 401, 'UNAUTHENTICATED');
    assert.match(missing.detail, /mTLS/);
    assert.equal((await tlsJson(`${t.url}/health`, plain())).status, 200);
    // Outside enforce mode a nodes:write key still writes any node of its namespace.
    const registered = await tlsJson(`${t.url}/api/v1/nodes/register`, plain(), { body: dagi({ node_id: 'keyed-1' }), headers: bearer(keys.writer) });
    assert.equal(registered.status, 201, JSON.stringify(registered.body));
  });
});

describe('mTLS: require', () => {
  const strict = serverForSuite(() => ({
    store: 'pglite',
    config: {
      dataDir: 'memory://',
      tlsCertFile: tls.certFile,
      tlsKeyFile: tls.keyFile,
      caCertFile: caFiles.certFile,
      caKeyFile: caFiles.keyFile,
      trustDomain: TRUST_DOMAIN,
      tlsClientAuth: 'require',
    },
  }));

  it('refuses a client without a certificate, and serves one with its SVID', async () => {
    const problem = assertProblem(await tlsJson(`${strict.url}/api/v1/nodes`, plain()), 401, 'CLIENT_CERTIFICATE_REQUIRED');
    assert.match(problem.detail, /client certificate/);
    assertProblem(await tlsJson(`${strict.url}/api/v1/nodes/register`, plain(), { body: dagi({ node_id: 'x' }) }), 401, 'CLIENT_CERTIFICATE_REQUIRED');
    assert.equal((await tlsJson(`${strict.url}/health`, plain())).status, 200);

    const node = await issue('edge-1', 'edge');
    assert.equal((await tlsJson(`${strict.url}/api/v1/nodes`, node)).status, 200);
    const registered = await tlsJson<{ node_id: string }>(`${strict.url}/api/v1/nodes/register`, node, { body: dagi() });
    assert.equal(registered.status, 201, JSON.stringify(registered.body));
    assert.equal(registered.body.node_id, 'edge-1');
  });
});

describe('mTLS: configuration', () => {
  it('counts client certificates as authentication for a non-loopback listener', async () => {
    const open = await startTestServer({
      store: 'pglite',
      config: { host: '0.0.0.0', dataDir: 'memory://', tlsCertFile: tls.certFile, tlsKeyFile: tls.keyFile, caCertFile: caFiles.certFile, caKeyFile: caFiles.keyFile, trustDomain: TRUST_DOMAIN },
    });
    await open.close();
    await assert.rejects(
      startTestServer({
        store: 'pglite',
        config: {
          host: '0.0.0.0',
          dataDir: 'memory://',
          tlsCertFile: tls.certFile,
          tlsKeyFile: tls.keyFile,
          caCertFile: caFiles.certFile,
          caKeyFile: caFiles.keyFile,
          trustDomain: TRUST_DOMAIN,
          tlsClientAuth: 'off',
        },
      }),
      (error: unknown) => error instanceof RollcallError && error.code === 'CONFIG_INVALID' && error.details?.field === 'host',
    );
  });
});
