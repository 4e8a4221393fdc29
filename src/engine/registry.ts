// The registry engine: registrations, heartbeats, leases and deregistrations, turned into durable
// records and topology changes; reads are served from the live view it keeps current. This façade
// composes the roles: the write queue (group commit) behind the saga gate, the leases, the view tail
// and the background duties, all on one clock.
import type { Logger } from 'pino';
import { RollcallError } from '../domain/errors.js';
import type { JsonObject } from '../domain/json.js';
import { judgeHeartbeat, judgeRegistration } from '../domain/node-lifecycle.js';
import { DOCUMENT_FIELDS, contentDigest, nodeNotFound, type HealthStatus, type NodeRecord, type Registration, type TopologyChange } from '../domain/node.js';
import { LIMITS } from '../domain/schemas.js';
import type { DutyLocks, HeartbeatLog, NodeStore, NodeWrite, ProjectionPositions, WriteOutcome } from '../store/store.js';
import type { AdmissionCheck, AdmissionContext } from './admission-hook.js';
import { BackgroundTasks, type TaskState } from './background-tasks.js';
import { systemClock, type Clock } from './clock.js';
import { Leases } from './leases.js';
import { LiveView, type NodeQuery } from './live-view.js';
import { RegistryMetrics } from './registry-metrics.js';
import { ViewTail } from './view-tail.js';
import { createMetricsRegistry, type MetricsRegistry } from '../metrics.js';
import { WriteHealth } from './write-health.js';
import { WriteQueue } from './write-queue.js';
import { SagaGate, type WriteSaga } from './write-saga.js';

export type { AdmissionCheck, AdmissionContext } from './admission-hook.js';
export type { TaskState } from './background-tasks.js';

/**
 * The store roles the registry uses (nodes, heartbeat history, the sweeper duty), and hands on to
 * the projections that follow it (their duty locks and positions).
 */
export type RegistryStore = NodeStore & HeartbeatLog & DutyLocks & ProjectionPositions;

export interface RegistryOptions {
  store: RegistryStore;
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
  /** What time it is and when duties run (default: the system clock). */
  clock?: Clock;
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

export class Registry {
  readonly view = new LiveView();
  readonly metrics: RegistryMetrics;
  /** Whether registrations and deregistrations go through (for /health). */
  readonly writeHealth: WriteHealth;
  private readonly clock: Clock;
  private readonly queue: WriteQueue;
  private readonly gate: SagaGate;
  private readonly leases: Leases;
  private readonly tail: ViewTail;
  private readonly tasks: BackgroundTasks;
  private admission: AdmissionCheck | null = null;
  private stopping = false;
  private readonly log: Logger;

  constructor(private readonly options: RegistryOptions) {
    const { store } = options;
    this.clock = options.clock ?? systemClock;
    this.log = options.logger.child({ component: 'engine' });
    this.metrics = new RegistryMetrics(options.metrics ?? createMetricsRegistry(), { nodesByStatus: () => this.view.countByStatus(), version: () => this.view.version });
    this.writeHealth = new WriteHealth({ probe: () => this.probeWrites(), freshForMs: options.writeCheckIntervalMs ?? 5000, now: () => this.clock.now() });
    this.queue = new WriteQueue(
      (writes) => this.commit(writes),
      options.maxBatch,
      options.writeConcurrency,
      (size) => this.metrics.writeBatchSize.observe(size),
      (error, writes) => store.judgeWriteFailure(error, writes),
    );
    const submit = (write: NodeWrite): Promise<WriteOutcome> => this.queue.submit(write);
    this.gate = new SagaGate({ submit, current: (namespace, nodeId) => this.view.get(namespace, nodeId), logger: this.log, saga: options.saga ?? null });
    this.tasks = new BackgroundTasks(this.clock, this.log);
    this.leases = new Leases({
      store,
      view: this.view,
      clock: this.clock,
      logger: this.log,
      submit,
      onFlush: () => this.metrics.heartbeatFlushes.inc(),
      maxBatch: options.maxBatch,
      retentionMs: options.retentionMs,
      changeRetentionMs: options.changeRetentionMs,
      heartbeatHistory: options.heartbeatHistory,
      heartbeatHistoryMs: options.heartbeatHistoryMs,
    });
    this.tail = new ViewTail({ store, view: this.view, clock: this.clock, logger: this.log, state: this.tasks.states.live_view_tail });
  }

