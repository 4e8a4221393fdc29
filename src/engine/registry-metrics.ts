// The engine's Prometheus metrics, recorded into the registry the composition root hands in.
import client from 'prom-client';

export class RegistryMetrics {
  /** The server's metrics registry (every component's metrics, served at /metrics). */
  readonly registry: client.Registry;
  readonly registrations: client.Counter<'outcome'>;
  readonly registrationsSucceeded: client.Counter;
  readonly registrationsFailed: client.Counter<'code'>;
  readonly registrationDuration: client.Histogram;
  readonly heartbeats: client.Counter<'outcome'>;
  readonly heartbeatFlushes: client.Counter;
  readonly changes: client.Counter<'change_type' | 'reason'>;
  readonly writeBatchSize: client.Histogram;
  readonly nodes: client.Gauge<'status'>;
  readonly topologyVersion: client.Gauge;

  constructor(registry: client.Registry, collect: { nodesByStatus: () => Record<string, number>; version: () => number }) {
    this.registry = registry;
    const registers = [registry];
    this.registrations = new client.Counter({
      name: 'rollcall_registrations_total',
      help: 'Registrations received, by outcome (added, updated, unchanged, rejected, failed).',
      labelNames: ['outcome'],
      registers,
    });
    this.registrationsSucceeded = new client.Counter({ name: 'rollcall_registrations_succeeded_total', help: 'Registrations accepted (durable or unchanged).', registers });
    this.registrationsFailed = new client.Counter({ name: 'rollcall_registrations_failed_total', help: 'Registrations refused or failed, by error code.', labelNames: ['code'], registers });
    this.registrationDuration = new client.Histogram({
      name: 'rollcall_registration_duration_seconds',
      help: 'Time from receiving a registration to its durable acknowledgement.',
      buckets: [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5],
      registers,
    });
    this.heartbeats = new client.Counter({ name: 'rollcall_heartbeats_total', help: 'Heartbeats received, by outcome.', labelNames: ['outcome'], registers });
    this.heartbeatFlushes = new client.Counter({ name: 'rollcall_heartbeat_flushes_total', help: 'Batched lease renewals written to the store.', registers });
    this.changes = new client.Counter({ name: 'rollcall_topology_changes_total', help: 'Topology changes committed by this instance.', labelNames: ['change_type', 'reason'], registers });
    this.writeBatchSize = new client.Histogram({
      name: 'rollcall_write_batch_size',
      help: 'Writes per store transaction (group commit).',
      buckets: [1, 2, 5, 10, 25, 50, 100, 250, 500, 1000],
      registers,
    });
    this.nodes = new client.Gauge({
      name: 'rollcall_nodes',
      help: 'Nodes in the live view, by status.',
      labelNames: ['status'],
      registers,
      collect() {
        for (const [status, count] of Object.entries(collect.nodesByStatus())) this.set({ status }, count);
      },
    });
    this.topologyVersion = new client.Gauge({
      name: 'rollcall_topology_version',
      help: 'Topology version of the live view.',
      registers,
      collect() {
        this.set(collect.version());
      },
    });
  }
}
