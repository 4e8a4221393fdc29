// The composition root: a list of starters (store, audit, event bus, engine, projections, intake, API,
// self-registration), each pushing its closer onto one stack as it starts. `stop()`, or a start that
// fails half-way, runs that stack in reverse: what started last stops first, losing nothing acknowledged.
import { readFile } from 'node:fs/promises';
import { hostname } from 'node:os';
import { createSecureContext } from 'node:tls';
import type { FastifyInstance } from 'fastify';
import type { Logger } from 'pino';
import { buildApp } from './api/app.js';
import { isLoopback } from './api/auth.js';
import type { EventBus } from './bus/bus.js';
import { openBus } from './bus/open-bus.js';
import { instanceIdOf, redactUrl, tlsClientAuthOf, topicPrefixOf, type Config } from './config/config.js';
import { RollcallError } from './domain/errors.js';
import { EVENT_TYPES, TopicLayout, envelope, topicNames } from './domain/events.js';
import type { Store } from './store/store.js';
import { Registry } from './engine/registry.js';
import { SelfRegistration, ownRegistration } from './engine/self-registration.js';
import { EventIntake } from './intake/event-intake.js';
import { ConsulClient } from './projections/consul/consul-client.js';
import { ConsulSink } from './projections/consul/consul-sink.js';
import { DnsServer } from './dns/dns-server.js';
import { TopologyDiffRelay } from './projections/topology-diff-relay.js';
import { ApiKeyRing } from './security/api-keys.js';
import { loadCaFiles } from './security/ca.js';
import { IdentityService } from './security/identity-service.js';
import { isMemoryDataDir, lockDataDir, openStore } from './store/open-store.js';
import { AuditLog } from './security/audit.js';
import { NamespaceAdmission } from './admission/policy.js';
import { createMetricsRegistry, type MetricsRegistry } from './metrics.js';
import { FileTrustSource, IntrospectionVerifier, type TrustSource } from './security/introspection-verifier.js';

export interface RunningServer {
  app: FastifyInstance;
  registry: Registry;
  bus: EventBus;
  url: string;
  registryId: string;
  /** The server's Prometheus registry (served at /metrics); every component records into it. */
  metrics: MetricsRegistry;
  /** The DNS interface, when `dnsPort` is configured. */
  dns: DnsServer | null;
  /** The audit log; other components record their decisions through `audit.record()`. */
  audit: AuditLog;
  /** The built-in CA's identity service, when caCertFile and caKeyFile are configured. */
  identity: IdentityService | null;
  /** Checks signed envelopes on both intakes (signatureMode); its rejections go to the audit log. */
  verifier: IntrospectionVerifier;
  /** Runs every closer (see Closers); rejects, once all have run, when any failed. */
  stop(): Promise<void>;
}

const HOUR_MS = 3_600_000;
/** How long one closer may take: a stop never hangs on one component, and the ones after it still run. */
const CLOSE_WITHIN_MS = 15_000;

/**
 * One stack of closers: each component pushes its own once it has started, and `close()` runs them
 * last-pushed first, each bounded by `withinMs`. A failing or hung closer is logged and counted; the
 * ones after it run all the same. The order components start in is therefore the order they stop in,
 * reversed: whatever a component needs while it closes must have started (and pushed) before it.
 */
export class Closers {
  private readonly stack: { name: string; close: () => unknown }[] = [];

  constructor(
    private readonly logger: Logger,
    private readonly withinMs = CLOSE_WITHIN_MS,
  ) {}

  push(name: string, close: () => unknown): void {
    this.stack.push({ name, close });
  }

  /** Runs and empties the stack; resolves with the failures (each already logged), never rejects. */
  async close(): Promise<{ name: string; error: Error }[]> {
    const failures: { name: string; error: Error }[] = [];
    for (let closer = this.stack.pop(); closer !== undefined; closer = this.stack.pop()) {
      const { name, close } = closer;
      let timer: NodeJS.Timeout | undefined;
      const timedOut = new Promise<never>((_, reject) => {
        timer = setTimeout(() => reject(new Error(`did not finish within ${this.withinMs} ms`)), this.withinMs);
      });
      try {
        await Promise.race([Promise.resolve().then(close), timedOut]);
      } catch (cause) {
        const error = cause instanceof Error ? cause : new Error(String(cause));
        this.logger.error({ err: error, closer: name }, `${name}: stop failed`);
        failures.push({ name, error });
      } finally {
        clearTimeout(timer);
      }
    }
    return failures;
  }
}

