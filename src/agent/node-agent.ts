// The node-side SDK (the seeds' IntrospectionMixin): announces the node at start, heartbeats on a
// jittered timer, answers the registry's introspection requests, announces changes on demand, and
// leaves with a tombstone. How events travel (event bus or HTTP) is the transport's business.
import pino, { type Logger } from 'pino';
import { RollcallError, isRollcallError } from '../domain/errors.js';
import { EVENT_TYPES, envelope, parseRequestIntrospection, requestAddresses } from '../domain/events.js';
import type { JsonObject } from '../domain/json.js';
import { DEFAULT_NAMESPACE, type HealthStatus } from '../domain/node.js';
import type { Envelope } from '../domain/schemas.js';
import { PACKAGE } from '../version.js';
import { envelopeSigner, type EnvelopeSigner, type SvidCredentials } from '../security/signing.js';
import type { SvidRotator } from './svid-rotator.js';

export const AGENT_EVENT_KINDS = ['introspection', 'heartbeat', 'tombstone'] as const;
export type AgentEventKind = (typeof AGENT_EVENT_KINDS)[number];

/**
 * What became of a published event: `delivered` (the bus or the registry took it), or
 * `reannounce` (the registry does not hold this node's current registration and wants a fresh
 * introspection; only heartbeats answer this).
 */
export type PublishOutcome = 'delivered' | 'reannounce';

/** How the agent's events reach the registry, and how the registry's requests reach the agent. */
export interface AgentTransport {
  /** Resolves once the event is accepted; rejects when it could not be sent. */
  publish(kind: AgentEventKind, event: Envelope): Promise<PublishOutcome>;
  /**
   * Starts listening for REGISTRY_REQUEST_INTROSPECTION envelopes and resolves once listening; the
   * listener gets every request, the agent decides which ones address it. A transport without a
   * push channel (HTTP) resolves without listening.
   */
  onRegistryRequest(listener: (request: Envelope) => void): Promise<void>;
  close(): Promise<void>;
}

export interface AgentIdentity {
  node_id: string;
  node_type: string;
  /** Absent: the registry's default namespace. */
  namespace?: string;
  node_name?: string;
  node_version?: string;
  /** Grows with every start of the node so the registry drops what an older start sends; default Date.now() at construction. */
  incarnation?: number;
}

/** What the node says about itself; read by `introspect`, cached by the agent. */
export interface IntrospectionState {
  capabilities?: JsonObject;
  endpoints?: JsonObject;
  current_state?: JsonObject;
  configuration?: JsonObject;
  metadata?: JsonObject;
  health_status?: HealthStatus;
}

export interface NodeAgentOptions {
  identity: AgentIdentity;
  /** Reads the node's current state. Called at start, on announce(), and on a registry request when the cache is stale. */
  introspect: () => IntrospectionState | Promise<IntrospectionState>;
  transport: AgentTransport;
  /** Time between heartbeats; default 30 000 (the seeds' 30 s). */
  heartbeatIntervalMs?: number;
  /** Each interval varies by up to this fraction either way, so a fleet restarted together spreads out; default 0.1. */
  jitter?: number;
  /** Lease asked of the registry: offline this long after the last heartbeat. Absent: the registry's default. */
  leaseTtlSeconds?: number;
  /** How long an extracted introspection answers registry requests before it is read again; default 60 000. */
  cacheTtlMs?: number;
  /** Health sent with each heartbeat; absent: the health_status of the last introspection. */
  health?: () => HealthStatus | undefined;
  logger?: Logger;
  /**
   * Signs every envelope published (introspection, heartbeat, tombstone) with the node's SVID: its
   * credentials, a function returning the current ones (e.g. `rotator.current`), or a signer of one's
   * own. Over HTTP signed envelopes go to POST /api/v1/events, so heartbeats and tombstones keep
   * their signatures too.
   */
  signer?: SvidCredentials | (() => SvidCredentials | Promise<SvidCredentials>) | EnvelopeSigner;
  /**
   * Signs with the SVID this rotator keeps current (instead of `signer`). The agent starts it
   * before its startup announcement (enrolling when it has a join token) and stops it after its
   * tombstone.
   */
  svid?: SvidRotator;
}

