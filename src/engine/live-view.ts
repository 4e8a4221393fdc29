// The current topology in memory: every record in key order (a B+ tree, for paging), secondary
// indexes for the selective filters, the version it reflects, and a window of recent changes for
// watchers. Fed only by committed changes.
import { EventEmitter } from 'node:events';
import { LRUCache } from 'lru-cache';
import semver from 'semver';
import BTreeModule from 'sorted-btree';
import { jsonContains, type JsonObject } from '../domain/json.js';
import { nodeKey, type NodeRecord, type NodeStatus, type TopologyChange } from '../domain/node.js';

const BTree = BTreeModule.default;
type KeySet = InstanceType<typeof BTree<string, true>>;

export interface NodeQuery {
  namespace?: string;
  node_type?: string;
  role?: string;
  /** Every label must be present. */
  labels?: string[];
  status?: NodeStatus[];
  capability?: JsonObject;
  /** A semver range the node_version must satisfy, e.g. `>=1.2.0`. */
  version?: string;
  /** Return records whose key sorts after this one. */
  after?: string;
  limit: number;
}

export interface NodePage {
  nodes: NodeRecord[];
  /** Key of the last record returned when more may follow. */
  next: string | null;
}

const INDEXED = ['namespace', 'status', 'node_type', 'role', 'node_version'] as const;
type IndexedField = (typeof INDEXED)[number] | 'label';

/** Parsed node versions, shared by every record with the same version string. */
const parsedVersions = new LRUCache<string, { version: semver.SemVer | null }>({ max: 10_000 });

function parseVersion(text: string): semver.SemVer | null {
  let entry = parsedVersions.get(text);
  if (!entry) {
    entry = { version: semver.coerce(text, { includePrerelease: true }) };
    parsedVersions.set(text, entry);
  }
  return entry.version;
}

/** Where a query's candidates come from, smallest first: an index's keys or a sorted key list. */
type Source = { size: number; keys: (after: string | undefined) => Iterable<string> };

function fromKeySet(set: KeySet): Source {
  return { size: set.size, keys: (after) => set.keys(after) };
}

function fromSortedArray(keys: string[]): Source {
  return {
    size: keys.length,
    *keys(after) {
      let low = 0;
      if (after !== undefined) {
        let high = keys.length;
        while (low < high) {
          const mid = (low + high) >>> 1;
          if ((keys[mid] as string) < after) low = mid + 1;
          else high = mid;
        }
      }
      for (let i = low; i < keys.length; i += 1) yield keys[i] as string;
    },
  };
}

export class LiveView {
  private readonly records = new BTree<string, NodeRecord>();
  /** The same records by key: point reads (every heartbeat) skip the tree's descent. */
  private readonly byKey = new Map<string, NodeRecord>();
  private readonly indexes = new Map<IndexedField, Map<string, KeySet>>([...INDEXED, 'label' as const].map((field) => [field, new Map<string, KeySet>()]));
  private readonly recent: TopologyChange[] = [];
  private readonly events = new EventEmitter();
  private currentVersion = 0;

  constructor(private readonly recentCapacity = 4096) {
    this.events.setMaxListeners(0);
  }

  get version(): number {
    return this.currentVersion;
  }

  get size(): number {
    return this.records.size;
  }

  /** Replaces the whole view (start, or a reader that fell behind the retained log). */
  load(nodes: NodeRecord[], version: number): void {
    this.records.clear();
    this.byKey.clear();
    for (const index of this.indexes.values()) index.clear();
    for (const node of nodes) this.put(node);
    this.recent.length = 0;
    this.currentVersion = version;
    this.events.emit('change', null, undefined);
    this.events.emit('version', version);
  }

