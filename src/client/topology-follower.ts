// The consumer side of the topology-diff stream: a local copy of the registry's online nodes, kept
// exact by applying TOPOLOGY_DIFF events in version order and resyncing from the REST snapshot
// whenever the stream skipped versions (the seeds' consume_topology_diffs, without its blind spots).
// Each diff's previous_version is where the last diff on the same topic ended, so a follower of one
// namespace's own diff topic checks its continuity just as a follower of the shared topic does.
import { randomUUID } from 'node:crypto';
import { EventEmitter } from 'node:events';
import pino, { type Logger } from 'pino';
import type { BusMessage, EventBus, Subscription } from '../bus/bus.js';
import { RollcallError } from '../domain/errors.js';
import { decodeEnvelope, eventKindOf, namespaceTopicName, type DiffChange, type TopicNames, type TopologyDiffPayload } from '../domain/events.js';
import { isJsonObject } from '../domain/json.js';
import { CHANGE_TYPES, isNodeRecord, type NodeRecord } from '../domain/node.js';
import { RollcallClient } from './rollcall-client.js';

export interface TopologyFollowerOptions {
  bus: EventBus;
  topics: TopicNames;
  /** Base URL of a registry, for snapshots (GET /api/v1/topology). */
  registryUrl: string;
  /**
   * Follow one namespace only; absent: every namespace that travels on the shared topic (namespaces
   * with topics of their own, kafkaNamespaceTopics, are not on it).
   */
  namespace?: string;
  /**
   * Read `namespace`'s own diff topic (`{prefix}.ns.{namespace}.topology-diff.v1`, derived from
   * `topics`) instead of the shared one: for a namespace listed in kafkaNamespaceTopics. Default false.
   */
  namespaceTopics?: boolean;
  /** Consumer group; default unique to this follower, so it sees every diff. */
  group?: string;
  /** Timeout of a snapshot request; default 10 s. */
  snapshotTimeoutMs?: number;
  logger?: Logger;
}

export interface ResyncEvent {
  /** The version the follower held, and the one the snapshot brought. */
  from: number;
  to: number;
  /** The first diff past the gap followed this version (so versions from+1 … this one were missed). */
  diffPreviousVersion: number;
  nodes: number;
}

export interface TopologyFollowerEvents {
  /** One change applied to `nodes`, in version order. */
  change: [change: DiffChange];
  /** `nodes` was replaced from a snapshot because the stream skipped versions. */
  resync: [event: ResyncEvent];
}

type Waiter = { version: number; resolve: () => void; reject: (error: Error) => void; timer: NodeJS.Timeout };

/** `${namespace}/${node_id}`: the key of `nodes`. */
export const followerKey = (namespace: string, nodeId: string): string => `${namespace}/${nodeId}`;

export class TopologyFollower extends EventEmitter<TopologyFollowerEvents> {
  /**
   * The online nodes, by `${namespace}/${node_id}`. Like the snapshot it is rebuilt from, it holds
   * online nodes only: a change that takes a node offline or removes it deletes it here.
   */
  readonly nodes = new Map<string, NodeRecord>();
  readonly group: string;
  /** The diff topic followed. */
  readonly topic: string;
  private versionValue = -1;
  private subscription: Subscription | null = null;
  private loaded: Promise<void> | null = null;
  private readonly client: RollcallClient;
  private readonly waiters = new Set<Waiter>();
  private readonly log: Logger;
  private stopped = false;

  constructor(private readonly options: TopologyFollowerOptions) {
    super();
    this.group = options.group ?? `rollcall-follower-${randomUUID()}`;
    if (options.namespaceTopics === true) {
      if (options.namespace === undefined) throw new RollcallError('VALIDATION_FAILED', 'TopologyFollower: namespaceTopics needs the namespace to follow.', { details: { field: 'namespace' } });
      this.topic = namespaceTopicName(options.topics.topologyDiff, options.namespace);
    } else {
      this.topic = options.topics.topologyDiff;
    }
    this.client = new RollcallClient(options.registryUrl, options.snapshotTimeoutMs === undefined ? {} : { timeoutMs: options.snapshotTimeoutMs });
    this.log = (options.logger ?? pino({ level: 'silent' })).child({
      component: 'topology-follower',
      ...(options.namespace === undefined ? {} : { namespace: options.namespace }),
    });
  }

