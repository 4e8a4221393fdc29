// Every door that writes a node (DAGI REST, introspection, events, the Consul agent API and the Kafka
// intake) writes it as the node that proved itself: by its SVID over mTLS, or by the signature of its
// envelope. The same node through every door gives the same record, the same audit actor and the same
// policy decision; a CEL policy sees `identity.spiffe_id` on every door. Real PostgreSQL, real HTTPS,
// real Kafka.
import { strict as assert } from 'node:assert';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { envelope, type TopicNames } from '../../src/domain/events.js';
import type { Envelope } from '../../src/domain/schemas.js';
import { createApiKey } from '../../src/security/api-keys.js';
import { initCaFiles } from '../../src/security/ca.js';
import { signEnvelope } from '../../src/security/signing.js';
import { openStore } from '../../src/store/open-store.js';
import { requireKafka, testTopics } from '../support/kafka.js';
import { kcatProduce } from '../support/kcat.js';
import { createTestDatabase, type TestDatabase } from '../support/postgres.js';
import { PATIENCE_MS, pollUntil } from '../support/processes.js';
import { startTestServer, type TestServer } from '../support/server.js';
import { tlsJson, writeServerTls, type TlsClient } from '../support/test-ca.js';
import { TlsRegistry, type AuditEntry, type EnrolledNode } from '../support/tls-registry.js';

const TRUST_DOMAIN = 'fleet.test';
const NAMESPACE = 'doors';
const NODE_TYPE = 'worker';

let dir: string;
let database: TestDatabase;
let t: TestServer;
let registry: TlsRegistry;
let topics: TopicNames;
let serverCa: string;
const keys = { admin: '', writer: '', writerId: '' };

const spiffeIdOf = (nodeId: string): string => `spiffe://${TRUST_DOMAIN}/node/${NODE_TYPE}/${nodeId}`;
const bearer = (key: string): Record<string, string> => ({ authorization: `Bearer ${key}` });
/** A client without a certificate, trusting the server's. */
const plain = (): TlsClient => ({ ca: serverCa });

async function signed(type: string, nodeId: string, payload: Record<string, unknown>, node: EnrolledNode): Promise<Envelope> {
  return signEnvelope(envelope(type, nodeId, { node_id: nodeId, node_type: NODE_TYPE, namespace: NAMESPACE, ...payload }), node.credentials);
}

function introspectionPayload(nodeId: string): Record<string, unknown> {
  return { node_version: '1.0.0', capabilities: { door: true }, endpoints: { health: `http://${nodeId}:8053/health` } };
}

interface Door {
  name: string;
  /** Registers `nodeId` through the door; resolves with the HTTP status, or null for the bus (no answer). */
  register(nodeId: string, node: EnrolledNode): Promise<number | null>;
  /** Deregisters it through the door (null: the door has no deregistration). */
  deregister: ((nodeId: string, node: EnrolledNode) => Promise<number | null>) | null;
}

/** The same node announced through every door: as itself over mTLS, or as its signed envelope. */
const DOORS: Door[] = [
  {
    name: 'DAGI REST over mTLS',
    register: async (nodeId, node) =>
      (await tlsJson(`${t.url}/api/v1/nodes/register`, node.client, { body: { node_id: nodeId, role: NODE_TYPE, hostname: nodeId, node_version: '1.0.0', namespace: NAMESPACE } })).status,
    deregister: async (nodeId, node) => (await tlsJson(`${t.url}/api/v1/nodes/${nodeId}?namespace=${NAMESPACE}`, node.client, { method: 'DELETE' })).status,
  },
  {
    name: 'signed introspection (REST, API key)',
    register: async (nodeId, node) =>
      (await tlsJson(`${t.url}/api/v1/introspection`, plain(), { body: await signed('NODE_INTROSPECTION', nodeId, introspectionPayload(nodeId), node), headers: bearer(keys.writer) })).status,
    deregister: null,
  },
  {
    name: 'signed events (REST, API key)',
    register: async (nodeId, node) =>
      (await tlsJson(`${t.url}/api/v1/events`, plain(), { body: await signed('NODE_INTROSPECTION', nodeId, introspectionPayload(nodeId), node), headers: bearer(keys.writer) })).status,
    deregister: async (nodeId, node) =>
      (await tlsJson(`${t.url}/api/v1/events`, plain(), { body: await signed('NODE_TOMBSTONE', nodeId, { removal_reason: 'graceful_shutdown' }, node), headers: bearer(keys.writer) })).status,
  },
  {
    name: 'Consul agent API over mTLS',
    register: async (nodeId, node) => (await tlsJson(`${t.url}/v1/agent/service/register?ns=${NAMESPACE}`, node.client, { method: 'PUT', body: { ID: nodeId, Name: NODE_TYPE, Port: 8080 } })).status,
    deregister: async (nodeId, node) => (await tlsJson(`${t.url}/v1/agent/service/deregister/${nodeId}?ns=${NAMESPACE}`, node.client, { method: 'PUT' })).status,
  },
  {
    name: 'Kafka intake (signed envelope)',
    register: async (nodeId, node) => {
      await kcatProduce(topics.introspection, nodeId, JSON.stringify(await signed('NODE_INTROSPECTION', nodeId, introspectionPayload(nodeId), node)));
      return null;
    },
    deregister: async (nodeId, node) => {
      await kcatProduce(topics.tombstone, nodeId, JSON.stringify(await signed('NODE_TOMBSTONE', nodeId, { removal_reason: 'graceful_shutdown' }, node)));
      return null;
    },
  },
];

