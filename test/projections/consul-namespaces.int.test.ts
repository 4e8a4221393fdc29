// The Consul projection scoped by namespace: nodes with one node_id in two namespaces become two
// services (IDs `<namespace>~<node_id>` outside the default namespace, names prefixed by namespace)
// that register, renew and leave on their own, and the reconciler judges each service against its own
// namespace. With Consul Enterprise namespaces each rollcall namespace goes to the Consul namespace
// of its name (`ns`), against a recording Consul and against a second rollcall instance.
import { strict as assert } from 'node:assert';
import { after, before, describe, it } from 'node:test';
import { FakeConsul, type FakeService } from '../support/fake-consul.js';
import { waitFor } from '../support/processes.js';
import { json, startTestServer, type TestServer } from '../support/server.js';

async function register(url: string, body: Record<string, unknown>): Promise<void> {
  const response = await json(`${url}/api/v1/nodes/register`, { body: { hostname: 'host-a', role: 'worker', node_type: 'tool', ...body } });
  assert.ok(response.status === 200 || response.status === 201, JSON.stringify(response.body));
}

async function heartbeat(url: string, nodeId: string, namespace: string): Promise<void> {
  const response = await json(`${url}/api/v1/nodes/heartbeat`, { body: { node_id: nodeId, namespace } });
  assert.equal(response.status, 200, JSON.stringify(response.body));
}

async function remove(url: string, nodeId: string, namespace: string): Promise<void> {
  const response = await json(`${url}/api/v1/nodes/${nodeId}?namespace=${namespace}`, { method: 'DELETE' });
  assert.equal(response.status, 200, JSON.stringify(response.body));
}

/** Resolves once the sink has finished `count` more reconciliations than when called. */
async function reconciliations(url: string, count: number): Promise<void> {
  const at = async (): Promise<string | undefined> => (await json<{ checks: { consul: { last_reconcile: { at: string } | null } } }>(`${url}/health`)).body.checks.consul.last_reconcile?.at;
  let last = await at();
  for (let seen = 0; seen < count; seen++) {
    last = await waitFor(`reconciliation ${seen + 1} of ${count}`, async () => {
      const now = await at();
      return now !== undefined && now !== last ? now : undefined;
    });
  }
}

const ghost = (id: string, namespace: string): FakeService => ({ ID: id, Service: 'tool', Tags: ['rollcall'], Meta: { managed_by: 'rollcall', namespace }, Address: '10.9.9.9', Port: 1 });

describe('consul projection of namespaces in one Consul namespace', () => {
  const consul = new FakeConsul();
  let t: TestServer;
  before(async () => {
    await consul.listen();
    t = await startTestServer({ config: { consulAddr: consul.url, consulReconcileIntervalMs: 300, consulRenewIntervalMs: 50, sweepIntervalMs: 100 } });
  });
  after(async () => {
    await t.close();
    await consul.close();
  });

  it('gives one node_id in two namespaces two services with distinct IDs, names and checks', async () => {
    await register(t.url, { node_id: 'worker-1', lease_ttl_seconds: 60, ip: '10.0.0.1' });
    await register(t.url, { node_id: 'worker-1', namespace: 'beta', lease_ttl_seconds: 60, ip: '10.0.0.2' });
    await waitFor('both in consul', async () => (consul.services.has('worker-1') && consul.services.has('beta~worker-1') ? true : undefined));
    const home = consul.services.get('worker-1');
    const beta = consul.services.get('beta~worker-1');
    assert.equal(home?.Service, 'tool');
    assert.equal(home.Address, '10.0.0.1');
    assert.equal(home.Meta.namespace, 'default');
    assert.equal(beta?.Service, 'beta-tool');
    assert.equal(beta.Address, '10.0.0.2');
    assert.equal(beta.Meta.namespace, 'beta');
    const [body] = consul.registrationsOf('beta~worker-1');
    assert.equal((body?.Check as { CheckID?: string } | undefined)?.CheckID, 'service:beta~worker-1');
    // One Consul namespace: rollcall never sends `ns`, which open-source Consul refuses.
    assert.ok(consul.requests.every((r) => r.ns === undefined));
  });

  it('passes the TTL check of the namespaced service on its heartbeats', async () => {
    await waitFor('a pass of the beta node', async () => {
      await heartbeat(t.url, 'worker-1', 'beta');
      return (consul.passes.get('service:beta~worker-1') ?? 0) >= 1 ? true : undefined;
    });
  });

  it("deregisters one namespace's node and leaves the other's", async () => {
    await remove(t.url, 'worker-1', 'beta');
    await waitFor('beta node gone', async () => (consul.services.has('beta~worker-1') ? undefined : true));
    await reconciliations(t.url, 2);
    assert.ok(consul.services.has('worker-1'));
    assert.equal(consul.deregistrationsOf('worker-1'), 0);
  });

  it('reconciles each service against its own namespace', async () => {
    await register(t.url, { node_id: 'worker-1', namespace: 'beta', lease_ttl_seconds: 60, ip: '10.0.0.2' });
    await register(t.url, { node_id: 'only-beta', namespace: 'beta', lease_ttl_seconds: 60, ip: '10.0.0.3' });
    await waitFor('beta nodes in consul', async () => (consul.services.has('beta~worker-1') && consul.services.has('beta~only-beta') ? true : undefined));
    await remove(t.url, 'worker-1', 'default');
    await waitFor('default worker-1 gone', async () => (consul.services.has('worker-1') ? undefined : true));
    // Stale for their own namespace though their node_id is online in another: a beta service of a
    // node beta does not have, and a default-namespace service of a node only beta has.
    consul.services.set('beta~gone', ghost('beta~gone', 'beta'));
    consul.services.set('only-beta', ghost('only-beta', 'default'));
    // A service from before IDs were scoped (plain ID, beta meta) whose node the default namespace has not.
    consul.services.set('worker-1', ghost('worker-1', 'beta'));
    await waitFor('stale services removed', async () => (['beta~gone', 'only-beta', 'worker-1'].some((id) => consul.services.has(id)) ? undefined : true));
    await reconciliations(t.url, 2);
    assert.ok(consul.services.has('beta~worker-1'), "beta's worker-1 survives the removal of default's");
    assert.ok(consul.services.has('beta~only-beta'));
    assert.equal(consul.deregistrationsOf('beta~worker-1'), 1, 'only the tombstone of the earlier test');
    assert.equal(consul.deregistrationsOf('beta~only-beta'), 0);
  });
});

