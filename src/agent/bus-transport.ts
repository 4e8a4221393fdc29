// The agent's event-bus transport: publishes the node's events to the seeds' topics keyed by
// node_id, and hears registry requests in a consumer group of its own, so every agent sees every
// request (members of one group would share them out instead). With `namespaceTopics` it uses its
// namespace's own topics only, so the node needs Kafka ACLs on that namespace's prefix alone.
import { randomBytes } from 'node:crypto';
import pino, { type Logger } from 'pino';
import type { EventBus, Subscription } from '../bus/bus.js';
import { RollcallError } from '../domain/errors.js';
import { decodeEnvelope, eventKindOf, namespaceTopicNames, type TopicNames } from '../domain/events.js';
import { isJsonObject } from '../domain/json.js';
import type { Envelope } from '../domain/schemas.js';
import type { AgentEventKind, AgentTransport, PublishOutcome } from './node-agent.js';

export interface BusTransportOptions {
  /** Shared with whoever created it: close() leaves the bus open. */
  bus: EventBus;
  /** The shared topics (`topicNames(prefix)`). */
  topics: TopicNames;
  /**
   * Use the topics of `namespace` (`{prefix}.ns.{namespace}.*`, derived from `topics`) instead of the
   * shared ones, for a namespace the registry lists in kafkaNamespaceTopics. Default false.
   */
  namespaceTopics?: boolean;
  /** The agent's namespace (as in its identity); required with `namespaceTopics`. */
  namespace?: string;
  /** The agent's node_id: the key of its messages and part of its consumer group's name. */
  nodeId: string;
  /** Consumer group for registry requests; default `rollcall-agent-<node_id>-<random>`, unique to this instance. */
  group?: string;
  logger?: Logger;
}

export class BusTransport implements AgentTransport {
  readonly group: string;
  /** The topics this transport publishes to and listens on. */
  readonly topics: TopicNames;
  private subscription: Subscription | null = null;
  private readonly log: Logger;

  constructor(private readonly options: BusTransportOptions) {
    this.group = options.group ?? `rollcall-agent-${options.nodeId}-${randomBytes(6).toString('hex')}`;
    if (options.namespaceTopics === true) {
      if (options.namespace === undefined) throw new RollcallError('VALIDATION_FAILED', "BusTransport: namespaceTopics needs the agent's namespace.", { details: { field: 'namespace' } });
      this.topics = namespaceTopicNames(options.topics, options.namespace);
    } else {
      this.topics = options.topics;
    }
    this.log = (options.logger ?? pino({ level: 'silent' })).child({ component: 'agent-bus-transport', nodeId: options.nodeId });
  }

  async publish(kind: AgentEventKind, event: Envelope): Promise<PublishOutcome> {
    if (this.options.namespaceTopics === true) {
      // The registry would dead-letter it; saying so here points at the agent's configuration.
      const namespace = isJsonObject(event.payload) && typeof event.payload.namespace === 'string' ? event.payload.namespace : null;
      if (namespace !== this.options.namespace) {
        throw new RollcallError(
          'NAMESPACE_MISMATCH',
          `The event is of namespace ${namespace ?? '(none)'}, the transport uses the topics of ${this.options.namespace}: give the agent's identity that namespace.`,
          {
            details: { namespace, topic_namespace: this.options.namespace },
          },
        );
      }
    }
    await this.options.bus.publish(this.topics[kind], [{ key: this.options.nodeId, value: JSON.stringify(event) }]);
    // Over the bus the registry asks for a re-announcement with a registry request, not a reply.
    return 'delivered';
  }

  async onRegistryRequest(listener: (request: Envelope) => void): Promise<void> {
    if (this.subscription) throw new Error('already listening for registry requests');
    const subscription = await this.options.bus.subscribe({
      group: this.group,
      topics: [this.topics.requestIntrospection],
      // Requests made before this start of the node are not for it: its startup announcement answers them.
      start: 'latest',
      handler: async (batch) => {
        for (const message of batch) {
          let request: Envelope;
          try {
            request = decodeEnvelope(message.value);
          } catch (error) {
            this.log.warn({ err: error, topic: message.topic, offset: message.offset }, 'malformed registry request skipped');
            continue;
          }
          if (eventKindOf(request.event_type) !== 'requestIntrospection') {
            this.log.debug({ eventType: request.event_type }, 'not a registry request; skipped');
            continue;
          }
          try {
            listener(request);
          } catch (error) {
            // A failing listener must not make the bus deliver the batch again and again.
            this.log.warn({ err: error, eventId: request.event_id }, 'registry request listener threw');
          }
        }
      },
      onError: (error) => this.log.warn({ err: error }, 'registry request listener failed'),
    });
    this.subscription = subscription;
    await subscription.ready;
  }

  async close(): Promise<void> {
    const subscription = this.subscription;
    this.subscription = null;
    await subscription?.close();
  }
}
