// The Store: the one source of truth. Only the engine writes through it; readers use the live view.
import type { RollcallError } from '../domain/errors.js';
import type { JsonObject } from '../domain/json.js';
import type { NodeRecord, Registration, TopologyChange } from '../domain/node.js';

export type NodeWrite =
  | { kind: 'register'; registration: Registration }
  | { kind: 'deregister'; namespace: string; node_id: string; reason: string; incarnation?: number }
  /** Takes a node offline if, checked again inside the transaction, its lease has lapsed. */
  | { kind: 'expire'; namespace: string; node_id: string; incarnation: number; graceFromMs: number };

export type WriteOutcome =
  | { status: 'changed'; change: TopologyChange }
  | { status: 'unchanged'; node: NodeRecord }
  | { status: 'rejected'; error: RollcallError };

export interface LeaseRenewal {
  namespace: string;
  node_id: string;
  incarnation: number;
  atMs: number;
}

export interface ExpiryCandidate {
  namespace: string;
  node_id: string;
  incarnation: number;
}

export interface HeartbeatLogEntry {
  namespace: string;
  node_id: string;
  atMs: number;
  status: string | null;
  metrics: JsonObject;
}

export interface Profile {
  namespace: string;
  role: string;
  config: JsonObject;
  created_at: string;
  updated_at: string;
}

export interface ChangesPage {
  changes: TopologyChange[];
  /** Every version up to this one is pruned; a reader at or below it must resync. */
  prunedThrough: number;
}

export interface Store {
  readonly dialect: 'postgres' | 'pglite';
  migrate(): Promise<void>;
  /** Applies the writes in order in one transaction; each gets its own outcome. */
  applyWrites(writes: NodeWrite[], nowMs: number): Promise<WriteOutcome[]>;
  renewLeases(renewals: LeaseRenewal[]): Promise<number>;
  findExpired(nowMs: number, graceFromMs: number, limit: number): Promise<ExpiryCandidate[]>;
  /** Deletes records that left the topology before `cutoffMs`; returns how many. */
  purgeRemoved(cutoffMs: number): Promise<number>;
  pruneChanges(cutoffMs: number): Promise<number>;
  loadNodes(): Promise<{ nodes: NodeRecord[]; version: number }>;
  getNode(namespace: string, nodeId: string): Promise<NodeRecord | null>;
  changesSince(afterVersion: number, limit: number): Promise<ChangesPage>;
  currentVersion(): Promise<number>;
  getProfile(namespace: string, role: string): Promise<Profile | null>;
  putProfile(namespace: string, role: string, config: JsonObject, nowMs: number): Promise<Profile>;
  recordHeartbeats(entries: HeartbeatLogEntry[]): Promise<void>;
  pruneHeartbeats(cutoffMs: number): Promise<number>;
  /**
   * Wakes `onVersion` when another writer commits (with Infinity when notifications may have been
   * missed, so the caller catches up); returns an unsubscribe function.
   */
  watchVersions(onVersion: (version: number) => void): Promise<() => Promise<void>>;
  /** True while this process holds the singleton duty `duty` (lease sweeper, purger). */
  holdsDuty(duty: 'sweeper'): Promise<boolean>;
  ping(): Promise<void>;
  close(): Promise<void>;
}
