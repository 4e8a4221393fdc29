// The live view: filters, key-ordered paging with cursors, ordered application of changes, waiting.
import { strict as assert } from 'node:assert';
import { describe, it } from 'node:test';
import { fromDagi, recordFrom, type NodeRecord, type TopologyChange } from '../../src/domain/node.js';
import { LiveView } from '../../src/engine/live-view.js';

function node(id: string, extra: Partial<NodeRecord> = {}): NodeRecord {
  const reg = fromDagi({ node_id: id, hostname: id, role: 'worker', labels: ['a'] }, { leaseTtlMs: 1000 });
  return { ...recordFrom(reg, { status: 'online', registered_at: '', updated_at: '', last_heartbeat: new Date().toISOString(), removed_at: null, removal_reason: null }), ...extra };
}

function change(version: number, record: NodeRecord): TopologyChange {
  return { version, namespace: record.namespace, node_id: record.node_id, change_type: 'added', changed_fields: [], reason: 'test', changed_at: '', node: record };
}

describe('live view', () => {
  const view = new LiveView();
  view.load(
    [
      node('n3', { role: 'router', labels: ['a', 'gpu'], capabilities: { gpu: true, models: ['llama'] }, node_version: '1.2.0' }),
      node('n1', { node_version: '1.0.0' }),
      node('n2', { status: 'offline', node_version: '2.0.0-beta.1' }),
      node('n4', { namespace: 'lab', node_version: 'v1.5' }),
    ],
    10,
  );

  it('filters by role, label, status, type, namespace, capability and version range', () => {
    const ids = (query: Parameters<LiveView['query']>[0]): string[] => view.query(query).nodes.map((n) => n.node_id);
    assert.deepEqual(ids({ limit: 10 }), ['n1', 'n2', 'n3', 'n4']);
    assert.deepEqual(ids({ limit: 10, role: 'router' }), ['n3']);
    assert.deepEqual(ids({ limit: 10, labels: ['a', 'gpu'] }), ['n3']);
    assert.deepEqual(ids({ limit: 10, status: ['offline'] }), ['n2']);
    assert.deepEqual(ids({ limit: 10, namespace: 'lab' }), ['n4']);
    assert.deepEqual(ids({ limit: 10, capability: { models: ['llama'] } }), ['n3']);
    assert.deepEqual(ids({ limit: 10, version: '>=1.2.0' }), ['n2', 'n3', 'n4']);
    assert.deepEqual(ids({ limit: 10, version: '<1.2.0' }), ['n1']);
    assert.deepEqual(ids({ limit: 10, node_type: 'registry' }), []);
  });

  it('pages in key order with a cursor, stable under inserts before the cursor', () => {
    const first = view.query({ limit: 2 });
    assert.deepEqual(
      first.nodes.map((n) => n.node_id),
      ['n1', 'n2'],
    );
    assert.ok(first.next);
    view.apply([change(11, node('n0'))]);
    const second = view.query({ limit: 2, after: first.next });
    assert.deepEqual(
      second.nodes.map((n) => n.node_id),
      ['n3', 'n4'],
    );
    assert.equal(second.next, null);
  });

  it('applies changes only in version order and reports a gap', () => {
    assert.equal(view.version, 11);
    assert.equal(view.apply([change(13, node('gap'))]), false);
    assert.equal(view.get('default', 'gap'), undefined);
    assert.equal(view.apply([change(11, node('n0')), change(12, node('n5'))]), true, 'already-seen versions are skipped');
    assert.equal(view.version, 12);
    assert.deepEqual(
      view.recentSince(10)?.map((c) => c.version),
      [11, 12],
    );
    assert.equal(view.recentSince(5), null, 'older than the window: read the store');
  });

  it('wakes waiters when the version passes theirs, and times out otherwise', async () => {
    const timedOut = await view.waitPast(12, 20);
    assert.equal(timedOut, 12);
    const waiting = view.waitPast(12, 5000);
    setTimeout(() => view.apply([change(13, node('n6'))]), 10);
    assert.equal(await waiting, 13);
  });

  it('purges records that left before the cutoff', () => {
    view.apply([change(14, node('old', { status: 'removed', removed_at: '2020-01-01T00:00:00Z' }))]);
    assert.equal(view.purge(Date.parse('2021-01-01T00:00:00Z')), 1);
    assert.equal(view.get('default', 'old'), undefined);
    assert.ok(!view.query({ limit: 100 }).nodes.some((n) => n.node_id === 'old'));
  });
});
