// The current topology in memory: every record by key, kept in key order for paging, with the
// version it reflects and a window of recent changes for watchers. Fed only by committed changes.
import { EventEmitter } from 'node:events';
import semver from 'semver';
import { jsonContains, type JsonObject } from '../domain/json.js';
import { nodeKey, type NodeRecord, type NodeStatus, type TopologyChange } from '../domain/node.js';

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

function lowerBound(keys: string[], key: string): number {
  let low = 0;
  let high = keys.length;
  while (low < high) {
    const mid = (low + high) >>> 1;
    if ((keys[mid] as string) < key) low = mid + 1;
    else high = mid;
  }
  return low;
}

export class LiveView {
  private readonly records = new Map<string, NodeRecord>();
  private readonly sortedKeys: string[] = [];
  private readonly recent: TopologyChange[] = [];
  private readonly events = new EventEmitter();
  private currentVersion = 0;

  constructor(private readonly recentCapacity = 10_000) {
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
    this.sortedKeys.length = 0;
    for (const node of nodes) this.records.set(nodeKey(node.namespace, node.node_id), node);
    this.sortedKeys.push(...[...this.records.keys()].sort());
    this.recent.length = 0;
    this.currentVersion = version;
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
      this.put(change.node);
      this.currentVersion = change.version;
      this.recent.push(change);
    }
    if (this.recent.length > this.recentCapacity) this.recent.splice(0, this.recent.length - this.recentCapacity);
    this.events.emit('version', this.currentVersion);
    return true;
  }

  private put(node: NodeRecord): void {
    const key = nodeKey(node.namespace, node.node_id);
    if (!this.records.has(key)) this.sortedKeys.splice(lowerBound(this.sortedKeys, key), 0, key);
    this.records.set(key, node);
  }

  /** Drops records that left the topology before `cutoffMs`, as the store's purge does. */
  purge(cutoffMs: number): number {
    let purged = 0;
    for (const [key, node] of this.records) {
      if (node.status !== 'online' && node.removed_at !== null && Date.parse(node.removed_at) < cutoffMs) {
        this.records.delete(key);
        this.sortedKeys.splice(lowerBound(this.sortedKeys, key), 1);
        purged += 1;
      }
    }
    return purged;
  }

  get(namespace: string, nodeId: string): NodeRecord | undefined {
    return this.records.get(nodeKey(namespace, nodeId));
  }

  query(query: NodeQuery): NodePage {
    const nodes: NodeRecord[] = [];
    let index = query.after === undefined ? 0 : lowerBound(this.sortedKeys, query.after);
    if (query.after !== undefined && this.sortedKeys[index] === query.after) index += 1;
    for (; index < this.sortedKeys.length; index += 1) {
      const key = this.sortedKeys[index] as string;
      const node = this.records.get(key) as NodeRecord;
      if (!matches(node, query)) continue;
      if (nodes.length === query.limit) return { nodes, next: nodeKey(nodes[nodes.length - 1]!.namespace, nodes[nodes.length - 1]!.node_id) };
      nodes.push(node);
    }
    return { nodes, next: null };
  }

  countByStatus(): Record<NodeStatus, number> {
    const counts: Record<NodeStatus, number> = { online: 0, offline: 0, removed: 0 };
    for (const node of this.records.values()) counts[node.status] += 1;
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

  /** Calls `listener` with every version the view moves to; returns an unsubscribe function. */
  onVersion(listener: (version: number) => void): () => void {
    this.events.on('version', listener);
    return () => this.events.off('version', listener);
  }
}

function matches(node: NodeRecord, query: NodeQuery): boolean {
  if (query.namespace !== undefined && node.namespace !== query.namespace) return false;
  if (query.status !== undefined && !query.status.includes(node.status)) return false;
  if (query.node_type !== undefined && node.node_type !== query.node_type) return false;
  if (query.role !== undefined && node.role !== query.role) return false;
  if (query.labels !== undefined && !query.labels.every((label) => node.labels.includes(label))) return false;
  if (query.version !== undefined) {
    const version = semver.coerce(node.node_version, { includePrerelease: true });
    if (!version || !semver.satisfies(version, query.version, { includePrerelease: true })) return false;
  }
  if (query.capability !== undefined && !jsonContains(node.capabilities, query.capability)) return false;
  return true;
}