  /** The topology version `nodes` reflects; -1 before the first snapshot. */
  get version(): number {
    return this.versionValue;
  }

  /**
   * Subscribes to the diff stream and waits until it receives, then loads the snapshot: every
   * change after the snapshot's version is then sure to arrive as a diff.
   */
  async start(): Promise<void> {
    if (this.subscription) throw new Error('the follower is already started');
    if (this.stopped) throw new Error('the follower was stopped');
    let markLoaded!: () => void;
    let failLoad!: (error: Error) => void;
    // Diffs arriving before the snapshot wait for it; they are sorted out against its version.
    this.loaded = new Promise<void>((resolve, reject) => {
      markLoaded = resolve;
      failLoad = reject;
    });
    this.loaded.catch(() => undefined);
    this.subscription = await this.options.bus.subscribe({
      group: this.group,
      topics: [this.topic],
      start: 'latest',
      maxBatch: 100,
      handler: (batch) => this.handle(batch),
      onError: (error) => this.log.warn({ err: error }, 'applying topology diffs failed; they will be delivered again'),
    });
    try {
      await this.subscription.ready;
      await this.loadSnapshot();
      markLoaded();
    } catch (error) {
      failLoad(error as Error);
      await this.stop();
      throw error;
    }
    this.log.info({ version: this.versionValue, nodes: this.nodes.size, group: this.group }, 'following the topology');
  }

  /** Resolves once `version >= target`; rejects after `timeoutMs` or when the follower stops. */
  waitForVersion(target: number, timeoutMs = 10_000): Promise<void> {
    if (this.versionValue >= target) return Promise.resolve();
    if (this.stopped) return Promise.reject(new RollcallError('SHUTTING_DOWN', 'The topology follower is stopped.'));
    return new Promise<void>((resolve, reject) => {
      const waiter: Waiter = {
        version: target,
        resolve,
        reject,
        timer: setTimeout(() => {
          this.waiters.delete(waiter);
          reject(
            new RollcallError('REGISTRY_UNAVAILABLE', `Topology version ${target} not reached within ${timeoutMs} ms (at ${this.versionValue}).`, {
              details: { target, version: this.versionValue },
            }),
          );
        }, timeoutMs),
      };
      this.waiters.add(waiter);
    });
  }

  async stop(): Promise<void> {
    this.stopped = true;
    const subscription = this.subscription;
    this.subscription = null;
    await subscription?.close();
    for (const waiter of this.waiters) {
      clearTimeout(waiter.timer);
      waiter.reject(new RollcallError('SHUTTING_DOWN', 'The topology follower stopped.'));
    }
    this.waiters.clear();
  }

  /**
   * Applies a batch of diffs. Rejects (so the bus delivers the batch again, after a pause) only when
   * a gap could not be closed: the snapshot failed or was older than the diff that revealed the gap.
   */
  private async handle(batch: BusMessage[]): Promise<void> {
    await this.loaded;
    for (const message of batch) {
      if (this.stopped) return;
      const diff = this.readDiff(message);
      if (diff) await this.applyDiff(diff);
    }
  }

  private readDiff(message: BusMessage): TopologyDiffPayload | null {
    try {
      const event = decodeEnvelope(message.value);
      if (eventKindOf(event.event_type) !== 'topologyDiff') throw new Error(`event type ${event.event_type} is not a topology diff`);
      return parseDiff(event.payload);
    } catch (error) {
      this.log.warn({ err: error, topic: message.topic, partition: message.partition, offset: message.offset }, 'malformed topology diff skipped');
      return null;
    }
  }

