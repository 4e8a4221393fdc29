// The quota book's counts follow the live view: changes, purges and a reload, without scanning the
// namespace on each check.
import { strict as assert } from 'node:assert';
import { describe, it } from 'node:test';
import { fromDagi, recordFrom, type NodeRecord, type Registration, type TopologyChange } from '../../src/domain/node.js';
import { LiveView } from '../../src/engine/live-view.js';
import { QuotaBook } from '../../src/admission/quotas.js';

function registration(id: string, nodeType = 'worker'): Registration {
  return { ...fromDagi({ node_id: id, hostname: id, role: 'worker' }, { leaseTtlMs: 1000 }), namespace: 'q', node_type: nodeType };
}

function record(id: string, status: NodeRecord['status'], nodeType = 'worker', removedAt: string | null = null): NodeRecord {
  const at = '2026-11-23T00:00:00.000Z';
  return recordFrom(registration(id, nodeType), { status, registered_at: at, updated_at: at, last_heartbeat: at, removed_at: removedAt, removal_reason: removedAt ? 'test' : null });
}

describe('QuotaBook', () => {
  it('counts online and offline records of a namespace as the view changes, purges and reloads', () => {
    const view = new LiveView();
    view.load([record('a', 'online'), record('b', 'offline'), record('gone', 'removed', 'worker', '2026-11-23T00:00:00.000Z')], 3);
    const book = new QuotaBook(view);
    book.set({ namespace: 'q', max_nodes: 3, max_nodes_per_type: { gpu: 1 }, updated_by: 't', updated_at: '' });
    const admits = (id: string, nodeType = 'worker'): boolean => {
      try {
        book.check(registration(id, nodeType), view.get('q', id))?.();
        return true;
      } catch {
        return false;
      }
    };
    let version = 3;
    const apply = (node: NodeRecord): void => {
      const change: TopologyChange = { version: ++version, namespace: node.namespace, node_id: node.node_id, change_type: 'added', changed_fields: [], reason: 't', changed_at: '', node };
      assert.equal(view.apply([change]), true);
    };
    assert.equal(admits('c'), true, 'two of three places taken');
    apply(record('c', 'online'));
    assert.equal(admits('d'), false, 'full');
    assert.equal(admits('a'), true, 'a node already counted is never refused');
    // Going offline keeps the place; leaving gives it back.
    apply(record('a', 'offline', 'worker', '2026-11-23T00:00:01.000Z'));
    assert.equal(admits('d'), false);
    apply(record('c', 'removed', 'worker', '2026-11-23T00:00:02.000Z'));
    assert.equal(admits('d'), true);
    // A purge drops offline records too: their places come back.
    apply(record('d', 'online'));
    assert.equal(admits('e'), false);
    view.purge(Date.parse('2026-11-23T00:00:01.500Z'));
    assert.equal(view.get('q', 'a'), undefined);
    assert.equal(admits('e'), true);
    // Per node_type, and after the whole view is replaced.
    apply(record('g1', 'online', 'gpu'));
    assert.equal(admits('g2', 'gpu'), false);
    view.load([record('x', 'online')], 100);
    assert.equal(admits('g2', 'gpu'), true);
    assert.equal(admits('y'), true);
  });
});