export interface AgentStats {
  /** Calls of `introspect` so far. */
  extractions: number;
  /** Duration of the last `introspect` call (the seeds' target: under 50 ms). */
  lastExtractionMs: number | null;
  /** Serialised size of the last event published, of any kind. */
  lastEventBytes: number | null;
  /** Serialised size of the last introspection published (the seeds' target: under 2 KB for a typical node). */
  lastIntrospectionBytes: number | null;
  announcements: number;
  heartbeats: number;
  heartbeatFailures: number;
  requestsAnswered: number;
}

/** Version of the introspection payload this SDK writes. */
export const INTROSPECTION_VERSION = `rollcall-agent/${PACKAGE.version}`;

const DEFAULTS = { heartbeatIntervalMs: 30_000, jitter: 0.1, cacheTtlMs: 60_000 } as const;

interface CachedState {
  state: IntrospectionState;
  extractedAt: number;
}

type AgentState = 'idle' | 'starting' | 'running' | 'stopping' | 'stopped';

export class NodeAgent {
  readonly identity: Readonly<AgentIdentity & { incarnation: number }>;
  readonly stats: AgentStats = {
    extractions: 0,
    lastExtractionMs: null,
    lastEventBytes: null,
    lastIntrospectionBytes: null,
    announcements: 0,
    heartbeats: 0,
    heartbeatFailures: 0,
    requestsAnswered: 0,
  };
  private readonly log: Logger;
  private readonly intervalMs: number;
  private readonly jitter: number;
  private readonly cacheTtlMs: number;
  private readonly startedAt = Date.now();
  private cache: CachedState | null = null;
  private state: AgentState = 'idle';
  private starting: Promise<void> | null = null;
  private stopping: Promise<void> | null = null;
  private listening = false;
  private timer: NodeJS.Timeout | null = null;
  private beating: Promise<void> | null = null;
  /** Answers and announcements in flight; stop() lets them finish so the tombstone comes last. */
  private readonly inFlight = new Set<Promise<unknown>>();
  private readonly signer: EnvelopeSigner | null;

  constructor(private readonly options: NodeAgentOptions) {
    this.identity = { ...options.identity, incarnation: options.identity.incarnation ?? Date.now() };
    this.intervalMs = options.heartbeatIntervalMs ?? DEFAULTS.heartbeatIntervalMs;
    this.jitter = Math.min(Math.max(options.jitter ?? DEFAULTS.jitter, 0), 1);
    this.cacheTtlMs = options.cacheTtlMs ?? DEFAULTS.cacheTtlMs;
    const { signer, svid } = options;
    if (signer !== undefined && svid !== undefined) throw new RangeError('give the agent a signer or an svid rotator, not both');
    // A function of one argument signs envelopes itself; one of none returns the current credentials.
    this.signer =
      svid !== undefined
        ? envelopeSigner(svid.current)
        : signer === undefined
          ? null
          : typeof signer === 'function' && signer.length === 1
            ? (signer as EnvelopeSigner)
            : envelopeSigner(signer as SvidCredentials | (() => SvidCredentials | Promise<SvidCredentials>));
    if (!(this.intervalMs > 0)) throw new RangeError(`heartbeatIntervalMs must be positive, got ${this.intervalMs}`);
    this.log = (options.logger ?? pino({ level: 'silent' })).child({
      component: 'node-agent',
      nodeId: this.identity.node_id,
      ...(this.identity.namespace === undefined ? {} : { namespace: this.identity.namespace }),
    });
  }

  get running(): boolean {
    return this.state === 'running';
  }

  /**
   * Listens for registry requests, announces with reason `startup`, then heartbeats. Rejects when
   * the startup announcement could not be sent; start() may then be called again.
   */
  start(): Promise<void> {
    if (this.state === 'stopping' || this.state === 'stopped') return Promise.reject(new RollcallError('SHUTTING_DOWN', 'The agent was stopped; create a new one to start again.'));
    this.starting ??= this.startOnce().catch((error: unknown) => {
      this.starting = null;
      if (this.state === 'starting') this.state = 'idle';
      throw error;
    });
    return this.starting;
  }

