// The node endpoints over real HTTP on real PostgreSQL: the DAGI flow, introspection, queries,
// deregistration, profiles, and bad input that must get a problem document and change nothing.
import { strict as assert } from 'node:assert';
import { after, before, describe, it } from 'node:test';
import { json, startTestServer, type TestServer } from '../support/server.js';
import { expectProblem } from '../support/problems.js';

let t: TestServer;
before(async () => {
  t = await startTestServer({ config: { leaseTtlSeconds: 60 } });
});
after(async () => {
  await t.close();
});

/** Topology version and every record: what must not move when a request is refused. */
async function snapshot(): Promise<unknown> {
  const nodes = await json<{ nodes: unknown[]; topology_version: number }>(`${t.url}/api/v1/nodes?limit=1000&namespace=*&status=online,offline,removed`);
  return nodes.body;
}

const seed = {
  node_id: 'orchestrator-v1_0_0-abc123',
  node_name: 'NodeBridgeOrchestrator',
  node_type: 'orchestrator',
  node_version: '1.0.0',
  capabilities: { supported_operations: ['execute_orchestration'], max_concurrent_workflows: 100, gpu: true },
  endpoints: { health: 'http://localhost:8080/health', api: 'http://localhost:8080' },
  configuration: { node_ttl_hours: 24 },
  current_state: { status: 'active', uptime_seconds: 3600, health_status: 'healthy' },
  metadata: { role: 'orchestrator', labels: ['zone-a'] },
  introspection_timestamp: '2025-10-24T12:00:00Z',
  introspection_version: '2.0.0-optimized',
  incarnation: 1000,
};

