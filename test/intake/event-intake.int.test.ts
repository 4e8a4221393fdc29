// The intake's acknowledgement rule on the in-process bus: a batch is done only when its dead
// letters are out; a batch delivered again after a failure is applied (and dead-lettered) again.
import { strict as assert } from 'node:assert';
import { after, before, describe, it } from 'node:test';
import type { OutgoingMessage } from '../../src/bus/bus.js';
import { MemoryBus } from '../../src/bus/memory-bus.js';
import { envelope, topicNames } from '../../src/domain/events.js';
import { DEAD_LETTER_HEADERS, EventIntake } from '../../src/intake/event-intake.js';
import { testLogger } from '../support/logger.js';
import { pollUntil } from '../support/processes.js';
import { startTestServer, type TestServer } from '../support/server.js';

/** A bus whose dead-letter topic refuses the first `failures` publishes. */
class FlakyDeadLetterBus extends MemoryBus {
  constructor(
    private readonly deadLetterTopic: string,
    public failures: number,
  ) {
    super();
  }

  override async publish(topic: string, messages: OutgoingMessage[]): Promise<void> {
    if (topic === this.deadLetterTopic && this.failures > 0) {
      this.failures--;
      throw new Error('broker away');
    }
    return super.publish(topic, messages);
  }
}

describe('event intake acknowledgement', () => {
  let t: TestServer;
  before(async () => {
    t = await startTestServer({ store: 'pglite', config: { dataDir: 'memory://' } });
  });
  after(async () => {
    await t.close();
  });

  it('delivers a dead letter even when its first publish fails, and applies the good events once', async () => {
    const topics = topicNames('flaky.omninode_bridge.onex.evt');
    const bus = new FlakyDeadLetterBus(topics.deadLetter, 2);
    const intake = new EventIntake({
      bus,
      registry: t.server.registry,
      metrics: t.server.metrics,
      topics,
      group: 'flaky-registry',
      registryId: 'flaky',
      defaults: { namespace: 'default', leaseTtlMs: 60_000 },
      logger: testLogger,
      maxEventBytes: 64 * 1024,
      dedupeSize: 1000,
      dedupeTtlMs: 60_000,
    });
    await intake.start();
    const letters: string[] = [];
    const reader = await bus.subscribe({
      group: 'reader',
      topics: [topics.deadLetter],
      start: 'earliest',
      handler: async (batch) => void letters.push(...batch.map((m) => m.headers[DEAD_LETTER_HEADERS.reason] ?? '')),
    });
    try {
      const good = envelope('NODE_INTROSPECTION', 'flaky-1', { node_id: 'flaky-1', node_type: 'worker' });
      await bus.publish(topics.introspection, [
        { key: 'flaky-1', value: JSON.stringify(good) },
        // Readable (it has an event id) but not acceptable: the case a remembered id would hide.
        { key: 'bad-1', value: JSON.stringify(envelope('NODE_INTROSPECTION', 'bad-1', { node_id: 'bad-1', node_type: 'not a type!' })) },
      ]);
      await pollUntil(
        async () => letters.length,
        (count) => count >= 1,
        { timeoutMs: 10_000, what: 'the dead letter' },
      );
      assert.equal(bus.failures, 0, 'the batch came again after each failed publish');
      assert.deepEqual(letters, ['VALIDATION_FAILED']);
      const changes = await t.server.registry.changesSince(0, 1000);
      assert.equal(changes.filter((change) => change.node_id === 'flaky-1').length, 1, 'the good event was applied once');
    } finally {
      await reader.close();
      await intake.stop();
      await bus.close();
    }
  });
});