  private async startOnce(): Promise<void> {
    this.state = 'starting';
    // The SVID first: the startup announcement is signed with it.
    await this.options.svid?.start();
    if (!this.listening) {
      // Listen before announcing, so a request sent in reply to the announcement is not missed.
      await this.options.transport.onRegistryRequest((request) => this.onRequest(request));
      this.listening = true;
    }
    await this.publishIntrospection('startup', { refresh: true });
    if (this.state !== 'starting') return;
    this.state = 'running';
    this.schedule();
    this.log.info({ incarnation: this.identity.incarnation, intervalMs: this.intervalMs }, 'node announced');
  }

  /** Re-reads the node's state and publishes it, e.g. after its capabilities changed. */
  async announce(reason = 'capability_change'): Promise<void> {
    if (this.state !== 'running') throw new Error(`cannot announce: the agent is ${this.state}`);
    await this.track(this.publishIntrospection(reason, { refresh: true }));
  }

  /** Stops heartbeats, sends the tombstone and closes the transport. Rejects if the tombstone could not be sent. */
  stop(reason = 'graceful_shutdown'): Promise<void> {
    this.stopping ??= this.stopOnce(reason);
    return this.stopping;
  }

  private async stopOnce(reason: string): Promise<void> {
    const wasStarting = this.starting;
    this.state = 'stopping';
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
    // A startup announcement in flight may still land: wait for it, so the tombstone follows it.
    const announced = wasStarting
      ? await wasStarting.then(
          () => true,
          () => false,
        )
      : false;
    if (this.beating) await this.beating;
    await Promise.allSettled([...this.inFlight]);
    let failure: Error | null = null;
    if (announced) {
      try {
        await this.publish('tombstone', envelope(EVENT_TYPES.tombstone, this.identity.node_id, this.tombstonePayload(reason)));
        this.log.info({ reason }, 'tombstone sent');
      } catch (error) {
        failure = error instanceof Error ? error : new Error(String(error));
        this.log.warn({ err: error, reason }, 'tombstone failed; the registry will expire the lease');
      }
    }
    await this.options.transport.close().catch((error: unknown) => this.log.warn({ err: error }, 'closing the transport failed'));
    await this.options.svid?.stop();
    this.state = 'stopped';
    if (failure !== null) throw failure;
  }

  /** The introspection payload of the current state (from the cache when it is fresh). */
  async introspection(reason: string): Promise<JsonObject> {
    return this.payloadOf(await this.currentState(false), reason);
  }

  private async currentState(refresh: boolean): Promise<IntrospectionState> {
    if (!refresh && this.cache && Date.now() - this.cache.extractedAt < this.cacheTtlMs) return this.cache.state;
    const started = performance.now();
    const state = await this.options.introspect();
    this.stats.lastExtractionMs = performance.now() - started;
    this.stats.extractions += 1;
    this.cache = { state, extractedAt: Date.now() };
    return state;
  }

  private payloadOf(state: IntrospectionState, reason: string): JsonObject {
    const { identity } = this;
    const currentState = state.health_status === undefined ? (state.current_state ?? {}) : { ...state.current_state, health_status: state.health_status };
    const payload: JsonObject = {
      node_id: identity.node_id,
      node_type: identity.node_type,
      incarnation: identity.incarnation,
      capabilities: state.capabilities ?? {},
      endpoints: state.endpoints ?? {},
      configuration: state.configuration ?? {},
      current_state: currentState,
      metadata: state.metadata ?? {},
      introspection_timestamp: new Date().toISOString(),
      introspection_version: INTROSPECTION_VERSION,
      reason,
    };
    if (identity.namespace !== undefined) payload.namespace = identity.namespace;
    if (identity.node_name !== undefined) payload.node_name = identity.node_name;
    if (identity.node_version !== undefined) payload.node_version = identity.node_version;
    if (this.options.leaseTtlSeconds !== undefined) payload.lease_ttl_seconds = this.options.leaseTtlSeconds;
    return payload;
  }

  private async publishIntrospection(reason: string, options: { refresh: boolean; correlationId?: string }): Promise<void> {
    const payload = this.payloadOf(await this.currentState(options.refresh), reason);
    const event = envelope(EVENT_TYPES.introspection, this.identity.node_id, payload, { correlationId: options.correlationId });
    await this.publish('introspection', event);
    this.stats.announcements += 1;
  }

