// The composition root: opens the store the config asks for, starts the engine, serves the API, and
// registers the registry itself as a node. `stop()` undoes it all in order, losing nothing acknowledged.
import { hostname } from 'node:os';
import type { FastifyInstance } from 'fastify';
import type { Logger } from 'pino';
import { buildApp } from './api/app.js';
import { instanceIdOf, redactUrl, type Config } from './config/config.js';
import type { Registration } from './domain/node.js';
import { Registry } from './engine/registry.js';
import { openStore } from './store/open-store.js';
import { PACKAGE } from './version.js';

export interface RunningServer {
  app: FastifyInstance;
  registry: Registry;
  url: string;
  registryId: string;
  stop(): Promise<void>;
}

const HOUR_MS = 3_600_000;

export async function startServer(config: Config, logger: Logger): Promise<RunningServer> {
  const startedAt = Date.now();
  const storeTarget = config.databaseUrl ? redactUrl(config.databaseUrl) : `pglite:${config.dataDir}`;
  const store = await openStore(
    config.databaseUrl
      ? { kind: 'postgres', url: config.databaseUrl, maxConnections: config.databasePoolSize, onError: (err) => logger.warn({ err }, 'database connection error') }
      : { kind: 'pglite', dataDir: config.dataDir },
  );
  try {
    await store.migrate();
  } catch (error) {
    await store.close().catch(() => undefined);
    throw error;
  }
  logger.info({ store: storeTarget }, 'store ready');

  const registry = new Registry({
    store,
    logger,
    leaseTtlMs: config.leaseTtlSeconds * 1000,
    heartbeatFlushMs: config.heartbeatFlushMs,
    sweepIntervalMs: config.sweepIntervalMs,
    retentionMs: config.retentionHours * HOUR_MS,
    cleanupIntervalMs: config.cleanupIntervalHours * HOUR_MS,
    changeRetentionMs: config.changeRetentionHours * HOUR_MS,
    heartbeatHistory: config.heartbeatHistory,
    heartbeatHistoryMs: config.heartbeatHistoryHours * HOUR_MS,
    maxBatch: config.maxBatch,
    writeConcurrency: store.dialect === 'pglite' ? 1 : config.writeConcurrency,
  });
  await registry.start();

  const registryId = instanceIdOf(config);
  const app = await buildApp({
    registry,
    logger,
    registryId,
    defaultNamespace: config.namespace,
    defaultLeaseTtlMs: config.leaseTtlSeconds * 1000,
    storeTarget,
    startedAt,
  });
  try {
    await app.listen({ host: config.host, port: config.port });
  } catch (error) {
    await registry.stop();
    await store.close();
    throw error;
  }
  const address = app.server.address();
  const port = typeof address === 'object' && address !== null ? address.port : config.port;
  const publicHost = config.host === '0.0.0.0' || config.host === '::' ? hostname() : config.host;
  const url = `http://${publicHost.includes(':') ? `[${publicHost}]` : publicHost}:${port}`;

  // The registry is a node of its own registry.
  const self: Registration = {
    namespace: config.namespace,
    node_id: registryId,
    node_name: 'rollcall',
    node_type: 'registry',
    node_version: PACKAGE.version,
    hostname: hostname(),
    ip: null,
    role: 'registry',
    labels: ['rollcall'],
    capabilities: { store: store.dialect, topology_stream: true, api: 'v1' },
    endpoints: { api: url, health: `${url}/health`, metrics: `${url}/metrics`, openapi: `${url}/openapi.json` },
    configuration: { lease_ttl_seconds: config.leaseTtlSeconds, retention_hours: config.retentionHours },
    current_state: { status: 'active' },
    metadata: { build: { node: process.version, platform: process.platform, arch: process.arch }, pid: process.pid },
    health_status: 'healthy',
    incarnation: startedAt,
    lease_ttl_ms: Math.max(config.leaseTtlSeconds * 1000, config.heartbeatIntervalSeconds * 3000),
    reason: 'startup',
  };
  await registry.register(self);
  const selfHeartbeat = setInterval(() => {
    try {
      const renewed = registry.heartbeat({ namespace: self.namespace, node_id: self.node_id, incarnation: self.incarnation });
      if (renewed instanceof Promise) renewed.catch((err: unknown) => logger.warn({ err }, 'self heartbeat failed'));
    } catch (err) {
      // Our own lease lapsed (the store was away longer than the TTL): announce again.
      logger.warn({ err }, 'self heartbeat refused; registering again');
      registry.register(self).catch((error: unknown) => logger.warn({ err: error }, 'self registration failed'));
    }
  }, config.heartbeatIntervalSeconds * 1000);
  selfHeartbeat.unref();
  logger.info({ url, registryId, store: store.dialect }, 'rollcall serving');

  let stopping: Promise<void> | null = null;
  const stop = (): Promise<void> => {
    stopping ??= (async () => {
      clearInterval(selfHeartbeat);
      await app.close();
      await registry
        .deregister(self.namespace, self.node_id, 'graceful_shutdown', self.incarnation)
        .catch((err: unknown) => logger.warn({ err }, 'self deregistration failed'));
      await registry.stop();
      await store.close();
      logger.info('rollcall stopped');
    })();
    return stopping;
  };
  return { app, registry, url, registryId, stop };
}
