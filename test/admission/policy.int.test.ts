// Namespace admission over real HTTP on real PostgreSQL: CEL policies (validated, versioned, denying
// when they cannot decide) and quotas; every refusal is a clear problem, a metric, an audit entry,
// and leaves the registry as it was.
import { strict as assert } from 'node:assert';
import { after, before, describe, it } from 'node:test';
import { json, startTestServer, type TestServer } from '../support/server.js';
import type { StoredAuditEntry as AuditEntry } from '../../src/store/store.js';

let t: TestServer;
before(async () => {
  t = await startTestServer({ config: { leaseTtlSeconds: 60, auditFlushMs: 20 } });
});
after(async () => {
  await t.close();
});

interface Problem {
  type: string;
  status: number;
  code: string;
  detail: string;
  details?: Record<string, unknown>;
}

const ORCHESTRATORS_AND_REDUCERS = 'node.node_type in ["orchestrator", "reducer"] && (node.node_type != "orchestrator" || node.capabilities.max_concurrent_workflows <= 100)';

function introspection(namespace: string, nodeId: string, nodeType: string, capabilities: Record<string, unknown> = {}): Record<string, unknown> {
  return { namespace, node_id: nodeId, node_type: nodeType, node_version: '1.0.0', capabilities, incarnation: 1 };
}

async function register(body: Record<string, unknown>): Promise<{ status: number; contentType: string; body: Problem & { outcome?: string } }> {
  return json(`${t.url}/api/v1/introspection`, { body });
}

async function topologyVersion(): Promise<number> {
  const nodes = await json<{ topology_version: number }>(`${t.url}/api/v1/nodes?namespace=*&limit=1`);
  return nodes.body.topology_version;
}

async function putPolicy(namespace: string, expression: string): Promise<{ status: number; body: Problem & { version?: number } }> {
  return json(`${t.url}/api/v1/namespaces/${namespace}/policy`, { method: 'PUT', body: { expression } });
}

async function metric(name: string, labels: Record<string, string>): Promise<number> {
  const text = await (await fetch(`${t.url}/metrics`)).text();
  const wanted = Object.entries(labels).map(([key, value]) => `${key}="${value}"`);
  const line = text.split('\n').find((row) => row.startsWith(`${name}{`) && wanted.every((label) => row.includes(label)));
  return line ? Number(line.split(' ').at(-1)) : 0;
}

async function audit(query: string): Promise<AuditEntry[]> {
  const response = await json<{ entries: AuditEntry[] }>(`${t.url}/api/v1/audit?${query}`);
  assert.equal(response.status, 200, JSON.stringify(response.body));
  return response.body.entries;
}

/** A refusal: the problem document, nothing in the registry, the topology version unmoved. */
async function expectRefused(namespace: string, body: Record<string, unknown>, code: string, status = 403): Promise<Problem> {
  const version = await topologyVersion();
  const response = await register(body);
  assert.equal(response.status, status, JSON.stringify(response.body));
  assert.match(response.contentType, /^application\/problem\+json/);
  assert.equal(response.body.code, code);
  assert.ok(response.body.detail.length > 0);
  const got = await json(`${t.url}/api/v1/nodes/${String(body.node_id)}?namespace=${namespace}`);
  assert.equal(got.status, 404);
  assert.equal(await topologyVersion(), version);
  return response.body;
}

