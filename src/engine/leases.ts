// Leases: renewed in memory at every heartbeat, written to the store in batches, and swept: a node
// whose lease lapsed goes offline, once. Also the retention cleanup, which the sweeper's holder runs.
import type { Logger } from 'pino';
import { nodeKey, type NodeRecord } from '../domain/node.js';
import type { HeartbeatLogEntry, LeaseRenewal, NodeWrite, Store, WriteOutcome } from '../store/store.js';
import type { Clock } from './clock.js';
import type { LiveView } from './live-view.js';

/** The store as the leases use it. */
export type LeaseStore = Pick<Store, 'renewLeases' | 'recordHeartbeats' | 'holdsDuty' | 'findExpired' | 'purgeRemoved' | 'pruneChanges' | 'pruneHeartbeats'>;

export interface LeasesOptions {
  store: LeaseStore;
  view: LiveView;
  clock: Clock;
  logger: Logger;
  /** Queues a write for the store (the engine's group commit). */
  submit: (write: NodeWrite) => Promise<WriteOutcome>;
  /** Told of every flush that wrote renewals. */
  onFlush: () => void;
  /** Expiry candidates taken per store round trip. */
  maxBatch: number;
  /** Offline and removed records are purged this long after they left. */
  retentionMs: number;
  changeRetentionMs: number;
  heartbeatHistory: boolean;
  heartbeatHistoryMs: number;
}

export class Leases {
  private readonly pendingRenewals = new Map<string, LeaseRenewal>();
  private pendingHistory: HeartbeatLogEntry[] = [];
  private flushRunning: Promise<number> | null = null;
  private flushQueued: Promise<number> | null = null;
  private sweeperSince: number | null = null;
  /** When heartbeats could first reach this registry (see open); null before. */
  private openedAt: number | null = null;

  constructor(private readonly options: LeasesOptions) {}

  /**
   * Says heartbeats can arrive from now on: only then are leases judged, each with one full TTL from
   * this moment, however long the start took.
   */
  open(): void {
    this.openedAt ??= this.options.clock.now();
  }

  /** Renews the node's lease in memory (the live record shows it at once); the store learns of it at the next flush. */
  renew(node: NodeRecord): void {
    const atMs = this.options.clock.now();
    node.last_heartbeat = new Date(atMs).toISOString();
    this.pendingRenewals.set(nodeKey(node.namespace, node.node_id), { namespace: node.namespace, node_id: node.node_id, incarnation: node.incarnation, atMs });
  }

  /** Drops a renewal not yet written: the node left. */
  forget(namespace: string, nodeId: string): void {
    this.pendingRenewals.delete(nodeKey(namespace, nodeId));
  }

  /** Keeps a heartbeat for the history, when it is kept. */
  recordHeartbeat(entry: Omit<HeartbeatLogEntry, 'atMs'>): void {
    if (this.options.heartbeatHistory) this.pendingHistory.push({ ...entry, atMs: this.options.clock.now() });
  }

  /**
   * Writes the lease renewals gathered so far in one statement. When it resolves, every heartbeat
   * accepted before the call is durable: calls during a flush queue one more flush (shared by all).
   */
  flush(): Promise<number> {
    if (this.flushQueued) return this.flushQueued;
    if (this.flushRunning) {
      this.flushQueued = this.flushRunning
        .catch(() => 0)
        .then(() => {
          this.flushQueued = null;
          return this.startFlush();
        });
      return this.flushQueued;
    }
    return this.startFlush();
  }

  private startFlush(): Promise<number> {
    const run = this.flushOnce().finally(() => {
      if (this.flushRunning === run) this.flushRunning = null;
    });
    this.flushRunning = run;
    return run;
  }

  private async flushOnce(): Promise<number> {
    const { store } = this.options;
    const history = this.pendingHistory;
    this.pendingHistory = [];
    if (history.length > 0) await store.recordHeartbeats(history);
    if (this.pendingRenewals.size === 0) return 0;
    const renewals = [...this.pendingRenewals.values()];
    this.pendingRenewals.clear();
    try {
      const renewed = await store.renewLeases(renewals);
      this.options.onFlush();
      return renewed;
    } catch (error) {
      // Keep what was not written, unless a newer renewal of the same node arrived meanwhile.
      for (const renewal of renewals) {
        const key = nodeKey(renewal.namespace, renewal.node_id);
        if (!this.pendingRenewals.has(key)) this.pendingRenewals.set(key, renewal);
      }
      throw error;
    }
  }

  /** Takes nodes whose lease lapsed offline. Only the holder of the sweeper duty does it, once open. */
  async sweep(): Promise<number> {
    const { store, maxBatch } = this.options;
    // No node can heartbeat before the registry is open: judge nothing, and leave the duty to an open instance.
    if (this.openedAt === null) return 0;
    if (!(await store.holdsDuty('sweeper'))) {
      this.sweeperSince = null;
      return 0;
    }
    const now = this.options.clock.now();
    // A new sweeper gives every lease one full TTL from now: heartbeats sent while no sweeper ran
    // (or held in another instance's memory) must not count against the node.
    this.sweeperSince ??= now;
    await this.flush();
    let expired = 0;
    for (;;) {
      const candidates = await store.findExpired(now, this.sweeperSince, maxBatch);
      if (candidates.length === 0) break;
      const outcomes = await Promise.all(candidates.map((candidate) => this.options.submit({ kind: 'expire', ...candidate, graceFromMs: this.sweeperSince ?? now })));
      const changed = outcomes.filter((outcome) => outcome.status === 'changed').length;
      expired += changed;
      if (changed === 0 || candidates.length < maxBatch) break;
    }
    if (expired > 0) this.options.logger.info({ expired }, 'leases expired');
    return expired;
  }

  /** Purges records, changes and heartbeat history past their retention. */
  async cleanup(): Promise<void> {
    const { store, view, retentionMs, changeRetentionMs, heartbeatHistory, heartbeatHistoryMs } = this.options;
    const now = this.options.clock.now();
    view.purge(now - retentionMs);
    if (!(await store.holdsDuty('sweeper'))) return;
    const purged = await store.purgeRemoved(now - retentionMs);
    const pruned = await store.pruneChanges(now - changeRetentionMs);
    const history = heartbeatHistory ? await store.pruneHeartbeats(now - heartbeatHistoryMs) : 0;
    if (purged + pruned + history > 0) this.options.logger.info({ purged, pruned, history }, 'cleanup done');
  }
}