  private async publish(kind: AgentEventKind, unsigned: Envelope): Promise<PublishOutcome> {
    const event = this.signer ? await this.signer(unsigned) : unsigned;
    const bytes = Buffer.byteLength(JSON.stringify(event));
    const outcome = await this.options.transport.publish(kind, event);
    this.stats.lastEventBytes = bytes;
    if (kind === 'introspection') this.stats.lastIntrospectionBytes = bytes;
    return outcome;
  }

  private heartbeatPayload(): JsonObject {
    const payload: JsonObject = { node_id: this.identity.node_id, incarnation: this.identity.incarnation };
    if (this.identity.namespace !== undefined) payload.namespace = this.identity.namespace;
    const health = this.currentHealth();
    if (health !== undefined) payload.health_status = health;
    return payload;
  }

  private currentHealth(): HealthStatus | undefined {
    return this.options.health?.() ?? this.cache?.state.health_status;
  }

  private tombstonePayload(reason: string): JsonObject {
    const payload: JsonObject = {
      node_id: this.identity.node_id,
      node_type: this.identity.node_type,
      incarnation: this.identity.incarnation,
      removal_reason: reason,
      removal_timestamp: new Date().toISOString(),
      final_status: this.currentHealth() ?? 'unknown',
      metadata: { uptime_seconds: Math.floor((Date.now() - this.startedAt) / 1000) },
    };
    if (this.identity.namespace !== undefined) payload.namespace = this.identity.namespace;
    return payload;
  }

  /** The next beat, `interval ± jitter` from now; unref'd so the agent never keeps a process alive. */
  private schedule(): void {
    if (this.state !== 'running') return;
    const spread = this.intervalMs * this.jitter * (Math.random() * 2 - 1);
    this.timer = setTimeout(
      () => {
        this.timer = null;
        this.beating = this.beat().finally(() => {
          this.beating = null;
          this.schedule();
        });
      },
      Math.max(1, Math.round(this.intervalMs + spread)),
    );
    this.timer.unref();
  }

  /** One heartbeat; failures are logged and the next beat tries again. */
  private async beat(): Promise<void> {
    let outcome: PublishOutcome;
    try {
      outcome = await this.publish('heartbeat', envelope(EVENT_TYPES.heartbeat, this.identity.node_id, this.heartbeatPayload()));
      this.stats.heartbeats += 1;
    } catch (error) {
      this.stats.heartbeatFailures += 1;
      this.log.warn({ err: error, code: isRollcallError(error) ? error.code : undefined }, 'heartbeat failed; retrying at the next beat');
      return;
    }
    if (outcome === 'reannounce' && this.state === 'running') {
      this.log.info('registry asks for a fresh announcement');
      await this.track(this.publishIntrospection('reannounce', { refresh: false })).catch((error: unknown) => {
        this.log.warn({ err: error }, 're-announcement failed; the next heartbeat asks again');
      });
    }
  }

  private onRequest(request: Envelope): void {
    if (this.state !== 'running' && this.state !== 'starting') return;
    let addressed: boolean;
    try {
      addressed = requestAddresses(parseRequestIntrospection(request.payload), this.identity.namespace ?? DEFAULT_NAMESPACE, this.identity.node_id);
    } catch (error) {
      this.log.debug({ err: error, eventId: request.event_id }, 'unreadable registry request ignored');
      return;
    }
    if (!addressed) return;
    const correlationId = request.correlation_id ?? request.event_id;
    this.track(this.publishIntrospection('registry_request', { refresh: false, correlationId })).then(
      () => {
        this.stats.requestsAnswered += 1;
        this.log.debug({ correlationId }, 'registry request answered');
      },
      (error: unknown) => this.log.warn({ err: error, correlationId }, 'answering a registry request failed'),
    );
  }

  private track<T>(work: Promise<T>): Promise<T> {
    this.inFlight.add(work);
    const forget = (): void => {
      this.inFlight.delete(work);
    };
    work.then(forget, forget);
    return work;
  }
}