  private async applyDiff(diff: TopologyDiffPayload): Promise<void> {
    // Seen already (a redelivery, or covered by the snapshot).
    if (diff.topology_version <= this.versionValue) return;
    if (diff.previous_version > this.versionValue) {
      const from = this.versionValue;
      await this.loadSnapshot();
      this.log.warn({ from, to: this.versionValue, diffPreviousVersion: diff.previous_version }, 'topology diff stream skipped versions; resynced from the snapshot');
      this.emit('resync', { from, to: this.versionValue, diffPreviousVersion: diff.previous_version, nodes: this.nodes.size });
      if (diff.topology_version <= this.versionValue) return;
      if (diff.previous_version > this.versionValue) {
        // The registry that served the snapshot lags the relay: try again once it has caught up.
        throw new RollcallError('REGISTRY_UNAVAILABLE', `Snapshot version ${this.versionValue} is older than the diff stream (${diff.previous_version}).`);
      }
    }
    for (const change of diff.changes) {
      if (change.version <= this.versionValue) continue;
      const relevant = this.applyChange(change);
      this.versionValue = change.version;
      if (relevant) this.emit('change', change);
    }
    this.setVersion(diff.topology_version);
  }

  /** Applies one change to `nodes`; false when it is outside the followed namespace. */
  private applyChange(change: DiffChange): boolean {
    if (this.options.namespace !== undefined && change.namespace !== this.options.namespace) return false;
    const key = followerKey(change.namespace, change.node_id);
    if (change.change_type === 'removed' || change.node.status !== 'online') this.nodes.delete(key);
    else this.nodes.set(key, change.node);
    return true;
  }

  private async loadSnapshot(): Promise<void> {
    const snapshot = await this.client.topology(this.options.namespace);
    this.nodes.clear();
    for (const node of snapshot.nodes) {
      const { lease_expires_at: _expires, ...record } = node;
      this.nodes.set(followerKey(record.namespace, record.node_id), record);
    }
    this.versionValue = -1;
    this.setVersion(snapshot.version);
  }

  private setVersion(version: number): void {
    if (version > this.versionValue) this.versionValue = version;
    for (const waiter of this.waiters) {
      if (waiter.version > this.versionValue) continue;
      clearTimeout(waiter.timer);
      this.waiters.delete(waiter);
      waiter.resolve();
    }
  }
}

const isVersion = (value: unknown): value is number => typeof value === 'number' && Number.isSafeInteger(value) && value >= 0;

/** Checks what the follower relies on in a TOPOLOGY_DIFF payload; throws on anything else. */
function parseDiff(payload: unknown): TopologyDiffPayload {
  if (!isJsonObject(payload)) throw new Error('payload is not an object');
  const { topology_version: to, previous_version: from, changes } = payload;
  if (!isVersion(to) || !isVersion(from)) throw new Error('topology_version and previous_version must be non-negative integers');
  if (to < from) throw new Error(`topology_version ${to} is below previous_version ${from}`);
  if (!Array.isArray(changes)) throw new Error('changes is not an array');
  let last = from;
  for (const change of changes) {
    if (!isJsonObject(change)) throw new Error('a change is not an object');
    const { version, change_type: changeType } = change;
    if (!isVersion(version) || version <= last || version > to) throw new Error(`a change version is out of order or outside (${from}, ${to}]`);
    last = version;
    if (typeof changeType !== 'string' || !(CHANGE_TYPES as readonly string[]).includes(changeType)) throw new Error('a change has no known change_type');
    if (typeof change.namespace !== 'string' || typeof change.node_id !== 'string' || !isNodeRecord(change.node)) {
      throw new Error('a change lacks namespace, node_id or node');
    }
  }
  return payload as unknown as TopologyDiffPayload;
}