/**
 * Secure by default: off loopback, rollcall serves only with authentication (an API key exists, a JWKS
 * is configured, client certificates are asked for, or authMode is keys) unless started insecure on
 * purpose. The rule holds for every listener: HTTP (host) and DNS (dnsHost, when dnsPort is set).
 */
function assertSecureListener(config: Config, hasKeys: boolean): void {
  if (config.insecure) return;
  const http = isLoopback(config.host) ? null : { field: 'host', what: config.host, instead: 'listen on 127.0.0.1' };
  const dns = config.dnsPort === undefined || isLoopback(config.dnsHost) ? null : { field: 'dnsHost', what: `DNS on ${config.dnsHost} (dnsHost)`, instead: 'set dnsHost to 127.0.0.1' };
  const open = http ?? dns;
  if (open === null) return;
  const authenticated = config.authMode !== 'off' && (hasKeys || config.authMode === 'keys' || config.jwksUrl !== undefined || tlsClientAuthOf(config) !== 'off');
  if (authenticated) return;
  const why = config.authMode === 'off' ? 'authentication is off (authMode off)' : 'no API key exists, no JWKS is configured and no client certificates are asked for (tlsClientAuth)';
  throw new RollcallError(
    'CONFIG_INVALID',
    `Refusing to serve ${open.what} without authentication: ${why}. Create a key first with \`rollcall key create --scope admin --namespace '*'\` (same --database-url/--data-dir), ` +
      `or ${open.instead}, or start with --insecure (env ROLLCALL_INSECURE=true) to serve it unauthenticated on purpose.`,
    { details: { field: open.field } },
  );
}

export async function startServer(config: Config, logger: Logger): Promise<RunningServer> {
  const startedAt = Date.now();
  // Read before anything opens: a bad TLS file stops the start with nothing to undo.
  const https = await loadTlsFiles(config);
  const metrics = createMetricsRegistry();
  const closers = new Closers(logger);
  try {
    const running = await startAll(config, logger, { startedAt, https, metrics, closers });
    let stopping: Promise<void> | null = null;
    const stop = (): Promise<void> => {
      stopping ??= (async () => {
        const failures = await closers.close();
        if (failures.length > 0) {
          throw new RollcallError('INTERNAL', `rollcall stopped with ${failures.length} failure(s): ${failures.map((f) => `${f.name}: ${f.error.message}`).join('; ')}`, {
            cause: new AggregateError(failures.map((f) => f.error)),
          });
        }
        logger.info('rollcall stopped');
      })();
      return stopping;
    };
    return { ...running, stop };
  } catch (error) {
    // What started before the failure stops again, in reverse; the failure to start is what the caller sees.
    await closers.close();
    throw error;
  }
}

/** What every starter may use: the root's metrics registry and the one stack of closers. */
interface Root {
  startedAt: number;
  https: { cert: Buffer; key: Buffer } | undefined;
  metrics: MetricsRegistry;
  closers: Closers;
}

