// The Store contract on the real PostgreSQL server, plus what only a server does: NOTIFY and locks.
import { strict as assert } from 'node:assert';
import { after, before, describe, it } from 'node:test';
import { fromDagi } from '../../src/domain/node.js';
import { openStore } from '../../src/store/open-store.js';
import type { Store } from '../../src/store/store.js';
import { createTestDatabase, type TestDatabase } from '../support/postgres.js';
import { storeContract } from './store.contract.js';

storeContract('postgres', async () => {
  const database = await createTestDatabase();
  const store = await openStore({ kind: 'postgres', url: database.url });
  return {
    store,
    async dispose() {
      await store.close();
      await database.drop();
    },
  };
});

describe('PostgreSQL store across connections', () => {
  let database: TestDatabase;
  let a: Store;
  let b: Store;
  before(async () => {
    database = await createTestDatabase();
    a = await openStore({ kind: 'postgres', url: database.url });
    b = await openStore({ kind: 'postgres', url: database.url });
    await Promise.all([a.migrate(), b.migrate()]);
  });
  after(async () => {
    await a.close();
    await b.close();
    await database.drop();
  });

  it('wakes other instances with the committed version', async () => {
    const seen: number[] = [];
    const unwatch = await b.watchVersions((version) => seen.push(version));
    const reg = fromDagi({ node_id: 'notify-me', hostname: 'h', role: 'r' }, { leaseTtlMs: 1000 });
    await a.applyWrites([{ kind: 'register', registration: reg }], Date.now());
    const deadline = Date.now() + 2000;
    while (seen.length === 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
    await unwatch();
    assert.deepEqual(seen, [await a.currentVersion()]);
  });

  it('gives the sweeper duty to exactly one instance, and hands it over when the holder goes', async () => {
    const first = await a.holdsDuty('sweeper');
    const second = await b.holdsDuty('sweeper');
    assert.equal(first, true);
    assert.equal(second, false);
    await a.close();
    // The server ends the closed session asynchronously; the duty moves at one of the next sweeps.
    const deadline = Date.now() + 5000;
    while (!(await b.holdsDuty('sweeper')) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
    assert.equal(await b.holdsDuty('sweeper'), true);
    a = await openStore({ kind: 'postgres', url: database.url });
    assert.equal(await a.holdsDuty('sweeper'), false);
  });

  it('serialises concurrent writers so versions are gap-free and unique', async () => {
    const start = await a.currentVersion();
    const batches = Array.from({ length: 20 }, (_, i) => {
      const store = i % 2 === 0 ? a : b;
      const writes = Array.from({ length: 10 }, (_, j) => ({
        kind: 'register' as const,
        registration: fromDagi({ node_id: `c-${i}-${j}`, hostname: 'h', role: 'r' }, { leaseTtlMs: 1000 }),
      }));
      return store.applyWrites(writes, Date.now());
    });
    await Promise.all(batches);
    const page = await a.changesSince(start, 1000);
    assert.deepEqual(
      page.changes.map((c) => c.version),
      Array.from({ length: 200 }, (_, i) => start + i + 1),
    );
  });

  it('orders racing writes of one node by their key lock: the newest incarnation wins, versions follow', async () => {
    const start = await a.currentVersion();
    const incarnations = Array.from({ length: 20 }, (_, i) => i + 1).sort(() => Math.random() - 0.5);
    const outcomes = await Promise.all(
      incarnations.map((incarnation, i) =>
        (i % 2 === 0 ? a : b).applyWrites(
          [{ kind: 'register', registration: fromDagi({ node_id: 'contended', hostname: `h${incarnation}`, role: 'r', incarnation }, { leaseTtlMs: 60_000 }) }],
          Date.now(),
        ),
      ),
    );
    assert.equal((await a.getNode('default', 'contended'))?.incarnation, 20);
    const rejected = outcomes.flat().filter((o) => o.status === 'rejected');
    assert.ok(rejected.every((o) => o.status === 'rejected' && o.error.code === 'STALE_INCARNATION'));
    const changes = (await a.changesSince(start, 1000)).changes.filter((c) => c.node_id === 'contended');
    assert.equal(changes.length, 20 - rejected.length);
    const seen = changes.map((c) => c.node.incarnation);
    assert.deepEqual(
      seen,
      [...seen].sort((x, y) => x - y),
      'each accepted write is newer than the one before it',
    );
    assert.equal(seen.at(-1), 20);
    const versions = (await a.changesSince(start, 1000)).changes.map((c) => c.version);
    assert.deepEqual(
      versions,
      Array.from({ length: versions.length }, (_, i) => start + i + 1),
    );
  });
});
