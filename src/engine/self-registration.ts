// The registry is a node of its own registry: it registers itself once serving, renews its lease on
// its heartbeat interval (registering again when the lease was lost), and deregisters on shutdown.
import { hostname } from 'node:os';
import type { Logger } from 'pino';
import { RollcallError } from '../domain/errors.js';
import type { Registration } from '../domain/node.js';
import { PACKAGE } from '../version.js';
import { systemClock, type CancelTimer, type Clock } from './clock.js';
import type { Registry } from './registry.js';

/** What the registry's own record says of it. */
export interface OwnNode {
  namespace: string;
  /** The registry's instance id. */
  nodeId: string;
  /** The base URL its API serves on. */
  url: string;
  storeDialect: 'postgres' | 'pglite';
  leaseTtlSeconds: number;
  heartbeatIntervalSeconds: number;
  retentionHours: number;
  /** When this instance started (ms since the epoch): its incarnation. */
  startedAt: number;
}

/** The registry's own registration: a node of type `registry` that tells where its API, health and metrics are. */
export function ownRegistration(own: OwnNode): Registration {
  const { url } = own;
  return {
    namespace: own.namespace,
    node_id: own.nodeId,
    node_name: 'rollcall',
    node_type: 'registry',
    node_version: PACKAGE.version,
    hostname: hostname(),
    ip: null,
    role: 'registry',
    labels: ['rollcall'],
    capabilities: { store: own.storeDialect, topology_stream: true, api: 'v1' },
    endpoints: { api: url, health: `${url}/health`, metrics: `${url}/metrics`, openapi: `${url}/openapi.json` },
    configuration: { lease_ttl_seconds: own.leaseTtlSeconds, retention_hours: own.retentionHours },
    current_state: { status: 'active' },
    metadata: { build: { node: process.version, platform: process.platform, arch: process.arch }, pid: process.pid },
    health_status: 'healthy',
    incarnation: own.startedAt,
    // Three heartbeats fit in the lease, whatever the configured TTL.
    lease_ttl_ms: Math.max(own.leaseTtlSeconds * 1000, own.heartbeatIntervalSeconds * 3000),
    reason: 'startup',
  };
}

export interface SelfRegistrationOptions {
  registry: Pick<Registry, 'register' | 'heartbeat' | 'deregister'>;
  registration: Registration;
  heartbeatIntervalMs: number;
  logger: Logger;
  clock?: Clock;
}

export class SelfRegistration {
  private cancelHeartbeat: CancelTimer | null = null;

  constructor(private readonly options: SelfRegistrationOptions) {}

  /** Registers the registry's own node and starts its heartbeat. */
  async start(): Promise<void> {
    const { registry, registration, logger } = this.options;
    try {
      await registry.register(registration, { system: true });
    } catch (error) {
      // Atomic mode with Consul away: serve anyway; the self heartbeat registers us once it is back.
      if (!(error instanceof RollcallError && error.code === 'CONSUL_UNAVAILABLE')) throw error;
      logger.warn({ err: error }, 'self registration refused by consul; retrying with the heartbeat');
    }
    this.cancelHeartbeat = (this.options.clock ?? systemClock).setInterval(() => this.beat(), this.options.heartbeatIntervalMs);
  }

  private beat(): void {
    const { registry, registration: self, logger } = this.options;
    try {
      const renewed = registry.heartbeat({ namespace: self.namespace, node_id: self.node_id, incarnation: self.incarnation });
      if (renewed instanceof Promise) renewed.catch((err: unknown) => logger.warn({ err }, 'self heartbeat failed'));
    } catch (err) {
      // Our own lease lapsed (the store was away longer than the TTL): announce again.
      logger.warn({ err }, 'self heartbeat refused; registering again');
      registry.register(self, { system: true }).catch((error: unknown) => logger.warn({ err: error }, 'self registration failed'));
    }
  }

  /** Stops the heartbeat (first thing at shutdown). */
  stopHeartbeat(): void {
    this.cancelHeartbeat?.();
    this.cancelHeartbeat = null;
  }

  /** Deregisters the registry's own node (graceful shutdown); a failure is logged, not thrown. */
  async deregister(): Promise<void> {
    this.stopHeartbeat();
    const { registry, registration: self, logger } = this.options;
    await registry.deregister(self.namespace, self.node_id, 'graceful_shutdown', self.incarnation, { system: true }).catch((err: unknown) => logger.warn({ err }, 'self deregistration failed'));
  }
}
