// The event bus: what intake, projections and the agent need of a log-structured broker, and
// nothing more. Adapters: Kafka (`kafka-bus.ts`) and an in-process bus (`memory-bus.ts`, the
// embedded default). Nothing above this folder knows which one it runs on.

export interface OutgoingMessage {
  /** Partitioning key (node_id for node events); messages of one key stay in order. */
  key: string | null;
  value: string;
  headers?: Record<string, string>;
}

export interface BusMessage {
  topic: string;
  partition: number;
  /** Position in its partition, as a decimal string (Kafka offsets are 64-bit). */
  offset: string;
  key: string | null;
  value: string;
  headers: Record<string, string>;
  timestamp: number;
}

export interface SubscribeOptions {
  /**
   * Consumer group: members of one group share the topics' partitions, each group sees every
   * message, and a group resumes where it committed.
   */
  group: string;
  topics: string[];
  /** Where a group with no committed position starts. Default `latest`. */
  start?: 'earliest' | 'latest';
  /** Most messages handed to one handler call. */
  maxBatch?: number;
  /**
   * Handles a batch. When it resolves, the batch's positions are committed; when it rejects, the
   * same messages are delivered again (after a pause). Messages of one partition arrive in order.
   */
  handler: (batch: BusMessage[]) => Promise<void>;
  /** Called when a handler call failed or the connection had trouble; delivery goes on. */
  onError?: (error: Error) => void;
}

export interface Subscription {
  /** Resolves once the subscription has its partitions and receives what is published next. */
  readonly ready: Promise<void>;
  /** Stops consuming; a batch in its handler finishes (and commits) first. */
  close(): Promise<void>;
}

export interface TopicSpec {
  name: string;
  partitions: number;
}

export interface BusHealth {
  ok: boolean;
  detail: string;
}

export interface EventBus {
  readonly kind: 'kafka' | 'memory';
  /** Creates the topics that do not exist yet; existing topics are left as they are. */
  ensureTopics(topics: TopicSpec[]): Promise<void>;
  /** Resolves once every message is durably accepted by the bus, in order per key. */
  publish(topic: string, messages: OutgoingMessage[]): Promise<void>;
  subscribe(options: SubscribeOptions): Promise<Subscription>;
  /**
   * Whether any group has ever subscribed to the topic, where the bus can know it (the in-process
   * bus; on Kafka readers are other processes, and this is absent). A topic nobody reads need not
   * be written.
   */
  hasReaders?(topic: string): boolean;
  health(): Promise<BusHealth>;
  close(): Promise<void>;
}
