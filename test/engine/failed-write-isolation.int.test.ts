// A failed write fails alone: registrations from many clients share group-commit batches with writes
// the store refuses (text it cannot hold, numbers too large for their columns, all let through by
// calling the engine directly, past the edge's validation). Every valid write is committed and
// acknowledged, each refused one gets its own VALIDATION_FAILED, and the topology log stays
// gap-free; on PostgreSQL (several transactions in flight) and on PGlite (one at a time). When the
// store cannot be reached at all, a batch still fails as one, without being split.
import { strict as assert } from 'node:assert';
import { after, before, describe, it } from 'node:test';
import { isRollcallError } from '../../src/domain/errors.js';
import { fromDagi, type Registration } from '../../src/domain/node.js';
import type { Registry } from '../../src/engine/registry.js';
import type { NodeStore } from '../../src/store/store.js';
import { CuttableProxy } from '../support/cuttable-proxy.js';
import { createTestDatabase, type TestDatabase } from '../support/postgres.js';
import { startTestServer, type TestServer } from '../support/server.js';

/** Writes per round: PGlite (WebAssembly, in this process) is given fewer, to keep the file's time in bounds. */
const SIZES = { postgres: { valid: 576, refused: 24 }, pglite: { valid: 288, refused: 12 } } as const;

/** What the store refuses though the engine accepts it, each with the SQLSTATE PostgreSQL answers. */
const CULPRITS: Array<{ sqlstate: string; spoil: (registration: Registration) => Registration }> = [
  // 22P05: jsonb has no NUL character.
  { sqlstate: '22P05', spoil: (registration) => ({ ...registration, metadata: { note: 'a\u0000b' } }) },
  // 22P02: an unpaired surrogate is not valid JSON text for jsonb.
  { sqlstate: '22P02', spoil: (registration) => ({ ...registration, capabilities: { models: ['ok', '\uD800'] } }) },
  // 22003: BIGINT and INTEGER columns hold neither.
  { sqlstate: '22003', spoil: (registration) => ({ ...registration, incarnation: 2 ** 64 }) },
  { sqlstate: '22003', spoil: (registration) => ({ ...registration, lease_ttl_ms: 1e10 }) },
];

function registration(nodeId: string, n: number): Registration {
  return fromDagi({ node_id: nodeId, hostname: `${nodeId}.local`, role: 'isolation', labels: [`client-${n % 37}`], capabilities: { n } }, { leaseTtlMs: 3_600_000 });
}

/** Sends valid and refused writes interleaved, all at once, so group commit puts them in shared batches. */
async function mixedWrites(registry: Registry, round: string, sizes: { valid: number; refused: number }): Promise<{ validRefused: number; valid: number; refusedCodes: string[] }> {
  const writes: Array<{ valid: boolean; result: Promise<unknown> }> = [];
  const total = sizes.valid + sizes.refused;
  const every = Math.floor(total / sizes.refused);
  let culprits = 0;
  for (let i = 0; i < total; i += 1) {
    const culprit = i % every === every - 1 && culprits < sizes.refused;
    const reg = registration(`${round}-${culprit ? 'bad' : 'ok'}-${i}`, i);
    const spoil = culprit ? (CULPRITS[culprits++ % CULPRITS.length] as (typeof CULPRITS)[number]).spoil : null;
    writes.push({ valid: !culprit, result: registry.register(spoil ? spoil(reg) : reg) });
  }
  const settled = await Promise.allSettled(writes.map((write) => write.result));
  let validRefused = 0;
  const refusedCodes: string[] = [];
  settled.forEach((outcome, index) => {
    const write = writes[index] as { valid: boolean };
    if (write.valid && outcome.status === 'rejected') validRefused += 1;
    if (!write.valid) refusedCodes.push(outcome.status === 'rejected' && isRollcallError(outcome.reason) ? outcome.reason.code : outcome.status);
  });
  return { validRefused, valid: writes.filter((write) => write.valid).length, refusedCodes };
}

/** Every version from 1 to the current one is in the log exactly once. */
async function assertGapFree(store: NodeStore): Promise<void> {
  const current = await store.currentVersion();
  const versions: number[] = [];
  for (let after = 0; ;) {
    const page = await store.changesSince(after, 1000);
    if (page.changes.length === 0) break;
    versions.push(...page.changes.map((change) => change.version));
    after = page.changes[page.changes.length - 1]?.version ?? after;
  }
  assert.equal(versions.length, current, 'one change per version');
  versions.forEach((version, index) => assert.equal(version, index + 1, 'versions are consecutive'));
}

