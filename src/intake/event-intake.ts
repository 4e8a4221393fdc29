// Event intake: introspection, heartbeat and tombstone events from the bus, fed to the engine in
// batches. A batch is acknowledged (its offsets committed) only once every write it caused is
// durable and every message the registry refused is in the dead-letter topic; replays after a
// crash are harmless because writes are idempotent and event ids are remembered.
// Namespaces with topics of their own (`namespaceTopics`) are kept apart: an event on a namespace's
// topics must be of that namespace, and its namespace's events are refused on the shared topics;
// whatever arrived on a set of topics is dead-lettered, and answered, on that set only.
// Each event is written through the intake seam (node-events.ts), as every door writes: the bus
// authenticates nobody, so its writer is the node the event's signature proves, else anonymous.
import { LRUCache } from 'lru-cache';
import type { Logger } from 'pino';
import client from 'prom-client';
import type { BusMessage, EventBus, OutgoingMessage, Subscription } from '../bus/bus.js';
import { RollcallError } from '../domain/errors.js';
import { EVENT_TYPES, TopicLayout, decodeEnvelope, envelope, eventKindOf, type TopicNames, type TopicSet } from '../domain/events.js';
import { assertStorableText } from '../domain/storable-text.js';
import type { RegistrationDefaults } from '../domain/node.js';
import type { Envelope } from '../domain/schemas.js';
import type { Registry } from '../engine/registry.js';
import { metricOnce, type MetricsRegistry } from '../metrics.js';
import type { IntrospectionVerifier } from '../security/introspection-verifier.js';
import { NodeEvents, claimOf, nodeEventOf } from './node-events.js';

export interface EventIntakeOptions {
  bus: EventBus;
  registry: Registry;
  /** The server's metrics registry, handed in by the composition root. */
  metrics: MetricsRegistry;
  /** The shared topics: those of every namespace without topics of its own. */
  topics: TopicNames;
  /** Namespaces with topics of their own (`{prefix}.ns.{namespace}.*`), consumed as well. */
  namespaceTopics?: readonly string[];
  group: string;
  registryId: string;
  defaults: RegistrationDefaults;
  logger: Logger;
  /** Larger messages are dead-lettered unread. */
  maxEventBytes: number;
  /** Event ids remembered to drop redeliveries: at most this many, for at most `dedupeTtlMs`. */
  dedupeSize: number;
  dedupeTtlMs: number;
  maxBatch?: number;
  /** Checks the signatures of events (signatureMode); refusals are dead-lettered with their code. Absent: none checked. */
  verifier?: IntrospectionVerifier;
}

/** Headers of a dead-lettered message, besides the original's own. */
export const DEAD_LETTER_HEADERS = {
  reason: 'rollcall-dlq-reason',
  message: 'rollcall-dlq-message',
  topic: 'rollcall-dlq-topic',
  partition: 'rollcall-dlq-partition',
  offset: 'rollcall-dlq-offset',
  at: 'rollcall-dlq-at',
} as const;

type Outcome = 'registered' | 'renewed' | 'deregistered' | 'duplicate' | 'dead_lettered';

/** What a batch sends back, by the topic set its messages arrived on. */
interface Replies {
  deadLetters: Map<TopicSet, OutgoingMessage[]>;
  /** Registry requests for nodes whose heartbeat came without a record, by namespace. */
  reannounce: Map<string, { namespace: string; node_ids: string[] }>;
}

export class EventIntake {
  readonly layout: TopicLayout;
  private subscription: Subscription | null = null;
  private readonly seen: LRUCache<string, true>;
  /** Nodes recently asked to announce again (their heartbeat came for a record we do not have). */
  private readonly asked: LRUCache<string, true>;
  private readonly log: Logger;
  private readonly events: client.Counter<'event_type' | 'outcome'>;
  private readonly deadLetters: client.Counter<'reason'>;
  private readonly batchSize: client.Histogram;
  private readonly nodes: NodeEvents;