/** One node id per door and test: a new node, so every registration is content-changing and admitted. */
const nodeIdOf = (door: Door, tag: string): string => `${tag}-${DOORS.indexOf(door)}`;

interface NodeView {
  node_id: string;
  namespace: string;
  node_type: string;
  status: string;
}

async function nodeOf(nodeId: string): Promise<NodeView | null> {
  const got = await tlsJson<NodeView>(`${t.url}/api/v1/nodes/${nodeId}?namespace=${NAMESPACE}`, plain(), { headers: bearer(keys.admin) });
  return got.status === 200 ? got.body : null;
}

/** The audit entry of `action` for the node (allowed or denied), once the audit log has written it. */
async function auditOf(nodeId: string, action: string): Promise<AuditEntry> {
  const entries = await pollUntil(
    () => registry.audit(`namespace=${NAMESPACE}&action=${action}&limit=1000`),
    (found) => found.some((entry) => entry.node_id === nodeId),
    { timeoutMs: PATIENCE_MS, what: `the ${action} audit entry of ${nodeId}` },
  );
  return entries.find((entry) => entry.node_id === nodeId) as AuditEntry;
}

/** What became of a registration through a door: its answer, the record, and who the audit log says wrote or was refused. */
interface Seen {
  status: number | null;
  record: Omit<NodeView, 'status'> | null;
  decision: string;
  actor: string;
  code: string | null;
  /** After the door's deregistration: its answer, the audit actor, and the record's status. */
  deregistered?: { status: number | null; actor: string; record: string | null };
}

async function registerThrough(door: Door, nodeId: string, node: EnrolledNode): Promise<Seen> {
  const status = await door.register(nodeId, node);
  const entry = await auditOf(nodeId, 'node.register');
  const record = await nodeOf(nodeId);
  return {
    status: status === null ? null : status === 201 ? 200 : status,
    record: record === null ? null : { node_id: record.node_id, namespace: record.namespace, node_type: record.node_type },
    decision: entry.decision,
    actor: entry.actor,
    code: typeof entry.details.code === 'string' ? entry.details.code : null,
  };
}

/** The table of what every door did, by door name, to compare with what it should have done. */
async function table(tag: string, through: (door: Door, nodeId: string, node: EnrolledNode) => Promise<Seen>): Promise<{ seen: Record<string, Seen>; ids: Record<string, string> }> {
  const seen: Record<string, Seen> = {};
  const ids: Record<string, string> = {};
  for (const door of DOORS) {
    const nodeId = nodeIdOf(door, tag);
    ids[door.name] = nodeId;
    seen[door.name] = await through(door, nodeId, await registry.enrol(nodeId, NODE_TYPE, NAMESPACE));
  }
  return { seen, ids };
}

async function setPolicy(expression: string): Promise<void> {
  const saved = await tlsJson(`${t.url}/api/v1/namespaces/${NAMESPACE}/policy`, plain(), { method: 'PUT', body: { expression }, headers: bearer(keys.admin) });
  assert.equal(saved.status, 200, JSON.stringify(saved.body));
}

before(async () => {
  await requireKafka();
  const kafka = testTopics();
  topics = kafka.topics;
  dir = await mkdtemp(join(tmpdir(), 'rollcall-doors-'));
  const tls = await writeServerTls(dir);
  serverCa = tls.certificatePem;
  const created = await initCaFiles(join(dir, 'ca'), TRUST_DOMAIN);
  database = await createTestDatabase();
  const store = await openStore({ kind: 'postgres', url: database.url });
  await store.migrate();
  keys.admin = (await createApiKey(store, { scope: 'admin', namespace: '*', name: 'ops' })).token;
  const writer = await createApiKey(store, { scope: 'nodes:write', namespace: NAMESPACE, name: 'relay' });
  keys.writer = writer.token;
  keys.writerId = writer.record.id;
  await store.close();
  // Permissive: unsigned events are still taken (anonymously); signed ones are checked and name their node.
  t = await startTestServer({
    database,
    config: {
      ...kafka.config,
      tlsCertFile: tls.certFile,
      tlsKeyFile: tls.keyFile,
      caCertFile: created.certFile,
      caKeyFile: created.keyFile,
      trustDomain: TRUST_DOMAIN,
      signatureMode: 'permissive',
      rateLimitPerMinute: 100_000,
      auditFlushMs: 20,
    },
  });
  registry = new TlsRegistry(t.url, serverCa, () => keys.admin);
});
after(async () => {
  await t?.close();
  await rm(dir, { recursive: true, force: true });
});

