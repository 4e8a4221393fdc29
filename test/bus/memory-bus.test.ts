import { strict as assert } from 'node:assert';
import { test } from 'node:test';
import { MemoryBus } from '../../src/bus/memory-bus.js';
import { uniqueName } from '../support/kafka.js';
import { busContract } from './bus.contract.js';

busContract('memory bus', async () => new MemoryBus(), uniqueName);

test('memory bus: keeps a bounded tail per partition, by count and by bytes; a group behind skips ahead', async () => {
  const bus = new MemoryBus({ retainPerPartition: 5, retainBytesPerPartition: 1000 });
  try {
    await bus.publish(
      'counted',
      Array.from({ length: 12 }, (_, i) => ({ key: null, value: String(i) })),
    );
    await bus.publish(
      'sized',
      Array.from({ length: 10 }, (_, i) => ({ key: null, value: `${i}`.padEnd(300, '.') })),
    );
    const got: Record<string, string[]> = { counted: [], sized: [] };
    const subscription = await bus.subscribe({
      group: 'late',
      topics: ['counted', 'sized'],
      start: 'earliest',
      handler: async (batch) => {
        for (const message of batch) got[message.topic]?.push(message.value.replace(/\.+$/, ''));
      },
    });
    await new Promise((resolve) => setTimeout(resolve, 50));
    await subscription.close();
    assert.deepEqual(got.counted, ['7', '8', '9', '10', '11']);
    assert.deepEqual(got.sized, ['7', '8', '9'], 'at most 1,000 bytes of values');
  } finally {
    await bus.close();
  }
});
