// The Kafka broker of the tests: the one `scripts/kafka start` runs (or KAFKA_BROKER_URL's). No
// broker is a failure, never a skip: the tests that claim Kafka need Kafka.
import { randomUUID } from 'node:crypto';
import { Socket } from 'node:net';
import { topicNames, type TopicNames } from '../../src/domain/events.js';

export const KAFKA_BROKERS = process.env.KAFKA_BROKER_URL ?? process.env.KAFKA_BOOTSTRAP_SERVERS ?? `127.0.0.1:${process.env.KAFKA_PORT ?? '9092'}`;

let checked: Promise<void> | null = null;

/** Resolves when the broker accepts connections; rejects with how to start one. */
export function requireKafka(): Promise<void> {
  checked ??= new Promise<void>((resolve, reject) => {
    const [host, port] = (KAFKA_BROKERS.split(',')[0] ?? '').split(':');
    const socket = new Socket();
    socket.setTimeout(3000);
    socket.once('connect', () => {
      socket.destroy();
      resolve();
    });
    const fail = (why: string): void => {
      socket.destroy();
      reject(new Error(`No Kafka broker at ${KAFKA_BROKERS} (${why}); start one with \`bash scripts/kafka start\` (npm run test:all does).`));
    };
    socket.once('timeout', () => fail('timeout'));
    socket.once('error', (error) => fail(error.message));
    socket.connect(Number(port), host ?? '127.0.0.1');
  });
  return checked;
}

/** A topic prefix of its own for one test, so tests sharing the broker never see each other's events. */
export function testTopicPrefix(): string {
  return `t${randomUUID().slice(0, 8)}.omninode_bridge.onex.evt`;
}

/**
 * Topics and a consumer group of their own for one test's registry: registries of other tests on
 * the shared broker would otherwise join the same group and rebalance it at every start and stop.
 */
export function testTopics(): { prefix: string; topics: TopicNames; config: { kafkaBrokers: string; kafkaTopicPrefix: string; kafkaGroupId: string } } {
  const prefix = testTopicPrefix();
  return { prefix, topics: topicNames(prefix), config: { kafkaBrokers: KAFKA_BROKERS, kafkaTopicPrefix: prefix, kafkaGroupId: `${prefix}.registry` } };
}