  /** Applies changes in version order; false when they do not follow on from the current version. */
  apply(changes: TopologyChange[]): boolean {
    const first = changes[0];
    if (!first) return true;
    if (first.version > this.currentVersion + 1) return false;
    for (const change of changes) {
      if (change.version <= this.currentVersion) continue;
      if (change.version !== this.currentVersion + 1) return false;
      const previous = this.byKey.get(nodeKey(change.namespace, change.node_id));
      this.put(change.node);
      this.currentVersion = change.version;
      this.recent.push(change);
      this.events.emit('change', change, previous);
    }
    if (this.recent.length > this.recentCapacity) this.recent.splice(0, this.recent.length - this.recentCapacity);
    this.events.emit('version', this.currentVersion);
    return true;
  }

  private indexValues(node: NodeRecord): Array<[IndexedField, string]> {
    const values: Array<[IndexedField, string]> = [
      ['namespace', node.namespace],
      ['status', node.status],
      ['node_type', node.node_type],
      ['node_version', node.node_version],
    ];
    if (node.role !== null) values.push(['role', node.role]);
    for (const label of node.labels) values.push(['label', label]);
    return values;
  }

  private put(node: NodeRecord): void {
    const key = nodeKey(node.namespace, node.node_id);
    const previous = this.byKey.get(key);
    if (previous) this.unindex(key, previous);
    this.records.set(key, node);
    this.byKey.set(key, node);
    for (const [field, value] of this.indexValues(node)) {
      const index = this.indexes.get(field) as Map<string, KeySet>;
      let set = index.get(value);
      if (!set) {
        set = new BTree<string, true>();
        index.set(value, set);
      }
      set.set(key, true);
    }
  }

  private unindex(key: string, node: NodeRecord): void {
    for (const [field, value] of this.indexValues(node)) {
      const index = this.indexes.get(field) as Map<string, KeySet>;
      const set = index.get(value);
      if (!set) continue;
      set.delete(key);
      if (set.size === 0) index.delete(value);
    }
  }

  /** Drops records that left the topology before `cutoffMs`, as the store's purge does. */
  purge(cutoffMs: number): number {
    const doomed: Array<[string, NodeRecord]> = [];
    for (const status of ['offline', 'removed'] as const) {
      for (const key of this.indexes.get('status')?.get(status)?.keys() ?? []) {
        const node = this.byKey.get(key) as NodeRecord;
        if (node.removed_at !== null && Date.parse(node.removed_at) < cutoffMs) doomed.push([key, node]);
      }
    }
    for (const [key, node] of doomed) {
      this.unindex(key, node);
      this.records.delete(key);
      this.byKey.delete(key);
    }
    if (doomed.length > 0)
      this.events.emit(
        'purge',
        doomed.map(([, node]) => node),
      );
    return doomed.length;
  }

  /** Calls `listener` with the records each purge dropped; returns an unsubscribe function. */
  onPurge(listener: (dropped: NodeRecord[]) => void): () => void {
    this.events.on('purge', listener);
    return () => this.events.off('purge', listener);
  }

  get(namespace: string, nodeId: string): NodeRecord | undefined {
    return this.byKey.get(nodeKey(namespace, nodeId));
  }

  private indexSet(field: IndexedField, value: string): KeySet | undefined {
    return this.indexes.get(field)?.get(value);
  }

  /** Picks the smallest candidate source the query's filters allow; the whole view otherwise. */
  private plan(query: NodeQuery, range: semver.Range | null): Source | null {
    const equalities: Array<[IndexedField, string]> = [];
    if (query.namespace !== undefined) equalities.push(['namespace', query.namespace]);
    if (query.node_type !== undefined) equalities.push(['node_type', query.node_type]);
    if (query.role !== undefined) equalities.push(['role', query.role]);
    if (query.status?.length === 1) equalities.push(['status', query.status[0] as string]);
    for (const label of query.labels ?? []) equalities.push(['label', label]);
    let best: Source = { size: this.records.size, keys: (after) => this.records.keys(after) };
    for (const [field, value] of equalities) {
      const set = this.indexSet(field, value);
      if (!set) return null;
      if (set.size < best.size) best = fromKeySet(set);
    }
    if (range) {
      const sets = [...(this.indexes.get('node_version')?.entries() ?? [])]
        .filter(([text]) => {
          const version = parseVersion(text);
          return version !== null && range.test(version);
        })
        .map(([, set]) => set);
      const total = sets.reduce((sum, set) => sum + set.size, 0);
      if (total === 0) return null;
      // Materialising and sorting pays only when the versions matched are few.
      if (total < best.size / 4) best = sets.length === 1 ? fromKeySet(sets[0] as KeySet) : fromSortedArray(sets.flatMap((set) => [...set.keys()]).sort());
    }
    return best;
  }

