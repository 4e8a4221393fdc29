// Lease grace after a restart starts when the registry can hear heartbeats, not when it loads: leases
// loaded from the store survive however long the server takes to open its listeners, and each gets
// one full TTL from the opening. Driven by an injected clock, on PostgreSQL and on PGlite.
import { strict as assert } from 'node:assert';
import { describe, it } from 'node:test';
import { fromDagi } from '../../src/domain/node.js';
import { Registry } from '../../src/engine/registry.js';
import { openStore } from '../../src/store/open-store.js';
import type { Store } from '../../src/store/store.js';
import { testLogger } from '../support/logger.js';
import { createTestDatabase } from '../support/postgres.js';
import { virtualClock, type VirtualClock } from '../support/virtual-clock.js';

const TTL_MS = 10_000;

function registryOf(store: Store, clock: VirtualClock): Registry {
  return new Registry({
    store,
    logger: testLogger,
    leaseTtlMs: TTL_MS,
    heartbeatFlushMs: 60_000,
    // The test sweeps by hand, at the clock's times.
    sweepIntervalMs: 3_600_000,
    retentionMs: 3_600_000,
    cleanupIntervalMs: 3_600_000,
    changeRetentionMs: 3_600_000,
    heartbeatHistory: false,
    heartbeatHistoryMs: 3_600_000,
    maxBatch: 100,
    writeConcurrency: 1,
    clock,
  });
}

const dialects: Array<[string, () => Promise<{ store: Store; dispose: () => Promise<void> }>]> = [
  [
    'postgres',
    async () => {
      const database = await createTestDatabase();
      const store = await openStore({ kind: 'postgres', url: database.url });
      return {
        store,
        dispose: async () => {
          await store.close();
          await database.drop();
        },
      };
    },
  ],
  [
    'pglite',
    async () => {
      const store = await openStore({ kind: 'pglite', dataDir: undefined });
      return { store, dispose: () => store.close() };
    },
  ],
];

for (const [dialect, open] of dialects) {
  describe(`lease grace after a restart (${dialect})`, () => {
    it('expires no loaded lease before the registry opens for heartbeats, and gives each one TTL from then', async () => {
      const backend = await open();
      const clock = virtualClock(Date.now());
      try {
        const { store } = backend;
        await store.migrate();
        const first = registryOf(store, clock);
        await first.start();
        first.openForHeartbeats();
        for (const nodeId of ['beating', 'silent']) await first.register(fromDagi({ node_id: nodeId, hostname: nodeId, role: 'grace' }, { leaseTtlMs: TTL_MS }));
        await first.stop();

        // The restart: loaded, then slow to open its listeners (Kafka, TLS, a busy machine) for six TTLs.
        const registry = registryOf(store, clock);
        await registry.start();
        try {
          // The sweeper ticks while the listeners are not open yet, and again six TTLs later.
          assert.equal(await registry.sweep(), 0);
          await clock.advance(6 * TTL_MS);
          assert.equal(await registry.sweep(), 0, 'nothing can heartbeat yet: no lease is judged');
          assert.equal(registry.get('default', 'beating').status, 'online');
          assert.equal(registry.get('default', 'silent').status, 'online');

          registry.openForHeartbeats();
          const openedAt = clock.now();
          assert.equal(await registry.sweep(), 0, 'the first sweep after opening judges from the opening');
          await clock.advance(TTL_MS / 2);
          assert.equal(await registry.sweep(), 0, 'half a TTL after opening, every lease stands');
          await registry.heartbeat({ namespace: 'default', node_id: 'beating' });

          await clock.advanceTo(openedAt + TTL_MS - 1);
          assert.equal(await registry.sweep(), 0, 'no lease lapses before one TTL after opening');
          await clock.advanceTo(openedAt + TTL_MS + 1);
          assert.equal(await registry.sweep(), 1, 'one TTL after opening, the silent node lapses');
          assert.equal(registry.get('default', 'silent').status, 'offline');
          assert.equal(registry.get('default', 'silent').removal_reason, 'lease_expired');
          assert.equal(registry.get('default', 'beating').status, 'online', 'the node that heartbeat after the opening keeps its lease');
        } finally {
          await registry.stop();
        }
      } finally {
        await backend.dispose();
      }
    });
  });
}
