// Operations endpoints: service information, health with component checks, Prometheus metrics.
import type { FastifyInstance } from 'fastify';
import type { Registry } from '../../engine/registry.js';
import type { StoreConnection } from '../../store/store.js';
import type { MetricsRegistry } from '../../metrics.js';
import { PACKAGE } from '../../version.js';

export interface OpsRouteOptions {
  registry: Registry;
  /** The database /health pings. */
  store: StoreConnection;
  /** The server's metrics registry, handed in by the composition root. */
  metrics: MetricsRegistry;
  registryId: string;
  /** Where the data lives, with any password masked. */
  storeTarget: string;
  startedAt: number;
  /** Further components (the event bus, projections): unhealthy ones make the registry degraded. */
  checks?: Record<string, () => Promise<ComponentCheck>>;
}

export interface ComponentCheck {
  status: 'healthy' | 'degraded' | 'unhealthy';
  [detail: string]: unknown;
}

export function opsRoutes(app: FastifyInstance, options: OpsRouteOptions): void {
  const { registry } = options;

  app.get('/', { schema: { hide: true } }, async () => ({
    service: PACKAGE.name,
    version: PACKAGE.version,
    registry_id: options.registryId,
    openapi: '/openapi.json',
    health: '/health',
    metrics: '/metrics',
  }));

  app.get('/health', { schema: { tags: ['ops'], summary: 'Health with component checks; 503 when the store is unreachable or writes fail.' } }, async (_request, reply) => {
    const started = performance.now();
    const pinged = async (): Promise<Record<string, unknown>> => {
      try {
        await options.store.ping();
        return { status: 'healthy', dialect: options.store.dialect, target: options.storeTarget, latency_ms: Math.round((performance.now() - started) * 100) / 100 };
      } catch (error) {
        return { status: 'unhealthy', dialect: options.store.dialect, target: options.storeTarget, error: (error as Error).message };
      }
    };
    // A store that answers may still refuse writes (read-only, locked, pool exhausted; Consul in atomic mode).
    const [store, writes] = await Promise.all([pinged(), registry.writeHealth.check()]);
    const tasks = registry.taskStates();
    const tasksHealthy = Object.values(tasks).every((task) => task.running && task.lastError === null);
    const components: Record<string, ComponentCheck> = {};
    for (const [name, check] of Object.entries(options.checks ?? {})) {
      components[name] = await check().catch((error: unknown) => ({ status: 'unhealthy' as const, error: (error as Error).message }));
    }
    const componentsHealthy = Object.values(components).every((component) => component.status === 'healthy');
    const status = store.status !== 'healthy' || writes.status !== 'healthy' ? 'unhealthy' : tasksHealthy && componentsHealthy ? 'healthy' : 'degraded';
    const counts = registry.view.countByStatus();
    return reply.code(status === 'unhealthy' ? 503 : 200).send({
      status,
      registry_id: options.registryId,
      version: PACKAGE.version,
      timestamp: new Date().toISOString(),
      uptime_seconds: Math.round((Date.now() - options.startedAt) / 1000),
      topology_version: registry.view.version,
      checks: {
        store,
        writes,
        background_tasks: {
          status: tasksHealthy ? 'healthy' : 'degraded',
          write_queue_depth: registry.writeQueueDepth,
          tasks: Object.fromEntries(
            Object.entries(tasks).map(([name, task]) => [
              name,
              {
                running: task.running,
                last_run_at: task.lastRunAt === null ? null : new Date(task.lastRunAt).toISOString(),
                last_error: task.lastError,
              },
            ]),
          ),
        },
        ...components,
      },
      nodes: counts,
    });
  });

  app.get('/metrics', { schema: { tags: ['ops'], summary: 'Prometheus metrics.' } }, async (_request, reply) => {
    const text = await options.metrics.metrics();
    return reply.type(options.metrics.contentType).send(text);
  });
}
