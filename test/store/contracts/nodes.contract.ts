// The nodes role: records, leases and the topology log (applyWrites decides by domain/node-lifecycle).
import { strict as assert } from 'node:assert';
import { before, describe, it } from 'node:test';
import { fromIntrospection, type Registration } from '../../../src/domain/node.js';
import type { NodeStore } from '../../../src/store/store.js';
import { T0, changed, reg } from './support.js';

/** Runs first on a freshly migrated store: it counts versions from 0. */
export function nodesContract(get: () => NodeStore): void {
  describe('nodes', () => {
    let store: NodeStore;
    before(() => {
      store = get();
    });

    it('probes the write path without changing what readers see', async () => {
      const version = await store.currentVersion();
      await store.probeWrite(2000);
      assert.equal(await store.currentVersion(), version);
      assert.deepEqual((await store.changesSince(version, 10)).changes, []);
    });

    it('adds, updates with changed fields, and treats identical content as unchanged', async () => {
      const [added, same, updated] = await store.applyWrites(
        [
          { kind: 'register', registration: reg('n1') },
          { kind: 'register', registration: reg('n1') },
          { kind: 'register', registration: reg('n1', { labels: ['b'], capabilities: { gpu: true } }) },
        ],
        T0,
      );
      const first = changed(added).change;
      assert.equal(first.change_type, 'added');
      assert.equal(first.version, 1);
      assert.equal(same?.status, 'unchanged');
      const second = changed(updated).change;
      assert.equal(second.change_type, 'updated');
      assert.equal(second.version, 2);
      assert.deepEqual(second.changed_fields.sort(), ['capabilities', 'labels']);
      const stored = await store.getNode('default', 'n1');
      assert.deepEqual(stored?.labels, ['b']);
      assert.deepEqual(stored?.capabilities, { gpu: true });
      assert.equal(stored?.status, 'online');
      assert.equal(await store.currentVersion(), 2);
    });

    it('keeps namespaces apart', async () => {
      const out = await store.applyWrites([{ kind: 'register', registration: reg('n1', { namespace: 'other' }) }], T0);
      assert.equal(changed(out[0]).change.change_type, 'added');
      assert.deepEqual((await store.getNode('default', 'n1'))?.labels, ['b']);
      assert.deepEqual((await store.getNode('other', 'n1'))?.labels, ['a']);
    });

    it('never lets an older incarnation overwrite a newer one, and records a restart', async () => {
      const restarted = await store.applyWrites([{ kind: 'register', registration: reg('inc', { incarnation: 200 }) }], T0);
      changed(restarted[0]);
      const [stale, staleTombstone, newer] = await store.applyWrites(
        [
          { kind: 'register', registration: reg('inc', { incarnation: 100, labels: ['old'] }) },
          { kind: 'deregister', namespace: 'default', node_id: 'inc', reason: 'graceful_shutdown', incarnation: 100 },
          { kind: 'register', registration: reg('inc', { incarnation: 300 }) },
        ],
        T0 + 1000,
      );
      assert.equal(stale?.status, 'rejected');
      assert.equal(stale?.status === 'rejected' && stale.error.code, 'STALE_INCARNATION');
      assert.equal(staleTombstone?.status === 'rejected' && staleTombstone.error.code, 'STALE_INCARNATION');
      const restart = changed(newer).change;
      assert.equal(restart.change_type, 'updated');
      assert.deepEqual(restart.changed_fields, ['incarnation']);
      const stored = await store.getNode('default', 'inc');
      assert.equal(stored?.incarnation, 300);
      assert.deepEqual(stored?.labels, ['a']);
    });

    it('deregisters with a reason (soft delete), idempotently, and refuses unknown nodes', async () => {
      await store.applyWrites([{ kind: 'register', registration: reg('gone') }], T0);
      const [removed, again, unknown] = await store.applyWrites(
        [
          { kind: 'deregister', namespace: 'default', node_id: 'gone', reason: 'graceful_shutdown' },
          { kind: 'deregister', namespace: 'default', node_id: 'gone', reason: 'graceful_shutdown' },
          { kind: 'deregister', namespace: 'default', node_id: 'never-was', reason: 'manual_deregistration' },
        ],
        T0 + 5000,
      );
      const change = changed(removed).change;
      assert.equal(change.change_type, 'removed');
      assert.equal(change.reason, 'graceful_shutdown');
      assert.equal(again?.status, 'unchanged');
      assert.equal(unknown?.status === 'rejected' && unknown.error.code, 'NODE_NOT_FOUND');
      const stored = await store.getNode('default', 'gone');
      assert.equal(stored?.status, 'removed');
      assert.equal(stored?.removal_reason, 'graceful_shutdown');
      assert.equal(stored?.removed_at, new Date(T0 + 5000).toISOString());
      // Registering again brings it back as added.
      const back = await store.applyWrites([{ kind: 'register', registration: reg('gone') }], T0 + 6000);
      assert.equal(changed(back[0]).change.change_type, 'added');
    });

    it('renews leases in the narrow table and finds lapsed ones, honouring the grace start', async () => {
      await store.applyWrites(
        [
          { kind: 'register', registration: reg('lease-a') },
          { kind: 'register', registration: reg('lease-b') },
        ],
        T0,
      );
      const renewed = await store.renewLeases([
        { namespace: 'default', node_id: 'lease-a', incarnation: 0, atMs: T0 + 20_000 },
        { namespace: 'default', node_id: 'lease-b', incarnation: 99, atMs: T0 + 20_000 },
      ]);
      assert.equal(renewed, 1, 'a renewal of another incarnation is ignored');
      const lapsed = (await store.findExpired(T0 + 40_000, 0, 100)).map((c) => c.node_id);
      assert.ok(lapsed.includes('lease-b'));
      assert.ok(!lapsed.includes('lease-a'));
      const graced = (await store.findExpired(T0 + 40_000, T0 + 30_000, 100)).map((c) => c.node_id);
      assert.ok(!graced.includes('lease-b'), 'a lease is not judged before a full TTL from the grace start');
      assert.equal((await store.getNode('default', 'lease-a'))?.last_heartbeat, new Date(T0 + 20_000).toISOString());
    });

    it('expires a lapsed lease once, re-checking inside the transaction', async () => {
      await store.applyWrites([{ kind: 'register', registration: reg('exp') }], T0);
      const [fresh] = await store.applyWrites([{ kind: 'expire', namespace: 'default', node_id: 'exp', incarnation: 0, graceFromMs: 0 }], T0 + 10_000);
      assert.equal(fresh?.status, 'unchanged', 'a live lease is not expired');
      const [expired, twice] = await store.applyWrites(
        [
          { kind: 'expire', namespace: 'default', node_id: 'exp', incarnation: 0, graceFromMs: 0 },
          { kind: 'expire', namespace: 'default', node_id: 'exp', incarnation: 0, graceFromMs: 0 },
        ],
        T0 + 31_000,
      );
      const change = changed(expired).change;
      assert.equal(change.change_type, 'removed');
      assert.equal(change.reason, 'lease_expired');
      assert.equal(twice?.status, 'unchanged');
      const stored = await store.getNode('default', 'exp');
      assert.equal(stored?.status, 'offline');
      assert.equal(stored?.removal_reason, 'lease_expired');
      assert.ok(!(await store.findExpired(T0 + 100_000, 0, 100)).some((c) => c.node_id === 'exp'));
    });

    it('reads changes in version order and loads nodes with the matching version', async () => {
      const version = await store.currentVersion();
      const page = await store.changesSince(0, 1000);
      assert.equal(page.changes.length, version);
      assert.deepEqual(
        page.changes.map((c) => c.version),
        Array.from({ length: version }, (_, i) => i + 1),
      );
      const latest = page.changes.at(-1);
      assert.equal(typeof latest?.node.node_id, 'string');
      const loaded = await store.loadNodes();
      assert.equal(loaded.version, version);
      assert.ok(loaded.nodes.some((n) => n.node_id === 'exp' && n.status === 'offline'));
      const tail = await store.changesSince(version - 2, 1);
      assert.deepEqual(
        tail.changes.map((c) => c.version),
        [version - 1],
      );
    });

    it('stores the introspection shape with its JSON documents intact', async () => {
      const introspected = fromIntrospection(
        {
          node_id: 'orchestrator-v1_0_0-abc123',
          node_name: 'NodeBridgeOrchestrator',
          node_type: 'orchestrator',
          node_version: '1.0.0',
          capabilities: { fsm_states: { supported_states: ['PENDING', 'DONE'] }, max_concurrent_workflows: 100 },
          endpoints: { health: 'http://localhost:8080/health' },
          configuration: { node_ttl_hours: 24 },
          current_state: { status: 'active', uptime_seconds: 3600, health_status: 'healthy' },
          metadata: { role: 'orchestrator', labels: ['x'], nested: { a: [1, 2, { b: null }] } },
        },
        { leaseTtlMs: 90_000 },
      );
      await store.applyWrites([{ kind: 'register', registration: introspected }], T0);
      const stored = await store.getNode('default', 'orchestrator-v1_0_0-abc123');
      assert.deepEqual(stored?.capabilities, introspected.capabilities);
      assert.deepEqual(stored?.metadata, introspected.metadata);
      assert.equal(stored?.health_status, 'healthy');
      assert.equal(stored?.role, 'orchestrator');
      assert.equal(stored?.lease_ttl_ms, 90_000);
    });

    it('prunes old changes and reports what it pruned, keeping the newest', async () => {
      const before = await store.currentVersion();
      const pruned = await store.pruneChanges(Date.now() + 60_000);
      assert.equal(pruned, before - 1);
      const page = await store.changesSince(0, 10);
      assert.equal(page.prunedThrough, before - 1);
      assert.deepEqual(
        page.changes.map((c) => c.version),
        [before],
      );
    });

    it('purges records that left before the retention cutoff, and only those', async () => {
      // 'exp' went offline at T0+31s; 'gone' was removed at T0+5s but registered again.
      assert.equal(await store.purgeRemoved(T0 + 30_000), 0);
      assert.equal(await store.purgeRemoved(T0 + 32_000), 1);
      assert.equal(await store.getNode('default', 'exp'), null);
      assert.equal((await store.getNode('default', 'gone'))?.status, 'online', 'online records are never purged');
      assert.ok(!(await store.loadNodes()).nodes.some((n) => n.node_id === 'exp'));
    });

    it('commits a large batch in one transaction with consecutive versions', async () => {
      const start = await store.currentVersion();
      const writes = Array.from({ length: 500 }, (_, i) => ({ kind: 'register' as const, registration: reg(`bulk-${i}`) }));
      const outcomes = await store.applyWrites(writes, T0);
      const versions = outcomes.map((o) => changed(o).change.version);
      assert.deepEqual(
        versions,
        Array.from({ length: 500 }, (_, i) => start + i + 1),
      );
      assert.equal(await store.currentVersion(), start + 500);
    });

    it('checks a registration against its quota again at commit, counting what the batch frees', async () => {
      const quota = { max_nodes: 2, max_nodes_of_type: null };
      const inQ = (nodeId: string, overrides: Partial<Registration> = {}): Registration => reg(nodeId, { namespace: 'quota', ...overrides });
      const [first, second, third] = await store.applyWrites(
        [
          { kind: 'register', registration: inQ('q1'), quota },
          { kind: 'register', registration: inQ('q2'), quota },
          { kind: 'register', registration: inQ('q3'), quota },
        ],
        T0,
      );
      changed(first);
      changed(second);
      assert.equal(third?.status === 'rejected' && third.error.code, 'QUOTA_EXCEEDED');
      assert.equal(await store.getNode('quota', 'q3'), null, 'a refused registration writes nothing');
      const [update, typeFull] = await store.applyWrites(
        [
          { kind: 'register', registration: inQ('q1', { labels: ['b'] }), quota },
          { kind: 'register', registration: inQ('q2', { node_type: 'other' }), quota: { max_nodes: 2, max_nodes_of_type: 0 } },
        ],
        T0 + 1000,
      );
      assert.equal(changed(update).change.change_type, 'updated', 'a node already counted updates under a full quota');
      assert.equal(typeFull?.status === 'rejected' && typeFull.error.details?.quota, 'max_nodes_per_type');
      const [left, replaced] = await store.applyWrites(
        [
          { kind: 'deregister', namespace: 'quota', node_id: 'q2', reason: 'graceful_shutdown' },
          { kind: 'register', registration: inQ('q3'), quota },
        ],
        T0 + 2000,
      );
      changed(left);
      assert.equal(changed(replaced).change.change_type, 'added', 'the place the batch freed is taken');
    });
  });
}
