// The registry engine: registrations, heartbeats, leases and deregistrations, turned into durable
// records and topology changes; reads are served from the live view it keeps current.
import type { Logger } from 'pino';
import { RollcallError } from '../domain/errors.js';
import type { JsonObject } from '../domain/json.js';
import { DOCUMENT_FIELDS, contentDigest, contentHash, nodeKey, nodeNotFound, staleIncarnation, type HealthStatus, type NodeRecord, type Registration, type TopologyChange } from '../domain/node.js';
import { LIMITS } from '../domain/schemas.js';
import type { HeartbeatLogEntry, LeaseRenewal, NodeWrite, Store, WriteOutcome, WriteQuota } from '../store/store.js';
import { LiveView, type NodeQuery } from './live-view.js';
import { RegistryMetrics } from './registry-metrics.js';
import { createMetricsRegistry, type MetricsRegistry } from '../metrics.js';
import { WriteHealth } from './write-health.js';
import { WriteQueue } from './write-queue.js';
import type { Compensation, WriteSaga } from './write-saga.js';

/** Who asks for a write, as far as the caller knows. */
export interface AdmissionContext {
  /** A credential id, 'anonymous', or 'node:<id>'; 'anonymous' when absent. */
  actor?: string;
  /** The verified identity of the node, when its introspection was signed. */
  identity?: { spiffeId: string };
  /** The registry's own record: exempt from namespace policies and quotas. */
  system?: boolean;
}

/**
 * Namespace admission (policies, quotas): asked before every content-changing registration, with
 * the node as the live view holds it; throwing a RollcallError refuses the write (nothing is written).
 */
export interface AdmissionCheck {
  /**
   * May return a release function: what the admission reserved for this write (a quota place) is
   * held until the write has settled, committed or not, and then released.
   */
  admit(registration: Registration, current: NodeRecord | undefined, context: AdmissionContext & { namespace: string }): Promise<void | (() => void)>;
  /** The quota limits the store checks again when it commits the registration. */
  quotaFor?(registration: Registration): WriteQuota | undefined;
  /** Told of a registration refused after admission: by the store at commit, for its quota (another instance took the place). */
  refused?(registration: Registration, context: AdmissionContext & { namespace: string }, error: RollcallError): void;
  /** Told of every registration or deregistration this instance committed (the audit trail). */
  committed?(write: { action: 'register' | 'deregister'; namespace: string; node_id: string; change: TopologyChange }, context: AdmissionContext): void;
}

export interface RegistryOptions {
  store: Store;
  logger: Logger;
  leaseTtlMs: number;
  heartbeatFlushMs: number;
  sweepIntervalMs: number;
  /** Offline and removed records are purged this long after they left. */
  retentionMs: number;
  cleanupIntervalMs: number;
  changeRetentionMs: number;
  heartbeatHistory: boolean;
  heartbeatHistoryMs: number;
  maxBatch: number;
  /** Write transactions in flight at once (batches of different nodes proceed side by side). */
  writeConcurrency: number;
  /** A backend written before the store (atomic Consul mode); also settable later with useSaga(). */
  saga?: WriteSaga;
  /** The server's metrics registry (the composition root's); a fresh one when omitted. */
  metrics?: MetricsRegistry;
  /** How long a write's outcome tells /health whether writes go through before they are probed (default 5 s). */
  writeCheckIntervalMs?: number;
  now?: () => number;
}

export interface RegisterResult {
  outcome: 'added' | 'updated' | 'unchanged';
  node: NodeRecord;
  /** Topology version that includes this registration. */
  version: number;
  change: TopologyChange | null;
}

export interface HeartbeatInput {
  namespace: string;
  node_id: string;
  incarnation?: number;
  health_status?: HealthStatus;
  status?: string;
  metrics?: JsonObject;
}

export interface HeartbeatResult {
  node_id: string;
  namespace: string;
  status: 'online';
  last_heartbeat: string;
  lease_expires_at: string;
}

export interface DeregisterResult {
  node: NodeRecord;
  change: TopologyChange | null;
  version: number;
}

/** A write probe waits this long at most for the lock every commit takes. */
const WRITE_PROBE_LOCK_TIMEOUT_MS = 2000;

