// The topology-diff relay: publishes the topology log, in version order, as the seeds'
// TOPOLOGY_DIFF events: a namespace with topics of its own gets its changes on its own diff topic,
// every other namespace on the shared one. One instance relays at a time (the holder of the `relay`
// duty); it resumes after the last version recorded as published, so a crash repeats at most one
// diff per topic (followers drop versions they already have) and never skips one.
import type { Logger } from 'pino';
import client from 'prom-client';
import type { EventBus } from '../bus/bus.js';
import { RollcallError } from '../domain/errors.js';
import { EVENT_TYPES, envelope, namespaceTopicName, topologyDiff } from '../domain/events.js';
import type { JsonObject } from '../domain/json.js';
import type { TopologyChange } from '../domain/node.js';
import type { Registry } from '../engine/registry.js';
import { metricOnce, type MetricsRegistry } from '../metrics.js';
import { Alarm } from './alarm.js';

export const RELAY_PROJECTION = 'topology-diff';

/**
 * The projection position of one diff topic: the topology_version of the last diff published on it,
 * the `previous_version` of the next one.
 */
export const relayTopicProjection = (topic: string): string => `${RELAY_PROJECTION}:${topic}`;

export interface TopologyDiffRelayOptions {
  bus: EventBus;
  registry: Registry;
  /** The server's metrics registry, handed in by the composition root. */
  metrics: MetricsRegistry;
  /** The shared diff topic (`{prefix}.topology-diff.v1`). */
  topic: string;
  /** Namespaces whose changes go to their own diff topic (`{prefix}.ns.{namespace}.topology-diff.v1`), and only there. */
  namespaceTopics?: readonly string[];
  registryId: string;
  logger: Logger;
  /** Most changes in one TOPOLOGY_DIFF event. */
  maxChangesPerEvent?: number;
  /**
   * Most bytes of changes in one event, under the broker's message limit (Kafka's default is
   * 1 MB); a single change is always sent, and is at most a few hundred KB by the record limits.
   */
  maxEventBytes?: number;
  /** How often a standby instance checks whether the duty is free. */
  standbyPollMs?: number;
  /**
   * The bus is this process's own (the in-process bus of the embedded default): its subscribers
   * are in this process and it forgets everything at exit. Every instance then relays its own
   * view into its own bus, from the version it started at, with no duty and no position kept in
   * the store (a position would describe a bus that no longer exists after a restart).
   */
  local?: boolean;
}

export class TopologyDiffRelay {
  private running = false;
  private loop: Promise<void> | null = null;
  private readonly alarm = new Alarm();
  private unsubscribe: (() => void) | null = null;
  private published = -1;
  /** The diff topic of each namespace that has its own. */
  private readonly ownTopics: Map<string, string>;
  /** The topology_version of the last diff on each topic, loaded with `published`. */
  private readonly topicPositions = new Map<string, number>();
  private readonly log: Logger;
  private readonly publishedEvents: client.Counter;
  private readonly lag: client.Gauge;
  private readonly latency: client.Histogram;
  lastError: string | null = null;