describe('namespace policies', () => {
  it('refuses a policy that does not compile, or does not yield a bool, and saves nothing', async () => {
    const broken = await putPolicy('pol-invalid', 'node.node_type ==');
    assert.equal(broken.status, 400);
    assert.equal(broken.body.code, 'POLICY_INVALID');
    assert.match(broken.body.detail, /does not compile/);
    const unknown = await putPolicy('pol-invalid', 'nodes.node_type == "x"');
    assert.equal(unknown.body.code, 'POLICY_INVALID');
    assert.match(unknown.body.detail, /nodes/);
    const notBool = await putPolicy('pol-invalid', '"orchestrator"');
    assert.equal(notBool.body.code, 'POLICY_INVALID');
    assert.match(notBool.body.detail, /bool/);
    const none = await json<Problem>(`${t.url}/api/v1/namespaces/pol-invalid/policy`);
    assert.equal(none.status, 404);
    assert.equal(none.body.code, 'POLICY_NOT_FOUND');
  });

  it('admits what the policy allows and denies the rest with a 403, a metric and an audit entry', async () => {
    const saved = await putPolicy('pol', ORCHESTRATORS_AND_REDUCERS);
    assert.equal(saved.status, 200, JSON.stringify(saved.body));
    assert.equal(saved.body.version, 1);

    const allowed = await register(introspection('pol', 'orch-1', 'orchestrator', { max_concurrent_workflows: 100 }));
    assert.equal(allowed.status, 201, JSON.stringify(allowed.body));
    const reducer = await register(introspection('pol', 'reducer-1', 'reducer'));
    assert.equal(reducer.status, 201, JSON.stringify(reducer.body));

    const before = await metric('rollcall_policy_denials_total', { namespace: 'pol', reason: 'rejected' });
    const problem = await expectRefused('pol', introspection('pol', 'effect-1', 'effect'), 'POLICY_DENIED');
    assert.equal(problem.details?.policy_version, 1);
    assert.equal(problem.details?.reason, 'rejected');
    assert.match(problem.detail, /Policy version 1 of namespace pol refuses node effect-1/);
    const tooBig = await expectRefused('pol', introspection('pol', 'orch-2', 'orchestrator', { max_concurrent_workflows: 500 }), 'POLICY_DENIED');
    assert.equal(tooBig.details?.reason, 'rejected');
    assert.equal(await metric('rollcall_policy_denials_total', { namespace: 'pol', reason: 'rejected' }), before + 2);

    const denials = await audit('namespace=pol&decision=denied');
    const entry = denials.find((item) => item.node_id === 'effect-1');
    assert.ok(entry, JSON.stringify(denials));
    assert.equal(entry.action, 'node.register');
    assert.equal(entry.actor, 'anonymous');
    assert.equal(entry.details.code, 'POLICY_DENIED');
    assert.equal(entry.details.policy_version, 1);
    assert.match(entry.reason ?? '', /refuses node effect-1/);
    const admitted = await audit('namespace=pol&action=node.register&decision=allowed');
    assert.deepEqual(admitted.map((item) => item.node_id).sort(), ['orch-1', 'reducer-1']);
  });

  it('denies with the reason when the policy cannot evaluate (missing field, type error)', async () => {
    const saved = await putPolicy('pol-eval', 'node.capabilities.max_concurrent_workflows <= 10');
    assert.equal(saved.status, 200, JSON.stringify(saved.body));
    const missing = await expectRefused('pol-eval', introspection('pol-eval', 'no-field', 'orchestrator'), 'POLICY_DENIED');
    assert.equal(missing.details?.reason, 'evaluation_error');
    assert.match(missing.detail, /failed to evaluate: .*max_concurrent_workflows/);
    const wrongType = await expectRefused('pol-eval', introspection('pol-eval', 'wrong-type', 'orchestrator', { max_concurrent_workflows: 'many' }), 'POLICY_DENIED');
    assert.equal(wrongType.details?.reason, 'evaluation_error');
    assert.equal(await metric('rollcall_policy_denials_total', { namespace: 'pol-eval', reason: 'evaluation_error' }), 2);
    const fine = await register(introspection('pol-eval', 'small', 'orchestrator', { max_concurrent_workflows: 4 }));
    assert.equal(fine.status, 201, JSON.stringify(fine.body));
  });

  it('versions every save, serves each version, and applies the newest at once', async () => {
    const second = await putPolicy('pol-v', 'node.node_type == "reducer"');
    const third = await putPolicy('pol-v', 'node.node_type == "effect" && ns == "pol-v"');
    assert.equal(second.body.version, 1);
    assert.equal(third.body.version, 2);
    const versions = await json<{ versions: Array<{ version: number; expression: string; created_by: string }> }>(`${t.url}/api/v1/namespaces/pol-v/policy/versions`);
    assert.deepEqual(
      versions.body.versions.map((item) => item.version),
      [2, 1],
    );
    assert.equal(versions.body.versions[0]?.created_by, 'anonymous');
    const first = await json<{ version: number; expression: string }>(`${t.url}/api/v1/namespaces/pol-v/policy?version=1`);
    assert.equal(first.body.expression, 'node.node_type == "reducer"');
    const current = await json<{ version: number }>(`${t.url}/api/v1/namespaces/pol-v/policy`);
    assert.equal(current.body.version, 2);
    await expectRefused('pol-v', introspection('pol-v', 'reducer-x', 'reducer'), 'POLICY_DENIED');
    assert.equal((await register(introspection('pol-v', 'effect-x', 'effect'))).status, 201);
    const changes = await audit('namespace=pol-v&action=policy.update');
    assert.equal(changes.length, 2);
    assert.deepEqual(
      changes.map((item) => item.details.policy_version),
      [2, 1],
    );
  });

  it('leaves namespaces without a policy open', async () => {
    assert.equal((await register(introspection('open-ns', 'anything', 'effect'))).status, 201);
  });
});

