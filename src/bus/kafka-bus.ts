// The Kafka adapter of the event bus, on kafkajs. Chosen over @platformatic/kafka by measurement
// (bench figures in the issue notes): kafkajs consumed 1.8x faster here and, above all, committed
// correctly through rebalances (no duplicates, offsets never moved back), and it runs on Node 20
// without engine warnings. Delivery is at least once: a batch's offsets are committed only after
// its handler resolved, a failed handler gets the same batch again, and a rebalance may hand an
// uncommitted batch to another member.
import { Kafka, Partitioners, logLevel, type Admin, type Consumer, type KafkaMessage, type LogEntry, type Producer } from 'kafkajs';
import type { Logger } from 'pino';
import { RollcallError } from '../domain/errors.js';
import { subscriptionRoundRobin } from './kafka-assigner.js';
import type { BusHealth, BusMessage, EventBus, OutgoingMessage, SubscribeOptions, Subscription, TopicSpec } from './bus.js';

export interface KafkaBusOptions {
  brokers: string[];
  clientId: string;
  replicationFactor?: number;
  logger: Logger;
  /** Longest wait of a fetch that finds nothing new (bounds how long close takes). */
  maxWaitMs?: number;
  /** Partitions whose batches are handled side by side by one subscription. */
  partitionsConcurrently?: number;
}

const RETRY_MS = [100, 250, 500, 1000, 2000, 5000];

export class KafkaBus implements EventBus {
  readonly kind = 'kafka';
  private readonly kafka: Kafka;
  private readonly admin: Admin;
  private readonly producer: Producer;
  private readonly subscriptions = new Set<Subscription>();
  private readonly log: Logger;
  private connected: Promise<void> | null = null;
  private closed = false;

  constructor(private readonly options: KafkaBusOptions) {
    this.log = options.logger.child({ component: 'kafka' });
    const log = this.log;
    this.kafka = new Kafka({
      clientId: options.clientId,
      brokers: options.brokers,
      connectionTimeout: 3000,
      retry: { initialRetryTime: 200, retries: 5 },
      logLevel: logLevel.WARN,
      // kafkajs reports what it retries (rebalances, reconnects) as errors: they are warnings to us.
      logCreator: () => (entry: LogEntry) => {
        const { message, ...extra } = entry.log;
        if (entry.level <= logLevel.WARN) log.warn({ kafka: entry.namespace, ...extra }, message);
        else log.debug({ kafka: entry.namespace, ...extra }, message);
      },
    });
    this.admin = this.kafka.admin();
    // The Java client's partitioner (murmur2 of the key), so other producers agree on partitions.
    this.producer = this.kafka.producer({ createPartitioner: Partitioners.DefaultPartitioner, allowAutoTopicCreation: false });
  }

  /** Connects admin and producer; fails with the addresses tried when the cluster does not answer. */
  connect(): Promise<void> {
    this.connected ??= (async () => {
      try {
        await this.admin.connect();
        await this.producer.connect();
      } catch (error) {
        this.connected = null;
        throw new RollcallError('BUS_UNAVAILABLE', `Kafka at ${this.options.brokers.join(',')} does not answer: ${describe(error)}`, { cause: error });
      }
    })();
    return this.connected;
  }

  async ensureTopics(topics: TopicSpec[]): Promise<void> {
    await this.connect();
    const created = await createTopicsAndWait(this.admin, topics, { replicationFactor: this.options.replicationFactor ?? 1 });
    if (created.length > 0) this.log.info({ topics: created }, 'topics created');
  }

  async publish(topic: string, messages: OutgoingMessage[]): Promise<void> {
    if (messages.length === 0) return;
    if (this.closed) throw new RollcallError('BUS_UNAVAILABLE', 'The Kafka bus is closed.');
    try {
      await this.connect();
      await this.producer.send({
        topic,
        acks: -1,
        messages: messages.map((message) => ({ key: message.key, value: message.value, ...(message.headers ? { headers: message.headers } : {}) })),
      });
    } catch (error) {
      if (error instanceof RollcallError) throw error;
      throw new RollcallError('BUS_UNAVAILABLE', `Kafka did not accept ${messages.length} message(s) for ${topic}: ${describe(error)}`, { cause: error });
    }
  }

