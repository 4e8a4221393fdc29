// The metrics every layer may record into: one Prometheus registry per server, created by the
// composition root and handed in to each component, so tests and instances never share counters.
import client from 'prom-client';

/** The registry's type, as components declare it in their options. */
export type MetricsRegistry = client.Registry;

/** A fresh registry with the process metrics (CPU, memory, event loop) under the `rollcall_` prefix. */
export function createMetricsRegistry(): MetricsRegistry {
  const registry = new client.Registry();
  client.collectDefaultMetrics({ register: registry, prefix: 'rollcall_' });
  return registry;
}

/** The metric `name` of `registry`, created by `create` the first time (components may be built twice). */
export function metricOnce<T extends client.Metric>(registry: client.Registry, name: string, create: () => T): T {
  return (registry.getSingleMetric(name) as T | undefined) ?? create();
}