interface TaskState {
  running: boolean;
  lastRunAt: number | null;
  lastError: string | null;
}

export class Registry {
  readonly view = new LiveView();
  readonly metrics: RegistryMetrics;
  /** Whether registrations and deregistrations go through (for /health). */
  readonly writeHealth: WriteHealth;
  private readonly queue: WriteQueue;
  private readonly pendingRenewals = new Map<string, LeaseRenewal>();
  private pendingHistory: HeartbeatLogEntry[] = [];
  private readonly timers: NodeJS.Timeout[] = [];
  private readonly tasks: Record<'heartbeat_flusher' | 'lease_sweeper' | 'cleanup' | 'live_view_tail', TaskState> = {
    heartbeat_flusher: { running: false, lastRunAt: null, lastError: null },
    lease_sweeper: { running: false, lastRunAt: null, lastError: null },
    cleanup: { running: false, lastRunAt: null, lastError: null },
    live_view_tail: { running: false, lastRunAt: null, lastError: null },
  };
  private unwatch: (() => Promise<void>) | null = null;
  private catchingUp: Promise<void> | null = null;
  private catchUpAgain = false;
  private flushRunning: Promise<number> | null = null;
  private flushQueued: Promise<number> | null = null;
  private sweeperSince: number | null = null;
  /** When heartbeats could first reach this registry (see openForHeartbeats); null before. */
  private openedAt: number | null = null;
  private stopping = false;
  private saga: WriteSaga | null;
  private admission: AdmissionCheck | null = null;
  /** The saga's write in flight per node: one at a time, so a compensation restores what it saw. */
  private readonly sagaWrites = new Map<string, Promise<unknown>>();
  private readonly now: () => number;
  private readonly log: Logger;

  constructor(private readonly options: RegistryOptions) {
    this.now = options.now ?? Date.now;
    this.saga = options.saga ?? null;
    this.log = options.logger.child({ component: 'engine' });
    this.metrics = new RegistryMetrics(options.metrics ?? createMetricsRegistry(), { nodesByStatus: () => this.view.countByStatus(), version: () => this.view.version });
    this.writeHealth = new WriteHealth({ probe: () => this.probeWrites(), freshForMs: options.writeCheckIntervalMs ?? 5000, now: this.now });
    this.queue = new WriteQueue(
      (writes) => this.commit(writes),
      options.maxBatch,
      options.writeConcurrency,
      (size) => this.metrics.writeBatchSize.observe(size),
      (error, writes) => options.store.judgeWriteFailure(error, writes),
    );
  }

  /** Puts `saga` in front of every content-changing write from now on (null removes it). */
  useSaga(saga: WriteSaga | null): void {
    this.saga = saga;
  }

  /** Puts `check` in front of every content-changing registration from now on (null removes it). */
  useAdmission(check: AdmissionCheck | null): void {
    this.admission = check;
  }

  get store(): Store {
    return this.options.store;
  }

  /** Loads the live view, starts tailing the topology log and the background duties. */
  async start(): Promise<void> {
    const loaded = await this.options.store.loadNodes();
    this.view.load(loaded.nodes, loaded.version);
    this.log.info({ nodes: loaded.nodes.length, version: loaded.version }, 'live view loaded');
    this.unwatch = await this.options.store.watchVersions((version) => {
      if (version > this.view.version) this.scheduleCatchUp();
    });
    this.tasks.live_view_tail.running = true;
    this.every(this.options.heartbeatFlushMs, 'heartbeat_flusher', () => this.flushHeartbeats());
    this.every(this.options.sweepIntervalMs, 'lease_sweeper', () => this.sweep());
    this.every(this.options.cleanupIntervalMs, 'cleanup', () => this.cleanup());
    // A missed NOTIFY (connection blip) must not leave the view behind for long.
    this.every(Math.max(this.options.sweepIntervalMs, 1000), 'live_view_tail', () => this.catchUp());
  }

  /**
   * Says the listeners and intakes are open, so heartbeats can arrive: only from now on are leases
   * judged, each with one full TTL from this moment, however long the start took after start().
   */
  openForHeartbeats(): void {
    this.openedAt ??= this.now();
  }

