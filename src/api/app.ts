// Builds the Fastify application: strict JSON parsing and validation, problem documents, OpenAPI, routes.
import swagger from '@fastify/swagger';
import Fastify, { LogController, type FastifyInstance } from 'fastify';
import type { Logger } from 'pino';
import { LIMITS } from '../domain/schemas.js';
import type { Registry } from '../engine/registry.js';
import type { ApiKeyStore, ProfileStore, StoreConnection } from '../store/store.js';
import type { MetricsRegistry } from '../metrics.js';
import { PACKAGE } from '../version.js';
import type { ApiKeyRing } from '../security/api-keys.js';
import { assertNodeWriteDeclared, installAuth, type AuthOptions } from './auth.js';
import { NodeEvents } from '../intake/node-events.js';
import { apiKeyRoutes } from './routes/api-key-routes.js';
import { installProblemHandlers, sendClientErrorProblem, sendFrameworkProblem } from './problem.js';
import { installUnstorableTextCheck } from './unstorable-text-check.js';
import { consulRoutes } from './consul/consul-routes.js';
import { eventRoutes } from './routes/event-routes.js';
import { identityRoutes } from './routes/identity-routes.js';
import type { IdentityService } from '../security/identity-service.js';
import { nodeRoutes } from './routes/node-routes.js';
import { opsRoutes, type OpsRouteOptions } from './routes/ops-routes.js';
import { sdRoutes } from './routes/sd-routes.js';
import { topologyRoutes } from './routes/topology-routes.js';
import type { AuditLog } from '../security/audit.js';
import type { NamespaceAdmission } from '../admission/policy.js';
import { auditRoutes } from './routes/audit-routes.js';
import { policyRoutes } from './routes/policy-routes.js';
import type { IntrospectionVerifier } from '../security/introspection-verifier.js';

export interface AppOptions {
  registry: Registry;
  /** The store roles the routes read and write beside the registry: profiles, API keys, the /health ping. */
  store: ProfileStore & ApiKeyStore & StoreConnection;
  /** The server's metrics registry (served at /metrics), handed in by the composition root. */
  metrics: MetricsRegistry;
  logger: Logger;
  registryId: string;
  defaultNamespace: string;
  defaultLeaseTtlMs: number;
  storeTarget: string;
  startedAt?: number;
  checks?: OpsRouteOptions['checks'];
  /** Authentication, authorization and rate limits; without it the API is open (tests, embedding). */
  auth?: Omit<AuthOptions, 'metrics' | 'keys'> & { keys: ApiKeyRing };
  /** The built-in CA's identity service; null or absent: the identity endpoints answer CA_NOT_CONFIGURED. */
  identity?: IdentityService | null;
  /** Namespace policies and quotas; their routes are served when given. */
  admission?: NamespaceAdmission;
  /** The audit log; GET /api/v1/audit is served when given. */
  audit?: AuditLog;
  /** Checks signed introspections on POST /api/v1/introspection (signatureMode). */
  introspectionVerifier?: IntrospectionVerifier;
  /** The Consul-compatible API's reaper of critical services (consulApiReapIntervalMs, consulApiDeregisterMinMs). */
  consulApi?: { reapIntervalMs: number; deregisterCriticalMinMs: number };
  /** PEM certificate and key: served over HTTPS only (tlsCertFile, tlsKeyFile). */
  https?: { cert: Buffer; key: Buffer };
  /** A request's headers and body must have arrived this long after it began (requestTimeoutMs); default 30 s. */
  requestTimeoutMs?: number;
  /** An event stream this many bytes behind its reader is closed (sseMaxBufferBytes); default 4 MiB. */
  sseMaxBufferBytes?: number;
}

/**
 * After `close()` begins, how long open connections get to finish their answers (watchers are answered
 * at once) before they are cut: a stop never waits on a client.
 */
const CLOSE_GRACE_MS = 5_000;
/** How often, while closing, connections whose last answer has gone out are closed. */
const CLOSE_REAP_INTERVAL_MS = 100;

