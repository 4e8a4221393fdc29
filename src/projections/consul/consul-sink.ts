// The Consul sink in degraded (projection) mode: PostgreSQL is the truth, Consul follows it. The
// holder of the `consul` duty registers online nodes as services and deregisters them when they go
// offline or are removed, following the topology log; a reconciler (at start, periodically, and
// when the circuit closes again) adds what is missing, removes what is stale and fixes what drifted.
// Every instance passes the TTL checks of the heartbeats it received, at most once per node per
// TTL/3. While Consul is away, calls fail fast behind the circuit breaker and rollcall goes on.
//
// In atomic mode the sink is also the registry's write saga (the seeds' dual registration): a
// registration or tombstone goes to Consul first and is refused (CONSUL_UNAVAILABLE) when Consul
// does not take it; a store failure afterwards is compensated in Consul, and a compensation that
// fails is left to the reconciler, which removes services that match no online node. Lease expiry
// stays with the follow loop above.
//
// Services are scoped by namespace (consul-service.ts): a node is found in Consul by its location
// (service ID, and Consul Enterprise namespace in enterprise mode), so nodes with one node_id in two
// namespaces never share a service, and the reconciler judges each service against its own namespace.
import type { Logger } from 'pino';
import client from 'prom-client';
import { RollcallError } from '../../domain/errors.js';
import { DEFAULT_NAMESPACE, nodeKey, type NodeRecord } from '../../domain/node.js';
import type { Registry } from '../../engine/registry.js';
import { metricOnce, type MetricsRegistry } from '../../metrics.js';
import type { Compensation, WriteSaga } from '../../engine/write-saga.js';
import type { NodeWrite } from '../../store/store.js';
import { Alarm } from '../alarm.js';
import { BackendBreaker, BreakerOpenError, type BreakerPolicy, type RetryPolicy } from './backend-breaker.js';
import { ConsulRequestError, type ConsulAgentService, type ConsulClient, type ConsulServiceRegistration } from './consul-client.js';
import {
  consulNamespaceOf,
  driftOf,
  isManaged,
  locationKey,
  nodeOfService,
  serviceLocationOf,
  serviceRegistrationOf,
  ttlCheckId,
  type ServiceLocation,
  type ServiceMapping,
} from './consul-service.js';

export interface ConsulSinkOptions {
  registry: Registry;
  /** The server's metrics registry, handed in by the composition root. */
  metrics: MetricsRegistry;
  client: ConsulClient;
  logger: Logger;
  mapping: ServiceMapping;
  /** Full reconciliation this often (and at start, and when the circuit closes). */
  reconcileIntervalMs: number;
  /** How often heartbeats are looked for to pass TTL checks (each node still at most once per TTL/3). */
  renewIntervalMs?: number;
  /** How often a standby instance checks whether the duty is free. */
  standbyPollMs?: number;
  /** Consul requests in flight at once. */
  concurrency?: number;
  breaker?: Partial<BreakerPolicy>;
  retry?: Partial<RetryPolicy>;
}

export interface ReconcileReport {
  added: number;
  removed: number;
  fixed: number;
  failed: number;
}

interface Registered {
  location: ServiceLocation;
  fingerprint: string;
}

interface Renewal {
  /** The last_heartbeat (ms) the check was last passed for. */
  heartbeatMs: number;
  passedAt: number;
}

/** The node a saga write is about, as a node key. */
function writeKeyOf(write: NodeWrite): string {
  return write.kind === 'register' ? nodeKey(write.registration.namespace, write.registration.node_id) : nodeKey(write.namespace, write.node_id);
}

/** Consul is unwell (worth retrying, counts against the circuit), as opposed to refusing one request. */
function isTransient(error: unknown): boolean {
  return error instanceof ConsulRequestError ? error.transient && !error.notFound : !(error instanceof BreakerOpenError);
}