  private every(intervalMs: number, task: keyof Registry['tasks'], run: () => Promise<unknown>): void {
    let busy = false;
    const state = this.tasks[task];
    state.running = true;
    const timer = setInterval(() => {
      if (busy || this.stopping) return;
      busy = true;
      run()
        .then(() => {
          state.lastError = null;
        })
        .catch((error: unknown) => {
          state.lastError = (error as Error).message;
          this.log.warn({ err: error, task }, 'background task failed');
        })
        .finally(() => {
          state.lastRunAt = this.now();
          busy = false;
        });
    }, intervalMs);
    timer.unref();
    this.timers.push(timer);
  }

  taskStates(): Record<string, TaskState> {
    return this.tasks;
  }

  get writeQueueDepth(): number {
    return this.queue.depth;
  }

  async register(registration: Registration, context: AdmissionContext = {}): Promise<RegisterResult> {
    const started = process.hrtime.bigint();
    try {
      const result = await this.registerUntimed(registration, context);
      if (result.change) this.admission?.committed?.({ action: 'register', namespace: registration.namespace, node_id: registration.node_id, change: result.change }, context);
      this.metrics.registrations.inc({ outcome: result.outcome });
      this.metrics.registrationsSucceeded.inc();
      return result;
    } catch (error) {
      const code = error instanceof RollcallError ? error.code : 'INTERNAL';
      this.metrics.registrations.inc({ outcome: error instanceof RollcallError && error.status < 500 ? 'rejected' : 'failed' });
      this.metrics.registrationsFailed.inc({ code });
      throw error;
    } finally {
      this.metrics.registrationDuration.observe(Number(process.hrtime.bigint() - started) / 1e9);
    }
  }

  private async registerUntimed(registration: Registration, context: AdmissionContext): Promise<RegisterResult> {
    this.assertRunning();
    checkDocumentSizes(registration);
    const live = this.view.get(registration.namespace, registration.node_id);
    if (live && registration.incarnation < live.incarnation) throw staleIncarnation('Registration', registration.node_id, registration.incarnation, live.incarnation);
    if (live?.status === 'online' && live.incarnation === registration.incarnation && live.content_hash === contentHash(registration)) {
      // Nothing changed: this announcement is a heartbeat.
      this.renew(live);
      return { outcome: 'unchanged', node: live, version: this.view.version, change: null };
    }
    // The registry's own record is exempt from namespace policies and quotas.
    const admission = context.system === true ? undefined : this.admission;
    const release = admission ? await admission.admit(registration, live, { ...context, namespace: registration.namespace }) : undefined;
    let outcome: WriteOutcome;
    try {
      const quota = admission?.quotaFor?.(registration);
      outcome = await this.writeHealth.track(this.write({ kind: 'register', registration, ...(quota ? { quota } : {}) }, registration.namespace, registration.node_id));
    } finally {
      // Committed writes are in the live view by now, so the reservation is no longer needed.
      if (typeof release === 'function') release();
    }
    switch (outcome.status) {
      case 'rejected':
        if (outcome.error.code === 'QUOTA_EXCEEDED') admission?.refused?.(registration, { ...context, namespace: registration.namespace }, outcome.error);
        throw outcome.error;
      case 'unchanged':
        this.renew(outcome.node);
        return { outcome: 'unchanged', node: outcome.node, version: this.view.version, change: null };
      case 'changed':
        return { outcome: outcome.change.change_type === 'added' ? 'added' : 'updated', node: outcome.change.node, version: outcome.change.version, change: outcome.change };
    }
  }

