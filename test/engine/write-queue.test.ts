// Group commit's failure rule, on a commit function of its own (no store): a refused batch is split
// until the writes at fault are alone; an outage fails the batch whole, tried once.
import { strict as assert } from 'node:assert';
import { describe, it } from 'node:test';
import { RollcallError } from '../../src/domain/errors.js';
import { WriteQueue, type CommitBatch, type JudgeFailure } from '../../src/engine/write-queue.js';
import type { NodeWrite, WriteOutcome } from '../../src/store/store.js';

const write = (nodeId: string): NodeWrite => ({ kind: 'deregister', namespace: 'default', node_id: nodeId, reason: 'test' });
const idOf = (item: NodeWrite): string => (item.kind === 'register' ? item.registration.node_id : item.node_id);
const unchanged = (item: NodeWrite): WriteOutcome => ({ status: 'unchanged', node: { node_id: idOf(item) } as never });

/** The error a settled write was rejected with. */
const reasonOf = (result: PromiseSettledResult<unknown>): RollcallError => {
  assert.equal(result.status, 'rejected');
  return (result as { reason: RollcallError }).reason;
};

const refused: JudgeFailure = (_error, writes) => Promise.resolve({ kind: 'refused', error: new RollcallError('VALIDATION_FAILED', `refused ${writes.map(idOf).join(',')}`) });

describe('write queue', () => {
  it('commits every write but the ones at fault, in order, and gives those their own error', async () => {
    const committed: string[] = [];
    let transactions = 0;
    const commit: CommitBatch = (writes) => {
      transactions += 1;
      if (writes.some((item) => idOf(item).startsWith('bad'))) return Promise.reject(new Error('22P05'));
      committed.push(...writes.map(idOf));
      return Promise.resolve(writes.map(unchanged));
    };
    const queue = new WriteQueue(commit, 1000, 1, () => undefined, refused);
    const ids = Array.from({ length: 200 }, (_, i) => (i === 17 || i === 150 ? `bad-${i}` : `ok-${i}`));
    const results = await Promise.allSettled(ids.map((id) => queue.submit(write(id))));
    results.forEach((result, index) => {
      const id = ids[index] as string;
      if (id.startsWith('bad')) assert.equal(reasonOf(result).message, `refused ${id}`);
      else assert.equal(result.status, 'fulfilled', id);
    });
    assert.deepEqual(
      committed,
      ids.filter((id) => id.startsWith('ok')),
      'committed once each, in the order submitted',
    );
    assert.ok(transactions <= 2 * 2 * Math.ceil(Math.log2(200)) + 1, `${transactions} transactions`);
  });

  it('fails a batch whole, tried once, when the store cannot be reached', async () => {
    let transactions = 0;
    const queue = new WriteQueue(
      () => {
        transactions += 1;
        return Promise.reject(new Error('connect ECONNREFUSED'));
      },
      1000,
      1,
      () => undefined,
      () => Promise.resolve({ kind: 'unavailable' }),
    );
    const results = await Promise.allSettled(Array.from({ length: 50 }, (_, i) => queue.submit(write(`n-${i}`))));
    assert.equal(transactions, 1);
    for (const result of results) assert.equal(reasonOf(result).code, 'STORE_UNAVAILABLE');
  });

  it('never tries again what failed with its own error (the write committed, the view did not follow)', async () => {
    let transactions = 0;
    const queue = new WriteQueue(
      () => {
        transactions += 1;
        return Promise.reject(new RollcallError('STORE_UNAVAILABLE', 'view'));
      },
      1000,
      1,
      () => undefined,
      refused,
    );
    const results = await Promise.allSettled([queue.submit(write('a')), queue.submit(write('b'))]);
    assert.equal(transactions, 1);
    assert.deepEqual(
      results.map((result) => reasonOf(result).message),
      ['view', 'view'],
    );
  });
});
