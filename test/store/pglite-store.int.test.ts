// The Store contract on the embedded PGlite database, in memory and in a folder that survives a reopen.
import { strict as assert } from 'node:assert';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { fromDagi } from '../../src/domain/node.js';
import { openStore } from '../../src/store/open-store.js';
import { storeContract } from './store.contract.js';

storeContract('pglite', async () => {
  const store = await openStore({ kind: 'pglite', dataDir: undefined });
  return { store, dispose: () => store.close() };
});

describe('PGlite in a data folder', () => {
  it('keeps registrations across a close and reopen', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'rollcall-pglite-'));
    try {
      const first = await openStore({ kind: 'pglite', dataDir: join(dir, 'data') });
      await first.migrate();
      await first.applyWrites([{ kind: 'register', registration: fromDagi({ node_id: 'kept', hostname: 'h', role: 'r' }, { leaseTtlMs: 1000 }) }], Date.now());
      await first.close();
      const second = await openStore({ kind: 'pglite', dataDir: join(dir, 'data') });
      await second.migrate();
      assert.equal((await second.getNode('default', 'kept'))?.status, 'online');
      assert.equal(await second.currentVersion(), 1);
      await second.close();
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});