  /** Puts `saga` in front of every content-changing write from now on (null removes it). */
  useSaga(saga: WriteSaga | null): void {
    this.gate.use(saga);
  }

  /** Puts `check` in front of every content-changing registration from now on (null removes it). */
  useAdmission(check: AdmissionCheck | null): void {
    this.admission = check;
  }

  get store(): RegistryStore {
    return this.options.store;
  }

  /** Loads the live view, starts tailing the topology log and the background duties. */
  async start(): Promise<void> {
    await this.tail.start();
    const { heartbeatFlushMs, sweepIntervalMs, cleanupIntervalMs } = this.options;
    this.tasks.every('heartbeat_flusher', heartbeatFlushMs, () => this.leases.flush());
    this.tasks.every('lease_sweeper', sweepIntervalMs, () => this.leases.sweep());
    this.tasks.every('cleanup', cleanupIntervalMs, () => this.leases.cleanup());
    // A missed NOTIFY (connection blip) must not leave the view behind for long.
    this.tasks.every('live_view_tail', Math.max(sweepIntervalMs, 1000), () => this.tail.catchUp());
  }

  /**
   * Says the listeners and intakes are open, so heartbeats can arrive: only from now on are leases
   * judged, each with one full TTL from this moment, however long the start took after start().
   */
  openForHeartbeats(): void {
    this.leases.open();
  }

  taskStates(): Record<string, TaskState> {
    return this.tasks.states;
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
    const judged = judgeRegistration(live, registration);
    if (judged?.status === 'rejected') throw judged.error;
    if (judged?.status === 'unchanged') {
      // Nothing changed: this announcement is a heartbeat.
      this.leases.renew(judged.node);
      return { outcome: 'unchanged', node: judged.node, version: this.view.version, change: null };
    }
    // The registry's own record is exempt from namespace policies and quotas.
    const admission = context.system === true ? undefined : this.admission;
    const release = admission ? await admission.admit(registration, live, { ...context, namespace: registration.namespace }) : undefined;
    let outcome: WriteOutcome;
    try {
      const quota = admission?.quotaFor?.(registration);
      outcome = await this.writeHealth.track(this.gate.write({ kind: 'register', registration, ...(quota ? { quota } : {}) }, registration.namespace, registration.node_id));
    } finally {
      // Committed writes are in the live view by now, so the reservation is no longer needed.
      if (typeof release === 'function') release();
    }
    switch (outcome.status) {
      case 'rejected':
        if (outcome.error.code === 'QUOTA_EXCEEDED') admission?.refused?.(registration, { ...context, namespace: registration.namespace }, outcome.error);
        throw outcome.error;
      case 'unchanged':
        this.leases.renew(outcome.node);
        return { outcome: 'unchanged', node: outcome.node, version: this.view.version, change: null };
      case 'changed':
        return { outcome: outcome.change.change_type === 'added' ? 'added' : 'updated', node: outcome.change.node, version: outcome.change.version, change: outcome.change };
    }
  }

