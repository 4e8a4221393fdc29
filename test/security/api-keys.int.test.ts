// API authentication and namespace isolation over real HTTP on real PostgreSQL: the attacks of issue 6
// (no key, unknown and revoked keys, a read-only key writing, a key of one namespace reaching into
// another, a burst above the rate limit) each get a problem document, a metric and no change.
import { strict as assert } from 'node:assert';
import { createHash } from 'node:crypto';
import { before, describe, it } from 'node:test';
import pg from 'pg';
import { createApiKey } from '../../src/security/api-keys.js';
import { openStore } from '../../src/store/open-store.js';
import { databaseOf, json, serverForSuite, startTestServer } from '../support/server.js';
import { expectProblem, type Problem } from '../support/problems.js';

const keys = { admin: '', alphaWriter: '', alphaReader: '', betaWriter: '' };
const t = serverForSuite({
  config: { rateLimitPerMinute: 100_000 },
  seed: async (store) => {
    keys.admin = (await createApiKey(store, { scope: 'admin', namespace: '*', name: 'root' })).token;
    keys.alphaWriter = (await createApiKey(store, { scope: 'nodes:write', namespace: 'alpha' })).token;
    keys.alphaReader = (await createApiKey(store, { scope: 'nodes:read', namespace: 'alpha' })).token;
    keys.betaWriter = (await createApiKey(store, { scope: 'nodes:write', namespace: 'beta' })).token;
  },
});

const bearer = (key: string): Record<string, string> => ({ authorization: `Bearer ${key}` });

function dagi(nodeId: string, extra: Record<string, unknown> = {}): Record<string, unknown> {
  return { node_id: nodeId, hostname: 'host', node_type: 'worker', node_version: '1.0.0', role: 'worker', ...extra };
}

/** Every record of every namespace with the topology version: what a refusal must leave alone. */
async function everything(): Promise<unknown> {
  const response = await json(`${t.url}/api/v1/nodes?namespace=*&limit=1000&status=online,offline,removed`, { headers: bearer(keys.admin) });
  assert.equal(response.status, 200);
  return response.body;
}

async function denials(): Promise<Record<string, number>> {
  const text = await (await fetch(`${t.url}/metrics`, { headers: bearer(keys.admin) })).text();
  const counts: Record<string, number> = {};
  for (const match of text.matchAll(/^rollcall_auth_denials_total\{reason="(\w+)"\} (\d+)/gm)) counts[match[1] as string] = Number(match[2]);
  return counts;
}

describe('authentication', () => {
  it('refuses a request without a key once keys exist, with WWW-Authenticate', async () => {
    const response = await fetch(`${t.url}/api/v1/nodes`);
    assert.equal(response.status, 401);
    assert.match(response.headers.get('www-authenticate') ?? '', /^Bearer/);
    assert.equal(((await response.json()) as Problem).code, 'UNAUTHENTICATED');
    await expectProblem(json(`${t.url}/api/v1/nodes/register`, { body: dagi('anon-1') }), 401, 'UNAUTHENTICATED');
  });

  it('keeps /health open for probes', async () => {
    assert.equal((await fetch(`${t.url}/health`)).status, 200);
  });

  it('refuses unknown and malformed keys', async () => {
    const forged = keys.alphaWriter.slice(0, -4) + 'AAAA';
    await expectProblem(json(`${t.url}/api/v1/nodes`, { headers: bearer(forged) }), 401, 'UNAUTHENTICATED');
    await expectProblem(json(`${t.url}/api/v1/nodes`, { headers: bearer('not-a-key') }), 401, 'UNAUTHENTICATED');
    await expectProblem(json(`${t.url}/api/v1/nodes`, { headers: { authorization: 'Basic abc' } }), 401, 'UNAUTHENTICATED');
  });
});