  /** Renews a lease in memory; the store learns of it at the next flush. */
  heartbeat(input: HeartbeatInput): HeartbeatResult | Promise<HeartbeatResult> {
    this.assertRunning();
    const live = this.view.get(input.namespace, input.node_id);
    if (!live || live.status === 'removed') {
      this.metrics.heartbeats.inc({ outcome: 'unknown_node' });
      throw nodeNotFound(input.namespace, input.node_id);
    }
    if (input.incarnation !== undefined && input.incarnation < live.incarnation) {
      this.metrics.heartbeats.inc({ outcome: 'stale' });
      throw staleIncarnation('Heartbeat', input.node_id, input.incarnation, live.incarnation);
    }
    if (live.status !== 'online' || (input.incarnation !== undefined && input.incarnation > live.incarnation)) {
      this.metrics.heartbeats.inc({ outcome: 'registration_required' });
      throw new RollcallError(
        'REGISTRATION_REQUIRED',
        live.status !== 'online'
          ? `Node ${input.node_id} is ${live.status} (${live.removal_reason ?? 'unknown reason'}); register it again.`
          : `Node ${input.node_id} restarted (incarnation ${input.incarnation}); register the new incarnation first.`,
        { details: { node_id: input.node_id, status: live.status, current_incarnation: live.incarnation } },
      );
    }
    this.metrics.heartbeats.inc({ outcome: 'renewed' });
    if (this.options.heartbeatHistory) {
      this.pendingHistory.push({ namespace: live.namespace, node_id: live.node_id, atMs: this.now(), status: input.status ?? input.health_status ?? null, metrics: input.metrics ?? {} });
    }
    if (input.health_status !== undefined && input.health_status !== live.health_status) {
      // A health change is content: write it, which renews the lease too.
      const { status: _s, content_hash: _h, registered_at: _r, updated_at: _u, last_heartbeat: _l, removed_at: _ra, removal_reason: _rr, ...fields } = live;
      return this.register({ ...fields, health_status: input.health_status, reason: 'health_change' }).then((result) => this.heartbeatResult(result.node));
    }
    this.renew(live);
    return this.heartbeatResult(live);
  }

  private heartbeatResult(node: NodeRecord): HeartbeatResult {
    return {
      node_id: node.node_id,
      namespace: node.namespace,
      status: 'online',
      last_heartbeat: node.last_heartbeat,
      lease_expires_at: new Date(Date.parse(node.last_heartbeat) + node.lease_ttl_ms).toISOString(),
    };
  }

  private renew(node: NodeRecord): void {
    const atMs = this.now();
    node.last_heartbeat = new Date(atMs).toISOString();
    this.pendingRenewals.set(nodeKey(node.namespace, node.node_id), { namespace: node.namespace, node_id: node.node_id, incarnation: node.incarnation, atMs });
  }

  async deregister(namespace: string, nodeId: string, reason: string, incarnation?: number, context: AdmissionContext = {}): Promise<DeregisterResult> {
    this.assertRunning();
    const write: NodeWrite = incarnation === undefined ? { kind: 'deregister', namespace, node_id: nodeId, reason } : { kind: 'deregister', namespace, node_id: nodeId, reason, incarnation };
    const outcome = await this.writeHealth.track(this.write(write, namespace, nodeId));
    switch (outcome.status) {
      case 'rejected':
        throw outcome.error;
      case 'unchanged':
        return { node: outcome.node, change: null, version: this.view.version };
      case 'changed':
        this.pendingRenewals.delete(nodeKey(namespace, nodeId));
        this.admission?.committed?.({ action: 'deregister', namespace, node_id: nodeId, change: outcome.change }, context);
        return { node: outcome.change.node, change: outcome.change, version: outcome.change.version };
    }
  }

  /**
   * Queues a registration or deregistration, behind the saga's step when there is one: the step
   * runs per write (concurrently across nodes, so group commit still batches the store writes that
   * follow), and is compensated when the store rejects the write or the commit fails.
   */
  private write(write: NodeWrite, namespace: string, nodeId: string): Promise<WriteOutcome> {
    const saga = this.saga;
    if (!saga) return this.queue.submit(write);
    const key = nodeKey(namespace, nodeId);
    const previous = this.sagaWrites.get(key) ?? Promise.resolve();
    const run = previous.then(async () => {
      const compensation = await saga.beforeWrite(write, this.view.get(namespace, nodeId));
      try {
        let outcome: WriteOutcome;
        try {
          outcome = await this.queue.submit(write);
        } catch (error) {
          await this.compensate(compensation, namespace, nodeId);
          throw error;
        }
        if (outcome.status === 'rejected') await this.compensate(compensation, namespace, nodeId);
        return outcome;
      } finally {
        saga.afterWrite(write);
      }
    });
    const settled = run.catch(() => undefined);
    this.sagaWrites.set(key, settled);
    void settled.then(() => {
      if (this.sagaWrites.get(key) === settled) this.sagaWrites.delete(key);
    });
    return run;
  }