  query(query: NodeQuery): NodePage {
    const range = query.version === undefined ? null : new semver.Range(query.version, { includePrerelease: true });
    const source = this.plan(query, range);
    const nodes: NodeRecord[] = [];
    if (!source) return { nodes, next: null };
    let lastKey: string | null = null;
    for (const key of source.keys(query.after)) {
      if (key === query.after) continue;
      const node = this.byKey.get(key) as NodeRecord;
      if (!matches(node, query, range)) continue;
      if (nodes.length === query.limit) return { nodes, next: lastKey };
      nodes.push(node);
      lastKey = key;
    }
    return { nodes, next: null };
  }

  countByStatus(): Record<NodeStatus, number> {
    const counts: Record<NodeStatus, number> = { online: 0, offline: 0, removed: 0 };
    for (const [status, set] of this.indexes.get('status') ?? []) counts[status as NodeStatus] = set.size;
    return counts;
  }

  /** Changes after `version` still held in memory, or null when the window no longer reaches back. */
  recentSince(version: number): TopologyChange[] | null {
    if (version >= this.currentVersion) return [];
    const oldest = this.recent[0];
    if (!oldest || oldest.version > version + 1) return null;
    return this.recent.slice(version + 1 - oldest.version);
  }

  /** Resolves with the version once it passes `version`, or at the deadline, or when aborted. */
  waitPast(version: number, timeoutMs: number, signal?: AbortSignal): Promise<number> {
    if (this.currentVersion > version || timeoutMs <= 0 || signal?.aborted) return Promise.resolve(this.currentVersion);
    return new Promise((resolve) => {
      const done = (): void => {
        clearTimeout(timer);
        this.events.off('version', onVersion);
        signal?.removeEventListener('abort', done);
        resolve(this.currentVersion);
      };
      const onVersion = (current: number): void => {
        if (current > version) done();
      };
      const timer = setTimeout(done, timeoutMs);
      this.events.on('version', onVersion);
      signal?.addEventListener('abort', done, { once: true });
    });
  }

  /**
   * Calls `listener` with each change as it is applied and the record it replaced, or with null when
   * the whole view is replaced (load); returns an unsubscribe function.
   */
  onChange(listener: (change: TopologyChange | null, previous: NodeRecord | undefined) => void): () => void {
    this.events.on('change', listener);
    return () => this.events.off('change', listener);
  }

  /** Listeners on the view's changes, versions and purges (watchers, indexes, relays): one left behind shows here. */
  get listenerCount(): number {
    return this.events.listenerCount('change') + this.events.listenerCount('version') + this.events.listenerCount('purge');
  }

  /** Calls `listener` with every version the view moves to; returns an unsubscribe function. */
  onVersion(listener: (version: number) => void): () => void {
    this.events.on('version', listener);
    return () => this.events.off('version', listener);
  }
}

function matches(node: NodeRecord, query: NodeQuery, range: semver.Range | null): boolean {
  if (query.namespace !== undefined && node.namespace !== query.namespace) return false;
  if (query.status !== undefined && !query.status.includes(node.status)) return false;
  if (query.node_type !== undefined && node.node_type !== query.node_type) return false;
  if (query.role !== undefined && node.role !== query.role) return false;
  if (query.labels !== undefined) {
    for (const label of query.labels) if (!node.labels.includes(label)) return false;
  }
  if (range !== null) {
    const version = parseVersion(node.node_version);
    if (version === null || !range.test(version)) return false;
  }
  if (query.capability !== undefined && !jsonContains(node.capabilities, query.capability)) return false;
  return true;
}