describe('namespace quotas', () => {
  it('refuses a node past max_nodes, counting re-registrations once', async () => {
    const set = await json(`${t.url}/api/v1/namespaces/quota-a/quotas`, { method: 'PUT', body: { max_nodes: 2 } });
    assert.equal(set.status, 200, JSON.stringify(set.body));
    assert.equal((await register(introspection('quota-a', 'a1', 'effect'))).status, 201);
    assert.equal((await register(introspection('quota-a', 'a2', 'effect'))).status, 201);
    // An update of a node already counted is not a new node.
    const update = await register({ ...introspection('quota-a', 'a2', 'effect', { gpu: true }) });
    assert.equal(update.status, 200, JSON.stringify(update.body));
    const before = await metric('rollcall_quota_denials_total', { namespace: 'quota-a' });
    const problem = await expectRefused('quota-a', introspection('quota-a', 'a3', 'effect'), 'QUOTA_EXCEEDED');
    assert.equal(problem.details?.quota, 'max_nodes');
    assert.equal(problem.details?.limit, 2);
    assert.equal(await metric('rollcall_quota_denials_total', { namespace: 'quota-a' }), before + 1);
    const denied = await audit('namespace=quota-a&decision=denied');
    assert.equal(denied[0]?.node_id, 'a3');
    assert.equal(denied[0]?.details.code, 'QUOTA_EXCEEDED');
    // A removed node frees its place.
    assert.equal((await json(`${t.url}/api/v1/nodes/a1?namespace=quota-a`, { method: 'DELETE' })).status, 200);
    assert.equal((await register(introspection('quota-a', 'a3', 'effect'))).status, 201);
  });

  it('refuses a node past max_nodes_per_type, other types unaffected', async () => {
    const set = await json(`${t.url}/api/v1/namespaces/quota-b/quotas`, { method: 'PUT', body: { max_nodes_per_type: { orchestrator: 1 } } });
    assert.equal(set.status, 200, JSON.stringify(set.body));
    assert.equal((await register(introspection('quota-b', 'o1', 'orchestrator'))).status, 201);
    const problem = await expectRefused('quota-b', introspection('quota-b', 'o2', 'orchestrator'), 'QUOTA_EXCEEDED');
    assert.equal(problem.details?.quota, 'max_nodes_per_type');
    assert.equal((await register(introspection('quota-b', 'r1', 'reducer'))).status, 201);
    const got = await json<{ max_nodes: number | null; max_nodes_per_type: Record<string, number> }>(`${t.url}/api/v1/namespaces/quota-b/quotas`);
    assert.deepEqual(got.body.max_nodes_per_type, { orchestrator: 1 });
    assert.equal(got.body.max_nodes, null);
    const changes = await audit('namespace=quota-b&action=quota.update');
    assert.equal(changes.length, 1);
  });

  it('admits exactly max_nodes of a concurrent burst of new nodes, and a node sent twice at once takes one place', async () => {
    const set = await json(`${t.url}/api/v1/namespaces/quota-burst/quotas`, { method: 'PUT', body: { max_nodes: 5 } });
    assert.equal(set.status, 200, JSON.stringify(set.body));
    // Forty first registrations at once, two of each of twenty nodes: five nodes fit.
    const burst = Array.from({ length: 20 }, (_, i) => introspection('quota-burst', `b${i}`, 'compute'));
    const answers = await Promise.all([...burst, ...burst].map((body) => register(body)));
    assert.ok(
      answers.every((answer) => answer.status < 300 || answer.body.code === 'QUOTA_EXCEEDED'),
      JSON.stringify(answers.map((a) => a.status)),
    );
    const admitted = new Set(answers.flatMap((answer, i) => (answer.status < 300 ? [String(burst[i % burst.length]?.node_id)] : [])));
    const listed = await json<{ nodes: { node_id: string }[] }>(`${t.url}/api/v1/nodes?namespace=quota-burst&limit=100`);
    assert.equal(listed.body.nodes.length, 5, listed.body.nodes.map((node) => node.node_id).join(' '));
    assert.deepEqual(new Set(listed.body.nodes.map((node) => node.node_id)), admitted);
  });

  it('admits exactly max_nodes_per_type of a concurrent burst, other types unaffected', async () => {
    const set = await json(`${t.url}/api/v1/namespaces/quota-burst-type/quotas`, { method: 'PUT', body: { max_nodes_per_type: { effect: 3 } } });
    assert.equal(set.status, 200, JSON.stringify(set.body));
    const burst = Array.from({ length: 30 }, (_, i) => introspection('quota-burst-type', `t${i}`, i % 2 === 0 ? 'effect' : 'compute'));
    const answers = await Promise.all(burst.map((body) => register(body)));
    assert.ok(
      answers.every((answer) => answer.status < 300 || answer.body.code === 'QUOTA_EXCEEDED'),
      JSON.stringify(answers.map((a) => a.status)),
    );
    const listed = await json<{ nodes: { node_type: string }[] }>(`${t.url}/api/v1/nodes?namespace=quota-burst-type&limit=100`);
    assert.equal(listed.body.nodes.filter((node) => node.node_type === 'effect').length, 3);
    assert.equal(listed.body.nodes.filter((node) => node.node_type === 'compute').length, 15);
  });

  it('refuses a malformed quota document', async () => {
    const bad = await json<Problem>(`${t.url}/api/v1/namespaces/quota-c/quotas`, { method: 'PUT', body: { max_nodes: -1 } });
    assert.equal(bad.status, 400);
    assert.equal(bad.body.code, 'VALIDATION_FAILED');
  });
});