export class ConsulSink implements WriteSaga {
  readonly breaker: BackendBreaker;
  private readonly log: Logger;
  private running = false;
  private active = false;
  private loop: Promise<void> | null = null;
  private readonly alarm = new Alarm();
  private unsubscribe: Array<() => void> = [];
  private renewTimer: NodeJS.Timeout | null = null;
  private renewing: Promise<void> | null = null;
  /** Topology version whose changes are in Consul (valid while active). */
  private followed = -1;
  private needsReconcile = true;
  private nextReconcileAt = 0;
  /** What this instance last put in Consul, by node key. */
  private readonly registered = new Map<string, Registered>();
  /** Nodes whose last sync failed; a reconciliation repairs them. */
  private readonly pending = new Set<string>();
  private readonly renewals = new Map<string, Renewal>();
  /** Node keys with a saga write under way (Consul taken, the store not yet): the reconciler leaves them be. */
  private readonly sagaInFlight = new Map<string, number>();
  /** Consul Enterprise namespaces this instance projected into: the reconciler looks there for stale services. */
  private readonly projectedNamespaces = new Set<string>();
  private readonly operations: client.Counter<'operation' | 'outcome'>;
  private readonly actions: client.Counter<'action'>;
  private readonly compensations: client.Counter<'outcome'>;
  lastError: string | null = null;
  lastReconcile: { at: string; report: ReconcileReport } | null = null;

  constructor(private readonly options: ConsulSinkOptions) {
    this.log = options.logger.child({ component: 'consul-sink' });
    const metrics = options.metrics;
    const registers = [metrics];
    this.breaker = new BackendBreaker({
      backend: 'consul',
      metrics,
      isTransient,
      ...(options.breaker ? { policy: options.breaker } : {}),
      ...(options.retry ? { retry: options.retry } : {}),
    });
    this.operations = metricOnce(
      metrics,
      'rollcall_consul_operations_total',
      () =>
        new client.Counter({
          name: 'rollcall_consul_operations_total',
          help: 'Consul agent calls of the sink by operation (register, deregister, pass, services) and outcome (ok, error).',
          labelNames: ['operation', 'outcome'],
          registers,
        }),
    );
    this.actions = metricOnce(
      metrics,
      'rollcall_consul_reconcile_actions_total',
      () =>
        new client.Counter({
          name: 'rollcall_consul_reconcile_actions_total',
          help: 'Repairs made by the Consul reconciler: added (missing), removed (stale), fixed (drifted).',
          labelNames: ['action'],
          registers,
        }),
    );
    this.compensations = metricOnce(
      metrics,
      'rollcall_consul_compensations_total',
      () =>
        new client.Counter({
          name: 'rollcall_consul_compensations_total',
          help: 'Atomic mode: Consul steps undone after the store failed or refused the write, by outcome (ok, failed: left to the reconciler).',
          labelNames: ['outcome'],
          registers,
        }),
    );
    const pendingOf = (): number => (this.active ? this.pending.size + (this.needsReconcile ? 1 : 0) : 0);
    metricOnce(
      metrics,
      'rollcall_consul_reconcile_pending',
      () =>
        new client.Gauge({
          name: 'rollcall_consul_reconcile_pending',
          help: 'Consul repairs waiting for the reconciler: failed nodes, plus 1 when a full reconciliation is due (0 on instances that do not hold the duty).',
          registers,
          collect() {
            this.set(pendingOf());
          },
        }),
    );
    this.breaker.onStateChange((state) => {
      this.log.warn({ state, last_error: this.breaker.lastError }, 'consul circuit breaker changed state');
      // Back from an outage: bring Consul in line with what happened meanwhile.
      if (state === 'closed') this.needsReconcile = true;
      this.alarm.wake();
    });
  }

  /** True while this instance holds the duty and projects the topology. */
  get isActive(): boolean {
    return this.active;
  }

  get pendingReconciliation(): boolean {
    return this.active && (this.needsReconcile || this.pending.size > 0);
  }

  start(): void {
    if (this.running) return;
    this.running = true;
    this.unsubscribe.push(this.options.registry.view.onVersion(() => this.alarm.wake()));
    this.loop = this.run();
    if (this.options.mapping.check === 'ttl') {
      const every = this.options.renewIntervalMs ?? 1000;
      this.renewTimer = setInterval(() => {
        if (this.renewing) return;
        this.renewing = this.renew()
          .then(() => undefined)
          .catch((error: unknown) => this.log.warn({ err: error }, 'consul check renewal failed'))
          .finally(() => {
            this.renewing = null;
          });
      }, every);
      this.renewTimer.unref();
    }
  }

