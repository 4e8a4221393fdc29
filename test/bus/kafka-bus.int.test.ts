import { strict as assert } from 'node:assert';
import { test } from 'node:test';
import { Kafka, logLevel } from 'kafkajs';
import { KafkaBus } from '../../src/bus/kafka-bus.js';
import { KAFKA_BROKERS, requireKafka, testName } from '../support/kafka.js';
import { testLogger } from '../support/logger.js';
import { busContract } from './bus.contract.js';

busContract(
  'kafka bus',
  async () => {
    await requireKafka();
    const bus = new KafkaBus({ brokers: KAFKA_BROKERS.split(','), clientId: 'rollcall-test', logger: testLogger, maxWaitMs: 200 });
    await bus.connect();
    return bus;
  },
  testName,
);

// Instances starting side by side create their topics at the same moment; a KRaft broker answers
// UNKNOWN_TOPIC_OR_PARTITION for a moment after creating one. ensureTopics returns only once every
// partition has a leader, and never fails on that moment or on a topic another instance created.
test('kafka bus: several instances create their topics at once, and each topic serves when ensureTopics returns', async () => {
  await requireKafka();
  const run = testName('concurrent');
  const buses = Array.from({ length: 4 }, (_, i) => new KafkaBus({ brokers: KAFKA_BROKERS.split(','), clientId: `rollcall-test-${i}`, logger: testLogger, maxWaitMs: 200 }));
  const names: string[] = [];
  try {
    // allSettled: every bus is done with its topics before any is closed, also when one failed.
    const outcomes = await Promise.allSettled(
      buses.map(async (bus, i) => {
        for (let round = 0; round < 3; round++) {
          // Each round: topics of this bus alone, and topics every bus asks for.
          const own = Array.from({ length: 12 }, (_, n) => ({ name: `${run}.${i}.${round}.${n}`, partitions: n % 2 === 0 ? 1 : 3 }));
          const shared = Array.from({ length: 3 }, (_, n) => ({ name: `${run}.shared.${round}.${n}`, partitions: 2 }));
          await bus.ensureTopics([...own, ...shared]);
          names.push(...own.map((topic) => topic.name));
          for (const topic of [...own, ...shared]) await bus.publish(topic.name, [{ key: 'k', value: String(round) }]);
        }
      }),
    );
    for (const outcome of outcomes) if (outcome.status === 'rejected') throw outcome.reason;
    const admin = new Kafka({ brokers: KAFKA_BROKERS.split(','), logLevel: logLevel.NOTHING }).admin();
    await admin.connect();
    try {
      const { topics } = await admin.fetchTopicMetadata({ topics: [...new Set([...names, `${run}.shared.0.0`])] });
      assert.equal(topics.length, 4 * 3 * 12 + 1);
      for (const topic of topics) {
        const expected = topic.name.includes('.shared.') ? 2 : Number(topic.name.split('.').at(-1)) % 2 === 0 ? 1 : 3;
        assert.equal(topic.partitions.length, expected, `partitions of ${topic.name}`);
      }
      await admin.deleteTopics({ topics: (await admin.listTopics()).filter((name) => name.startsWith(`${run}.`)) });
    } finally {
      await admin.disconnect();
    }
  } finally {
    await Promise.all(buses.map((bus) => bus.close()));
  }
});
