// Consul indexes per service and per namespace over a live view: which changes move which index, and
// which parked blocking queries a change wakes (only those of what it touched).
import { strict as assert } from 'node:assert';
import { describe, it } from 'node:test';
import { setImmediate as tick } from 'node:timers/promises';
import client from 'prom-client';
import { ConsulIndex, namespaceKey, serviceKey, type WakeCause } from '../../src/api/consul/consul-index.js';
import { fromDagi, recordFrom, type NodeRecord, type TopologyChange } from '../../src/domain/node.js';
import { LiveView } from '../../src/engine/live-view.js';

function node(id: string, nodeType: string, extra: Partial<NodeRecord> = {}): NodeRecord {
  const reg = fromDagi({ node_id: id, hostname: id, role: 'worker', node_type: nodeType }, { leaseTtlMs: 1000 });
  return { ...recordFrom(reg, { status: 'online', registered_at: '', updated_at: '', last_heartbeat: '', removed_at: null, removal_reason: null }), ...extra };
}

function change(version: number, record: NodeRecord): TopologyChange {
  return { version, namespace: record.namespace, node_id: record.node_id, change_type: 'updated', changed_fields: [], reason: 'test', changed_at: '', node: record };
}

/** A view at version 10 with one node of `web` and one of `db` in the default namespace, and its index. */
function setUp(maxKeys?: number): { view: LiveView; index: ConsulIndex; metrics: client.Registry } {
  const view = new LiveView();
  view.load([node('web-1', 'web'), node('db-1', 'db')], 10);
  const metrics = new client.Registry();
  return { view, index: new ConsulIndex(view, { metrics, ...(maxKeys === undefined ? {} : { maxKeys }) }), metrics };
}

/** A parked wait whose outcome can be inspected without awaiting it. */
function park(index: ConsulIndex, key: string, at: number, signal = new AbortController().signal): { outcome: () => WakeCause | null | undefined; done: Promise<WakeCause | null> } {
  let outcome: WakeCause | null | undefined;
  const done = index.waitPast(key, at, 60_000, signal).then((cause) => (outcome = cause));
  return { outcome: () => outcome, done };
}

async function metricValue(metrics: client.Registry, name: string, labels: Record<string, string> = {}): Promise<number> {
  const metric = metrics.getSingleMetric(name);
  if (!metric) return 0;
  const { values } = await metric.get();
  return values.find((value) => Object.entries(labels).every(([label, expected]) => value.labels[label] === expected))?.value ?? 0;
}

const web = serviceKey('default', 'web');
const db = serviceKey('default', 'db');