  /** Throws when a registration would fail now: the saga's backend refuses, or the store takes no write. */
  private async probeWrites(): Promise<void> {
    await this.saga?.probe?.();
    try {
      await this.options.store.probeWrite(WRITE_PROBE_LOCK_TIMEOUT_MS);
    } catch (cause) {
      throw new RollcallError('STORE_UNAVAILABLE', `The store takes no write: ${(cause as Error).message}`, { cause });
    }
  }

  private async compensate(compensation: Compensation | null, namespace: string, nodeId: string): Promise<void> {
    if (!compensation) return;
    // The saga repairs a failed compensation itself; this guards the caller's original error.
    await compensation().catch((error: unknown) => this.log.error({ err: error, namespace, nodeId }, 'saga compensation threw'));
  }

  get(namespace: string, nodeId: string): NodeRecord {
    const node = this.view.get(namespace, nodeId);
    if (!node) throw nodeNotFound(namespace, nodeId);
    return node;
  }

  list(query: NodeQuery): ReturnType<LiveView['query']> {
    return this.view.query(query);
  }

  /** Changes after `version`, from memory when the window reaches back, else from the store. */
  async changesSince(version: number, limit: number): Promise<TopologyChange[]> {
    const recent = this.view.recentSince(version);
    if (recent !== null) return recent.slice(0, limit);
    const page = await this.options.store.changesSince(version, limit);
    if (version < page.prunedThrough) {
      throw new RollcallError('VERSION_GONE', `Topology version ${version} is older than the retained changes (from ${page.prunedThrough + 1}); resync from the snapshot.`, {
        details: { since: version, oldest_retained: page.prunedThrough + 1, current: this.view.version },
      });
    }
    return page.changes;
  }

  private async commit(writes: NodeWrite[]): Promise<WriteOutcome[]> {
    const outcomes = await this.options.store.applyWrites(writes, this.now());
    const changes: TopologyChange[] = [];
    for (const outcome of outcomes) {
      if (outcome.status !== 'changed') continue;
      changes.push(outcome.change);
      this.metrics.changes.inc({ change_type: outcome.change.change_type, reason: outcome.change.reason });
    }
    // Acknowledge only once the live view shows the write: a client reads what it wrote. Committed
    // writes are never tried again, so a failure from here on is answered as it is, not judged.
    if (!this.view.apply(changes)) {
      await this.catchUp().catch((cause: unknown) => {
        throw new RollcallError('STORE_UNAVAILABLE', `The write was committed, but the live view could not catch up with it: ${(cause as Error).message}`, { cause });
      });
    }
    return outcomes;
  }

  private scheduleCatchUp(): void {
    if (this.stopping) return;
    this.catchUp().catch((error: unknown) => {
      this.tasks.live_view_tail.lastError = (error as Error).message;
      this.log.warn({ err: error }, 'live view catch-up failed');
    });
  }

  /** Brings the live view up to the store's version; concurrent callers share one run. */
  catchUp(): Promise<void> {
    if (this.catchingUp) {
      this.catchUpAgain = true;
      return this.catchingUp;
    }
    this.catchingUp = (async () => {
      try {
        do {
          this.catchUpAgain = false;
          for (;;) {
            const page = await this.options.store.changesSince(this.view.version, 1000);
            if (this.view.version < page.prunedThrough) {
              const loaded = await this.options.store.loadNodes();
              this.view.load(loaded.nodes, loaded.version);
              continue;
            }
            if (page.changes.length === 0) break;
            if (!this.view.apply(page.changes)) throw new Error(`topology log has a gap after version ${this.view.version}`);
          }
        } while (this.catchUpAgain);
        this.tasks.live_view_tail.lastRunAt = this.now();
        this.tasks.live_view_tail.lastError = null;
      } finally {
        this.catchingUp = null;
      }
    })();
    return this.catchingUp;
  }