  private async run(): Promise<void> {
    const { registry } = this.options;
    const standbyMs = this.options.standbyPollMs ?? 1000;
    while (this.running) {
      try {
        if (!(await registry.store.holdsDuty('consul'))) {
          if (this.active) this.log.info('no longer the consul sink');
          this.active = false;
          this.registered.clear();
          this.pending.clear();
          await this.alarm.sleep(standbyMs);
          continue;
        }
        if (!this.active) {
          this.active = true;
          this.needsReconcile = true;
          this.log.info({ consul: this.options.client.baseUrl }, 'projecting the topology into consul');
        }
        if (this.breaker.state === 'open') {
          // Nothing gets through; the half-open transition wakes us.
          await this.alarm.sleep(this.options.reconcileIntervalMs);
          continue;
        }
        // Half-open: a reconciliation is the trial (in atomic mode no repair may be pending, and
        // without a trial the circuit would wait for registrations to close it).
        if (this.needsReconcile || this.breaker.state === 'half-open' || Date.now() >= this.nextReconcileAt) {
          await this.reconcile();
        } else if (this.followed < registry.view.version) {
          await this.follow();
        } else {
          await this.alarm.sleep(Math.min(standbyMs, Math.max(10, this.nextReconcileAt - Date.now())));
        }
      } catch (error) {
        this.noteError(error);
        // The breaker paces a failing Consul; this paces anything else.
        await this.alarm.sleep(Math.min(1000, this.options.reconcileIntervalMs));
      }
    }
  }

  private noteError(error: unknown): void {
    this.lastError = (error as Error).message;
    if (!(error instanceof BreakerOpenError)) this.log.warn({ err: error }, 'consul sink call failed');
  }

  /** Projects the changes after `followed`, the last state of each node only. */
  private async follow(): Promise<void> {
    const { registry } = this.options;
    let changes;
    try {
      changes = await registry.changesSince(this.followed, 1000);
    } catch (error) {
      if (error instanceof RollcallError && error.code === 'VERSION_GONE') {
        this.needsReconcile = true;
        return;
      }
      throw error;
    }
    const last = changes[changes.length - 1];
    if (!last) return;
    const keys = new Map<string, { namespace: string; node_id: string }>();
    for (const change of changes) keys.set(nodeKey(change.namespace, change.node_id), { namespace: change.namespace, node_id: change.node_id });
    await this.forEachLimited([...keys], async ([key, { namespace, node_id }]) => {
      await this.sync(key, registry.view.get(namespace, node_id) ?? null, node_id);
    });
    this.followed = last.version;
  }

  /** Brings one node's service in line with its record; failures leave it pending. */
  private async sync(key: string, node: NodeRecord | null, nodeId: string): Promise<void> {
    const current = this.registered.get(key);
    try {
      if (node?.status === 'online') {
        const desired = serviceRegistrationOf(node, this.options.mapping);
        const location = serviceLocationOf(node, this.options.mapping);
        const fingerprint = JSON.stringify(desired);
        if (current?.fingerprint === fingerprint) return;
        await this.call('register', () => this.register(desired, location));
        this.registered.set(key, { location, fingerprint });
        this.markPassed(key, node);
      } else if (current) {
        await this.deregister(current.location);
        this.registered.delete(key);
        this.renewals.delete(key);
      } else {
        return;
      }
      this.pending.delete(key);
    } catch (error) {
      this.noteError(error);
      this.pending.add(key);
      // Consul is unwell (or the circuit open): a full reconciliation repairs it when it is back.
      if (isTransient(error) || error instanceof BreakerOpenError) this.needsReconcile = true;
      else this.log.warn({ nodeId, err: error }, 'consul refused a service; left for the next reconciliation');
    }
  }

  private async register(service: ConsulServiceRegistration, location: ServiceLocation): Promise<void> {
    if (location.namespace !== undefined) this.projectedNamespaces.add(location.namespace);
    await this.options.client.register(service, location.namespace);
  }