describe('DAGI registration', () => {
  let nodeId: string;

  it('registers with a generated node_id, answers 201, and serves it', async () => {
    const registered = await json<{ node_id: string; outcome: string; topology_version: number }>(`${t.url}/api/v1/nodes/register`, {
      body: { hostname: 'test', ip: '192.168.1.1', role: 'test-node', labels: ['test'] },
    });
    assert.equal(registered.status, 201);
    assert.match(registered.body.node_id, /^node-/);
    assert.equal(registered.body.outcome, 'added');
    nodeId = registered.body.node_id;
    const got = await json<{ role: string; labels: string[]; status: string; lease_expires_at: string }>(`${t.url}/api/v1/nodes/${nodeId}`);
    assert.equal(got.status, 200);
    assert.equal(got.body.role, 'test-node');
    assert.deepEqual(got.body.labels, ['test']);
    assert.equal(got.body.status, 'online');
    assert.ok(Date.parse(got.body.lease_expires_at) > Date.now() + 50_000);
  });

  it('treats an identical registration as a heartbeat and a changed one as an update', async () => {
    const same = await json<{ outcome: string }>(`${t.url}/api/v1/nodes/register`, {
      body: { node_id: nodeId, hostname: 'test', ip: '192.168.1.1', role: 'test-node', labels: ['test'] },
    });
    assert.equal(same.status, 200);
    assert.equal(same.body.outcome, 'unchanged');
    const changed = await json<{ outcome: string; topology_version: number }>(`${t.url}/api/v1/nodes/register`, {
      body: { node_id: nodeId, hostname: 'test', ip: '192.168.1.1', role: 'test-node', labels: ['test', 'gpu'] },
    });
    assert.equal(changed.body.outcome, 'updated');
    const changes = await json<{ changes: Array<{ change_type: string; changed_fields: string[]; node_id: string }> }>(`${t.url}/api/v1/topology/changes?since=${changed.body.topology_version - 1}`);
    assert.deepEqual(
      changes.body.changes.map((c) => [c.node_id, c.change_type, c.changed_fields]),
      [[nodeId, 'updated', ['labels']]],
    );
  });

  it('renews the lease on heartbeat', async () => {
    const before = await json<{ last_heartbeat: string }>(`${t.url}/api/v1/nodes/${nodeId}`);
    await new Promise((r) => setTimeout(r, 20));
    const beat = await json<{ status: string; lease_expires_at: string; last_heartbeat: string }>(`${t.url}/api/v1/nodes/heartbeat`, { body: { node_id: nodeId } });
    assert.equal(beat.status, 200);
    assert.equal(beat.body.status, 'online');
    assert.ok(Date.parse(beat.body.last_heartbeat) > Date.parse(before.body.last_heartbeat));
    const after = await json<{ last_heartbeat: string }>(`${t.url}/api/v1/nodes/${nodeId}`);
    assert.equal(after.body.last_heartbeat, beat.body.last_heartbeat);
  });

  it('writes a heartbeat that changes health as an update', async () => {
    const beat = await json(`${t.url}/api/v1/nodes/heartbeat`, { body: { node_id: nodeId, health_status: 'degraded' } });
    assert.equal(beat.status, 200);
    const got = await json<{ health_status: string }>(`${t.url}/api/v1/nodes/${nodeId}`);
    assert.equal(got.body.health_status, 'degraded');
  });

  it('deregisters with a reason, keeps the record as removed, and answers 404 for unknown nodes', async () => {
    const removed = await json<{ status: string; reason: string; changed: boolean }>(`${t.url}/api/v1/nodes/${nodeId}?reason=graceful_shutdown`, { method: 'DELETE' });
    assert.equal(removed.status, 200);
    assert.deepEqual([removed.body.status, removed.body.reason, removed.body.changed], ['removed', 'graceful_shutdown', true]);
    const again = await json<{ changed: boolean }>(`${t.url}/api/v1/nodes/${nodeId}?reason=graceful_shutdown`, { method: 'DELETE' });
    assert.equal(again.body.changed, false);
    const got = await json<{ status: string; removal_reason: string }>(`${t.url}/api/v1/nodes/${nodeId}`);
    assert.deepEqual([got.body.status, got.body.removal_reason], ['removed', 'graceful_shutdown']);
    await expectProblem(json(`${t.url}/api/v1/nodes/heartbeat`, { body: { node_id: nodeId } }), 404, 'NODE_NOT_FOUND');
    await expectProblem(json(`${t.url}/api/v1/nodes/no-such-node`, { method: 'DELETE' }), 404, 'NODE_NOT_FOUND');
  });
});

describe('introspection', () => {
  it('accepts the seeds payload bare and in an OnexEnvelopeV1', async () => {
    const bare = await json<{ status: string; registered_node_id: string; outcome: string }>(`${t.url}/api/v1/introspection`, { body: seed });
    assert.equal(bare.status, 201);
    assert.deepEqual([bare.body.status, bare.body.registered_node_id, bare.body.outcome], ['success', seed.node_id, 'added']);
    const enveloped = await json<{ outcome: string; correlation_id: string }>(`${t.url}/api/v1/introspection`, {
      body: {
        envelope_version: '1.0',
        event_id: '2f1e0c1a-0000-4000-8000-000000000001',
        event_type: 'NODE_INTROSPECTION',
        event_timestamp: '2025-10-03T10:00:00Z',
        source_node_id: seed.node_id,
        correlation_id: 'corr-1',
        payload: { ...seed, current_state: { ...seed.current_state, uptime_seconds: 3630 } },
      },
    });
    assert.equal(enveloped.status, 200);
    assert.equal(enveloped.body.outcome, 'unchanged', 'only uptime moved: a heartbeat');
    assert.equal(enveloped.body.correlation_id, 'corr-1');
  });

  it('refuses an older incarnation and changes nothing', async () => {
    const before = await snapshot();
    const problem = await expectProblem(json(`${t.url}/api/v1/introspection`, { body: { ...seed, incarnation: 999, node_version: '0.9.0' } }), 409, 'STALE_INCARNATION');
    assert.match(problem.detail, /999/);
    await expectProblem(json(`${t.url}/api/v1/nodes/heartbeat`, { body: { node_id: seed.node_id, incarnation: 999 } }), 409, 'STALE_INCARNATION');
    await expectProblem(json(`${t.url}/api/v1/nodes/${seed.node_id}?incarnation=999`, { method: 'DELETE' }), 409, 'STALE_INCARNATION');
    await expectProblem(json(`${t.url}/api/v1/nodes/heartbeat`, { body: { node_id: seed.node_id, incarnation: 1001 } }), 409, 'REGISTRATION_REQUIRED');
    assert.deepEqual(await snapshot(), before);
  });
});

