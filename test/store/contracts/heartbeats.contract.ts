// The heartbeat log role: history kept and pruned by time.
import { strict as assert } from 'node:assert';
import { before, describe, it } from 'node:test';
import type { HeartbeatLog } from '../../../src/store/store.js';
import { T0 } from './support.js';

export function heartbeatsContract(get: () => HeartbeatLog): void {
  describe('heartbeat log', () => {
    let store: HeartbeatLog;
    before(() => {
      store = get();
    });

    it('keeps and prunes heartbeat history', async () => {
      await store.recordHeartbeats([
        { namespace: 'default', node_id: 'n1', atMs: T0, status: 'online', metrics: { cpu: 0.5 } },
        { namespace: 'default', node_id: 'n1', atMs: T0 + 10_000, status: 'online', metrics: {} },
      ]);
      assert.equal(await store.pruneHeartbeats(T0 + 5_000), 1);
      assert.equal(await store.pruneHeartbeats(T0 + 5_000), 0, 'the newer entry stays');
    });
  });
}