  constructor(private readonly options: EventIntakeOptions) {
    this.nodes = new NodeEvents({ registry: options.registry, verifier: options.verifier });
    this.seen = new LRUCache({ max: options.dedupeSize, ttl: options.dedupeTtlMs, ttlAutopurge: false });
    this.asked = new LRUCache({ max: 10_000, ttl: 10_000 });
    this.log = options.logger.child({ component: 'event-intake' });
    this.layout = new TopicLayout(options.topics, options.namespaceTopics);
    const registers = [options.metrics];
    this.events = metricOnce(
      options.metrics,
      'rollcall_bus_events_total',
      () => new client.Counter({ name: 'rollcall_bus_events_total', help: 'Events consumed from the bus, by event type and outcome.', labelNames: ['event_type', 'outcome'], registers }),
    );
    this.deadLetters = metricOnce(
      options.metrics,
      'rollcall_dead_letters_total',
      () => new client.Counter({ name: 'rollcall_dead_letters_total', help: 'Events sent to the dead-letter topic, by reason.', labelNames: ['reason'], registers }),
    );
    this.batchSize = metricOnce(
      options.metrics,
      'rollcall_bus_batch_size',
      () => new client.Histogram({ name: 'rollcall_bus_batch_size', help: 'Events per consumed batch.', buckets: [1, 10, 50, 100, 250, 500, 1000, 2500], registers }),
    );
  }

  async start(): Promise<void> {
    this.subscription = await this.options.bus.subscribe({
      group: this.options.group,
      topics: this.layout.sets().flatMap(({ topics }) => [topics.introspection, topics.heartbeat, topics.tombstone]),
      start: 'earliest',
      maxBatch: this.options.maxBatch ?? 1000,
      handler: (batch) => this.handle(batch),
      onError: (error) => this.log.warn({ err: error }, 'event batch failed; it will be delivered again'),
    });
    await this.subscription.ready;
  }

  /** Applies one batch. Rejects (so the batch comes again) only when the registry could not write. */
  async handle(batch: BusMessage[]): Promise<void> {
    this.batchSize.observe(batch.length);
    const replies: Replies = { deadLetters: new Map(), reannounce: new Map() };
    // Messages of one node apply in order; different nodes proceed side by side, so registrations
    // of a batch meet in the engine's group commit.
    const byNode = new Map<string, BusMessage[]>();
    for (const message of batch) {
      const key = message.key ?? `${message.topic}/${message.partition}/${message.offset}`;
      const list = byNode.get(key);
      if (list) list.push(message);
      else byNode.set(key, [message]);
    }
    // Event ids of this batch are remembered only once the batch is acknowledged: were it
    // delivered again after a failure, its events must be applied (and dead-lettered) again.
    const handled = new Set<string>();
    let renewed = false;
    await Promise.all(
      [...byNode.values()].map(async (messages) => {
        for (const message of messages) {
          const result = await this.apply(message, handled, replies);
          // An unchanged announcement renews the lease in memory, as a heartbeat does.
          if (result === 'renewed' || result === 'registered') renewed = true;
        }
      }),
    );
    // Leases are renewed in memory; make them durable before the batch is acknowledged.
    if (renewed) await this.options.registry.flushHeartbeats();
    const { bus, registryId } = this.options;
    for (const [set, deadLetters] of replies.deadLetters) await bus.publish(set.topics.deadLetter, deadLetters);
    // Each request goes to its namespace's request topic, where only that namespace's nodes listen.
    const requests = new Map<string, OutgoingMessage[]>();
    for (const target of replies.reannounce.values()) {
      const topic = this.layout.topicsOf(target.namespace).requestIntrospection;
      const request: OutgoingMessage = {
        key: null,
        value: JSON.stringify(
          envelope(EVENT_TYPES.requestIntrospection, registryId, { reason: 'unknown_node', registry_id: registryId, namespace: target.namespace, target_node_ids: target.node_ids }),
        ),
      };
      const list = requests.get(topic);
      if (list) list.push(request);
      else requests.set(topic, [request]);
    }
    for (const [topic, messages] of requests) await bus.publish(topic, messages);
    for (const eventId of handled) this.seen.set(eventId, true);
  }

