// DeregisterCriticalServiceAfter on rollcall's Consul-compatible API, driven by the real `consul`
// client: a service whose check stays critical that long is deregistered, as Consul's agent does;
// services without it, or passing, stay. Reaping runs every 200 ms here, with no minimum.
import { strict as assert } from 'node:assert';
import { after, before, describe, it } from 'node:test';
import Consul from 'consul';
import { dueForReaping } from '../../src/api/consul/consul-model.js';
import type { NodeRecord } from '../../src/domain/node.js';
import { pollUntil } from '../support/processes.js';
import { json, startTestServer, type TestServer } from '../support/server.js';

interface NodeBody {
  status: string;
  removal_reason: string | null;
}

describe('DeregisterCriticalServiceAfter', () => {
  let t: TestServer;
  let consul: Consul;

  before(async () => {
    t = await startTestServer({ config: { sweepIntervalMs: 100, heartbeatFlushMs: 100, consulApiReapIntervalMs: 200, consulApiDeregisterMinMs: 0 } });
    const url = new URL(t.url);
    consul = new Consul({ host: url.hostname, port: Number(url.port) });
  });
  after(async () => {
    consul.destroy();
    await t.close();
  });

  const node = async (id: string): Promise<NodeBody> => (await json<NodeBody>(`${t.url}/api/v1/nodes/${id}`)).body;
  const catalogIds = async (service: string): Promise<string[]> => (await json<Array<{ ServiceID: string }>>(`${t.url}/v1/catalog/service/${service}`)).body.map((entry) => entry.ServiceID).sort();

  it('deregisters a service whose failing check stayed critical past it, and keeps passing ones and ones without it', async () => {
    const register = (id: string, check: Record<string, string>): Promise<unknown> =>
      consul.agent.service.register({ name: 'reaped-api', id, address: '10.3.0.1', port: 80, check: { ttl: '60s', status: 'passing', ...check } });
    await register('fails', { deregistercriticalserviceafter: '1s' });
    await register('passes', { deregistercriticalserviceafter: '1s' });
    await register('fails-without', {});
    assert.deepEqual(await catalogIds('reaped-api'), ['fails', 'fails-without', 'passes']);

    const failedAt = Date.now();
    await consul.agent.check.fail('service:fails');
    await consul.agent.check.fail('service:fails-without');
    const gone = await pollUntil(
      () => node('fails'),
      (body) => body.status === 'removed',
      { timeoutMs: 10_000, what: 'the failing service to be deregistered' },
    );
    assert.ok(Date.now() - failedAt >= 1000, 'not before its check was critical for 1 s');
    assert.equal(gone.removal_reason, 'deregister_critical_service');
    assert.deepEqual(await catalogIds('reaped-api'), ['fails-without', 'passes']);
    assert.equal((await node('passes')).status, 'online');
    assert.equal((await node('fails-without')).status, 'online');
    // The topology stream tells followers why it left.
    const changes = (await json<{ changes: Array<{ node_id: string; change_type: string; reason: string }> }>(`${t.url}/api/v1/topology/changes?since=0`)).body.changes;
    assert.deepEqual(
      changes
        .filter((change) => change.node_id === 'fails')
        .map((change) => [change.change_type, change.reason])
        .at(-1),
      ['removed', 'deregister_critical_service'],
    );
  });

  it('deregisters a service whose TTL ran out and stayed out past it', async () => {
    await consul.agent.service.register({ name: 'lapsing-api', id: 'lapses', address: '10.3.0.2', port: 80, check: { ttl: '1s', status: 'passing', deregistercriticalserviceafter: '1s' } });
    const offline = await pollUntil(
      () => node('lapses'),
      (body) => body.status !== 'online',
      { timeoutMs: 10_000, what: 'the lease to lapse' },
    );
    assert.equal(offline.status, 'offline');
    const gone = await pollUntil(
      () => node('lapses'),
      (body) => body.status === 'removed',
      { timeoutMs: 10_000, what: 'the lapsed service to be deregistered' },
    );
    assert.equal(gone.removal_reason, 'deregister_critical_service');
    assert.deepEqual(await catalogIds('lapsing-api'), []);
  });
});

describe('dueForReaping', () => {
  const now = Date.parse('2026-11-23T12:00:00.000Z');
  const record = (fields: Partial<NodeRecord>, after?: string): NodeRecord => ({
    namespace: 'default',
    node_id: 'svc-1',
    node_name: 'svc',
    node_type: 'svc',
    node_version: '0.0.0',
    hostname: null,
    ip: null,
    role: null,
    labels: [],
    capabilities: {},
    endpoints: {},
    configuration: {},
    current_state: {},
    metadata: {
      consul: {
        service: 'svc',
        tags: [],
        meta: {},
        address: '',
        port: 0,
        agent: 'a',
        checks: [{ CheckID: 'service:svc-1', Name: 'c', Type: 'ttl', TTL: '10s', ...(after ? { DeregisterCriticalServiceAfter: after } : {}) }],
      },
    },
    health_status: 'healthy',
    incarnation: 0,
    lease_ttl_ms: 10_000,
    status: 'online',
    content_hash: 'h',
    registered_at: '2026-11-23T11:00:00.000Z',
    updated_at: '2026-11-23T11:58:00.000Z',
    last_heartbeat: '2026-11-23T11:58:00.000Z',
    removed_at: null,
    removal_reason: null,
    ...fields,
  });
  it('is due once critical (unhealthy, or offline) for the longer of its own limit and the minimum', () => {
    const failing = record({ health_status: 'unhealthy', updated_at: '2026-11-23T11:59:30.000Z' }, '10s');
    assert.equal(dueForReaping(failing, now, 0), true, '30 s critical, limit 10 s');
    assert.equal(dueForReaping(failing, now, 60_000), false, "Consul's one-minute minimum");
    assert.equal(dueForReaping(failing, now + 30_000, 60_000), true);
    const lapsed = record({ status: 'offline', removed_at: '2026-11-23T11:59:55.000Z', updated_at: '2026-11-23T11:59:55.000Z' }, '10s');
    assert.equal(dueForReaping(lapsed, now, 0), false, '5 s offline');
    assert.equal(dueForReaping(lapsed, now + 5_000, 0), true);
  });
  it('is never due while passing, without the setting, or for a node that is not a Consul service', () => {
    assert.equal(dueForReaping(record({}, '1s'), now, 0), false);
    assert.equal(dueForReaping(record({ health_status: 'unhealthy' }), now, 0), false);
    assert.equal(dueForReaping(record({ health_status: 'unhealthy', metadata: {} }), now, 0), false);
    assert.equal(dueForReaping(record({ health_status: 'degraded' }, '1s'), now, 0), false, 'a warning is not critical');
  });
});
