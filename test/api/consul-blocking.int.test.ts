// Consul blocking queries per service: a watcher of one service sleeps through changes of others and
// wakes on its own service's changes (a node joining or leaving), with X-Consul-Index the version of
// that change; the lists of every service block per namespace.
import { strict as assert } from 'node:assert';
import { after, before, describe, it } from 'node:test';
import Consul from 'consul';
import { pollUntil } from '../support/processes.js';
import { json, startTestServer, type TestServer } from '../support/server.js';

let t: TestServer;
let consul: Consul;

before(async () => {
  t = await startTestServer({ config: { sweepIntervalMs: 100, heartbeatFlushMs: 100 } });
  const url = new URL(t.url);
  consul = new Consul({ host: url.hostname, port: Number(url.port) });
  await register('alpha', 'alpha-1');
  await register('beta', 'beta-1');
});
after(async () => {
  consul.destroy();
  await t.close();
});

interface Read<T> {
  index: number;
  body: T;
}

async function read<T>(path: string): Promise<Read<T>> {
  const response = await fetch(`${t.url}${path}`);
  assert.equal(response.status, 200, path);
  return { index: Number(response.headers.get('x-consul-index')), body: (await response.json()) as T };
}

type HealthEntry = { Service: { ID: string; Service: string } };
const health = (service: string, query = ''): Promise<Read<HealthEntry[]>> => read(`/v1/health/service/${service}${query}`);
const ids = (entries: HealthEntry[]): string[] => entries.map((entry) => entry.Service.ID).sort();

/** Registers through the Consul API, with a passing TTL check long enough not to lapse during the tests. */
async function register(name: string, id: string, ns?: string): Promise<void> {
  const response = await json(`${t.url}/v1/agent/service/register${ns ? `?ns=${ns}` : ''}`, { method: 'PUT', body: { Name: name, ID: id, Port: 80, Check: { TTL: '300s', Status: 'passing' } } });
  assert.equal(response.status, 200);
}

/** Registers through rollcall's own API: the answer carries the topology version of the change. */
async function registerNative(nodeType: string, nodeId: string): Promise<number> {
  const response = await json<{ topology_version: number }>(`${t.url}/api/v1/nodes/register`, { body: { node_id: nodeId, hostname: nodeId, role: 'worker', node_type: nodeType } });
  assert.ok(response.status === 200 || response.status === 201, JSON.stringify(response.body));
  return response.body.topology_version;
}

async function metric(name: string, labels = ''): Promise<number> {
  const text = await (await fetch(`${t.url}/metrics`)).text();
  const line = text.split('\n').find((candidate) => candidate.startsWith(`${name}${labels} `));
  return line === undefined ? 0 : Number(line.slice(line.lastIndexOf(' ') + 1));
}

const wakeupsByChange = (): Promise<number> => metric('rollcall_consul_blocking_wakeups_total', '{cause="change"}');
const parked = (): Promise<number> => metric('rollcall_consul_blocking_parked');

async function untilParked(count: number): Promise<void> {
  await pollUntil(parked, (value) => value === count, { timeoutMs: 10_000, intervalMs: 20, what: `${count} parked blocking queries` });
}

