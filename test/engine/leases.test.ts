// Leases in virtual time: the engine over a real store (embedded PGlite, in memory) with a virtual
// clock, so each lease is judged to the millisecond: renewed before its TTL it stands, not renewed it
// lapses at its TTL (at the first sweep from then), never a millisecond before; after a restart each
// lease gets one TTL from the opening; a lapsed node goes offline once; heartbeats reach the store in
// batches. The background duties run on their own timers here, as in a server.
import { strict as assert } from 'node:assert';
import { after, before, describe, it } from 'node:test';
import { fromDagi } from '../../src/domain/node.js';
import { Registry, type RegistryOptions } from '../../src/engine/registry.js';
import { openStore } from '../../src/store/open-store.js';
import type { Store } from '../../src/store/store.js';
import { testLogger } from '../support/logger.js';
import { virtualClock, type VirtualClock } from '../support/virtual-clock.js';

const TTL_MS = 10_000;
const SWEEP_MS = 1_000;
const FLUSH_MS = 500;
const HOUR_MS = 3_600_000;
/** The tests share one store (an embedded database takes seconds to make); each starts a day after the last. */
let epoch = Date.parse('2030-01-01T00:00:00.000Z');

let store: Store;

before(async () => {
  store = await openStore({ kind: 'pglite', dataDir: undefined });
  await store.migrate();
});

after(async () => {
  await store.close();
});

interface Engine {
  clock: VirtualClock;
  /** When the registry started: its duties tick every interval from here. */
  t0: number;
  registry: Registry;
}

/** A registry over the shared store on a virtual clock of its own, started at the clock's start. */
async function engine(overrides: Partial<RegistryOptions> = {}, clock = virtualClock((epoch += 24 * HOUR_MS))): Promise<Engine> {
  const registry = new Registry({
    store,
    logger: testLogger,
    leaseTtlMs: TTL_MS,
    heartbeatFlushMs: FLUSH_MS,
    sweepIntervalMs: SWEEP_MS,
    retentionMs: HOUR_MS,
    cleanupIntervalMs: HOUR_MS,
    changeRetentionMs: HOUR_MS,
    heartbeatHistory: false,
    heartbeatHistoryMs: HOUR_MS,
    maxBatch: 100,
    writeConcurrency: 1,
    clock,
    ...overrides,
  });
  const t0 = clock.now();
  await registry.start();
  return { clock, t0, registry };
}

/** Takes every node the test left online out of the shared store (so no later test sweeps it), then stops. */
async function dispose({ registry }: Engine): Promise<void> {
  for (const node of registry.list({ status: ['online'], limit: 10_000 }).nodes) await registry.deregister(node.namespace, node.node_id, 'graceful_shutdown');
  await registry.stop();
}

async function register(registry: Registry, nodeId: string, ttlMs = TTL_MS): Promise<void> {
  await registry.register(fromDagi({ node_id: nodeId, hostname: `${nodeId}.local`, role: 'lease' }, { leaseTtlMs: ttlMs }));
}

const statusOf = (registry: Registry, nodeId: string): string => registry.get('default', nodeId).status;

async function flushes(registry: Registry): Promise<number> {
  return (await registry.metrics.heartbeatFlushes.get()).values[0]?.value ?? 0;
}

