// A registration that changes nothing is a heartbeat, answered from the live view by the same rule
// the store decides with (domain/node-lifecycle): the same content with its documents' keys in
// another order is unchanged there too, so it asks no admission and queues no write.
import { strict as assert } from 'node:assert';
import { after, before, describe, it } from 'node:test';
import { RollcallError } from '../../src/domain/errors.js';
import { contentHash, fromDagi, type Registration } from '../../src/domain/node.js';
import { Registry } from '../../src/engine/registry.js';
import { openStore } from '../../src/store/open-store.js';
import type { Store } from '../../src/store/store.js';
import { testLogger } from '../support/logger.js';

function registration(capabilities: Registration['capabilities']): Registration {
  return fromDagi({ node_id: 'same', hostname: 'same.local', role: 'worker', capabilities }, { leaseTtlMs: 60_000 });
}

describe('a registration of unchanged content, keys reordered', () => {
  let store: Store;
  let registry: Registry;
  before(async () => {
    store = await openStore({ kind: 'pglite', dataDir: undefined });
    await store.migrate();
    registry = new Registry({
      store,
      logger: testLogger,
      leaseTtlMs: 60_000,
      heartbeatFlushMs: 3_600_000,
      sweepIntervalMs: 3_600_000,
      retentionMs: 3_600_000,
      cleanupIntervalMs: 3_600_000,
      changeRetentionMs: 3_600_000,
      heartbeatHistory: false,
      heartbeatHistoryMs: 3_600_000,
      maxBatch: 100,
      writeConcurrency: 1,
    });
    await registry.start();
  });
  after(async () => {
    await registry.stop();
    await store.close();
  });

  it('is answered unchanged without asking admission, which would refuse a write', async () => {
    const first = await registry.register(registration({ gpu: true, cores: 8 }));
    assert.equal(first.outcome, 'added');
    const asked: string[] = [];
    registry.useAdmission({
      admit: (reg) => {
        asked.push(reg.node_id);
        throw new RollcallError('POLICY_DENIED', 'no writes now');
      },
    });
    const reordered = registration({ cores: 8, gpu: true });
    assert.notEqual(contentHash(reordered), first.node.content_hash);
    const again = await registry.register(reordered);
    assert.equal(again.outcome, 'unchanged');
    assert.equal(again.version, first.version);
    assert.deepEqual(asked, []);
    registry.useAdmission(null);
  });
});