describe('scopes', () => {
  it('refuses a read-only key registering, and writes nothing', async () => {
    const before = await everything();
    const seen = await denials();
    await expectProblem(json(`${t.url}/api/v1/nodes/register`, { body: dagi('reader-1'), headers: bearer(keys.alphaReader) }), 403, 'FORBIDDEN_SCOPE');
    await expectProblem(json(`${t.url}/api/v1/nodes/reader-1?namespace=alpha`, { method: 'DELETE', headers: bearer(keys.alphaReader) }), 403, 'FORBIDDEN_SCOPE');
    await expectProblem(json(`${t.url}/api/v1/admin/keys`, { headers: bearer(keys.alphaWriter) }), 403, 'FORBIDDEN_SCOPE');
    assert.deepEqual(await everything(), before);
    assert.equal((await denials()).scope, (seen.scope ?? 0) + 3);
  });

  it('records refusals in the audit log, read with an admin key', async () => {
    await expectProblem(json(`${t.url}/api/v1/nodes/register`, { body: dagi('reader-2'), headers: bearer(keys.alphaReader) }), 403, 'FORBIDDEN_SCOPE');
    const audit = await json<{ entries: Array<{ actor: string; namespace: string | null; decision: string; reason: string | null }> }>(
      `${t.url}/api/v1/audit?action=auth.denied&decision=denied&namespace=alpha`,
      { headers: bearer(keys.admin) },
    );
    assert.equal(audit.status, 200, JSON.stringify(audit.body));
    const readerId = keys.alphaReader.split('_')[1];
    assert.ok(
      audit.body.entries.some((entry) => entry.actor === readerId && entry.reason === 'scope' && entry.namespace === 'alpha'),
      JSON.stringify(audit.body),
    );
  });
});