describe('leases in virtual time', () => {
  it('keeps a node renewed before its TTL and takes one not renewed offline at exactly its TTL, once', async () => {
    // Sweeps by hand, at the clock's times: the duties' own timers are far away.
    const engineUnderTest = await engine({ sweepIntervalMs: HOUR_MS, heartbeatFlushMs: HOUR_MS });
    const { clock, registry } = engineUnderTest;
    try {
      registry.openForHeartbeats();
      // The first sweep starts this instance's grace (one TTL for every lease from here): before the nodes come.
      assert.equal(await registry.sweep(), 0);
      await clock.advance(1);
      const registeredAt = clock.now();
      await register(registry, 'renewed');
      await register(registry, 'silent');
      const since = registry.view.version;

      await clock.advanceTo(registeredAt + TTL_MS - 1);
      const beat = await registry.heartbeat({ namespace: 'default', node_id: 'renewed' });
      assert.equal(beat.lease_expires_at, new Date(registeredAt + 2 * TTL_MS - 1).toISOString(), 'a renewal gives one TTL from the heartbeat');
      assert.equal(await registry.sweep(), 0, 'one millisecond before its TTL, no lease has lapsed');
      assert.equal(statusOf(registry, 'silent'), 'online');

      await clock.advanceTo(registeredAt + TTL_MS);
      assert.equal(await registry.sweep(), 1, 'at its TTL, the lease not renewed lapses');
      assert.equal(statusOf(registry, 'silent'), 'offline');
      assert.equal(registry.get('default', 'silent').removal_reason, 'lease_expired');
      assert.equal(statusOf(registry, 'renewed'), 'online', 'the renewed lease stands');
      assert.equal(await registry.sweep(), 0, 'a lapsed node is expired once');

      await clock.advanceTo(registeredAt + 2 * TTL_MS - 2);
      assert.equal(await registry.sweep(), 0, 'the renewed lease stands until one TTL after its renewal');
      await clock.advanceTo(registeredAt + 2 * TTL_MS - 1);
      assert.equal(await registry.sweep(), 1, 'and lapses exactly then');
      assert.equal(statusOf(registry, 'renewed'), 'offline');

      const removals = (await registry.changesSince(since, 100)).filter((change) => change.change_type === 'removed');
      assert.deepEqual(
        removals.map((change) => [change.node_id, change.reason]),
        [
          ['silent', 'lease_expired'],
          ['renewed', 'lease_expired'],
        ],
      );
    } finally {
      await dispose(engineUnderTest);
    }
  });

  it('lets the sweeper take a silent node offline at its first tick from the TTL on, not a tick before, while heartbeats keep another online', async () => {
    const engineUnderTest = await engine();
    const { clock, t0, registry } = engineUnderTest;
    try {
      registry.openForHeartbeats();
      // The first sweep (at t0 + 1 s) starts this instance's grace; the nodes come a millisecond after it.
      await clock.advanceTo(t0 + SWEEP_MS + 1);
      const registeredAt = clock.now();
      await register(registry, 'beating');
      await register(registry, 'quiet');
      const since = registry.view.version;
      // The lease of 'quiet' lapses at registeredAt + TTL (t0 + 11.001 s): the next sweep is at t0 + 12 s.
      const expiresAt = t0 + SWEEP_MS * Math.ceil((registeredAt + TTL_MS - t0) / SWEEP_MS);
      assert.equal(expiresAt, t0 + 12_000);
      // 'beating' heartbeats every 4 s, through many TTLs, while the duties flush and sweep.
      const beat = async (at: number): Promise<void> => {
        await clock.advanceTo(at);
        await registry.heartbeat({ namespace: 'default', node_id: 'beating' });
      };
      await beat(registeredAt + 4_000);
      await beat(registeredAt + 8_000);
      await clock.advanceTo(expiresAt - 1);
      assert.equal(statusOf(registry, 'quiet'), 'online', 'a millisecond before the sweep that finds it lapsed, the node is online');
      await clock.advanceTo(expiresAt);
      assert.equal(statusOf(registry, 'quiet'), 'offline', 'the first sweep from its TTL took it offline');
      for (let at = registeredAt + 12_000; at <= registeredAt + 5 * TTL_MS; at += 4_000) await beat(at);
      assert.equal(statusOf(registry, 'beating'), 'online', 'heartbeats before each TTL kept it online');
      assert.equal(registry.taskStates().lease_sweeper?.lastError, null);

      const removals = (await registry.changesSince(since, 100)).filter((change) => change.change_type === 'removed');
      assert.deepEqual(
        removals.map((change) => [change.node_id, change.reason, change.node.updated_at]),
        [['quiet', 'lease_expired', new Date(expiresAt).toISOString()]],
        'one removal, written by the sweep at its first tick from the TTL',
      );
    } finally {
      await dispose(engineUnderTest);
    }
  });

  it('takes a node offline at its last heartbeat plus TTL, at the sweep tick, once it goes quiet', async () => {
    const engineUnderTest = await engine();
    const { clock, t0, registry } = engineUnderTest;
    try {
      registry.openForHeartbeats();
      await clock.advanceTo(t0 + SWEEP_MS);
      await register(registry, 'stopping');
      // Heartbeats until t0 + 20.5 s, each flushed by the duty; then nothing.
      for (let at = t0 + 4_500; at <= t0 + 20_500; at += 4_000) {
        await clock.advanceTo(at);
        await registry.heartbeat({ namespace: 'default', node_id: 'stopping' });
      }
      // Lapses at t0 + 30.5 s; the sweep ticks at t0 + 30 s and t0 + 31 s.
      await clock.advanceTo(t0 + 31_000 - 1);
      assert.equal(statusOf(registry, 'stopping'), 'online', 'the sweep half a second before the lapse leaves it');
      await clock.advanceTo(t0 + 31_000);
      assert.equal(statusOf(registry, 'stopping'), 'offline');
      assert.equal(registry.get('default', 'stopping').last_heartbeat, new Date(t0 + 20_500).toISOString(), 'the record keeps the last heartbeat it had');
      assert.throws(() => registry.heartbeat({ namespace: 'default', node_id: 'stopping' }), { code: 'REGISTRATION_REQUIRED' });
    } finally {
      await dispose(engineUnderTest);
    }
  });

  it('gives every lease one TTL from the opening after a restart, however long the registry was down or slow to open', async () => {
    const clock = virtualClock((epoch += 24 * HOUR_MS));
    const first = await engine({}, clock);
    first.registry.openForHeartbeats();
    await clock.advanceTo(first.t0 + SWEEP_MS);
    await register(first.registry, 'beating');
    await register(first.registry, 'silent');
    await first.registry.stop();

    // Down for three TTLs, then loaded, then five seconds more before its listeners open; the duties tick meanwhile.
    await clock.advance(3 * TTL_MS);
    const second = await engine({}, clock);
    const { registry } = second;
    try {
      await clock.advanceTo(second.t0 + 5_000);
      assert.equal(statusOf(registry, 'silent'), 'online', 'no lease is judged before the registry can hear heartbeats');
      registry.openForHeartbeats();
      // The grace runs from the sweeper's first run after the opening: at its next tick, one sweep interval on.
      const graceFrom = clock.now() + SWEEP_MS;
      await clock.advanceTo(graceFrom + TTL_MS / 2);
      await registry.heartbeat({ namespace: 'default', node_id: 'beating' });

      await clock.advanceTo(graceFrom + TTL_MS - 1);
      assert.equal(statusOf(registry, 'silent'), 'online', 'a millisecond before one TTL from the grace, every lease stands');
      await clock.advanceTo(graceFrom + TTL_MS);
      assert.equal(statusOf(registry, 'silent'), 'offline', 'one TTL from the grace (a sweep tick), the silent node lapses');
      assert.equal(registry.get('default', 'silent').removal_reason, 'lease_expired');
      assert.equal(statusOf(registry, 'beating'), 'online', 'the node that heartbeat after the opening keeps its lease');
    } finally {
      await dispose(second);
    }
  });

  it('expires each lapsed node once, across batches and with two instances sweeping at the same moment', async () => {
    const clock = virtualClock((epoch += 24 * HOUR_MS));
    // Sweeps by hand; two expiry candidates per store round trip.
    const options = { sweepIntervalMs: HOUR_MS, heartbeatFlushMs: HOUR_MS, maxBatch: 2 };
    const a = await engine(options, clock);
    const b = await engine(options, clock);
    try {
      for (const { registry } of [a, b]) {
        registry.openForHeartbeats();
        assert.equal(await registry.sweep(), 0);
      }
      await clock.advance(1);
      const registeredAt = clock.now();
      const nodes = ['lapse-1', 'lapse-2', 'lapse-3', 'lapse-4', 'lapse-5'];
      for (const nodeId of nodes) await register(a.registry, nodeId);
      const since = a.registry.view.version;
      await b.registry.catchUp();

      await clock.advanceTo(registeredAt + TTL_MS);
      const [byA, byB] = await Promise.all([a.registry.sweep(), b.registry.sweep()]);
      assert.equal(byA + byB, nodes.length, `the sweeps report every lapsed node between them, once (${byA} + ${byB})`);
      assert.deepEqual(await Promise.all([a.registry.sweep(), b.registry.sweep()]), [0, 0], 'nothing is left to expire');

      for (const { registry } of [a, b]) {
        await registry.catchUp();
        const removals = (await registry.changesSince(since, 100)).filter((change) => change.change_type === 'removed');
        assert.deepEqual(removals.map((change) => change.node_id).sort(), nodes, 'one removal per node');
        assert.ok(removals.every((change) => change.reason === 'lease_expired'));
        for (const nodeId of nodes) assert.equal(statusOf(registry, nodeId), 'offline');
      }
    } finally {
      await a.registry.stop();
      await dispose(b);
    }
  });

  it('writes the heartbeats of a flush interval to the store in one batch, the latest per node', async () => {
    // Sweeps by hand; the flush duty runs every 500 ms.
    const engineUnderTest = await engine({ sweepIntervalMs: HOUR_MS });
    const { clock, t0, registry } = engineUnderTest;
    try {
      registry.openForHeartbeats();
      await clock.advance(1);
      const registeredAt = clock.now();
      for (const nodeId of ['batch-1', 'batch-2', 'batch-3']) await register(registry, nodeId);
      const expiredInStore = async (atMs: number): Promise<string[]> => (await store.findExpired(atMs, 0, 100)).map((candidate) => candidate.node_id).sort();
      assert.deepEqual(await expiredInStore(registeredAt + TTL_MS), ['batch-1', 'batch-2', 'batch-3']);
      const before = await flushes(registry);

      await clock.advanceTo(t0 + 100);
      for (const nodeId of ['batch-1', 'batch-2', 'batch-3']) await registry.heartbeat({ namespace: 'default', node_id: nodeId });
      await clock.advanceTo(t0 + 200);
      await registry.heartbeat({ namespace: 'default', node_id: 'batch-3' });

      await clock.advanceTo(t0 + FLUSH_MS - 1);
      assert.deepEqual(await expiredInStore(registeredAt + TTL_MS), ['batch-1', 'batch-2', 'batch-3'], 'before the flush, the store has not heard of the renewals');
      assert.equal(await flushes(registry), before);

      await clock.advanceTo(t0 + FLUSH_MS);
      assert.equal(await flushes(registry), before + 1, 'one flush wrote them all');
      assert.deepEqual(await expiredInStore(registeredAt + TTL_MS), [], 'the store has every renewal');
      assert.deepEqual(await expiredInStore(t0 + 100 + TTL_MS), ['batch-1', 'batch-2'], 'renewed at their heartbeat');
      assert.deepEqual(await expiredInStore(t0 + 200 + TTL_MS), ['batch-1', 'batch-2', 'batch-3'], 'the second heartbeat of batch-3 is the one written');

      await clock.advanceTo(t0 + 3 * FLUSH_MS);
      assert.equal(await flushes(registry), before + 1, 'a flush interval without heartbeats writes nothing');
    } finally {
      await dispose(engineUnderTest);
    }
  });
});
