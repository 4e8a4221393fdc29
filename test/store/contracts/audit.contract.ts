// The audit role: append-only entries, read newest first by filter and page, purged by age.
import { strict as assert } from 'node:assert';
import { before, describe, it } from 'node:test';
import type { AuditEntry, AuditStore } from '../../../src/store/store.js';
import { T0 } from './support.js';

function entry(atMs: number, overrides: Partial<AuditEntry> = {}): AuditEntry {
  return {
    occurred_at: new Date(atMs).toISOString(),
    actor: 'key:k1',
    action: 'node.register',
    namespace: 'aud',
    node_id: 'n1',
    decision: 'allowed',
    reason: null,
    details: {},
    ...overrides,
  };
}

export function auditContract(get: () => AuditStore): void {
  describe('audit', () => {
    let store: AuditStore;
    before(() => {
      store = get();
    });

    it('keeps entries as appended, in order, and reads them newest first by filter', async () => {
      await store.appendAudit([]);
      await store.appendAudit([
        entry(T0),
        entry(T0 + 1000, { action: 'node.deregister', details: { reason: 'graceful_shutdown' } }),
        entry(T0 + 2000, { decision: 'denied', reason: 'policy', namespace: 'aud-other', node_id: null }),
      ]);
      const all = await store.queryAudit({ limit: 10 });
      assert.deepEqual(
        all.map((stored) => stored.occurred_at),
        [T0 + 2000, T0 + 1000, T0].map((ms) => new Date(ms).toISOString()),
      );
      const { id: _id, ...second } = all[1] as (typeof all)[number];
      assert.deepEqual(second, entry(T0 + 1000, { action: 'node.deregister', details: { reason: 'graceful_shutdown' } }));
      assert.deepEqual(
        (await store.queryAudit({ namespace: 'aud', limit: 10 })).map((stored) => stored.action),
        ['node.deregister', 'node.register'],
      );
      assert.equal((await store.queryAudit({ decision: 'denied', limit: 10 }))[0]?.reason, 'policy');
      assert.equal((await store.queryAudit({ action: 'node.deregister', limit: 10 })).length, 1);
      assert.equal((await store.queryAudit({ since: new Date(T0 + 1000).toISOString(), limit: 10 })).length, 2);
    });

    it('pages by the last id seen', async () => {
      const first = await store.queryAudit({ limit: 2 });
      assert.equal(first.length, 2);
      const next = await store.queryAudit({ limit: 2, beforeId: first[1]?.id });
      assert.deepEqual(
        next.map((stored) => stored.occurred_at),
        [new Date(T0).toISOString()],
      );
    });

    it('purges entries older than the cutoff, and only those', async () => {
      assert.equal(await store.purgeAudit(T0 + 1000), 1);
      assert.equal(await store.purgeAudit(T0 + 1000), 0);
      assert.equal((await store.queryAudit({ limit: 10 })).length, 2);
    });
  });
}