describe('namespaces', () => {
  before(async () => {
    assert.equal((await json(`${t.url}/api/v1/nodes/register`, { body: dagi('a-1'), headers: bearer(keys.alphaWriter) })).status, 201);
    assert.equal((await json(`${t.url}/api/v1/nodes/register`, { body: dagi('b-1'), headers: bearer(keys.betaWriter) })).status, 201);
  });

  it("writes default to the key's namespace", async () => {
    const a = await json<{ namespace: string }>(`${t.url}/api/v1/nodes/a-1?namespace=alpha`, { headers: bearer(keys.alphaReader) });
    assert.equal(a.status, 200);
    assert.equal(a.body.namespace, 'alpha');
    const b = await json<{ namespace: string }>(`${t.url}/api/v1/nodes/b-1?namespace=beta`, { headers: bearer(keys.admin) });
    assert.equal(b.body.namespace, 'beta');
    const introspected = await json<{ namespace: string }>(`${t.url}/api/v1/introspection`, {
      body: { node_id: 'a-2', node_type: 'effect', node_version: '1.0.0', capabilities: {} },
      headers: bearer(keys.alphaWriter),
    });
    assert.equal(introspected.status, 201, JSON.stringify(introspected.body));
    assert.equal(introspected.body.namespace, 'alpha');
  });

  it('refuses a key of namespace alpha writing into beta, and changes nothing', async () => {
    const before = await everything();
    const seen = await denials();
    const headers = bearer(keys.alphaWriter);
    await expectProblem(json(`${t.url}/api/v1/nodes/register`, { body: dagi('b-1', { namespace: 'beta', role: 'hijacked' }), headers }), 403, 'FORBIDDEN_NAMESPACE');
    await expectProblem(json(`${t.url}/api/v1/nodes/heartbeat`, { body: { node_id: 'b-1', namespace: 'beta' }, headers }), 403, 'FORBIDDEN_NAMESPACE');
    await expectProblem(json(`${t.url}/api/v1/nodes/b-1?namespace=beta`, { method: 'DELETE', headers }), 403, 'FORBIDDEN_NAMESPACE');
    await expectProblem(json(`${t.url}/api/v1/introspection`, { body: { node_id: 'b-1', node_type: 'effect', node_version: '1.0.0', namespace: 'beta' }, headers }), 403, 'FORBIDDEN_NAMESPACE');
    await expectProblem(
      json(`${t.url}/api/v1/introspection`, {
        body: {
          envelope_version: '1.0',
          event_id: '00000000-0000-4000-8000-000000000001',
          event_type: 'NODE_INTROSPECTION',
          timestamp: new Date().toISOString(),
          source_service: 'x',
          payload: { node_id: 'b-1', node_type: 'effect', node_version: '1.0.0', metadata: { namespace: 'beta' } },
        },
        headers,
      }),
      403,
      'FORBIDDEN_NAMESPACE',
    );
    await expectProblem(json(`${t.url}/v1/agent/service/deregister/b-1?ns=beta`, { method: 'PUT', headers }), 403, 'FORBIDDEN_NAMESPACE');
    // Without a namespace, a delete of beta's node looks in alpha and finds nothing there.
    await expectProblem(json(`${t.url}/api/v1/nodes/b-1`, { method: 'DELETE', headers }), 404, 'NODE_NOT_FOUND');
    assert.deepEqual(await everything(), before);
    assert.ok(((await denials()).namespace ?? 0) >= (seen.namespace ?? 0) + 6);
  });

  it("refuses reads naming another namespace and filters lists to the key's own", async () => {
    const headers = bearer(keys.alphaReader);
    await expectProblem(json(`${t.url}/api/v1/nodes?namespace=beta`, { headers }), 403, 'FORBIDDEN_NAMESPACE');
    await expectProblem(json(`${t.url}/api/v1/nodes/b-1?namespace=beta`, { headers }), 403, 'FORBIDDEN_NAMESPACE');
    await expectProblem(json(`${t.url}/api/v1/topology?namespace=beta`, { headers }), 403, 'FORBIDDEN_NAMESPACE');
    await expectProblem(json(`${t.url}/api/v1/topology/changes?since=0&namespace=beta`, { headers }), 403, 'FORBIDDEN_NAMESPACE');
    await expectProblem(json(`${t.url}/metrics`, { headers }), 403, 'FORBIDDEN_NAMESPACE');
    await expectProblem(json(`${t.url}/api/v1/nodes/b-1`, { headers }), 404, 'NODE_NOT_FOUND');

    const namespacesOf = (nodes: Array<{ namespace: string }>): string[] => [...new Set(nodes.map((node) => node.namespace))];
    const all = await json<{ nodes: Array<{ namespace: string }> }>(`${t.url}/api/v1/nodes?namespace=*`, { headers });
    assert.deepEqual(namespacesOf(all.body.nodes), ['alpha']);
    const plain = await json<{ nodes: Array<{ namespace: string }> }>(`${t.url}/api/v1/nodes`, { headers });
    assert.deepEqual(namespacesOf(plain.body.nodes), ['alpha']);
    const topology = await json<{ nodes: Array<{ namespace: string }> }>(`${t.url}/api/v1/topology`, { headers });
    assert.deepEqual(namespacesOf(topology.body.nodes), ['alpha']);
    const changes = await json<{ changes: Array<{ namespace: string }> }>(`${t.url}/api/v1/topology/changes?since=0`, { headers });
    assert.ok(changes.body.changes.length > 0);
    assert.deepEqual([...new Set(changes.body.changes.map((change) => change.namespace))], ['alpha']);
    const sd = await json<Array<{ labels: Record<string, string> }>>(`${t.url}/api/v1/sd/prometheus?namespace=*`, { headers });
    assert.equal(sd.status, 200);
    assert.ok(sd.body.every((group) => group.labels.__meta_rollcall_namespace === 'alpha'));
    // The admin of every namespace sees both.
    const admin = await json<{ nodes: Array<{ namespace: string }> }>(`${t.url}/api/v1/nodes?namespace=*`, { headers: bearer(keys.admin) });
    assert.deepEqual(namespacesOf(admin.body.nodes).sort(), ['alpha', 'beta', 'default']);
  });

  it("filters the topology stream to the key's namespace", async () => {
    const controller = new AbortController();
    const response = await fetch(`${t.url}/api/v1/topology/stream?since=0`, { headers: bearer(keys.alphaReader), signal: controller.signal });
    assert.equal(response.status, 200);
    const reader = (response.body as ReadableStream<Uint8Array>).getReader();
    let text = '';
    const deadline = Date.now() + 5000;
    while (!text.includes('a-2') && Date.now() < deadline) {
      const { value, done } = await reader.read();
      if (done) break;
      text += new TextDecoder().decode(value);
    }
    controller.abort();
    assert.match(text, /"node_id":"a-1"/);
    assert.doesNotMatch(text, /"namespace":"beta"/);
    assert.doesNotMatch(text, /"namespace":"default"/);
  });
});

