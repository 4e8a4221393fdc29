// The in-process bus of the embedded default: Kafka's model (topics of keyed partitions, consumer
// groups with committed positions, at-least-once batches) inside one process, with bounded
// retention. It keeps nothing across restarts: the store is the record, the bus only carries.
import { EventEmitter } from 'node:events';
import { RollcallError } from '../domain/errors.js';
import type { BusHealth, BusMessage, EventBus, OutgoingMessage, SubscribeOptions, Subscription, TopicSpec } from './bus.js';

interface Partition {
  /** Offset of messages[0]. */
  base: number;
  messages: BusMessage[];
  /** Bytes of the retained values. */
  bytes: number;
}

interface Member {
  id: number;
  topics: string[];
}

interface Group {
  members: Member[];
  committed: Map<string, number>;
}

export interface MemoryBusOptions {
  /** Messages kept per partition; older ones are dropped (a group behind them skips ahead). */
  retainPerPartition?: number;
  /** Bytes of values kept per partition, likewise (diffs carry whole records). */
  retainBytesPerPartition?: number;
  defaultPartitions?: number;
}

const RETRY_MS = 200;

export class MemoryBus implements EventBus {
  readonly kind = 'memory';
  private readonly topics = new Map<string, Partition[]>();
  private readonly groups = new Map<string, Group>();
  private readonly wake = new EventEmitter();
  private readonly retain: number;
  private readonly retainBytes: number;
  private readonly defaultPartitions: number;
  private nextMember = 1;
  private closed = false;
  private readonly subscriptions = new Set<Subscription>();
  /** Topics some group has subscribed to; a group keeps its positions after its members leave. */
  private readonly read = new Set<string>();

  constructor(options: MemoryBusOptions = {}) {
    this.retain = options.retainPerPartition ?? 10_000;
    this.retainBytes = options.retainBytesPerPartition ?? 16 * 1024 * 1024;
    this.defaultPartitions = options.defaultPartitions ?? 1;
    this.wake.setMaxListeners(0);
  }

  async ensureTopics(topics: TopicSpec[]): Promise<void> {
    for (const topic of topics) this.partitionsOf(topic.name, topic.partitions);
  }

  private partitionsOf(topic: string, count = this.defaultPartitions): Partition[] {
    let partitions = this.topics.get(topic);
    if (!partitions) {
      partitions = Array.from({ length: Math.max(1, count) }, () => ({ base: 0, messages: [], bytes: 0 }));
      this.topics.set(topic, partitions);
    }
    return partitions;
  }

  async publish(topic: string, messages: OutgoingMessage[]): Promise<void> {
    if (this.closed) throw new RollcallError('BUS_UNAVAILABLE', 'The in-process bus is closed.');
    const partitions = this.partitionsOf(topic);
    const now = Date.now();
    for (const message of messages) {
      const index = message.key === null ? 0 : hashKey(message.key) % partitions.length;
      const partition = partitions[index] as Partition;
      partition.messages.push({
        topic,
        partition: index,
        offset: String(partition.base + partition.messages.length),
        key: message.key,
        value: message.value,
        headers: { ...message.headers },
        timestamp: now,
      });
      partition.bytes += message.value.length;
      let drop = Math.max(0, partition.messages.length - this.retain);
      let bytes = partition.bytes;
      for (let i = 0; i < drop; i++) bytes -= (partition.messages[i] as BusMessage).value.length;
      // Keep at least the newest message, however large.
      while (bytes > this.retainBytes && drop < partition.messages.length - 1) bytes -= (partition.messages[drop++] as BusMessage).value.length;
      if (drop > 0) {
        partition.messages.splice(0, drop);
        partition.base += drop;
        partition.bytes = bytes;
      }
    }
    this.wake.emit('publish');
  }

  async subscribe(options: SubscribeOptions): Promise<Subscription> {
    if (this.closed) throw new RollcallError('BUS_UNAVAILABLE', 'The in-process bus is closed.');
    let group = this.groups.get(options.group);
    if (!group) {
      group = { members: [], committed: new Map() };
      this.groups.set(options.group, group);
    }
    const member: Member = { id: this.nextMember++, topics: options.topics };
    for (const topic of options.topics) this.read.add(topic);
    group.members.push(member);
    for (const topic of options.topics) {
      this.partitionsOf(topic).forEach((partition, index) => {
        const key = `${topic}\u0000${index}`;
        if (!group.committed.has(key)) group.committed.set(key, options.start === 'earliest' ? partition.base : partition.base + partition.messages.length);
      });
    }
    const maxBatch = options.maxBatch ?? 500;
    let stopped = false;
    let wakeUp: (() => void) | null = null;
    const onPublish = (): void => wakeUp?.();
    this.wake.on('publish', onPublish);

    const loop = (async () => {
      while (!stopped) {
        const batch = this.nextBatch(group, member, maxBatch);
        if (batch.length === 0) {
          await new Promise<void>((resolve) => {
            wakeUp = resolve;
          });
          wakeUp = null;
          continue;
        }
        try {
          await options.handler(batch);
          for (const message of batch) {
            const key = `${message.topic}\u0000${message.partition}`;
            const next = Number(message.offset) + 1;
            if ((group.committed.get(key) ?? 0) < next) group.committed.set(key, next);
          }
        } catch (error) {
          options.onError?.(error as Error);
          await new Promise((resolve) => setTimeout(resolve, RETRY_MS));
        }
      }
    })();

    const subscription: Subscription = {
      ready: Promise.resolve(),
      close: async () => {
        if (stopped) return;
        stopped = true;
        wakeUp?.();
        await loop;
        this.wake.off('publish', onPublish);
        group.members = group.members.filter((candidate) => candidate !== member);
        this.subscriptions.delete(subscription);
      },
    };
    this.subscriptions.add(subscription);
    return subscription;
  }

  /** The next messages for a member: from the partitions assigned to it, round-robin by index. */
  private nextBatch(group: Group, member: Member, maxBatch: number): BusMessage[] {
    const batch: BusMessage[] = [];
    for (const topic of member.topics) {
      const sharing = group.members.filter((candidate) => candidate.topics.includes(topic));
      const slot = sharing.indexOf(member);
      this.partitionsOf(topic).forEach((partition, index) => {
        if (index % sharing.length !== slot || batch.length >= maxBatch) return;
        const key = `${topic}\u0000${index}`;
        const from = Math.max(group.committed.get(key) ?? 0, partition.base);
        const end = partition.base + partition.messages.length;
        const take = Math.min(end - from, maxBatch - batch.length);
        if (take > 0) batch.push(...partition.messages.slice(from - partition.base, from - partition.base + take));
      });
    }
    return batch;
  }

  hasReaders(topic: string): boolean {
    return this.read.has(topic);
  }

  async health(): Promise<BusHealth> {
    return { ok: !this.closed, detail: this.closed ? 'closed' : `in-process, ${this.topics.size} topics` };
  }

  async close(): Promise<void> {
    await Promise.all([...this.subscriptions].map((subscription) => subscription.close()));
    this.closed = true;
  }
}

/** Kafka's default partitioner hashes with murmur2; any stable hash keeps a key's order here. */
function hashKey(key: string): number {
  let hash = 2166136261;
  for (let i = 0; i < key.length; i++) {
    hash ^= key.charCodeAt(i);
    hash = Math.imul(hash, 16777619);
  }
  return hash >>> 0;
}