  private async apply(message: BusMessage, handled: Set<string>, replies: Replies): Promise<Outcome> {
    let event: Envelope | null = null;
    let eventKey: string | null = null;
    // Subscribed topics only reach here; were another to come, it would be treated as shared.
    const set = this.layout.setOf(message.topic) ?? this.layout.sharedSet;
    try {
      if (Buffer.byteLength(message.value) > this.options.maxEventBytes) {
        throw new RollcallError('EVENT_TOO_LARGE', `Event is ${Buffer.byteLength(message.value)} bytes; the limit is ${this.options.maxEventBytes}.`);
      }
      const decoded = decodeEnvelope(message.value);
      // As at the HTTP doors: text the store cannot hold would fail the write it shares with others.
      assertStorableText(decoded);
      event = decoded;
      // Ids are remembered per topic set: another namespace's producers cannot pre-empt an event id.
      eventKey = set.namespace === null ? event.event_id : `${set.namespace}\u0000${event.event_id}`;
      // A repeated heartbeat is harmless (it renews again) and they are most of the traffic:
      // remembering their ids would only churn the cache.
      const remembered = eventKindOf(event.event_type) !== 'heartbeat';
      if (remembered && (this.seen.has(eventKey) || handled.has(eventKey))) {
        this.events.inc({ event_type: event.event_type, outcome: 'duplicate' });
        return 'duplicate';
      }
      const outcome = await this.dispatch(event, set, replies.reannounce, `${message.topic}/${message.partition}/${message.offset}`);
      if (remembered) handled.add(eventKey);
      this.events.inc({ event_type: event.event_type, outcome });
      return outcome;
    } catch (error) {
      if (!(error instanceof RollcallError) || error.status >= 500) throw error;
      // The registry cannot accept this message: park it with the reason, on the set it came by, and go on.
      let deadLetters = replies.deadLetters.get(set);
      if (!deadLetters) {
        deadLetters = [];
        replies.deadLetters.set(set, deadLetters);
      }
      deadLetters.push({
        key: message.key,
        value: message.value,
        headers: {
          ...message.headers,
          [DEAD_LETTER_HEADERS.reason]: error.code,
          [DEAD_LETTER_HEADERS.message]: error.message.slice(0, 500),
          [DEAD_LETTER_HEADERS.topic]: message.topic,
          [DEAD_LETTER_HEADERS.partition]: String(message.partition),
          [DEAD_LETTER_HEADERS.offset]: message.offset,
          [DEAD_LETTER_HEADERS.at]: new Date().toISOString(),
        },
      });
      this.deadLetters.inc({ reason: error.code });
      this.events.inc({ event_type: event?.event_type ?? 'unreadable', outcome: 'dead_lettered' });
      if (eventKey !== null) handled.add(eventKey);
      this.log.info({ topic: message.topic, partition: message.partition, offset: message.offset, code: error.code, reason: error.message }, 'event dead-lettered');
      return 'dead_lettered';
    }
  }

  /**
   * Refuses an event of the wrong namespace for the topics it came by: on a namespace's own topics
   * only that namespace; on the shared topics no namespace that has topics of its own.
   */
  private checkNamespace(set: TopicSet, namespace: string): void {
    if (set.namespace !== null && namespace !== set.namespace) {
      throw new RollcallError('NAMESPACE_MISMATCH', `An event of namespace ${namespace} came on the topics of namespace ${set.namespace}.`, {
        details: { namespace, topic_namespace: set.namespace },
      });
    }
    if (set.namespace === null && this.layout.hasOwnTopics(namespace)) {
      throw new RollcallError('NAMESPACE_MISMATCH', `Namespace ${namespace} has topics of its own; its events are refused on the shared topics.`, {
        details: { namespace, topic_namespace: null },
      });
    }
  }

  private async dispatch(event: Envelope, set: TopicSet, reannounce: Map<string, { namespace: string; node_ids: string[] }>, position: string): Promise<Outcome> {
    // On a namespace's own topics, an event that names no namespace is of that namespace.
    const defaults = set.namespace === null ? this.options.defaults : { ...this.options.defaults, namespace: set.namespace };
    const parsed = nodeEventOf(event, defaults);
    this.checkNamespace(set, claimOf(parsed).namespace);
    try {
      // The bus authenticates nobody: only the event's signature names its writer (the node it proves).
      const applied = await this.nodes.apply(parsed, { writer: null, signed: { envelope: event, source: 'bus', position } });
      return applied.kind === 'register' ? 'registered' : applied.kind === 'heartbeat' ? 'renewed' : 'deregistered';
    } catch (error) {
      // A heartbeat for a node we do not hold (it expired, or was never seen): ask it to announce.
      if (parsed.kind === 'heartbeat' && error instanceof RollcallError && (error.code === 'NODE_NOT_FOUND' || error.code === 'REGISTRATION_REQUIRED')) {
        const { namespace, node_id: nodeId } = parsed.heartbeat;
        const key = `${namespace}\u0000${nodeId}`;
        if (!this.asked.has(key)) {
          this.asked.set(key, true);
          const target = reannounce.get(namespace) ?? { namespace, node_ids: [] };
          target.node_ids.push(nodeId);
          reannounce.set(namespace, target);
        }
      }
      throw error;
    }
  }

  async stop(): Promise<void> {
    await this.subscription?.close();
    this.subscription = null;
  }
}