describe('consul API', () => {
  it('accepts X-Consul-Token and ?token= mapped to the same keys, filtered by namespace', async () => {
    const byHeader = await json<Record<string, unknown>>(`${t.url}/v1/agent/services`, { headers: { 'x-consul-token': keys.alphaReader } });
    assert.equal(byHeader.status, 200);
    assert.deepEqual(Object.keys(byHeader.body).sort(), ['a-1', 'a-2']);
    const byQuery = await json<Record<string, unknown>>(`${t.url}/v1/agent/services?token=${encodeURIComponent(keys.alphaReader)}`);
    assert.deepEqual(Object.keys(byQuery.body).sort(), ['a-1', 'a-2']);
    await expectProblem(json(`${t.url}/v1/agent/services`), 401, 'UNAUTHENTICATED');
    await expectProblem(json(`${t.url}/v1/agent/services?ns=beta`, { headers: { 'x-consul-token': keys.alphaReader } }), 403, 'FORBIDDEN_NAMESPACE');
    await expectProblem(json(`${t.url}/v1/catalog/service/worker?ns=beta`, { headers: { 'x-consul-token': keys.alphaReader } }), 403, 'FORBIDDEN_NAMESPACE');
    const catalog = await json<Array<{ ServiceID: string }>>(`${t.url}/v1/catalog/service/worker`, { headers: { 'x-consul-token': keys.alphaReader } });
    assert.deepEqual(
      catalog.body.map((entry) => entry.ServiceID),
      ['a-1'],
    );
  });
});

describe('key administration', () => {
  it('creates a key shown once, lists it without its secret, stores it hashed, and revokes it', async () => {
    const created = await json<{ id: string; key: string; scope: string; namespace: string }>(`${t.url}/api/v1/admin/keys`, {
      body: { scope: 'nodes:read', namespace: 'alpha', name: 'dashboard' },
      headers: bearer(keys.admin),
    });
    assert.equal(created.status, 201, JSON.stringify(created.body));
    assert.match(created.body.key, new RegExp(`^rk_${created.body.id}_`));
    assert.equal(created.body.namespace, 'alpha');

    const listed = await json<{ keys: Array<Record<string, unknown>> }>(`${t.url}/api/v1/admin/keys`, { headers: bearer(keys.admin) });
    const entry = listed.body.keys.find((key) => key.id === created.body.id);
    assert.ok(entry);
    assert.equal(entry.name, 'dashboard');
    assert.ok(!('key' in entry) && !('secret_hash' in entry));
    assert.ok(!JSON.stringify(listed.body).includes(created.body.key.slice(-43)));

    const client = new pg.Client({ connectionString: databaseOf(t).url });
    await client.connect();
    const row = (await client.query<{ secret_hash: string }>('SELECT secret_hash FROM api_keys WHERE id = $1', [created.body.id])).rows[0];
    await client.end();
    const secret = created.body.key.slice(`rk_${created.body.id}_`.length);
    assert.equal(row?.secret_hash, createHash('sha256').update(secret).digest('hex'));
    assert.ok(!row.secret_hash.includes(secret));

    assert.equal((await json(`${t.url}/api/v1/nodes?namespace=alpha`, { headers: bearer(created.body.key) })).status, 200);
    const revoked = await json<{ revoked_at: string | null }>(`${t.url}/api/v1/admin/keys/${created.body.id}`, { method: 'DELETE', headers: bearer(keys.admin) });
    assert.equal(revoked.status, 200);
    assert.ok(revoked.body.revoked_at);
    const refused = await expectProblem(json(`${t.url}/api/v1/nodes?namespace=alpha`, { headers: bearer(created.body.key) }), 401, 'UNAUTHENTICATED');
    assert.match(refused.detail, /revoked/);
    assert.ok(((await denials()).revoked ?? 0) >= 1);
  });

  it('keeps a namespaced admin inside its namespace', async () => {
    const created = await json<{ key: string }>(`${t.url}/api/v1/admin/keys`, { body: { scope: 'admin', namespace: 'alpha' }, headers: bearer(keys.admin) });
    const alphaAdmin = bearer(created.body.key);
    await expectProblem(json(`${t.url}/api/v1/admin/keys`, { body: { scope: 'admin', namespace: 'beta' }, headers: alphaAdmin }), 403, 'FORBIDDEN_NAMESPACE');
    await expectProblem(json(`${t.url}/api/v1/admin/keys`, { body: { scope: 'admin', namespace: '*' }, headers: alphaAdmin }), 403, 'FORBIDDEN_NAMESPACE');
    const listed = await json<{ keys: Array<{ namespace: string }> }>(`${t.url}/api/v1/admin/keys`, { headers: alphaAdmin });
    assert.ok(listed.body.keys.every((key) => key.namespace === 'alpha'));
  });
});

