// Duty locks and projection positions on one store (handing a duty between instances is PostgreSQL's own test).
import { strict as assert } from 'node:assert';
import { before, describe, it } from 'node:test';
import type { DutyLocks, ProjectionPositions } from '../../../src/store/store.js';

export function dutiesContract(get: () => DutyLocks & ProjectionPositions): void {
  describe('duty locks and projection positions', () => {
    let store: DutyLocks & ProjectionPositions;
    before(() => {
      store = get();
    });

    it('gives a lone instance every duty, and keeps it on every later ask', async () => {
      for (const duty of ['sweeper', 'relay', 'consul'] as const) {
        assert.equal(await store.holdsDuty(duty), true, duty);
        assert.equal(await store.holdsDuty(duty), true, `${duty} again`);
      }
    });

    it('keeps each projection position apart, from 0, and never moves one backwards', async () => {
      assert.equal(await store.projectionPosition('contract-a'), 0);
      await store.saveProjectionPosition('contract-a', 10);
      await store.saveProjectionPosition('contract-b', 3);
      assert.equal(await store.projectionPosition('contract-a'), 10);
      assert.equal(await store.projectionPosition('contract-b'), 3);
      await store.saveProjectionPosition('contract-a', 7);
      assert.equal(await store.projectionPosition('contract-a'), 10, 'an older position is ignored');
      await store.saveProjectionPosition('contract-a', 12);
      assert.equal(await store.projectionPosition('contract-a'), 12);
    });
  });
}