describe('queries', () => {
  before(async () => {
    const bodies = [
      { node_id: 'q-gpu-1', hostname: 'g1', role: 'llm', labels: ['gpu', 'zone-a'], node_version: '1.2.0', capabilities: { gpu: true, models: ['llama', 'mistral'] } },
      { node_id: 'q-gpu-2', hostname: 'g2', role: 'llm', labels: ['gpu', 'zone-b'], node_version: '2.0.0', capabilities: { gpu: true, models: ['mistral'] } },
      { node_id: 'q-cpu-1', hostname: 'c1', role: 'worker', labels: ['zone-a'], node_version: '1.1.9', capabilities: { gpu: false } },
      { node_id: 'q-lab-1', hostname: 'l1', role: 'llm', labels: ['gpu'], namespace: 'lab', capabilities: { gpu: true } },
    ];
    for (const body of bodies) assert.equal((await json(`${t.url}/api/v1/nodes/register`, { body })).status, 201);
  });

  const ids = async (query: string): Promise<string[]> => {
    const response = await json<{ nodes: Array<{ node_id: string }> }>(`${t.url}/api/v1/nodes?${query}`);
    assert.equal(response.status, 200, JSON.stringify(response.body));
    return response.body.nodes.map((n) => n.node_id).filter((id) => id.startsWith('q-'));
  };

  it('filters by role, label, status, node_type, namespace, capability and version', async () => {
    assert.deepEqual(await ids('role=llm'), ['q-gpu-1', 'q-gpu-2']);
    assert.deepEqual(await ids('role=llm&namespace=lab'), ['q-lab-1']);
    assert.deepEqual(await ids('role=llm&namespace=*'), ['q-gpu-1', 'q-gpu-2', 'q-lab-1']);
    assert.deepEqual(await ids('label=zone-a'), ['q-cpu-1', 'q-gpu-1']);
    assert.deepEqual(await ids('label=gpu&label=zone-b'), ['q-gpu-2']);
    assert.deepEqual(await ids('label=gpu,zone-a'), ['q-gpu-1']);
    assert.deepEqual(await ids(`capability=${encodeURIComponent('{"models":["llama"]}')}`), ['q-gpu-1']);
    assert.deepEqual(await ids(`capability=${encodeURIComponent('{"gpu":true}')}&version=${encodeURIComponent('>=1.2.0')}`), ['q-gpu-1', 'q-gpu-2']);
    assert.deepEqual(await ids('version=<1.2.0&node_type=node'), ['q-cpu-1']);
    assert.deepEqual(await ids('status=offline'), []);
  });

  it('pages with limit and cursor through every node exactly once', async () => {
    const seen: string[] = [];
    let cursor: string | null = null;
    do {
      const page: { status: number; body: { nodes: Array<{ node_id: string }>; next_cursor: string | null } } = await json(
        `${t.url}/api/v1/nodes?limit=2&namespace=*&status=online,offline,removed${cursor ? `&cursor=${cursor}` : ''}`,
      );
      assert.ok(page.body.nodes.length <= 2);
      seen.push(...page.body.nodes.map((n) => n.node_id));
      cursor = page.body.next_cursor;
    } while (cursor);
    const all = await json<{ nodes: Array<{ node_id: string }> }>(`${t.url}/api/v1/nodes?limit=1000&namespace=*&status=online,offline,removed`);
    assert.deepEqual(
      seen,
      all.body.nodes.map((n) => n.node_id),
    );
    assert.equal(new Set(seen).size, seen.length);
  });
});

