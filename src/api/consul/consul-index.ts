// Consul's per-service and per-namespace indexes (the topology version of the last change that touched
// a service or namespace), kept from the live view's changes, and the blocking-query waits on them: a
// change wakes only the watchers of the services and namespace it touched.
import client from 'prom-client';
import type { NodeRecord, TopologyChange } from '../../domain/node.js';
import type { LiveView } from '../../engine/live-view.js';
import { metricOnce } from '../../metrics.js';
import { serviceNamesOf } from './consul-model.js';

/** Why a parked blocking query returned: its key's index moved, its wait ended, or it was aborted (client gone, shutdown). */
export const WAKE_CAUSES = ['change', 'timeout', 'aborted'] as const;
export type WakeCause = (typeof WAKE_CAUSES)[number];

/** The index of every node of a namespace (`/v1/catalog/services`, `/v1/agent/services`). */
export function namespaceKey(namespace: string): string {
  return `n\u0000${namespace}`;
}

/** The index of one service of a namespace (`/v1/health/service/{name}`, `/v1/catalog/service/{name}`). */
export function serviceKey(namespace: string, service: string): string {
  return `s\u0000${namespace}\u0000${service}`;
}

export interface ConsulIndexOptions {
  /** Where the blocking-query metrics are registered (the registry's). */
  metrics: client.Registry;
  /**
   * Keys (services and namespaces) remembered before they are all folded into the floor. Default
   * 100,000: about 10 MB with 20-character names; folding wakes every parked watcher once.
   */
  maxKeys?: number;
}

type Waiter = (cause: WakeCause) => void;

/**
 * Each key's index is the version of the last change that touched it since the view was loaded, or
 * the view's version at load (the floor) for a key untouched since: records carry no version of their
 * own, so after a start every watcher is answered once with the floor and then parks on its key.
 * A node's change touches its namespace, the services it now belongs to and those it belonged to
 * (a removed or expired record keeps its node_type; a renamed or retyped one names the service it
 * left in the record it replaced), so a service's index also moves when a node leaves it.
 *
 * Entries of services that no longer exist are kept (an index must not go backwards): one entry per
 * service name touched since the load, about 75 bytes plus the name (95 measured for a 20-character name). Past `maxKeys` the map is cleared and
 * the floor raised to the current version, which keeps every index monotonic at the cost of waking
 * every parked watcher once.
 */
export class ConsulIndex {
  private readonly versions = new Map<string, number>();
  private readonly waiters = new Map<string, Set<Waiter>>();
  private floor: number;
  private readonly maxKeys: number;
  private readonly unsubscribe: () => void;
  private readonly parked: client.Gauge;
  private readonly wakeups: client.Counter<'cause'>;

  constructor(
    private readonly view: LiveView,
    options: ConsulIndexOptions,
  ) {
    this.floor = view.version;
    this.maxKeys = options.maxKeys ?? 100_000;
    const registers = [options.metrics];
    this.parked = metricOnce(
      options.metrics,
      'rollcall_consul_blocking_parked',
      () =>
        new client.Gauge({
          name: 'rollcall_consul_blocking_parked',
          help: 'Consul blocking queries parked, waiting for their service or namespace to change.',
          registers,
        }),
    );
    this.wakeups = metricOnce(
      options.metrics,
      'rollcall_consul_blocking_wakeups_total',
      () =>
        new client.Counter({
          name: 'rollcall_consul_blocking_wakeups_total',
          help: 'Parked Consul blocking queries released, by cause: change (of their service or namespace), timeout (wait ended), aborted (client gone or shutdown).',
          labelNames: ['cause'],
          registers,
        }),
    );
    this.unsubscribe = view.onChange((change, previous) => this.apply(change, previous));
  }

  /** The key's index as X-Consul-Index carries it: never 0, as Consul's. */
  indexOf(key: string): number {
    return Math.max(1, this.versions.get(key) ?? this.floor);
  }

  /** Parked blocking queries, over every key. */
  get parkedCount(): number {
    let count = 0;
    for (const waiters of this.waiters.values()) count += waiters.size;
    return count;
  }

  /**
   * Resolves once the key's index moves off `index`, or after `timeoutMs`, or on abort; at once when
   * the index is not `index` already.
   */
  waitPast(key: string, index: number, timeoutMs: number, signal: AbortSignal): Promise<WakeCause | null> {
    if (this.indexOf(key) !== index || timeoutMs <= 0 || signal.aborted) return Promise.resolve(null);
    let waiters = this.waiters.get(key);
    if (!waiters) {
      waiters = new Set();
      this.waiters.set(key, waiters);
    }
    const parkedOn = waiters;
    return new Promise((resolve) => {
      const wake: Waiter = (cause) => {
        clearTimeout(timer);
        signal.removeEventListener('abort', onAbort);
        // A change has taken the whole set off the map already.
        if (cause !== 'change') {
          parkedOn.delete(wake);
          if (parkedOn.size === 0 && this.waiters.get(key) === parkedOn) this.waiters.delete(key);
        }
        this.parked.dec();
        this.wakeups.inc({ cause });
        resolve(cause);
      };
      const onAbort = (): void => wake('aborted');
      const timer = setTimeout(() => wake('timeout'), timeoutMs);
      signal.addEventListener('abort', onAbort, { once: true });
      parkedOn.add(wake);
      this.parked.inc();
    });
  }

  /** Stops following the view; parked queries end by their own wait or signal. */
  close(): void {
    this.unsubscribe();
  }

  private apply(change: TopologyChange | null, previous: NodeRecord | undefined): void {
    if (change === null) {
      this.rebase(this.view.version);
      return;
    }
    this.touch(namespaceKey(change.namespace), change.version);
    // A removed node keeps its node_type, so the record itself names its service; one renamed or retyped
    // touches the service it left too, whose answer lost an entry.
    const names = previous ? [...serviceNamesOf(change.node), ...serviceNamesOf(previous)] : serviceNamesOf(change.node);
    for (const name of names) this.touch(serviceKey(change.namespace, name), change.version);
    if (this.versions.size > this.maxKeys) this.rebase(change.version);
  }

  private touch(key: string, version: number): void {
    this.versions.set(key, version);
    const waiters = this.waiters.get(key);
    if (!waiters) return;
    this.waiters.delete(key);
    for (const wake of waiters) wake('change');
  }

  /** Every key to `version`: the view was replaced, or the map outgrew its bound. */
  private rebase(version: number): void {
    this.floor = version;
    this.versions.clear();
    const parked = [...this.waiters.values()];
    this.waiters.clear();
    for (const waiters of parked) for (const wake of waiters) wake('change');
  }
}