describe('blocking queries per service', () => {
  it("a watcher of one service sleeps through another service's changes and wakes once, on its own", async () => {
    const alpha = await health('alpha');
    const wakeupsBefore = await wakeupsByChange();
    const blocked = health('alpha', `?index=${alpha.index}&wait=60s`);
    await untilParked(1);

    // The live view shows a write before it is acknowledged, and a change wakes its watchers as it
    // is applied: once these returned, a wake-up by beta would already show in the counters.
    await register('beta', 'beta-2');
    await consul.agent.check.fail('service:beta-1');
    assert.equal(await parked(), 1, "still parked after beta's changes");
    assert.equal(await wakeupsByChange(), wakeupsBefore, "beta's changes woke no watcher");
    assert.equal((await health('alpha')).index, alpha.index, "alpha's index stays across beta's changes");

    const version = await registerNative('alpha', 'alpha-2');
    const woken = await blocked;
    assert.deepEqual(ids(woken.body), ['alpha-1', 'alpha-2']);
    assert.equal(woken.index, version, "X-Consul-Index is the version of alpha's change");
    assert.equal(await wakeupsByChange(), wakeupsBefore + 1, 'the watcher woke once');
    assert.equal(await parked(), 0);
  });

  it('gives catalog and health of a service the same index, untouched by other services', async () => {
    const alpha = await health('alpha');
    const catalog = await read<unknown[]>('/v1/catalog/service/alpha');
    assert.equal(catalog.index, alpha.index);
    const beta = await health('beta');
    assert.notEqual(beta.index, alpha.index);

    const version = await registerNative('gamma', 'gamma-1');
    assert.equal((await health('gamma')).index, version);
    assert.equal((await health('alpha')).index, alpha.index);
    assert.equal((await read('/v1/catalog/service/alpha')).index, alpha.index);
    assert.equal((await health('beta')).index, beta.index);
    // The lists of every service move with any change of their namespace.
    assert.equal((await read('/v1/catalog/services')).index, version);
    assert.equal((await read('/v1/agent/services')).index, version);
    // A service nobody registered still answers with an index, and blocks on it.
    const none = await health('none-such');
    assert.ok(none.index >= 1);
    assert.deepEqual(none.body, []);
  });

  it("moves a service's index when a node leaves it: deregistered or retyped", async () => {
    const before = await health('alpha');
    const blocked = health('alpha', `?index=${before.index}&wait=60s`);
    await untilParked(1);
    await consul.agent.service.deregister('alpha-1');
    const woken = await blocked;
    assert.ok(woken.index > before.index);
    assert.deepEqual(ids(woken.body), ['alpha-2']);

    const retypedBlocked = health('alpha', `?index=${woken.index}&wait=60s`);
    await untilParked(1);
    const version = await registerNative('omega', 'alpha-2');
    const retyped = await retypedBlocked;
    assert.equal(retyped.index, version, 'alpha lost alpha-2 at this version');
    assert.deepEqual(retyped.body, []);
    assert.equal((await health('omega')).index, version);
  });

  it('blocks the lists of every service per namespace', async () => {
    await register('delta', 'delta-1', 'lab');
    const lab = await read<Record<string, string[]>>('/v1/catalog/services?ns=lab');
    assert.deepEqual(Object.keys(lab.body), ['delta']);
    const wakeupsBefore = await wakeupsByChange();
    const blocked = read<Record<string, string[]>>(`/v1/catalog/services?ns=lab&index=${lab.index}&wait=60s`);
    await untilParked(1);
    await registerNative('alpha', 'alpha-3');
    assert.equal(await wakeupsByChange(), wakeupsBefore, 'a change of the default namespace woke no watcher of lab');
    assert.equal((await read('/v1/agent/services?ns=lab')).index, lab.index);

    await register('epsilon', 'epsilon-1', 'lab');
    const woken = await blocked;
    assert.deepEqual(Object.keys(woken.body).sort(), ['delta', 'epsilon']);
    assert.ok(woken.index > lab.index);
    assert.equal(await wakeupsByChange(), wakeupsBefore + 1);
  });

  it("keeps the consul client's watch working on per-service indexes", async () => {
    const watch = consul.watch({ method: consul.health.service, options: { service: 'alpha', wait: '30s' }, backoffFactor: 50 });
    const seen: HealthEntry[][] = [];
    const errors: unknown[] = [];
    watch.on('change', (data: HealthEntry[]) => seen.push(data));
    watch.on('error', (error: unknown) => errors.push(error));
    try {
      await pollUntil(
        async () => seen.length,
        (count) => count >= 1,
        { timeoutMs: 10_000, intervalMs: 20, what: 'the first watch answer' },
      );
      assert.deepEqual(ids(seen[0] ?? []), ['alpha-3']);
      await untilParked(1);
      await register('beta', 'beta-3');
      await register('alpha', 'alpha-4');
      const latest = await pollUntil(
        async () => seen[seen.length - 1] ?? [],
        (data) => data.length === 2,
        { timeoutMs: 10_000, intervalMs: 20, what: 'the watch to see alpha-4' },
      );
      assert.deepEqual(ids(latest), ['alpha-3', 'alpha-4']);
      assert.equal(seen.length, 2, "beta's registration did not change alpha's answer");
      assert.deepEqual(errors, []);
    } finally {
      watch.end();
    }
  });
});