  /** Renews a lease in memory; the store learns of it at the next flush. A health change is a registration by `context`. */
  heartbeat(input: HeartbeatInput, context: AdmissionContext = {}): HeartbeatResult | Promise<HeartbeatResult> {
    this.assertRunning();
    const verdict = judgeHeartbeat(this.view.get(input.namespace, input.node_id), input);
    if (verdict.status === 'rejected') {
      this.metrics.heartbeats.inc({ outcome: verdict.outcome });
      throw verdict.error;
    }
    const live = verdict.node;
    this.metrics.heartbeats.inc({ outcome: 'renewed' });
    this.leases.recordHeartbeat({ namespace: live.namespace, node_id: live.node_id, status: input.status ?? input.health_status ?? null, metrics: input.metrics ?? {} });
    // A health change is content: write it, which renews the lease too.
    if (verdict.status === 'write') return this.register(verdict.registration, context).then((result) => this.heartbeatResult(result.node));
    this.leases.renew(live);
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

  async deregister(namespace: string, nodeId: string, reason: string, incarnation?: number, context: AdmissionContext = {}): Promise<DeregisterResult> {
    this.assertRunning();
    const write: NodeWrite = incarnation === undefined ? { kind: 'deregister', namespace, node_id: nodeId, reason } : { kind: 'deregister', namespace, node_id: nodeId, reason, incarnation };
    const outcome = await this.writeHealth.track(this.gate.write(write, namespace, nodeId));
    switch (outcome.status) {
      case 'rejected':
        throw outcome.error;
      case 'unchanged':
        return { node: outcome.node, change: null, version: this.view.version };
      case 'changed':
        this.leases.forget(namespace, nodeId);
        this.admission?.committed?.({ action: 'deregister', namespace, node_id: nodeId, change: outcome.change }, context);
        return { node: outcome.change.node, change: outcome.change, version: outcome.change.version };
    }
  }

  /** Throws when a registration would fail now: the saga's backend refuses, or the store takes no write. */
  private async probeWrites(): Promise<void> {
    await this.gate.probe();
    try {
      await this.options.store.probeWrite(WRITE_PROBE_LOCK_TIMEOUT_MS);
    } catch (cause) {
      throw new RollcallError('STORE_UNAVAILABLE', `The store takes no write: ${(cause as Error).message}`, { cause });
    }
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
    const outcomes = await this.options.store.applyWrites(writes, this.clock.now());
    const changes: TopologyChange[] = [];
    for (const outcome of outcomes) {
      if (outcome.status !== 'changed') continue;
      changes.push(outcome.change);
      this.metrics.changes.inc({ change_type: outcome.change.change_type, reason: outcome.change.reason });
    }
    // Acknowledge only once the live view shows the write: a client reads what it wrote. Committed
    // writes are never tried again, so a failure from here on is answered as it is, not judged.
    if (!this.view.apply(changes)) {
      await this.tail.catchUp().catch((cause: unknown) => {
        throw new RollcallError('STORE_UNAVAILABLE', `The write was committed, but the live view could not catch up with it: ${(cause as Error).message}`, { cause });
      });
    }
    return outcomes;
  }

  /** Brings the live view up to the store's version; concurrent callers share one run. */
  catchUp(): Promise<void> {
    return this.tail.catchUp();
  }

  /**
   * Writes the lease renewals gathered so far in one statement. When it resolves, every heartbeat
   * accepted before the call is durable: calls during a flush queue one more flush (shared by all).
   */
  flushHeartbeats(): Promise<number> {
    return this.leases.flush();
  }

  /** Takes nodes whose lease lapsed offline. Only the holder of the sweeper duty does it, once open. */
  sweep(): Promise<number> {
    return this.leases.sweep();
  }

  /** Purges records, changes and heartbeat history past their retention. */
  cleanup(): Promise<void> {
    return this.leases.cleanup();
  }

  private assertRunning(): void {
    if (this.stopping) throw new RollcallError('SHUTTING_DOWN', 'The registry is shutting down.');
  }

  /** Stops background work and writes what is pending; the store stays open for the caller to close. */
  async stop(): Promise<void> {
    // A sweep under way may still submit expiries: it finishes while writes are taken.
    await this.tasks.stop();
    // Saga steps not yet queued (and their compensations) finish before the store goes.
    await this.gate.settled();
    await this.queue.idle();
    this.stopping = true;
    await this.leases.flush().catch((error: unknown) => this.log.warn({ err: error }, 'final heartbeat flush failed'));
    // The store closes after this returns: let a catch-up already under way finish first.
    await this.tail.stop();
    this.tasks.markStopped();
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