  private async deregister(location: ServiceLocation): Promise<void> {
    try {
      await this.call('deregister', () => this.options.client.deregister(location.id, location.namespace));
    } catch (error) {
      // Already gone is what we wanted.
      if (!(error instanceof ConsulRequestError && error.notFound)) throw error;
    }
  }

  /**
   * Reconciles Consul with the live view: registers missing services, fixes drifted ones, and
   * deregisters rollcall-managed services that are no online node of their own namespace (mapped
   * back from ID and meta, and found where that node's service no longer lives). Changes made
   * meanwhile are followed afterwards from the version the pass started at.
   */
  async reconcile(): Promise<ReconcileReport> {
    const { registry, mapping } = this.options;
    const startVersion = registry.view.version;
    // Consul is read before the view: a service registered meanwhile is then in the view too, never taken for stale.
    const { actual, unlisted } = await this.actualServices(this.namespacesToList());
    const desired = new Map<string, { key: string; node: NodeRecord; location: ServiceLocation; registration: ConsulServiceRegistration }>();
    let after: string | undefined;
    do {
      const page = registry.view.query({ status: ['online'], limit: 5000, ...(after !== undefined ? { after } : {}) });
      for (const node of page.nodes) {
        const location = serviceLocationOf(node, mapping);
        desired.set(locationKey(location), { key: nodeKey(node.namespace, node.node_id), node, location, registration: serviceRegistrationOf(node, mapping) });
      }
      after = page.next ?? undefined;
    } while (after !== undefined);

    const report: ReconcileReport = { added: 0, removed: 0, fixed: 0, failed: 0 };
    const work: Array<() => Promise<void>> = [];
    this.registered.clear();
    for (const [where, { key, node, location, registration }] of desired) {
      if (this.sagaInFlight.has(key)) continue;
      const found = actual.get(where)?.service;
      const fingerprint = JSON.stringify(registration);
      const drift = found ? driftOf(found, registration) : null;
      if (drift !== null && drift.length === 0) {
        this.registered.set(key, { location, fingerprint });
        this.pending.delete(key);
        continue;
      }
      work.push(async () => {
        await this.call('register', () => this.register(registration, location));
        this.registered.set(key, { location, fingerprint });
        this.pending.delete(key);
        this.markPassed(key, node);
        if (drift === null) report.added++;
        else report.fixed++;
        this.actions.inc({ action: drift === null ? 'added' : 'fixed' });
        if (drift !== null) this.log.info({ namespace: node.namespace, nodeId: node.node_id, serviceId: location.id, drift }, 'consul service drifted; fixed');
      });
    }
    for (const [where, { location, service }] of actual) {
      if (desired.has(where) || !isManaged(service)) continue;
      const owner = nodeOfService(service, location.namespace, mapping);
      // A service whose saga write is under way is not stale: its record is on the way to the store.
      if (this.sagaInFlight.has(nodeKey(owner.namespace, owner.node_id))) continue;
      work.push(async () => {
        await this.deregister(location);
        report.removed++;
        this.actions.inc({ action: 'removed' });
        this.log.info({ namespace: owner.namespace, nodeId: owner.node_id, serviceId: location.id }, 'stale consul service removed');
      });
    }
    const transientFailures: unknown[] = [];
    await this.forEachLimited(work, async (task) => {
      try {
        await task();
      } catch (error) {
        report.failed++;
        this.noteError(error);
        if (isTransient(error) || error instanceof BreakerOpenError) transientFailures.push(error);
      }
    });
    if (transientFailures.length > 0) throw transientFailures[0] as Error;
    // Keys that no longer name an online node have nothing left to repair.
    const desiredKeys = new Set([...desired.values()].map((entry) => entry.key));
    for (const key of this.pending) if (!desiredKeys.has(key)) this.pending.delete(key);
    this.followed = Math.max(this.followed, startVersion);
    this.needsReconcile = false;
    this.nextReconcileAt = Date.now() + this.options.reconcileIntervalMs;
    this.lastError = unlisted.length > 0 ? `could not list the services of Consul namespaces ${unlisted.join(', ')}` : null;
    this.lastReconcile = { at: new Date().toISOString(), report };
    if (report.added + report.removed + report.fixed > 0) this.log.info({ ...report }, 'consul reconciled');
    return report;
  }