export async function buildApp(options: AppOptions): Promise<FastifyInstance> {
  // Node cuts a request that has not fully arrived in time (slow senders: 408), checked this often;
  // only receiving counts, so long-polls and event streams may answer for longer.
  const requestTimeoutMs = options.requestTimeoutMs ?? 30_000;
  const requestTimeouts = {
    requestTimeout: requestTimeoutMs,
    headersTimeout: requestTimeoutMs,
    connectionsCheckingInterval: Math.max(50, Math.min(1_000, Math.floor(requestTimeoutMs / 4))),
  };
  const app = Fastify({
    loggerInstance: options.logger.child({ component: 'api' }),
    // Per-request lines at tens of thousands of heartbeats a second would cost more than the work.
    logController: new LogController({ disableRequestLogging: true }),
    // No child logger per request: building one (with redaction) costs more than a heartbeat.
    childLoggerFactory: (logger) => logger,
    bodyLimit: LIMITS.bodyBytes,
    // Identifiers may contain ':' and '@'; keep routing on the raw path.
    routerOptions: { maxParamLength: 512 },
    ajv: {
      // Wrong types are errors, never silently coerced; unknown fields are refused where schemas say so.
      customOptions: { coerceTypes: false, removeAdditional: false, allErrors: false, useDefaults: false },
    },
    forceCloseConnections: 'idle',
    requestTimeout: requestTimeoutMs,
    http: requestTimeouts,
    clientErrorHandler: sendClientErrorProblem,
    frameworkErrors: sendFrameworkProblem,
    // With client certificates (mTLS) every certificate is let through the handshake and judged per
    // request by the auth layer, so a bad one gets a 401 problem document rather than a reset.
    ...(options.https ? { https: { ...options.https, ...requestTimeouts, ...(options.auth?.clientCertificates ? { requestCert: true, rejectUnauthorized: false } : {}) } } : {}),
  }) as unknown as FastifyInstance;

  installProblemHandlers(app);
  // First of the preValidation hooks: neither auth (which may audit what a request names) nor a
  // route sees text the store cannot hold.
  installUnstorableTextCheck(app);
  closeConnectionsOnClose(app);
  // JSON only: a text body is refused with 415 rather than read as a string.
  app.removeContentTypeParser('text/plain');
  await app.register(swagger, {
    openapi: {
      openapi: '3.0.3',
      info: {
        title: 'rollcall',
        version: PACKAGE.version,
        description: 'Node registry API. Errors are application/problem+json documents with a stable `code`.',
      },
      tags: [
        { name: 'nodes', description: 'Registration, heartbeats, queries and deregistration' },
        { name: 'topology', description: 'Versioned topology: snapshot, changes, stream' },
        { name: 'profiles', description: 'Role configuration profiles (DAGI)' },
        { name: 'ops', description: 'Health and metrics' },
        { name: 'discovery', description: 'Service discovery for Prometheus (HTTP SD)' },
        { name: 'admin', description: 'API keys' },
        { name: 'identity', description: 'Node identities: trust bundle, join tokens, SVIDs, revocations' },
      ],
    },
  });

  // Node binding is declared with each write route: one without a declaration does not start.
  app.addHook('onRoute', (route) => assertNodeWriteDeclared(route));
  if (options.auth) {
    // Before any route: the rate limiter attaches itself to the routes declared after it.
    await installAuth(app, { ...options.auth, metrics: options.metrics, ...(options.audit ? { audit: options.audit } : {}) });
    apiKeyRoutes(app, { store: options.store, keys: options.auth.keys, defaultNamespace: options.defaultNamespace });
  }
  // The one intake seam of every door that writes nodes: signatures checked, written as their writer.
  const nodes = new NodeEvents({ registry: options.registry, verifier: options.introspectionVerifier });
  nodeRoutes(app, { registry: options.registry, profiles: options.store, nodes, defaultNamespace: options.defaultNamespace, defaultLeaseTtlMs: options.defaultLeaseTtlMs });
  eventRoutes(app, { nodes, defaultNamespace: options.defaultNamespace, defaultLeaseTtlMs: options.defaultLeaseTtlMs });
  topologyRoutes(app, options.registry, { metrics: options.metrics, ...(options.sseMaxBufferBytes === undefined ? {} : { sseMaxBufferBytes: options.sseMaxBufferBytes }) });
  await app.register(consulRoutes, {
    registry: options.registry,
    nodes,
    metrics: options.metrics,
    agentNode: options.registryId,
    defaultNamespace: options.defaultNamespace,
    defaultLeaseTtlMs: options.defaultLeaseTtlMs,
    ...options.consulApi,
  });
  sdRoutes(app, { registry: options.registry });
  identityRoutes(app, {
    identity: options.identity ?? null,
    defaultNamespace: options.defaultNamespace,
    metrics: options.metrics,
    ...(options.audit ? { audit: options.audit } : {}),
  });
  opsRoutes(app, {
    registry: options.registry,
    store: options.store,
    metrics: options.metrics,
    registryId: options.registryId,
    storeTarget: options.storeTarget,
    startedAt: options.startedAt ?? Date.now(),
    ...(options.checks ? { checks: options.checks } : {}),
  });
  if (options.admission) policyRoutes(app, { admission: options.admission });
  if (options.audit) auditRoutes(app, { audit: options.audit });
  app.get('/openapi.json', { schema: { hide: true } }, async () => app.swagger());
  await app.ready();
  return app;
}

/**
 * Node's server.close() closes the connections idle at that moment; one that finishes its answer
 * later (a watcher answered at shutdown, a write under way) would stay open until keepAliveTimeout
 * (72 s) and hold the close. While closing, such connections are closed as they go idle, and after
 * CLOSE_GRACE_MS whatever is left is cut.
 */
function closeConnectionsOnClose(app: FastifyInstance): void {
  app.addHook('preClose', (done) => {
    const server = app.server;
    const reaper = setInterval(() => server.closeIdleConnections(), CLOSE_REAP_INTERVAL_MS).unref();
    const deadline = setTimeout(() => server.closeAllConnections(), CLOSE_GRACE_MS).unref();
    server.once('close', () => {
      clearInterval(reaper);
      clearTimeout(deadline);
    });
    done();
  });
}