describe('profiles', () => {
  it('stores and serves a role profile, 404 before it exists', async () => {
    await expectProblem(json(`${t.url}/api/v1/profiles/production-router`), 404, 'PROFILE_NOT_FOUND');
    const put = await json<{ config: unknown }>(`${t.url}/api/v1/profiles/production-router`, { method: 'PUT', body: { config: { max_rps: 100, models: ['a'] } } });
    assert.equal(put.status, 200);
    const got = await json<{ role: string; config: unknown }>(`${t.url}/api/v1/profiles/production-router`);
    assert.deepEqual([got.body.role, got.body.config], ['production-router', { max_rps: 100, models: ['a'] }]);
    await expectProblem(json(`${t.url}/api/v1/profiles/production-router`, { method: 'PUT', body: { config: 'x' } }), 400, 'VALIDATION_FAILED');
  });
});

describe('bad input gets a problem document and changes nothing', () => {
  it('refuses each bad request with its stable code', async () => {
    const before = await snapshot();
    const url = `${t.url}/api/v1/nodes/register`;
    await expectProblem(json(url, { rawBody: '{"hostname": "x", "role": ' }), 400, 'MALFORMED_JSON');
    await expectProblem(json(url, { rawBody: '' }), 400, 'VALIDATION_FAILED');
    await expectProblem(json(url, { rawBody: 'hostname=x', headers: { 'content-type': 'text/plain' } }), 415, 'UNSUPPORTED_MEDIA_TYPE');
    await expectProblem(json(url, { body: { hostname: 'x', role: 'r', labels: ['a'.repeat(300)] } }), 400, 'VALIDATION_FAILED');
    await expectProblem(json(url, { body: { hostname: 'x', role: 'r', metadata: { blob: 'x'.repeat(200 * 1024) } } }), 413, 'PAYLOAD_TOO_LARGE');
    await expectProblem(json(url, { body: { hostname: 'x', role: 'r', metadata: { blob: 'x'.repeat(40 * 1024) } } }), 400, 'VALIDATION_FAILED');
    await expectProblem(json(url, { body: { hostname: 'x', role: 42 } }), 400, 'VALIDATION_FAILED');
    await expectProblem(json(url, { body: { hostname: 'x', role: 'r', incarnation: '5' } }), 400, 'VALIDATION_FAILED');
    await expectProblem(json(url, { body: { hostname: 'x', role: 'r', labels: 'gpu' } }), 400, 'VALIDATION_FAILED');
    await expectProblem(json(url, { body: { hostname: 'x', role: 'r', surprise: true } }), 400, 'VALIDATION_FAILED');
    await expectProblem(json(url, { body: { hostname: 'x', role: 'r', node_id: '../etc/passwd' } }), 400, 'VALIDATION_FAILED');
    await expectProblem(json(url, { body: [] }), 400, 'VALIDATION_FAILED');
    await expectProblem(json(`${t.url}/api/v1/introspection`, { body: { node_type: 'x' } }), 400, 'VALIDATION_FAILED');
    await expectProblem(json(`${t.url}/api/v1/introspection`, { body: { ...seed, node_id: 'oversize', capabilities: { blob: 'x'.repeat(40_000) } } }), 400, 'VALIDATION_FAILED');
    await expectProblem(json(`${t.url}/api/v1/nodes/heartbeat`, { body: { node_id: 'never-registered' } }), 404, 'NODE_NOT_FOUND');
    await expectProblem(json(`${t.url}/api/v1/nodes/heartbeat`, { body: { node_id: 42 } }), 400, 'VALIDATION_FAILED');
    await expectProblem(json(`${t.url}/api/v1/nodes/never-registered`), 404, 'NODE_NOT_FOUND');
    await expectProblem(json(`${t.url}/api/v1/nodes?limit=0`), 400, 'VALIDATION_FAILED');
    await expectProblem(json(`${t.url}/api/v1/nodes?limit=abc`), 400, 'VALIDATION_FAILED');
    await expectProblem(json(`${t.url}/api/v1/nodes?status=sleeping`), 400, 'VALIDATION_FAILED');
    await expectProblem(json(`${t.url}/api/v1/nodes?capability=notjson`), 400, 'VALIDATION_FAILED');
    await expectProblem(json(`${t.url}/api/v1/nodes?version=banana`), 400, 'VALIDATION_FAILED');
    await expectProblem(json(`${t.url}/api/v1/nodes?cursor=!!`), 400, 'VALIDATION_FAILED');
    await expectProblem(json(`${t.url}/api/v1/nodes?namespace=Bad_NS`), 400, 'VALIDATION_FAILED');
    await expectProblem(json(`${t.url}/api/v1/nodes?bogus=1`), 400, 'VALIDATION_FAILED');
    await expectProblem(json(`${t.url}/api/v1/nodes/x?reason=${encodeURIComponent('no spaces')}`, { method: 'DELETE' }), 400, 'VALIDATION_FAILED');
    await expectProblem(json(`${t.url}/api/v1/nowhere`), 404, 'ROUTE_NOT_FOUND');
    assert.deepEqual(await snapshot(), before);
  });
});