/** The starters, in order; each pushes its closer as soon as its component runs. */
async function startAll(config: Config, logger: Logger, root: Root): Promise<Omit<RunningServer, 'stop'>> {
  const { closers, metrics, startedAt, https } = root;
  const storeTarget = config.databaseUrl ? redactUrl(config.databaseUrl) : `pglite:${config.dataDir}`;
  // One process owns an embedded folder: a second server (or a CLI command) beside us would lose writes.
  const folderLock = config.databaseUrl || isMemoryDataDir(config.dataDir) ? undefined : await lockDataDir(config.dataDir, { command: 'serve', hint: 'stop it, or serve another --data-dir' });
  // The store closes last of all: everything below writes to it while it stops. It releases the folder lock.
  const store = await openStore(
    config.databaseUrl
      ? { kind: 'postgres', url: config.databaseUrl, maxConnections: config.databasePoolSize, onError: (err) => logger.warn({ err }, 'database connection error') }
      : { kind: 'pglite', dataDir: config.dataDir, ...(folderLock ? { lock: folderLock } : {}) },
  );
  closers.push('store', () => store.close());
  await store.migrate();
  const keys = new ApiKeyRing(store);
  await keys.start();
  assertSecureListener(config, await keys.hasKeys());
  logger.info({ store: storeTarget }, 'store ready');

  const identity = await identityService(config, store);
  if (identity) logger.info({ trustDomain: identity.trustDomain }, 'certificate authority loaded');
  const clientTrust = clientCertificateTrust(config, identity);

  // Audit entries are written in batches; every one recorded (denials included) is written at stop.
  const audit = new AuditLog({ store, logger, flushMs: config.auditFlushMs, retentionMs: config.auditRetentionDays * 24 * HOUR_MS, purgeIntervalMs: config.cleanupIntervalHours * HOUR_MS });
  audit.start();
  closers.push('audit log', () => audit.stop());

  // The event plane: Kafka when brokers are configured, else the in-process bus. It closes after the
  // projections, which publish on it while they drain.
  const bus = await openBus(config, logger);
  closers.push('event bus', () => bus.close());
  const topics = topicNames(topicPrefixOf(config));
  // Namespaces listed in kafkaNamespaceTopics travel on topics of their own ({prefix}.ns.{namespace}.*).
  const layout = new TopicLayout(topics, config.kafkaNamespaceTopics);
  const registryId = instanceIdOf(config);

  const registry = new Registry({
    store,
    logger,
    metrics,
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
  // The projections stop after the engine: its last writes (our own tombstone among them) are
  // projected before they go. So they are built, and their closers pushed, before the engine starts.
  // Projection mode: PostgreSQL is the truth, Consul follows and is repaired when back. Atomic mode
  // adds the saga: Consul takes each write first, before any intake can produce one.
  const consul = config.consulAddr === undefined ? null : consulSink(config, config.consulAddr, logger, registry, metrics);
  if (consul) {
    if (config.consulMode === 'atomic') registry.useSaga(consul);
    closers.push('consul sink', async () => {
      // The sink deregisters our own service before it goes.
      await consul.drain().catch((err: unknown) => logger.warn({ err }, 'consul sink drain failed'));
      await consul.stop();
    });
  }
  const relay = config.topologyDiffRelay
    ? new TopologyDiffRelay({ bus, registry, metrics, topic: topics.topologyDiff, namespaceTopics: layout.namespaces, registryId, logger, local: bus.kind === 'memory' })
    : null;
  if (relay) {
    closers.push('topology diff relay', async () => {
      // The relay publishes our own tombstone before it goes.
      await relay.drain().catch((err: unknown) => logger.warn({ err }, 'topology diff relay drain failed'));
      await relay.stop();
    });
  }
  await registry.start();
  closers.push('engine', () => registry.stop());

  // Namespace policies and quotas before anything can register.
  const admission = new NamespaceAdmission({ registry, store, audit, logger, metrics, refreshMs: config.policyRefreshMs });
  await admission.start();
  closers.push('admission', () => admission.stop());
  registry.useAdmission(admission);
  const verifier = signatureVerifier(config, logger, metrics, identity, audit);

  consul?.start();
  await ensureTopics(config, bus, topics, layout);
  const intake = new EventIntake({
    bus,
    registry,
    metrics,
    topics,
    namespaceTopics: layout.namespaces,
    group: config.kafkaGroupId,
    registryId,
    defaults: { namespace: config.namespace, leaseTtlMs: config.leaseTtlSeconds * 1000 },
    logger,
    maxEventBytes: config.maxEventBytes,
    dedupeSize: config.eventDedupeSize,
    dedupeTtlMs: config.eventDedupeTtlSeconds * 1000,
    maxBatch: config.maxBatch,
    verifier,
  });
  await intake.start();
  // Stop taking events before the engine stops: what was consumed is written (and committed) first.
  closers.push('event intake', () => intake.stop());
  relay?.start();
  logger.info({ bus: bus.kind, prefix: topicPrefixOf(config) }, 'event bus ready');

  const app = await buildApp({
    registry,
    store,
    metrics,
    logger,
    registryId,
    defaultNamespace: config.namespace,
    defaultLeaseTtlMs: config.leaseTtlSeconds * 1000,
    storeTarget,
    startedAt,
    admission,
    audit,
    identity,
    introspectionVerifier: verifier,
    consulApi: { reapIntervalMs: config.consulApiReapIntervalMs, deregisterCriticalMinMs: config.consulApiDeregisterMinMs },
    requestTimeoutMs: config.requestTimeoutMs,
    sseMaxBufferBytes: config.sseMaxBufferBytes,
    ...(https ? { https } : {}),
    auth: {
      keys,
      mode: config.authMode,
      rateLimitPerMinute: config.rateLimitPerMinute,
      rateLimitAnonymousPerMinute: config.rateLimitAnonymousPerMinute,
      ...(config.jwksUrl ? { jwt: { jwksUrl: config.jwksUrl, issuer: config.jwtIssuer, audience: config.jwtAudience } } : {}),
      ...(clientTrust
        ? {
            clientCertificates: {
              mode: tlsClientAuthOf(config) === 'require' ? ('require' as const) : ('optional' as const),
              trust: clientTrust,
              defaultNamespace: config.namespace,
              trustDomain: config.trustDomain,
            },
          }
        : {}),
      requireNodeIdentity: config.signatureMode === 'enforce',
    },
    checks: {
      event_bus: async () => {
        const health = await bus.health();
        return { status: health.ok ? 'healthy' : 'degraded', kind: bus.kind, detail: health.detail };
      },
      ...(relay
        ? {
            topology_diff_relay: async () => ({
              status: relay.lastError === null ? 'healthy' : 'degraded',
              active: relay.publishedVersion !== null,
              published_version: relay.publishedVersion,
              last_error: relay.lastError,
            }),
          }
        : {}),
      ...(consul ? { consul: async () => consul.health() } : {}),
    },
  });
  // Closing answers every watcher and lets in-flight requests finish (their writes are acknowledged).
  closers.push('http api', () => app.close());
  await app.listen({ host: config.host, port: config.port });
  const dns =
    config.dnsPort === undefined
      ? null
      : new DnsServer({
          nodes: registry.view,
          logger,
          host: config.dnsHost,
          port: config.dnsPort,
          domain: config.dnsDomain,
          ttlSeconds: config.dnsTtlSeconds,
          defaultNamespace: config.namespace,
          namespaces: config.dnsNamespaces ?? [config.namespace],
        });
  if (dns) {
    await dns.start();
    closers.push('dns interface', () => dns.stop());
  }
  // Heartbeats can arrive now (HTTP and the intake): lease grace starts here, not when the store loaded.
  registry.openForHeartbeats();
  const address = app.server.address();
  const port = typeof address === 'object' && address !== null ? address.port : config.port;
  const publicHost = config.host === '0.0.0.0' || config.host === '::' ? hostname() : config.host;
  const url = `${https ? 'https' : 'http'}://${publicHost.includes(':') ? `[${publicHost}]` : publicHost}:${port}`;
  // CLI commands on this folder find our API here (on loopback when we listen on every interface).
  const localHost = config.host === '0.0.0.0' ? '127.0.0.1' : config.host === '::' ? '::1' : config.host;
  await folderLock
    ?.publishUrl(`${https ? 'https' : 'http'}://${localHost.includes(':') ? `[${localHost}]` : localHost}:${port}`)
    .catch((err: unknown) => logger.warn({ err }, 'could not write the server URL into the data folder lock'));

  // The registry is a node of its own registry.
  const self = new SelfRegistration({
    registry,
    registration: ownRegistration({
      namespace: config.namespace,
      nodeId: registryId,
      url,
      storeDialect: store.dialect,
      leaseTtlSeconds: config.leaseTtlSeconds,
      heartbeatIntervalSeconds: config.heartbeatIntervalSeconds,
      retentionHours: config.retentionHours,
      startedAt,
    }),
    heartbeatIntervalMs: config.heartbeatIntervalSeconds * 1000,
    logger,
  });
  await self.start();
  // Pushed last, so it runs first at stop: readers and projections hear us leave before we go quiet.
  closers.push('self registration', async () => {
    self.stopHeartbeat();
    await self.deregister();
  });
  if (config.requestIntrospectionOnStart) {
    // Nodes that were running before this instance answer with their introspection.
    const request = envelope(EVENT_TYPES.requestIntrospection, registryId, { reason: 'registry_startup', registry_id: registryId });
    request.correlation_id = request.event_id;
    // Every set of topics hears it: nodes of a namespace with its own listen on their own only.
    await Promise.all(layout.sets().map((set) => bus.publish(set.topics.requestIntrospection, [{ key: null, value: JSON.stringify(request) }])))
      .then(() => logger.info({ correlation_id: request.correlation_id }, 'asked running nodes to announce themselves'))
      .catch((err: unknown) => logger.warn({ err }, 'could not publish the introspection request'));
  }
  logger.info({ url, registryId, store: store.dialect, bus: bus.kind }, 'rollcall serving');
  return { app, registry, bus, url, registryId, metrics, dns, identity, verifier, audit };
}

/** The built-in CA (caCertFile and caKeyFile, both or neither), when configured. */
async function identityService(config: Config, store: Store): Promise<IdentityService | null> {
  if (config.caCertFile === undefined && config.caKeyFile === undefined) return null;
  if (config.caCertFile === undefined || config.caKeyFile === undefined) {
    throw new RollcallError('CONFIG_INVALID', 'Set both caCertFile and caKeyFile (or neither).', { details: { field: config.caCertFile === undefined ? 'caCertFile' : 'caKeyFile' } });
  }
  const ca = await loadCaFiles(config.caCertFile, config.caKeyFile, config.trustDomain);
  return new IdentityService({ ca, store, svidTtlSeconds: config.svidTtlSeconds });
}

/** The Consul projection of consulAddr (started by the caller once the engine has loaded). */
function consulSink(config: Config, address: string, logger: Logger, registry: Registry, metrics: MetricsRegistry): ConsulSink {
  return new ConsulSink({
    registry,
    metrics,
    logger,
    client: new ConsulClient({ address, token: config.consulToken, timeoutMs: config.consulTimeoutMs }),
    mapping: {
      serviceName: config.consulServiceName,
      check: config.consulCheck,
      checkInterval: config.consulCheckInterval,
      checkTimeout: config.consulCheckTimeout,
      deregisterAfter: config.consulDeregisterAfter,
      environment: config.kafkaEnvironment,
      defaultNamespace: config.namespace,
      namespaces: config.consulNamespaces,
      namespaceServiceName: config.consulNamespaceServiceName,
    },
    reconcileIntervalMs: config.consulReconcileIntervalMs,
    concurrency: config.consulConcurrency,
    renewIntervalMs: config.consulRenewIntervalMs,
    retry: { retries: config.consulRetries },
    breaker: {
      failureThreshold: config.consulBreakerFailures,
      resetTimeoutMs: config.consulBreakerResetMs,
      halfOpenMaxCalls: config.consulBreakerHalfOpenCalls,
      successThreshold: config.consulBreakerSuccesses,
    },
  });
}

/** kafkaCreateTopics: the shared topics and those of each namespace listed in kafkaNamespaceTopics. */
async function ensureTopics(config: Config, bus: EventBus, topics: ReturnType<typeof topicNames>, layout: TopicLayout): Promise<void> {
  if (!config.kafkaCreateTopics) return;
  await bus.ensureTopics([
    { name: topics.introspection, partitions: config.kafkaPartitions },
    { name: topics.heartbeat, partitions: config.kafkaPartitions },
    { name: topics.tombstone, partitions: config.kafkaPartitions },
    { name: topics.deadLetter, partitions: config.kafkaPartitions },
    // One partition each: these are read in order.
    { name: topics.requestIntrospection, partitions: 1 },
    { name: topics.topologyDiff, partitions: 1 },
  ]);
  if (layout.namespaces.length === 0) return;
  await bus.ensureTopics(
    layout.namespaces.flatMap((namespace) => {
      const own = layout.topicsOf(namespace);
      return [
        ...[own.introspection, own.heartbeat, own.tombstone, own.deadLetter].map((name) => ({ name, partitions: config.kafkaPartitions })),
        { name: own.requestIntrospection, partitions: 1 },
        { name: own.topologyDiff, partitions: 1 },
      ];
    }),
  );
}

/** The HTTPS certificate and key of tlsCertFile and tlsKeyFile, checked to make a TLS context; none when unset. */
async function loadTlsFiles(config: Config): Promise<{ cert: Buffer; key: Buffer } | undefined> {
  if (config.tlsCertFile === undefined || config.tlsKeyFile === undefined) return undefined;
  const read = async (path: string, field: string): Promise<Buffer> => {
    try {
      return await readFile(path);
    } catch (cause) {
      throw new RollcallError('CONFIG_INVALID', `Cannot read ${field} ${path}: ${(cause as Error).message}`, { cause, details: { field } });
    }
  };
  const tls = { cert: await read(config.tlsCertFile, 'tlsCertFile'), key: await read(config.tlsKeyFile, 'tlsKeyFile') };
  try {
    createSecureContext(tls);
  } catch (cause) {
    throw new RollcallError('CONFIG_INVALID', `tlsCertFile and tlsKeyFile do not make a TLS certificate and its key: ${(cause as Error).message}`, { cause, details: { field: 'tlsKeyFile' } });
  }
  return tls;
}

/**
 * Trust for client certificates (tlsClientAuth): trustBundleFile with revocationFile when set, else the
 * built-in CA's root; the CA's own revocations count either way. None when client certificates are off.
 */
function clientCertificateTrust(config: Config, identity: IdentityService | null): TrustSource | null {
  if (tlsClientAuthOf(config) === 'off' || config.tlsCertFile === undefined) return null;
  if (config.trustBundleFile !== undefined) {
    const files = new FileTrustSource(config.trustBundleFile, config.revocationFile);
    if (identity === null) return files;
    return {
      trustBundle: () => files.trustBundle(),
      isRevoked: async (serial, spiffeId, notBeforeMs) => (await files.isRevoked(serial, spiffeId)) || identity.isRevoked(serial, spiffeId, notBeforeMs),
    };
  }
  if (identity === null) {
    throw new RollcallError('CONFIG_INVALID', 'Option "tlsClientAuth" needs a trust bundle: set trustBundleFile, or caCertFile and caKeyFile.', { details: { field: 'tlsClientAuth' } });
  }
  const bundle = [identity.ca.certificate];
  return { trustBundle: async () => bundle, isRevoked: (serial, spiffeId, notBeforeMs) => identity.isRevoked(serial, spiffeId, notBeforeMs) };
}

/**
 * The signature checks of `signatureMode`. Trust: trustBundleFile (with revocationFile) when set,
 * else the built-in CA's root and its revocations. Rejections are audited as `node.signature`.
 */
function signatureVerifier(config: Config, logger: Logger, metrics: MetricsRegistry, identity: IdentityService | null, audit: AuditLog): IntrospectionVerifier {
  let trustSource: TrustSource | null = null;
  if (config.signatureMode !== 'off') {
    if (config.trustBundleFile !== undefined) {
      trustSource = new FileTrustSource(config.trustBundleFile, config.revocationFile);
    } else if (identity !== null) {
      const bundle = [identity.ca.certificate];
      trustSource = { trustBundle: async () => bundle, isRevoked: (serial, spiffeId, notBeforeMs) => identity.isRevoked(serial, spiffeId, notBeforeMs) };
    }
  }
  return new IntrospectionVerifier({
    mode: config.signatureMode,
    trustSource,
    maxSkewMs: config.signatureMaxSkewSeconds * 1000,
    replayCacheSize: config.signatureReplayCacheSize,
    defaultNamespace: config.namespace,
    logger,
    metrics,
    ...(config.trustDomain !== undefined ? { trustDomain: config.trustDomain } : {}),
    onRejection: (rejection) => {
      audit.record({
        actor: rejection.spiffeId ?? 'anonymous',
        action: 'node.signature',
        namespace: rejection.claimed.namespace,
        node_id: rejection.claimed.node_id,
        decision: rejection.accepted ? 'allowed' : 'denied',
        reason: rejection.code,
        details: { message: rejection.message, mode: rejection.mode, source: rejection.source, event_id: rejection.eventId, event_type: rejection.eventType },
      });
    },
  });
}