describe('consul projection into Consul Enterprise namespaces', () => {
  const consul = new FakeConsul();
  let t: TestServer;
  before(async () => {
    await consul.listen();
    t = await startTestServer({ config: { consulAddr: consul.url, consulNamespaces: 'enterprise', consulReconcileIntervalMs: 300, consulRenewIntervalMs: 50, sweepIntervalMs: 100 } });
  });
  after(async () => {
    await t.close();
    await consul.close();
  });

  it("registers each namespace's node in the Consul namespace of its name, with the plain node_id", async () => {
    await register(t.url, { node_id: 'worker-1', lease_ttl_seconds: 60, ip: '10.0.0.1' });
    await register(t.url, { node_id: 'worker-1', namespace: 'beta', lease_ttl_seconds: 60, ip: '10.0.0.2' });
    await waitFor('both in consul', async () => (consul.servicesIn('default').has('worker-1') && consul.servicesIn('beta').has('worker-1') ? true : undefined));
    assert.equal(consul.servicesIn('default').get('worker-1')?.Address, '10.0.0.1');
    assert.equal(consul.servicesIn('beta').get('worker-1')?.Address, '10.0.0.2');
    assert.equal(consul.servicesIn('beta').get('worker-1')?.Service, 'tool');
    assert.equal(consul.servicesIn('beta').get('worker-1')?.Meta.namespace, 'beta');
    const registrations = consul.requests.filter((r) => r.pathname === '/v1/agent/service/register' && (r.body as { ID?: string }).ID === 'worker-1');
    assert.deepEqual([...new Set(registrations.map((r) => r.ns))].sort(), ['beta', 'default']);
  });

  it('sends ns with TTL passes and deregistrations, and lists each namespace it projects', async () => {
    await waitFor('a pass in beta', async () => {
      await heartbeat(t.url, 'worker-1', 'beta');
      return (consul.passesIn('beta').get('service:worker-1') ?? 0) >= 1 ? true : undefined;
    });
    assert.ok(consul.requests.some((r) => r.pathname === '/v1/agent/check/pass/service%3Aworker-1' && r.ns === 'beta'));
    await remove(t.url, 'worker-1', 'beta');
    await waitFor('beta node gone', async () => (consul.servicesIn('beta').has('worker-1') ? undefined : true));
    assert.ok(consul.requests.some((r) => r.pathname === '/v1/agent/service/deregister/worker-1' && r.ns === 'beta'));
    assert.ok(consul.servicesIn('default').has('worker-1'));
    // beta has no online node left, yet its services are still looked at.
    consul.servicesIn('beta').set('gone', ghost('gone', 'beta'));
    await waitFor('stale beta service removed', async () => (consul.servicesIn('beta').has('gone') ? undefined : true));
    const listed = new Set(consul.requests.filter((r) => r.pathname === '/v1/agent/services').map((r) => r.ns));
    assert.ok(listed.has('default') && listed.has('beta'), JSON.stringify([...listed]));
    await reconciliations(t.url, 2);
    assert.ok(consul.servicesIn('default').has('worker-1'), "the default namespace's worker-1 is left alone");
  });
});

describe('consul projection with Enterprise namespaces into a second rollcall instance', () => {
  let target: TestServer;
  let source: TestServer;
  before(async () => {
    target = await startTestServer({ config: { sweepIntervalMs: 100 } });
    source = await startTestServer({ config: { consulAddr: target.url, consulNamespaces: 'enterprise', consulRenewIntervalMs: 100, consulReconcileIntervalMs: 2000, sweepIntervalMs: 100 } });
  });
  after(async () => {
    await source.close();
    await target.close();
  });

  const agentServices = async (namespace: string): Promise<Record<string, FakeService>> => (await json<Record<string, FakeService>>(`${target.url}/v1/agent/services?ns=${namespace}`)).body;

  it("mirrors each namespace's node into the same namespace of the second instance", async () => {
    await register(source.url, { node_id: 'mirrored', ip: '10.1.0.1' });
    await register(source.url, { node_id: 'mirrored', namespace: 'beta', ip: '10.1.0.2' });
    const beta = await waitFor('mirrored in beta', async () => (await agentServices('beta')).mirrored);
    assert.equal(beta.Address, '10.1.0.2');
    assert.equal((await waitFor('mirrored in default', async () => (await agentServices('default')).mirrored)).Address, '10.1.0.1');
    await remove(source.url, 'mirrored', 'beta');
    await waitFor('gone from beta', async () => ((await agentServices('beta')).mirrored ? undefined : true));
    assert.equal((await agentServices('default')).mirrored?.Address, '10.1.0.1');
  });
});