  /**
   * The Consul namespaces to look for services in: none (one listing) unless namespaces are
   * Consul Enterprise's; then the default namespace, every namespace the view holds a record of (a
   * namespace whose nodes all left may still have services), and every one projected into here.
   */
  private namespacesToList(): Array<string | undefined> {
    const { registry, mapping } = this.options;
    const home = consulNamespaceOf(mapping.defaultNamespace ?? DEFAULT_NAMESPACE, mapping);
    if (home === undefined) return [undefined];
    const namespaces = new Set<string>([home, ...this.projectedNamespaces]);
    let after: string | undefined;
    do {
      const page = registry.view.query({ limit: 5000, ...(after !== undefined ? { after } : {}) });
      for (const node of page.nodes) namespaces.add(node.namespace);
      after = page.next ?? undefined;
    } while (after !== undefined);
    return [...namespaces].sort();
  }

  /**
   * The services in Consul by location. A namespace Consul refuses to list (a 4xx: no such Consul
   * namespace, or the token may not read it) is skipped: nothing there is removed, and its nodes are
   * registered again; an unwell Consul fails the whole pass.
   */
  private async actualServices(namespaces: Array<string | undefined>): Promise<{ actual: Map<string, { location: ServiceLocation; service: ConsulAgentService }>; unlisted: string[] }> {
    const actual = new Map<string, { location: ServiceLocation; service: ConsulAgentService }>();
    const unlisted: string[] = [];
    await this.forEachLimited(namespaces, async (namespace) => {
      let services: Record<string, ConsulAgentService>;
      try {
        services = await this.call('services', () => this.options.client.services(namespace));
      } catch (error) {
        if (namespace === undefined || isTransient(error) || error instanceof BreakerOpenError) throw error;
        unlisted.push(namespace);
        this.log.warn({ err: error, consulNamespace: namespace }, 'consul refused to list the services of a namespace; none removed there');
        return;
      }
      for (const [id, service] of Object.entries(services)) {
        // The agent keys its services by ID.
        const location = { id, namespace };
        actual.set(locationKey(location), { location, service });
      }
    });
    return { actual, unlisted: unlisted.sort() };
  }

  /**
   * The saga step of atomic mode: puts the write in Consul before the store sees it. Refuses the
   * write (CONSUL_UNAVAILABLE) when Consul does not take it; returns the step's undoing.
   */
  async beforeWrite(write: NodeWrite, current: NodeRecord | undefined): Promise<Compensation | null> {
    const key = writeKeyOf(write);
    this.sagaInFlight.set(key, (this.sagaInFlight.get(key) ?? 0) + 1);
    try {
      return await this.sagaStepOf(write, current);
    } catch (error) {
      this.afterWrite(write);
      throw error;
    }
  }

  async probe(): Promise<void> {
    if (this.breaker.state !== 'open') return;
    throw new RollcallError(
      'CONSUL_UNAVAILABLE',
      `Consul's circuit breaker is open; registrations and deregistrations are refused${this.breaker.lastError === null ? '' : ` (last failure: ${this.breaker.lastError})`}.`,
      {
        details: { circuit_breaker: this.breaker.state },
      },
    );
  }

  afterWrite(write: NodeWrite): void {
    const key = writeKeyOf(write);
    const count = (this.sagaInFlight.get(key) ?? 1) - 1;
    if (count > 0) this.sagaInFlight.set(key, count);
    else this.sagaInFlight.delete(key);
  }