describe('service documents', () => {
  it('serves an OpenAPI document naming the DAGI endpoints', async () => {
    const doc = await json<{ openapi: string; paths: Record<string, unknown> }>(`${t.url}/openapi.json`);
    assert.equal(doc.status, 200);
    assert.match(doc.body.openapi, /^3\./);
    for (const path of [
      '/api/v1/nodes/register',
      '/api/v1/nodes/heartbeat',
      '/api/v1/nodes',
      '/api/v1/nodes/{node_id}',
      '/api/v1/profiles/{role}',
      '/api/v1/introspection',
      '/api/v1/topology',
      '/api/v1/topology/changes',
      '/api/v1/topology/stream',
      '/health',
      '/metrics',
    ]) {
      assert.ok(path in doc.body.paths, `OpenAPI lists ${path}`);
    }
  });

  it('reports health with component checks', async () => {
    const health = await json<{
      status: string;
      checks: { store: { status: string; dialect: string; target: string }; writes: { status: string; last_error: unknown }; background_tasks: { tasks: Record<string, { running: boolean }> } };
    }>(`${t.url}/health`);
    assert.equal(health.status, 200);
    assert.equal(health.body.status, 'healthy');
    assert.equal(health.body.checks.store.status, 'healthy');
    assert.equal(health.body.checks.writes.status, 'healthy');
    assert.equal(health.body.checks.writes.last_error, null);
    assert.equal(health.body.checks.store.dialect, 'postgres');
    assert.ok(health.body.checks.background_tasks.tasks.lease_sweeper?.running);
  });

  it('exposes Prometheus metrics for registrations, nodes, heartbeats, changes and memory', async () => {
    const response = await fetch(`${t.url}/metrics`);
    assert.match(response.headers.get('content-type') ?? '', /^text\/plain/);
    const text = await response.text();
    for (const metric of [
      'rollcall_registrations_total{outcome="added"}',
      'rollcall_registrations_succeeded_total',
      'rollcall_registrations_failed_total{code="STALE_INCARNATION"}',
      'rollcall_registration_duration_seconds_bucket',
      'rollcall_nodes{status="online"}',
      'rollcall_heartbeats_total{outcome="renewed"}',
      'rollcall_topology_changes_total{change_type="added"',
      'rollcall_topology_version',
      'rollcall_process_resident_memory_bytes',
    ]) {
      assert.ok(text.includes(metric), `metrics include ${metric}`);
    }
  });
});
