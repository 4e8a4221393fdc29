// The metrics every layer may record into: one Prometheus registry per server, handed in from the
// composition root, so tests and instances never share counters.
import type client from 'prom-client';

/** The metric `name` of `registry`, created by `create` the first time (components may be built twice). */
export function metricOnce<T extends client.Metric>(registry: client.Registry, name: string, create: () => T): T {
  return (registry.getSingleMetric(name) as T | undefined) ?? create();
}