  private async sagaStepOf(write: NodeWrite, current: NodeRecord | undefined): Promise<Compensation | null> {
    const { mapping } = this.options;
    const previous = current?.status === 'online' ? { registration: serviceRegistrationOf(current, mapping), location: serviceLocationOf(current, mapping) } : null;
    if (write.kind === 'register') {
      const { registration } = write;
      const key = nodeKey(registration.namespace, registration.node_id);
      const desired = serviceRegistrationOf(registration, mapping);
      const location = serviceLocationOf(registration, mapping);
      await this.sagaStep('register', key, registration.node_id, () => this.register(desired, location));
      // The follow loop need not send it again when the change comes through.
      this.registered.set(key, { location, fingerprint: JSON.stringify(desired) });
      this.renewals.set(key, { heartbeatMs: Date.now(), passedAt: Date.now() });
      return previous
        ? () => this.undo(key, registration.node_id, 'register', () => this.register(previous.registration, previous.location), previous)
        : () => this.undo(key, registration.node_id, 'deregister', () => this.deregister(location), null);
    }
    if (write.kind === 'deregister') {
      // Not online (or a tombstone of an older incarnation, which the store refuses): nothing of
      // this write's own to take out of Consul; expiry already did, or the follow loop will.
      if (!previous || !current || (write.incarnation !== undefined && write.incarnation < current.incarnation)) return null;
      const key = nodeKey(write.namespace, write.node_id);
      await this.sagaStep('deregister', key, write.node_id, () => this.deregister(previous.location));
      this.registered.delete(key);
      this.renewals.delete(key);
      return () => this.undo(key, write.node_id, 'register', () => this.register(previous.registration, previous.location), previous);
    }
    return null;
  }

  private async sagaStep(operation: 'register' | 'deregister', key: string, nodeId: string, action: () => Promise<void>): Promise<void> {
    try {
      await this.call(operation, action);
    } catch (error) {
      this.noteError(error);
      if (error instanceof ConsulRequestError && error.status === null) {
        // No answer (timeout, connection lost): Consul may have applied it all the same.
        this.registered.delete(key);
        this.pending.add(key);
        this.needsReconcile = true;
      }
      const open = error instanceof BreakerOpenError;
      throw new RollcallError(
        'CONSUL_UNAVAILABLE',
        open
          ? `Consul's circuit breaker is open; the ${operation === 'register' ? 'registration' : 'deregistration'} of ${nodeId} was refused and nothing was written.`
          : `Consul did not take the ${operation === 'register' ? 'registration' : 'deregistration'} of ${nodeId}, so nothing was written: ${(error as Error).message}`,
        {
          cause: error,
          details: {
            node_id: nodeId,
            circuit_breaker: this.breaker.state,
            ...(error instanceof ConsulRequestError && error.status !== null ? { consul_status: error.status } : {}),
          },
        },
      );
    }
  }

  /** Compensates a saga step; when Consul refuses that too, the reconciler brings it in line. */
  private async undo(
    key: string,
    nodeId: string,
    operation: 'register' | 'deregister',
    action: () => Promise<void>,
    restored: { registration: ConsulServiceRegistration; location: ServiceLocation } | null,
  ): Promise<void> {
    try {
      await this.call(operation, action);
      if (restored) this.registered.set(key, { location: restored.location, fingerprint: JSON.stringify(restored.registration) });
      else {
        this.registered.delete(key);
        this.renewals.delete(key);
      }
      this.compensations.inc({ outcome: 'ok' });
    } catch (error) {
      this.noteError(error);
      this.compensations.inc({ outcome: 'failed' });
      this.registered.delete(key);
      this.pending.add(key);
      this.needsReconcile = true;
      this.alarm.wake();
      this.log.warn(
        { err: error, nodeId, operation, active: this.active },
        this.active ? 'consul compensation failed; left to the reconciler' : 'consul compensation failed; left to the reconciler of the instance holding the consul duty',
      );
    }
  }

  /** Starts a node's TTL window at its registration (which carries Status passing). */
  private markPassed(key: string, node: NodeRecord): void {
    this.renewals.set(key, { heartbeatMs: Date.parse(node.last_heartbeat), passedAt: Date.now() });
  }