describe('rate limits', () => {
  it('answers a burst above the per-key limit with a 429 problem document', async () => {
    const limited = await startTestServer({ database: databaseOf(t), config: { rateLimitPerMinute: 5, rateLimitAnonymousPerMinute: 3 } });
    try {
      const statuses: number[] = [];
      for (let i = 0; i < 8; i += 1) statuses.push((await fetch(`${limited.url}/api/v1/nodes?namespace=alpha`, { headers: bearer(keys.alphaReader) })).status);
      assert.deepEqual(statuses, [200, 200, 200, 200, 200, 429, 429, 429]);
      const response = await fetch(`${limited.url}/api/v1/nodes?namespace=alpha`, { headers: bearer(keys.alphaReader) });
      assert.equal(response.status, 429);
      assert.match(response.headers.get('content-type') ?? '', /^application\/problem\+json/);
      assert.ok(Number(response.headers.get('retry-after')) > 0);
      assert.equal(((await response.json()) as Problem).code, 'RATE_LIMITED');
      // Another key has its own budget; callers without a key are limited per address.
      assert.equal((await fetch(`${limited.url}/api/v1/nodes?namespace=beta`, { headers: bearer(keys.betaWriter) })).status, 200);
      const anonymous: number[] = [];
      for (let i = 0; i < 5; i += 1) anonymous.push((await fetch(`${limited.url}/api/v1/nodes`)).status);
      assert.deepEqual(anonymous, [401, 401, 401, 429, 429]);
      const metrics = await (await fetch(`${limited.url}/metrics`, { headers: bearer(keys.admin) })).text();
      assert.match(metrics, /rollcall_auth_denials_total\{reason="rate_limited"\} [1-9]/);
    } finally {
      await limited.stop();
    }
    // Audited without a row per refused request: the reader's first 429 as it happened, and at the
    // stop one summary counting the other three.
    const store = await openStore({ kind: 'postgres', url: databaseOf(t).url });
    try {
      const limitedEntries = (await store.queryAudit({ action: 'auth.denied', decision: 'denied', limit: 1000 })).filter(
        (entry) => entry.reason === 'rate_limited' && entry.details.route === '/api/v1/nodes' && !String(entry.actor).startsWith('address:'),
      );
      assert.equal(limitedEntries.length, 2, JSON.stringify(limitedEntries));
      assert.deepEqual(limitedEntries.map((entry) => entry.details.repeated ?? 0).sort(), [0, 3]);
    } finally {
      await store.close();
    }
  });
});
