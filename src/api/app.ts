// Builds the Fastify application: strict JSON parsing and validation, problem documents, OpenAPI, routes.
import swagger from '@fastify/swagger';
import Fastify, { LogController, type FastifyInstance } from 'fastify';
import type { Logger } from 'pino';
import { LIMITS } from '../domain/schemas.js';
import type { Registry } from '../engine/registry.js';
import { PACKAGE } from '../version.js';
import { installProblemHandlers } from './problem.js';
import { nodeRoutes } from './routes/node-routes.js';
import { opsRoutes } from './routes/ops-routes.js';
import { topologyRoutes } from './routes/topology-routes.js';

export interface AppOptions {
  registry: Registry;
  logger: Logger;
  registryId: string;
  defaultNamespace: string;
  defaultLeaseTtlMs: number;
  storeTarget: string;
  startedAt?: number;
}

export async function buildApp(options: AppOptions): Promise<FastifyInstance> {
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
  }) as unknown as FastifyInstance;

  installProblemHandlers(app);
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
      ],
    },
  });

  nodeRoutes(app, { registry: options.registry, defaultNamespace: options.defaultNamespace, defaultLeaseTtlMs: options.defaultLeaseTtlMs });
  topologyRoutes(app, options.registry);
  opsRoutes(app, { registry: options.registry, registryId: options.registryId, storeTarget: options.storeTarget, startedAt: options.startedAt ?? Date.now() });
  app.get('/openapi.json', { schema: { hide: true } }, async () => app.swagger());
  await app.ready();
  return app;
}