  /**
   * Passes the TTL check of each online node whose heartbeat advanced since its last pass, once
   * TTL/3 has gone by since that pass: a heartbeat storm becomes at most three passes per TTL.
   */
  async renew(): Promise<number> {
    if (this.breaker.state === 'open') return 0;
    const { registry } = this.options;
    const now = Date.now();
    const due: Array<{ key: string; node: NodeRecord; heartbeatMs: number }> = [];
    const online = new Set<string>();
    let after: string | undefined;
    do {
      const page = registry.view.query({ status: ['online'], limit: 5000, ...(after !== undefined ? { after } : {}) });
      for (const node of page.nodes) {
        const key = nodeKey(node.namespace, node.node_id);
        online.add(key);
        const heartbeatMs = Date.parse(node.last_heartbeat);
        const renewal = this.renewals.get(key);
        if (!renewal) {
          // First sight on this instance (another may have registered it): pass at the next heartbeat.
          this.renewals.set(key, { heartbeatMs, passedAt: Number.NEGATIVE_INFINITY });
          continue;
        }
        if (heartbeatMs > renewal.heartbeatMs && now - renewal.passedAt >= node.lease_ttl_ms / 3) due.push({ key, node, heartbeatMs });
      }
      after = page.next ?? undefined;
    } while (after !== undefined);
    for (const key of this.renewals.keys()) if (!online.has(key)) this.renewals.delete(key);

    let passed = 0;
    await this.forEachLimited(due, async ({ key, node, heartbeatMs }) => {
      try {
        const location = serviceLocationOf(node, this.options.mapping);
        await this.call('pass', () => this.options.client.passCheck(ttlCheckId(location.id), location.namespace === undefined ? {} : { namespace: location.namespace }), { retry: false });
        this.renewals.set(key, { heartbeatMs, passedAt: now });
        passed++;
      } catch (error) {
        if (error instanceof ConsulRequestError && error.notFound && this.active) {
          // Consul lost the service (restarted, or deregistered it as critical): register it again.
          this.registered.delete(key);
          this.pending.add(key);
          this.needsReconcile = true;
          this.alarm.wake();
        }
        // Anything else: the next round tries again.
      }
    });
    return passed;
  }

  private async call<T>(operation: string, action: () => Promise<T>, options: { retry?: boolean } = {}): Promise<T> {
    try {
      const result = options.retry === false ? await this.breaker.attempt(action) : await this.breaker.call(action);
      this.operations.inc({ operation, outcome: 'ok' });
      return result;
    } catch (error) {
      this.operations.inc({ operation, outcome: error instanceof BreakerOpenError ? 'rejected' : 'error' });
      throw error;
    }
  }

  private async forEachLimited<T>(items: T[], run: (item: T) => Promise<void>): Promise<void> {
    let next = 0;
    const worker = async (): Promise<void> => {
      while (next < items.length) {
        const item = items[next++] as T;
        await run(item);
      }
    };
    await Promise.all(Array.from({ length: Math.min(this.options.concurrency ?? 8, items.length) }, worker));
  }

  /** The `consul` component of /health. */
  health(): { status: 'healthy' | 'degraded'; [detail: string]: unknown } {
    const breaker = this.breaker.state;
    return {
      status: breaker === 'closed' && !this.pendingReconciliation ? 'healthy' : 'degraded',
      address: this.options.client.baseUrl,
      active: this.active,
      circuit_breaker: breaker,
      last_error: this.lastError,
      last_consul_failure: this.breaker.lastError,
      last_consul_failure_at: this.breaker.lastErrorAt === null ? null : new Date(this.breaker.lastErrorAt).toISOString(),
      pending_reconciliation: this.pendingReconciliation,
      pending_nodes: this.active ? this.pending.size : 0,
      registered_services: this.active ? this.registered.size : 0,
      last_reconcile: this.lastReconcile,
    };
  }

  /** Waits (bounded) until what is committed is in Consul, when this instance is the sink and Consul answers. */
  async drain(timeoutMs = 3000): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    while (this.running && this.active && this.breaker.state === 'closed' && !this.needsReconcile && this.followed < this.options.registry.view.version && Date.now() < deadline) {
      this.alarm.wake();
      await new Promise((resolve) => setTimeout(resolve, 10));
    }
  }

  async stop(): Promise<void> {
    this.running = false;
    for (const unsubscribe of this.unsubscribe) unsubscribe();
    this.unsubscribe = [];
    if (this.renewTimer) clearInterval(this.renewTimer);
    this.renewTimer = null;
    this.alarm.wake();
    await this.loop;
    await this.renewing;
    this.loop = null;
    this.active = false;
    this.breaker.shutdown();
  }
}
