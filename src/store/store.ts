// The Store: the one source of truth, cut by role (nodes, heartbeats, profiles, duty locks, projection
// positions, identity, policy, audit, API keys). Only the engine writes nodes; readers use the live view.
import type { RollcallError } from '../domain/errors.js';
import type { JsonObject } from '../domain/json.js';
import type { NodeWrite, WriteOutcome } from '../domain/node-lifecycle.js';
import type { NodeRecord, TopologyChange } from '../domain/node.js';

export type { NodeWrite, WriteOutcome, WriteQuota } from '../domain/node-lifecycle.js';

/** What a failed `applyWrites` means for the writes it carried. */
export type WriteFailure =
  /** The store cannot be reached or used: every write of the batch fails, for its sender to retry. */
  | { kind: 'unavailable' }
  /** The store answered and refused the batch: one of its writes may be at fault; `error` is what a write refused alone gets. */
  | { kind: 'refused'; error: RollcallError };

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

/** A join token as stored: its hash only, never the token itself. */
export interface JoinTokenRecord {
  id: string;
  token_hash: string;
  namespace: string;
  node_type: string;
  uses_remaining: number;
  max_uses: number;
  expires_at: string;
  created_at: string;
}

export type JoinTokenUse = { status: 'consumed'; token: JoinTokenRecord } | { status: 'unknown' | 'expired' | 'used_up' } | { status: 'wrong_node_type'; token: JoinTokenRecord };

export interface IssuedCertificate {
  serial: string;
  spiffe_id: string;
  namespace: string;
  node_type: string;
  node_id: string;
  not_before: string;
  not_after: string;
  issued_via: string;
}

export interface CertificateRevocation {
  id: number;
  serial: string | null;
  spiffe_id: string | null;
  reason: string;
  revoked_at: string;
}

/** One saved version of a namespace's admission policy (a CEL expression). */
export interface PolicyVersion {
  namespace: string;
  version: number;
  expression: string;
  created_by: string;
  created_at: string;
}

/** Node quotas of a namespace; null or absent means no limit. */
export interface NamespaceQuotas {
  namespace: string;
  max_nodes: number | null;
  max_nodes_per_type: Record<string, number>;
  updated_by: string;
  updated_at: string;
}

export type AuditDecision = 'allowed' | 'denied';

/** One audit entry as recorded: who did what to which namespace and node, when, and the decision. */
export interface AuditEntry {
  occurred_at: string;
  actor: string;
  action: string;
  namespace: string | null;
  node_id: string | null;
  decision: AuditDecision;
  reason: string | null;
  details: JsonObject;
}

export interface StoredAuditEntry extends AuditEntry {
  id: number;
}

export interface AuditQuery {
  namespace?: string;
  action?: string;
  decision?: AuditDecision;
  /** ISO timestamp: entries at or after it. */
  since?: string;
  /** Entries with a smaller id than this one (the previous page's last). */
  beforeId?: number;
  limit: number;
}

export const API_KEY_SCOPES = ['nodes:read', 'nodes:write', 'admin'] as const;
export type ApiKeyScope = (typeof API_KEY_SCOPES)[number];

/** An API key as stored: never the secret, only its SHA-256. */
export interface ApiKeyRecord {
  id: string;
  name: string | null;
  /** The namespace it may act in, or `*` for every namespace. */
  namespace: string;
  scope: ApiKeyScope;
  secret_hash: string;
  created_at: string;
  revoked_at: string | null;
}

/** Singleton duties: run by exactly one instance at a time (the holder of an advisory lock). */
export type Duty = 'sweeper' | 'relay' | 'consul';

/**
 * Nodes: the records, their leases and the topology log. Only the engine writes through it (readers
 * use the live view); every write's rule is domain/node-lifecycle's.
 */
export interface NodeStore {
  /** Applies the writes in order in one transaction; each gets its own outcome. */
  applyWrites(writes: NodeWrite[], nowMs: number): Promise<WriteOutcome[]>;
  /**
   * What an error of `applyWrites(writes)` means: an outage, or a refusal by a store that answered
   * (then a smaller batch may commit); may ask the store whether it still answers.
   */
  judgeWriteFailure(error: unknown, writes: NodeWrite[]): Promise<WriteFailure>;
  renewLeases(renewals: LeaseRenewal[]): Promise<number>;
  findExpired(nowMs: number, graceFromMs: number, limit: number): Promise<ExpiryCandidate[]>;
  /** Deletes records that left the topology before `cutoffMs`; returns how many. */
  purgeRemoved(cutoffMs: number): Promise<number>;
  pruneChanges(cutoffMs: number): Promise<number>;
  loadNodes(): Promise<{ nodes: NodeRecord[]; version: number }>;
  getNode(namespace: string, nodeId: string): Promise<NodeRecord | null>;
  changesSince(afterVersion: number, limit: number): Promise<ChangesPage>;
  currentVersion(): Promise<number>;
  /**
   * Wakes `onVersion` when another writer commits (with Infinity when notifications may have been
   * missed, so the caller catches up); returns an unsubscribe function.
   */
  watchVersions(onVersion: (version: number) => void): Promise<() => Promise<void>>;
  /**
   * Takes the lock and makes the write every registration's commit makes, then commits it unchanged:
   * throws when writes fail now (read-only, no privilege, no connection, the lock held past lockTimeoutMs).
   */
  probeWrite(lockTimeoutMs: number): Promise<void>;
}