for (const kind of ['postgres', 'pglite'] as const) {
  describe(`a failed write fails alone (${kind})`, () => {
    let t: TestServer;
    before(async () => {
      t = await startTestServer(kind === 'pglite' ? { store: 'pglite', config: { dataDir: 'memory://' } } : {});
    });
    after(async () => {
      await t.close();
    });

    it(`commits every valid write batched with writes the store refuses`, async (context) => {
      const { registry } = t.server;
      const sizes = SIZES[kind];
      const batches = registry.metrics.writeBatchSize;
      const before = (await batches.get()).values.find((value) => value.metricName?.endsWith('_count'))?.value ?? 0;
      const { store } = registry;
      let transactions = 0;
      const applyWrites = store.applyWrites.bind(store);
      store.applyWrites = (writes, nowMs) => {
        transactions += 1;
        return applyWrites(writes, nowMs);
      };
      const round = await mixedWrites(registry, 'mix', sizes).finally(() => {
        store.applyWrites = applyWrites;
      });
      context.diagnostic(`valid writes refused: ${round.validRefused} of ${round.valid} (sent with ${sizes.refused} the store refuses, ${kind}; ${transactions} transactions)`);
      const afterBatches = (await batches.get()).values.find((value) => value.metricName?.endsWith('_count'))?.value ?? 0;
      assert.ok(afterBatches - before < (sizes.valid + sizes.refused) / 4, `writes shared batches (${afterBatches - before} batches)`);
      assert.equal(round.validRefused, 0, `${round.validRefused} of ${round.valid} valid writes were refused`);
      assert.deepEqual([...new Set(round.refusedCodes)], ['VALIDATION_FAILED'], 'each refused write gets its own VALIDATION_FAILED');
      assert.equal(round.refusedCodes.length, sizes.refused);

      await assertGapFree(store);
      const stored = (await store.loadNodes()).nodes.filter((node) => node.role === 'isolation');
      assert.equal(stored.length, sizes.valid, 'every valid write is stored');
      assert.ok(
        stored.every((node) => node.node_id.startsWith('mix-ok-')),
        'no refused write is stored',
      );
      assert.equal(registry.view.version, await store.currentVersion(), "the live view is at the store's version");
    });

    it('says why the store refused a write', async () => {
      const refused = await t.server.registry.register({ ...registration('alone-bad', 0), metadata: { note: '\u0000' } }).then(
        () => null,
        (error: unknown) => error,
      );
      assert.ok(isRollcallError(refused));
      assert.equal(refused.code, 'VALIDATION_FAILED');
      assert.equal(refused.status, 400);
      assert.match(refused.message, /alone-bad/);
      assert.equal(refused.details?.sqlstate, '22P05');
      await assertGapFree(t.server.registry.store);
    });
  });
}

describe('a store that cannot be reached fails whole batches', () => {
  let database: TestDatabase;
  let proxy: CuttableProxy;
  let t: TestServer;
  before(async () => {
    database = await createTestDatabase();
    const target = new URL(database.url);
    proxy = new CuttableProxy({ host: target.hostname, port: Number(target.port || 5432) });
    await proxy.listen();
    const viaProxy = new URL(database.url);
    viaProxy.port = String(proxy.port);
    t = await startTestServer({ database, config: { databaseUrl: viaProxy.toString() } });
  });
  after(async () => {
    await proxy.listen();
    await t.stop();
    await proxy.cut();
    await database.drop();
  });

  it('answers STORE_UNAVAILABLE to every write of the batch, trying it once', async () => {
    const { registry } = t.server;
    const store = registry.store;
    let attempts = 0;
    const applyWrites = store.applyWrites.bind(store);
    store.applyWrites = (writes, nowMs) => {
      attempts += 1;
      return applyWrites(writes, nowMs);
    };
    try {
      await proxy.cut();
      const results = await Promise.allSettled(Array.from({ length: 64 }, (_, i) => registry.register(registration(`cut-${i}`, i))));
      const codes = results.map((result) => (result.status === 'rejected' && isRollcallError(result.reason) ? result.reason.code : result.status));
      assert.deepEqual([...new Set(codes)], ['STORE_UNAVAILABLE']);
      assert.ok(attempts < 16, `${attempts} transactions tried for 64 writes: an outage is not split`);
    } finally {
      store.applyWrites = applyWrites;
      await proxy.listen();
    }
  });
});