  async subscribe(options: SubscribeOptions): Promise<Subscription> {
    if (this.closed) throw new RollcallError('BUS_UNAVAILABLE', 'The Kafka bus is closed.');
    const consumer: Consumer = this.kafka.consumer({
      groupId: options.group,
      maxWaitTimeInMs: this.options.maxWaitMs ?? 500,
      sessionTimeout: 10_000,
      heartbeatInterval: 1_000,
      rebalanceTimeout: 10_000,
      allowAutoTopicCreation: false,
      partitionAssigners: [subscriptionRoundRobin],
    });
    let joined: () => void = () => undefined;
    const ready = new Promise<void>((resolve) => {
      joined = resolve;
    });
    consumer.on(consumer.events.GROUP_JOIN, () => joined());
    consumer.on(consumer.events.CRASH, (event) => options.onError?.(event.payload.error));
    try {
      await consumer.connect();
      await consumer.subscribe({ topics: options.topics, fromBeginning: options.start === 'earliest' });
    } catch (error) {
      await consumer.disconnect().catch(() => undefined);
      throw new RollcallError('BUS_UNAVAILABLE', `Cannot consume ${options.topics.join(', ')} from Kafka: ${describe(error)}`, { cause: error });
    }
    const max = options.maxBatch ?? 1000;
    await consumer.run({
      autoCommit: false,
      eachBatchAutoResolve: false,
      partitionsConsumedConcurrently: this.options.partitionsConcurrently ?? 3,
      eachBatch: async (payload) => {
        const { batch } = payload;
        for (let start = 0; start < batch.messages.length; start += max) {
          const chunk = batch.messages.slice(start, start + max);
          const messages = chunk.map((message) => toBusMessage(batch.topic, batch.partition, message));
          for (let attempt = 0; ; attempt++) {
            // Shutting down, or the partition moved to another member: leave it uncommitted.
            if (!payload.isRunning() || payload.isStale()) return;
            try {
              await options.handler(messages);
              break;
            } catch (error) {
              options.onError?.(error as Error);
              await new Promise((resolve) => setTimeout(resolve, RETRY_MS[Math.min(attempt, RETRY_MS.length - 1)]));
              await payload.heartbeat();
            }
          }
          const last = chunk[chunk.length - 1];
          if (!last) continue;
          for (const message of chunk) payload.resolveOffset(message.offset);
          await payload.commitOffsetsIfNecessary({ topics: [{ topic: batch.topic, partitions: [{ partition: batch.partition, offset: (BigInt(last.offset) + 1n).toString() }] }] });
          await payload.heartbeat();
        }
      },
    });
    let closing: Promise<void> | null = null;
    const subscription: Subscription = {
      ready,
      close: () => {
        // disconnect() lets a running batch finish and commit, then leaves the group.
        closing ??= consumer.disconnect().finally(() => {
          this.subscriptions.delete(subscription);
        });
        return closing;
      },
    };
    this.subscriptions.add(subscription);
    return subscription;
  }

  async health(): Promise<BusHealth> {
    if (this.closed) return { ok: false, detail: 'closed' };
    try {
      await this.connect();
      const cluster = await this.admin.describeCluster();
      return { ok: true, detail: `${cluster.brokers.length} broker(s) at ${this.options.brokers.join(',')}` };
    } catch (error) {
      return { ok: false, detail: `Kafka at ${this.options.brokers.join(',')} does not answer: ${describe(error)}` };
    }
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    await Promise.all([...this.subscriptions].map((subscription) => subscription.close()));
    await this.producer.disconnect().catch(() => undefined);
    await this.admin.disconnect().catch(() => undefined);
  }
}

function toBusMessage(topic: string, partition: number, message: KafkaMessage): BusMessage {
  const headers: Record<string, string> = {};
  for (const [name, value] of Object.entries(message.headers ?? {})) {
    if (value === undefined) continue;
    headers[name] = Array.isArray(value) ? value.map(String).join(',') : value.toString();
  }
  const key = message.key?.toString() ?? '';
  return {
    topic,
    partition,
    offset: message.offset,
    key: key === '' ? null : key,
    value: message.value?.toString() ?? '',
    headers,
    timestamp: Number(message.timestamp),
  };
}

/** Errors a broker answers while a topic it just created is not yet in its metadata. */
const SETTLING = new Set(['UNKNOWN_TOPIC_OR_PARTITION', 'LEADER_NOT_AVAILABLE']);

/**
 * Creates the missing topics and waits until every partition of every topic named has a leader.
 * Returns the names it created. Our own wait rather than kafkajs's `waitForLeaders`: that one gives
 * up on UNKNOWN_TOPIC_OR_PARTITION, which a KRaft broker answers for a moment after creating a topic.
 * A topic another client created in between counts as there.
 */
export async function createTopicsAndWait(admin: Admin, topics: TopicSpec[], options: { replicationFactor?: number; timeoutMs?: number } = {}): Promise<string[]> {
  const existing = new Set(await admin.listTopics());
  const missing = topics.filter((topic) => !existing.has(topic.name));
  if (missing.length > 0) {
    await admin.createTopics({
      waitForLeaders: false,
      topics: missing.map((topic) => ({ topic: topic.name, numPartitions: topic.partitions, replicationFactor: options.replicationFactor ?? 1 })),
    });
  }
  const names = topics.map((topic) => topic.name);
  const deadline = Date.now() + (options.timeoutMs ?? 30_000);
  let last = 'no leader yet';
  for (let delay = 50; ; delay = Math.min(delay * 2, 1000)) {
    try {
      const { topics: found } = await admin.fetchTopicMetadata({ topics: names });
      const waiting = found.filter((topic) => topic.partitions.length === 0 || topic.partitions.some((partition) => partition.leader < 0));
      if (waiting.length === 0) return missing.map((topic) => topic.name);
      last = `no leader yet for ${waiting.map((topic) => topic.name).join(', ')}`;
    } catch (error) {
      if (!SETTLING.has((error as { type?: string }).type ?? '')) throw error;
      last = describe(error);
    }
    if (Date.now() >= deadline) throw new RollcallError('BUS_UNAVAILABLE', `Kafka topics ${names.join(', ')} not ready after ${options.timeoutMs ?? 30_000} ms: ${last}`);
    await new Promise((resolve) => setTimeout(resolve, delay));
  }
}

function describe(error: unknown): string {
  if (error instanceof AggregateError && error.errors.length > 0) {
    return `${error.message} (${error.errors.map((inner: unknown) => (inner instanceof Error ? inner.message : String(inner))).join('; ')})`;
  }
  return error instanceof Error ? error.message : String(error);
}