describe('consul index', () => {
  it("starts every key at the view's version, and never at 0", () => {
    const { index } = setUp();
    assert.equal(index.indexOf(web), 10);
    assert.equal(index.indexOf(serviceKey('default', 'none-such')), 10);
    assert.equal(index.indexOf(namespaceKey('default')), 10);
    assert.equal(new ConsulIndex(new LiveView(), { metrics: new client.Registry() }).indexOf(web), 1);
  });

  it('moves the index of the service and namespace a change touched, and no other', () => {
    const { view, index } = setUp();
    assert.ok(view.apply([change(11, node('db-2', 'db'))]));
    assert.equal(index.indexOf(db), 11);
    assert.equal(index.indexOf(namespaceKey('default')), 11);
    assert.equal(index.indexOf(web), 10);
    assert.ok(view.apply([change(12, node('web-9', 'web', { namespace: 'lab' }))]));
    assert.equal(index.indexOf(serviceKey('lab', 'web')), 12);
    assert.equal(index.indexOf(namespaceKey('lab')), 12);
    assert.equal(index.indexOf(web), 10, 'the same service name in another namespace is another service');
    assert.equal(index.indexOf(namespaceKey('default')), 11);
  });

  it('wakes a watcher of one service only on a change of that service', async () => {
    const { view, index, metrics } = setUp();
    const watcher = park(index, web, 10);
    const stopList = new AbortController();
    const listWatcher = park(index, namespaceKey('lab'), 10, stopList.signal);
    assert.equal(index.parkedCount, 2);
    assert.equal(await metricValue(metrics, 'rollcall_consul_blocking_parked'), 2);

    assert.ok(view.apply([change(11, node('db-2', 'db')), change(12, node('db-1', 'db', { health_status: 'degraded' }))]));
    await tick();
    assert.equal(watcher.outcome(), undefined, 'a change of db must not wake a watcher of web');
    assert.equal(await metricValue(metrics, 'rollcall_consul_blocking_wakeups_total', { cause: 'change' }), 0);

    assert.ok(view.apply([change(13, node('web-2', 'web'))]));
    assert.equal(await watcher.done, 'change');
    assert.equal(index.indexOf(web), 13);
    assert.equal(listWatcher.outcome(), undefined, 'changes of the default namespace do not wake a watcher of lab');
    assert.equal(index.parkedCount, 1);
    assert.equal(await metricValue(metrics, 'rollcall_consul_blocking_wakeups_total', { cause: 'change' }), 1);
    assert.equal(await metricValue(metrics, 'rollcall_consul_blocking_parked'), 1);
    stopList.abort();
    assert.equal(await listWatcher.done, 'aborted');
    index.close();
  });

  it('answers at once when the index given is not the current one', async () => {
    const { index } = setUp();
    const signal = new AbortController().signal;
    assert.equal(await index.waitPast(web, 9, 60_000, signal), null);
    assert.equal(await index.waitPast(web, 11, 60_000, signal), null);
    assert.equal(index.parkedCount, 0);
  });

  it("moves a service's index when a node leaves it: retyped or removed", () => {
    const { view, index } = setUp();
    assert.ok(view.apply([change(11, node('web-1', 'frontend'))]));
    assert.equal(index.indexOf(web), 11, 'web lost web-1');
    assert.equal(index.indexOf(serviceKey('default', 'frontend')), 11);
    assert.ok(view.apply([change(12, node('db-1', 'db', { status: 'removed', removed_at: new Date().toISOString(), removal_reason: 'manual_deregistration' }))]));
    assert.equal(index.indexOf(db), 12);
    assert.equal(index.indexOf(web), 11);
  });

  it('indexes a node under the name of its Consul definition too', () => {
    const { view, index } = setUp();
    const consul = { service: 'named', tags: [], meta: {}, address: '', port: 0, checks: [], agent: 'a' };
    assert.ok(view.apply([change(11, node('odd-1', 'typed', { metadata: { consul } }))]));
    assert.equal(index.indexOf(serviceKey('default', 'typed')), 11);
    assert.equal(index.indexOf(serviceKey('default', 'named')), 11);
    assert.ok(view.apply([change(12, node('odd-1', 'typed'))]));
    assert.equal(index.indexOf(serviceKey('default', 'named')), 12, 'the definition went away: named lost odd-1');
  });

  it("raises every index to a reloaded view's version and wakes every watcher", async () => {
    const { view, index } = setUp();
    const watcher = park(index, web, 10);
    view.load([node('web-1', 'web')], 40);
    assert.equal(await watcher.done, 'change');
    assert.equal(index.indexOf(web), 40);
    assert.equal(index.indexOf(db), 40);
  });

  it('stays bounded: past maxKeys every key folds into the floor, and no index goes back', async () => {
    const { view, index } = setUp(4);
    const watcher = park(index, web, 10);
    assert.ok(view.apply([change(11, node('a-1', 'a')), change(12, node('b-1', 'b'))]));
    assert.equal(watcher.outcome(), undefined);
    assert.equal(index.indexOf(serviceKey('default', 'a')), 11);
    // Namespace, a, b, c: four keys; d makes five.
    assert.ok(view.apply([change(13, node('c-1', 'c')), change(14, node('d-1', 'd'))]));
    assert.equal(await watcher.done, 'change');
    for (const service of ['a', 'b', 'c', 'd', 'web', 'none-such']) assert.equal(index.indexOf(serviceKey('default', service)), 14, service);
    assert.ok(view.apply([change(15, node('a-1', 'a', { health_status: 'degraded' }))]));
    assert.equal(index.indexOf(serviceKey('default', 'a')), 15);
    assert.equal(index.indexOf(web), 14);
  });

  it('releases a watcher on abort and at its wait, and counts why', async () => {
    const { index, metrics } = setUp();
    const controller = new AbortController();
    const watcher = park(index, web, 10, controller.signal);
    controller.abort();
    assert.equal(await watcher.done, 'aborted');
    assert.equal(await index.waitPast(web, 10, 1, new AbortController().signal), 'timeout');
    assert.equal(index.parkedCount, 0);
    assert.equal(await metricValue(metrics, 'rollcall_consul_blocking_parked'), 0);
    assert.equal(await metricValue(metrics, 'rollcall_consul_blocking_wakeups_total', { cause: 'aborted' }), 1);
    assert.equal(await metricValue(metrics, 'rollcall_consul_blocking_wakeups_total', { cause: 'timeout' }), 1);
  });
});