  /**
   * Writes the lease renewals gathered so far in one statement. When it resolves, every heartbeat
   * accepted before the call is durable: calls during a flush queue one more flush (shared by all).
   */
  flushHeartbeats(): Promise<number> {
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
    const history = this.pendingHistory;
    this.pendingHistory = [];
    if (history.length > 0) await this.options.store.recordHeartbeats(history);
    if (this.pendingRenewals.size === 0) return 0;
    const renewals = [...this.pendingRenewals.values()];
    this.pendingRenewals.clear();
    try {
      const renewed = await this.options.store.renewLeases(renewals);
      this.metrics.heartbeatFlushes.inc();
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
    // No node can heartbeat before the registry is open: judge nothing, and leave the duty to an open instance.
    if (this.openedAt === null) return 0;
    if (!(await this.options.store.holdsDuty('sweeper'))) {
      this.sweeperSince = null;
      return 0;
    }
    const now = this.now();
    // A new sweeper gives every lease one full TTL from now: heartbeats sent while no sweeper ran
    // (or held in another instance's memory) must not count against the node.
    this.sweeperSince ??= now;
    await this.flushHeartbeats();
    let expired = 0;
    for (;;) {
      const candidates = await this.options.store.findExpired(now, this.sweeperSince, this.options.maxBatch);
      if (candidates.length === 0) break;
      const outcomes = await Promise.all(candidates.map((candidate) => this.queue.submit({ kind: 'expire', ...candidate, graceFromMs: this.sweeperSince ?? now })));
      const changed = outcomes.filter((outcome) => outcome.status === 'changed').length;
      expired += changed;
      if (changed === 0 || candidates.length < this.options.maxBatch) break;
    }
    if (expired > 0) this.log.info({ expired }, 'leases expired');
    return expired;
  }

  /** Purges records, changes and heartbeat history past their retention. */
  async cleanup(): Promise<void> {
    const now = this.now();
    this.view.purge(now - this.options.retentionMs);
    if (!(await this.options.store.holdsDuty('sweeper'))) return;
    const purged = await this.options.store.purgeRemoved(now - this.options.retentionMs);
    const pruned = await this.options.store.pruneChanges(now - this.options.changeRetentionMs);
    const history = this.options.heartbeatHistory ? await this.options.store.pruneHeartbeats(now - this.options.heartbeatHistoryMs) : 0;
    if (purged + pruned + history > 0) this.log.info({ purged, pruned, history }, 'cleanup done');
  }

  private assertRunning(): void {
    if (this.stopping) throw new RollcallError('SHUTTING_DOWN', 'The registry is shutting down.');
  }

  /** Stops background work and writes what is pending; the store stays open for the caller to close. */
  async stop(): Promise<void> {
    for (const timer of this.timers) clearInterval(timer);
    this.timers.length = 0;
    // Saga steps not yet queued (and their compensations) finish before the store goes.
    await Promise.all([...this.sagaWrites.values()]);
    await this.queue.idle();
    this.stopping = true;
    await this.flushHeartbeats().catch((error: unknown) => this.log.warn({ err: error }, 'final heartbeat flush failed'));
    if (this.unwatch) await this.unwatch().catch(() => undefined);
    this.unwatch = null;
    // The store closes after this returns: let a catch-up already under way finish first.
    if (this.catchingUp) await this.catchingUp.catch(() => undefined);
    for (const task of Object.values(this.tasks)) task.running = false;
  }

  /** Lets the caller write its final deregistrations before stop(). */
  get acceptingWrites(): boolean {
    return !this.stopping;
  }
}

function checkDocumentSizes(registration: Registration): void {
  const sizes = contentDigest(registration).documentBytes;
  for (const field of DOCUMENT_FIELDS) {
    if (sizes[field] > LIMITS.documentBytes) {
      throw new RollcallError('VALIDATION_FAILED', `Field ${field} is ${sizes[field]} bytes; the limit is ${LIMITS.documentBytes}.`, {
        details: { field, size: sizes[field], limit: LIMITS.documentBytes },
      });
    }
  }
}