  constructor(private readonly options: TopologyDiffRelayOptions) {
    this.log = options.logger.child({ component: 'topology-diff-relay' });
    this.ownTopics = new Map((options.namespaceTopics ?? []).map((namespace) => [namespace, namespaceTopicName(options.topic, namespace)]));
    const registers = [options.metrics];
    this.publishedEvents = metricOnce(
      options.metrics,
      'rollcall_topology_diffs_published_total',
      () => new client.Counter({ name: 'rollcall_topology_diffs_published_total', help: 'TOPOLOGY_DIFF events published by this instance.', registers }),
    );
    const lagOf = (): number => (this.published < 0 ? 0 : Math.max(0, options.registry.view.version - this.published));
    this.lag = metricOnce(
      options.metrics,
      'rollcall_topology_diff_lag_versions',
      () =>
        new client.Gauge({
          name: 'rollcall_topology_diff_lag_versions',
          help: 'Topology versions committed but not yet published as diffs (0 on instances that are not the relay).',
          registers,
          collect() {
            this.set(lagOf());
          },
        }),
    );
    this.latency = metricOnce(
      options.metrics,
      'rollcall_topology_diff_publish_delay_seconds',
      () =>
        new client.Histogram({
          name: 'rollcall_topology_diff_publish_delay_seconds',
          help: 'Time from a change being committed to its diff being published.',
          buckets: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5],
          registers,
        }),
    );
  }

  /** The version published through, or null when this instance is not the relay. */
  get publishedVersion(): number | null {
    return this.published < 0 ? null : this.published;
  }

  start(): void {
    if (this.running) return;
    this.running = true;
    this.unsubscribe = this.options.registry.view.onVersion(() => this.alarm.wake());
    this.loop = this.run();
  }

  private async run(): Promise<void> {
    const { registry } = this.options;
    const standbyMs = this.options.standbyPollMs ?? 1000;
    if (this.options.local === true) {
      // In-process subscribers snapshot first, then follow from here.
      this.published = registry.view.version;
      for (const topic of this.topics) this.topicPositions.set(topic, this.published);
    }
    while (this.running) {
      try {
        if (this.options.local !== true && !(await registry.store.holdsDuty('relay'))) {
          this.published = -1;
          await this.alarm.sleep(standbyMs);
          continue;
        }
        if (this.published < 0) await this.loadPositions();
        if (this.published >= registry.view.version) {
          await this.alarm.sleep(standbyMs);
          continue;
        }
        if (this.unread()) {
          // Nobody in this process reads the diffs: building them would cost more than the writes
          // that made them. A reader that subscribes later starts from its snapshot, and the first
          // diff it gets names the version it follows (a gap from its snapshot means a resync).
          this.published = registry.view.version;
          for (const topic of this.topics) this.topicPositions.set(topic, this.published);
          continue;
        }
        await this.publishNext();
        this.lastError = null;
      } catch (error) {
        this.lastError = (error as Error).message;
        this.log.warn({ err: error }, 'topology diff relay failed; retrying');
        await this.alarm.sleep(1000);
      }
    }
  }

  /** On the in-process bus, when no group has subscribed to any diff topic. */
  private unread(): boolean {
    const { bus } = this.options;
    return this.options.local === true && bus.hasReaders !== undefined && !this.topics.some((topic) => bus.hasReaders?.(topic) === true);
  }

  /** Positions are kept in the store (a broker's topics outlive this process). */
  private get durable(): boolean {
    return this.options.local !== true;
  }

  /** The diff topics: the shared one first, then each namespace's own. */
  private get topics(): string[] {
    return [this.options.topic, ...this.ownTopics.values()];
  }

  private topicOf(namespace: string): string {
    return this.ownTopics.get(namespace) ?? this.options.topic;
  }

  /**
   * Reads where the relay stopped: the version published through, and each topic's last diff. A
   * topic without a recorded diff (new, or from before topics had positions) starts its chain at
   * the relay's position: its followers then resync from a snapshot older than that, which is right
   * for a namespace whose changes went to the shared topic until now.
   */
  private async loadPositions(): Promise<void> {
    const { store } = this.options.registry;
    const published = await store.projectionPosition(RELAY_PROJECTION);
    this.topicPositions.clear();
    for (const topic of this.topics) {
      const position = await store.projectionPosition(relayTopicProjection(topic));
      this.topicPositions.set(topic, position > 0 ? position : published);
    }
    this.published = published;
    this.log.info({ from: published, topics: Object.fromEntries(this.topicPositions) }, 'relaying topology diffs');
  }

  private async publishNext(): Promise<void> {
    const { registry, bus } = this.options;
    let changes: TopologyChange[];
    try {
      changes = await registry.changesSince(this.published, this.options.maxChangesPerEvent ?? 200);
    } catch (error) {
      if (!(error instanceof RollcallError) || error.code !== 'VERSION_GONE') throw error;
      // The changes were pruned before they were relayed: followers see the gap and resync.
      const oldest = Number((error.details as { oldest_retained?: number } | undefined)?.oldest_retained ?? registry.view.version);
      this.log.warn({ from: this.published, to: oldest - 1 }, 'changes pruned before they were relayed; skipping ahead');
      // Every topic's next diff then starts after the gap, so each topic's followers see it.
      for (const topic of this.topics) {
        const position = Math.max(this.topicPositions.get(topic) ?? 0, oldest - 1);
        if (this.durable && this.ownTopics.size > 0) await registry.store.saveProjectionPosition(relayTopicProjection(topic), position);
        this.topicPositions.set(topic, position);
      }
      if (this.durable) await registry.store.saveProjectionPosition(RELAY_PROJECTION, oldest - 1);
      this.published = oldest - 1;
      return;
    }
    if (changes.length === 0) return;
    // Built for the whole batch first: a batch whose diffs fit one event each (the usual case) is
    // serialised once. One that does not is cut to the longest prefix that fits, and built again.
    let diffs = this.build(changes);
    const limit = this.maxEventBytes;
    if (changes.length > 1 && diffs.some((diff) => Buffer.byteLength(diff.value) > limit)) {
      changes = this.fitting(changes);
      diffs = this.build(changes);
    }
    const last = changes[changes.length - 1];
    if (!last) return;
    // A topic's position is saved as soon as its diff is out: after a crash (or a failed publish)
    // the batch comes again and skips what a topic already has.
    for (const diff of diffs) {
      await bus.publish(diff.topic, [{ key: null, value: diff.value }]);
      // With the shared topic alone, its position is the relay's: one write per diff is enough.
      if (this.durable && this.ownTopics.size > 0) await registry.store.saveProjectionPosition(relayTopicProjection(diff.topic), diff.version);
      this.topicPositions.set(diff.topic, diff.version);
      this.publishedEvents.inc();
    }
    if (this.durable) await registry.store.saveProjectionPosition(RELAY_PROJECTION, last.version);
    this.published = last.version;
    const now = Date.now();
    for (const change of changes) this.latency.observe(Math.max(0, now - Date.parse(change.changed_at)) / 1000);
  }

  /**
   * Nodes not removed, of one namespace or, for the shared topic, of the namespaces without topics
   * of their own: no topic tells anything of a namespace it does not carry.
   */
  private totalNodes(namespace: string | undefined): number {
    const { view } = this.options.registry;
    const count = (of: string): number => view.query({ namespace: of, status: ['online', 'offline'], limit: Number.MAX_SAFE_INTEGER }).nodes.length;
    if (namespace !== undefined) return count(namespace);
    const counts = view.countByStatus();
    let total = counts.online + counts.offline;
    for (const own of this.ownTopics.keys()) total -= count(own);
    return total;
  }

  private get maxEventBytes(): number {
    return this.options.maxEventBytes ?? 512 * 1024;
  }

  /** One diff per topic of the changes its followers have not had yet, in version order, serialised. */
  private build(changes: TopologyChange[]): Array<{ topic: string; version: number; value: string }> {
    const byTopic = new Map<string, TopologyChange[]>();
    for (const change of changes) {
      const topic = this.topicOf(change.namespace);
      if (change.version <= (this.topicPositions.get(topic) ?? this.published)) continue;
      const list = byTopic.get(topic);
      if (list) list.push(change);
      else byTopic.set(topic, [change]);
    }
    return [...byTopic].map(([topic, topicChanges]) => {
      const namespace = topic === this.options.topic ? undefined : (topicChanges[0] as TopologyChange).namespace;
      const payload = topologyDiff(this.topicPositions.get(topic) ?? this.published, topicChanges, this.totalNodes(namespace), namespace);
      return { topic, version: payload.topology_version, value: JSON.stringify(envelope(EVENT_TYPES.topologyDiff, this.options.registryId, payload as unknown as JsonObject)) };
    });
  }

  /** The longest prefix of `changes` whose records fit one event. */
  private fitting(changes: TopologyChange[]): TopologyChange[] {
    const limit = this.maxEventBytes;
    let bytes = 0;
    for (let i = 0; i < changes.length; i++) {
      // The node record dominates a change; the rest is a few hundred bytes.
      bytes += Buffer.byteLength(JSON.stringify((changes[i] as TopologyChange).node)) + 512;
      if (bytes > limit && i > 0) return changes.slice(0, i);
    }
    return changes;
  }

  /** Waits (bounded) until what is committed is published, when this instance is the relay. */
  async drain(timeoutMs = 5000): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    while (this.running && this.published >= 0 && this.published < this.options.registry.view.version && Date.now() < deadline) {
      this.alarm.wake();
      await new Promise((resolve) => setTimeout(resolve, 10));
    }
  }

  async stop(): Promise<void> {
    this.running = false;
    this.unsubscribe?.();
    this.alarm.wake();
    await this.loop;
    this.loop = null;
  }
}