/** The heartbeat history (heartbeatHistory): appended by the engine's flush, pruned by its cleanup. */
export interface HeartbeatLog {
  recordHeartbeats(entries: HeartbeatLogEntry[]): Promise<void>;
  pruneHeartbeats(cutoffMs: number): Promise<number>;
}

/** Role configuration profiles (DAGI), per namespace. */
export interface ProfileStore {
  getProfile(namespace: string, role: string): Promise<Profile | null>;
  putProfile(namespace: string, role: string, config: JsonObject, nowMs: number): Promise<Profile>;
}

/** Duty locks: which instance runs a singleton duty now. */
export interface DutyLocks {
  /** True while this process holds the singleton duty `duty` (lease sweeper, purger). */
  holdsDuty(duty: Duty): Promise<boolean>;
}

/** How far each projection of the topology log (the diff relay and its topics) has published. */
export interface ProjectionPositions {
  /** The topology version a projection has published through (0 when it never ran). */
  projectionPosition(projection: string): Promise<number>;
  /** Records a projection's progress; never moves it backwards. */
  saveProjectionPosition(projection: string, version: number): Promise<void>;
}

/** Identity: join tokens, the certificates the CA issued, and revocations. */
export interface IdentityStore {
  /** Stores a join token (hashed by the caller). */
  createJoinToken(token: JoinTokenRecord): Promise<void>;
  /** Takes one use of the token if it is known, unexpired, not used up and for `nodeType`. */
  consumeJoinToken(tokenHash: string, nodeType: string, nowMs: number): Promise<JoinTokenUse>;
  recordCertificate(certificate: IssuedCertificate): Promise<void>;
  revokeCertificate(revocation: { serial?: string; spiffe_id?: string; reason: string }, nowMs: number): Promise<CertificateRevocation>;
  listRevocations(): Promise<CertificateRevocation[]>;
  /** True when the serial is revoked, or the SPIFFE ID was revoked at or after `notBeforeMs`. */
  isRevoked(serial: string, spiffeId: string, notBeforeMs: number): Promise<boolean>;
}

/** Namespace admission: policy versions (CEL expressions) and node quotas. */
export interface PolicyStore {
  /** Saves `expression` as the namespace's next policy version. */
  savePolicy(namespace: string, expression: string, createdBy: string, nowMs: number): Promise<PolicyVersion>;
  /** The namespace's latest policy, or the given version of it. */
  getPolicy(namespace: string, version?: number): Promise<PolicyVersion | null>;
  /** Every version of the namespace's policy, newest first. */
  listPolicyVersions(namespace: string): Promise<PolicyVersion[]>;
  /** The latest policy of every namespace that has one. */
  currentPolicies(): Promise<PolicyVersion[]>;
  putQuotas(quotas: Omit<NamespaceQuotas, 'updated_at'>, nowMs: number): Promise<NamespaceQuotas>;
  getQuotas(namespace: string): Promise<NamespaceQuotas | null>;
  listQuotas(): Promise<NamespaceQuotas[]>;
}

/** The audit trail: append-only, queried newest first, purged by retention. */
export interface AuditStore {
  /** Appends audit entries (there is no update path); deletes happen only in purgeAudit. */
  appendAudit(entries: AuditEntry[]): Promise<void>;
  /** Audit entries matching `query`, newest first. */
  queryAudit(query: AuditQuery): Promise<StoredAuditEntry[]>;
  /** Retention: deletes audit entries older than `cutoffMs`; returns how many. */
  purgeAudit(cutoffMs: number): Promise<number>;
}

/** API keys, stored hashed. */
export interface ApiKeyStore {
  /** Stores a new key (its secret already hashed). */
  createApiKey(key: Omit<ApiKeyRecord, 'revoked_at'>): Promise<ApiKeyRecord>;
  getApiKey(id: string): Promise<ApiKeyRecord | null>;
  /** Every key, revoked ones too, oldest first. */
  listApiKeys(): Promise<ApiKeyRecord[]>;
  /** Marks the key revoked (once); null when there is no such key. */
  revokeApiKey(id: string, nowMs: number): Promise<ApiKeyRecord | null>;
  /** How many keys were ever created, revoked ones included. */
  countApiKeys(): Promise<number>;
}

/** The database behind the roles, as /health reports it. */
export interface StoreConnection {
  readonly dialect: 'postgres' | 'pglite';
  ping(): Promise<void>;
}

/**
 * Every role over one database: what the composition root (and the CLI) opens, migrates and closes.
 * Everything else takes only the role(s) it uses.
 */
export interface Store extends NodeStore, HeartbeatLog, ProfileStore, DutyLocks, ProjectionPositions, IdentityStore, PolicyStore, AuditStore, ApiKeyStore, StoreConnection {
  migrate(): Promise<void>;
  close(): Promise<void>;
}
