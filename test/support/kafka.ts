// The Kafka broker of the tests: the one `scripts/kafka start` runs (or KAFKA_BROKER_URL's). No
// broker is a failure, never a skip: the tests that claim Kafka need Kafka.
import { randomUUID } from 'node:crypto';
import { Socket } from 'node:net';
import { Kafka, logLevel } from 'kafkajs';
import { topicNames, type TopicNames } from '../../src/domain/events.js';
import { TEST_RUN_TAG } from './run-tag.js';

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

/**
 * Every topic and consumer group a test file makes on the shared broker starts with this file's
 * prefix (which carries the run's tag), so the file removes them all when it ends and the test runner
 * can tell a leftover from another run's topic.
 */
const FILE_PREFIX = `t${TEST_RUN_TAG}-${randomUUID().slice(0, 6)}`;
let madeTopics = false;

/** A topic or consumer-group name of its own for one test, removed from the broker when the test file ends. */
export function testName(kind: string): string {
  madeTopics = true;
  return uniqueName(kind);
}

/** The same kind of name for a bus that is not the shared broker (the in-process bus): nothing to remove. */
export function uniqueName(kind: string): string {
  return `${FILE_PREFIX}-${kind}-${randomUUID().slice(0, 8)}`;
}

/** A topic prefix of its own for one test, so tests sharing the broker never see each other's events. */
export function testTopicPrefix(): string {
  return `${testName('p')}.omninode_bridge.onex.evt`;
}

/** Deletes this file's topics and consumer groups from the shared broker. */
async function removeFileTopics(): Promise<void> {
  const admin = new Kafka({ brokers: KAFKA_BROKERS.split(','), clientId: 'rollcall-test-cleanup', logLevel: logLevel.NOTHING }).admin();
  await admin.connect();
  try {
    // A topic created a moment ago may not be known to every part of the broker yet ("does not host
    // this topic-partition"): list again and delete what is still there, a few times.
    for (let attempt = 1; ; attempt++) {
      const topics = (await admin.listTopics()).filter((topic) => topic.startsWith(FILE_PREFIX));
      if (topics.length === 0) break;
      try {
        await admin.deleteTopics({ topics, timeout: 30_000 });
        break;
      } catch (error) {
        if (attempt >= 5) throw error;
        await new Promise((resolve) => setTimeout(resolve, 500 * attempt));
      }
    }
    const groups = (await admin.listGroups()).groups.map((group) => group.groupId).filter((group) => group.startsWith(FILE_PREFIX));
    if (groups.length > 0) await admin.deleteGroups(groups).catch(() => undefined);
  } finally {
    await admin.disconnect();
  }
}

// After the file's last test and hook, when its servers and clients have closed.
let removing = false;
process.on('beforeExit', () => {
  if (!madeTopics || removing) return;
  removing = true;
  removeFileTopics().catch((error: unknown) => {
    process.stderr.write(`could not remove the test topics ${FILE_PREFIX}*: ${String(error)}\n`);
    process.exitCode = 1;
  });
});

/**
 * Topics and a consumer group of their own for one test's registry: registries of other tests on
 * the shared broker would otherwise join the same group and rebalance it at every start and stop.
 */
export function testTopics(): { prefix: string; topics: TopicNames; config: { kafkaBrokers: string; kafkaTopicPrefix: string; kafkaGroupId: string } } {
  const prefix = testTopicPrefix();
  return { prefix, topics: topicNames(prefix), config: { kafkaBrokers: KAFKA_BROKERS, kafkaTopicPrefix: prefix, kafkaGroupId: `${prefix}.registry` } };
}