describe('one intake seam: every door writes as the node that proved itself', () => {
  it('gives the same record and the same audit actor on every door, registering and deregistering', async () => {
    await setPolicy('true');
    const { seen, ids } = await table('same', async (door, nodeId, node) => {
      const registered = await registerThrough(door, nodeId, node);
      if (door.deregister === null) return registered;
      const status = await door.deregister(nodeId, node);
      const entry = await auditOf(nodeId, 'node.deregister');
      return { ...registered, deregistered: { status, actor: entry.actor, record: (await nodeOf(nodeId))?.status ?? null } };
    });
    const expected = Object.fromEntries(
      DOORS.map((door) => {
        const nodeId = ids[door.name] as string;
        const registered: Seen = {
          status: door.name.startsWith('Kafka') ? null : 200,
          record: { node_id: nodeId, namespace: NAMESPACE, node_type: NODE_TYPE },
          decision: 'allowed',
          actor: `node:${spiffeIdOf(nodeId)}`,
          code: null,
        };
        if (door.deregister === null) return [door.name, registered];
        return [door.name, { ...registered, deregistered: { status: door.name.startsWith('Kafka') ? null : 200, actor: `node:${spiffeIdOf(nodeId)}`, record: 'removed' } }];
      }),
    );
    assert.deepEqual(seen, expected);
  });

  it('lets a policy on identity.spiffe_id admit on every door', async () => {
    // Admits exactly the node itself: an empty identity refuses.
    await setPolicy(`has(identity.spiffe_id) && identity.spiffe_id == "spiffe://${TRUST_DOMAIN}/node/" + node.node_type + "/" + node.node_id`);
    const { seen, ids } = await table('admitted', registerThrough);
    const expected = Object.fromEntries(
      DOORS.map((door) => {
        const nodeId = ids[door.name] as string;
        const admitted: Seen = {
          status: door.name.startsWith('Kafka') ? null : 200,
          record: { node_id: nodeId, namespace: NAMESPACE, node_type: NODE_TYPE },
          decision: 'allowed',
          actor: `node:${spiffeIdOf(nodeId)}`,
          code: null,
        };
        return [door.name, admitted];
      }),
    );
    assert.deepEqual(seen, expected);
  });

  it('lets a policy refusing the SPIFFE id refuse on every door', async () => {
    await setPolicy(`!(has(identity.spiffe_id) && identity.spiffe_id.startsWith("spiffe://${TRUST_DOMAIN}/node/${NODE_TYPE}/refused-"))`);
    const { seen, ids } = await table('refused', registerThrough);
    const expected = Object.fromEntries(
      DOORS.map((door) => {
        const nodeId = ids[door.name] as string;
        const refused: Seen = { status: door.name.startsWith('Kafka') ? null : 403, record: null, decision: 'denied', actor: `node:${spiffeIdOf(nodeId)}`, code: 'POLICY_DENIED' };
        return [door.name, refused];
      }),
    );
    assert.deepEqual(seen, expected);
  });

  it('writes as the credential, or as nobody, where no node proves itself', async () => {
    await setPolicy('has(identity.spiffe_id)');
    // The Consul agent API with an API key: the key is the writer; no node identity, so the policy refuses.
    const keyed = await tlsJson(`${t.url}/v1/agent/service/register?ns=${NAMESPACE}`, plain(), { method: 'PUT', body: { ID: 'keyed-1', Name: NODE_TYPE }, headers: bearer(keys.writer) });
    // An unsigned event on the bus (permissive): anonymous, as before, and refused likewise.
    const unsigned = envelope('NODE_INTROSPECTION', 'unsigned-1', { node_id: 'unsigned-1', node_type: NODE_TYPE, namespace: NAMESPACE, ...introspectionPayload('unsigned-1') });
    await kcatProduce(topics.introspection, 'unsigned-1', JSON.stringify(unsigned));
    const seen = await Promise.all(['keyed-1', 'unsigned-1'].map(async (nodeId) => auditOf(nodeId, 'node.register')));
    assert.deepEqual(
      [keyed.status, ...seen.map((entry) => [entry.decision, entry.actor, entry.details.code])],
      [403, ['denied', keys.writerId, 'POLICY_DENIED'], ['denied', 'anonymous', 'POLICY_DENIED']],
    );
  });
});
