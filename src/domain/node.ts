// The registry's model: a node's registration record, the changes that move it, and how both
// registration shapes of the wire (OmniNode introspection, DAGI) become one registration.
import { createHash, randomUUID } from 'node:crypto';
import { RollcallError } from './errors.js';
import { isJsonObject, jsonDepth, jsonEqual, type JsonObject } from './json.js';
import { LIMITS } from './schemas.js';

export const NODE_STATUSES = ['online', 'offline', 'removed'] as const;
export type NodeStatus = (typeof NODE_STATUSES)[number];

export const HEALTH_STATUSES = ['healthy', 'degraded', 'unhealthy', 'unknown'] as const;
export type HealthStatus = (typeof HEALTH_STATUSES)[number];

export const CHANGE_TYPES = ['added', 'updated', 'removed'] as const;
export type ChangeType = (typeof CHANGE_TYPES)[number];

/** Reasons a node leaves the topology; free-form reasons are accepted too. */
export const REMOVAL_REASONS = ['graceful_shutdown', 'manual_deregistration', 'lease_expired'] as const;

export const DEFAULT_NAMESPACE = 'default';

/** The fields whose change makes a registration a write rather than a heartbeat. */
export const CONTENT_FIELDS = [
  'node_name',
  'node_type',
  'node_version',
  'hostname',
  'ip',
  'role',
  'labels',
  'capabilities',
  'endpoints',
  'configuration',
  'metadata',
  'health_status',
  'lease_ttl_ms',
] as const;
export type ContentField = (typeof CONTENT_FIELDS)[number];

/** A registration as the engine accepts it, whatever shape it arrived in. */
export interface Registration {
  namespace: string;
  node_id: string;
  node_name: string | null;
  node_type: string;
  node_version: string;
  hostname: string | null;
  ip: string | null;
  role: string | null;
  labels: string[];
  capabilities: JsonObject;
  endpoints: JsonObject;
  configuration: JsonObject;
  /** Informational: stored when the registration is written, never a reason to write it. */
  current_state: JsonObject;
  metadata: JsonObject;
  health_status: HealthStatus;
  /** Grows with every start of the node; a lower one never overwrites a higher one. */
  incarnation: number;
  lease_ttl_ms: number;
  /** Why the node announced itself (startup, capability_change, registry_request, …). */
  reason: string;
}

/** A node as stored and served. Timestamps are ISO-8601 strings. */
export interface NodeRecord extends Omit<Registration, 'reason'> {
  status: NodeStatus;
  content_hash: string;
  registered_at: string;
  updated_at: string;
  last_heartbeat: string;
  removed_at: string | null;
  removal_reason: string | null;
}

/** One row of the topology log: what changed, under which version, and the record after it. */
export interface TopologyChange {
  version: number;
  namespace: string;
  node_id: string;
  change_type: ChangeType;
  changed_fields: string[];
  reason: string;
  changed_at: string;
  node: NodeRecord;
}

export function nodeKey(namespace: string, nodeId: string): string {
  return `${namespace}\u0000${nodeId}`;
}

export const DOCUMENT_FIELDS = ['capabilities', 'endpoints', 'configuration', 'current_state', 'metadata'] as const;

export interface ContentDigest {
  hash: string;
  /** Serialised size in bytes of each JSON document field. */
  documentBytes: Record<(typeof DOCUMENT_FIELDS)[number], number>;
}

const digests = new WeakMap<object, ContentDigest>();

/**
 * Hash of what makes a registration a write rather than a heartbeat, computed once per object.
 * It follows the sender's key order (native JSON.stringify is the hot path's cost); a resend with
 * keys reordered is caught by changedFields, which compares canonically.
 */
export function contentDigest(reg: Pick<Registration, ContentField | 'current_state'>): ContentDigest {
  const cached = digests.get(reg);
  if (cached) return cached;
  const hash = createHash('sha1');
  const documentBytes = {} as ContentDigest['documentBytes'];
  for (const field of CONTENT_FIELDS) {
    const text = JSON.stringify(reg[field]) ?? 'null';
    hash.update(text).update('\u0000');
    if ((DOCUMENT_FIELDS as readonly string[]).includes(field)) documentBytes[field as (typeof DOCUMENT_FIELDS)[number]] = Buffer.byteLength(text);
  }
  hash.update(JSON.stringify(reg.current_state.status ?? null));
  // current_state is not content (it is never hashed whole) but its size is still bounded.
  documentBytes.current_state = Buffer.byteLength(JSON.stringify(reg.current_state));
  const digest = { hash: hash.digest('base64url'), documentBytes };
  digests.set(reg, digest);
  return digest;
}

export function contentHash(reg: Pick<Registration, ContentField | 'current_state'>): string {
  return contentDigest(reg).hash;
}

export function changedFields(before: NodeRecord, after: Registration | NodeRecord): string[] {
  const fields: string[] = [];
  for (const field of CONTENT_FIELDS) {
    if (!jsonEqual(before[field], after[field])) fields.push(field);
  }
  if ((before.current_state.status ?? null) !== (after.current_state.status ?? null)) fields.push('current_state');
  if (before.incarnation !== after.incarnation) fields.push('incarnation');
  return fields;
}

export interface RegistrationDefaults {
  namespace?: string;
  leaseTtlMs: number;
  now?: () => number;
}

/** The seeds' OmniNode introspection payload (bare, or the payload of an OnexEnvelopeV1). */
export interface IntrospectionPayload {
  node_id: string;
  node_name?: string;
  node_type: string;
  node_version?: string;
  namespace?: string;
  incarnation?: number;
  lease_ttl_seconds?: number;
  capabilities?: JsonObject;
  endpoints?: JsonObject;
  configuration?: JsonObject;
  current_state?: JsonObject;
  metadata?: JsonObject;
  introspection_timestamp?: string;
  introspection_version?: string;
  reason?: string;
}

/** The DAGI registration body; node_id is generated when absent. */
export interface DagiRegistration {
  node_id?: string;
  hostname: string;
  ip?: string;
  role: string;
  labels?: string[];
  metadata?: JsonObject;
  namespace?: string;
  node_type?: string;
  node_version?: string;
  capabilities?: JsonObject;
  endpoints?: JsonObject;
  incarnation?: number;
  lease_ttl_seconds?: number;
  health_status?: HealthStatus;
}

function stringIn(obj: JsonObject | undefined, key: string): string | null {
  const value = obj?.[key];
  return typeof value === 'string' ? value : null;
}

function healthOf(value: unknown): HealthStatus {
  const text = typeof value === 'string' ? value.toLowerCase() : '';
  return (HEALTH_STATUSES as readonly string[]).includes(text) ? (text as HealthStatus) : 'unknown';
}

function labelsIn(obj: JsonObject | undefined): string[] {
  const value = obj?.labels;
  return Array.isArray(value) ? value.filter((item): item is string => typeof item === 'string') : [];
}

function invalidField(field: string, message: string): RollcallError {
  return new RollcallError('VALIDATION_FAILED', `${field} ${message}.`, { details: { field } });
}

/** A number read from free-form metadata gets the same bounds as the schema field it stands in for. */
function metadataNumber(metadata: JsonObject | undefined, key: string, range: { min: number; max: number; integer: boolean }): number | undefined {
  const value = metadata?.[key];
  if (typeof value !== 'number') return undefined;
  if (value < range.min || value > range.max || (range.integer && !Number.isInteger(value))) {
    throw invalidField(`metadata.${key}`, `must be ${range.integer ? 'an integer' : 'a number'} from ${range.min} to ${range.max}`);
  }
  return value;
}

function ttlMs(seconds: number | undefined, metadata: JsonObject | undefined, fallbackMs: number): number {
  const value = seconds ?? metadataNumber(metadata, 'lease_ttl_seconds', { min: 1, max: 7 * 24 * 3600, integer: false });
  return value === undefined ? fallbackMs : Math.round(value * 1000);
}

/** Refuses documents nested deeper than serialising and hashing them can take. */
export function checkDepth(documents: { [field: string]: unknown }): void {
  for (const [field, document] of Object.entries(documents)) {
    if (isJsonObject(document) && jsonDepth(document) > LIMITS.documentDepth) throw invalidField(field, `is nested deeper than ${LIMITS.documentDepth} levels`);
  }
}

export function fromIntrospection(payload: IntrospectionPayload, defaults: RegistrationDefaults): Registration {
  checkDepth({ capabilities: payload.capabilities, endpoints: payload.endpoints, configuration: payload.configuration, current_state: payload.current_state, metadata: payload.metadata });
  const metadata = payload.metadata ?? {};
  const currentState = payload.current_state ?? {};
  const incarnationInMetadata = metadataNumber(metadata, 'incarnation', { min: 0, max: Number.MAX_SAFE_INTEGER, integer: true });
  return {
    namespace: payload.namespace ?? stringIn(metadata, 'namespace') ?? defaults.namespace ?? DEFAULT_NAMESPACE,
    node_id: payload.node_id,
    node_name: payload.node_name ?? null,
    node_type: payload.node_type,
    node_version: payload.node_version ?? '0.0.0',
    hostname: stringIn(metadata, 'hostname'),
    ip: stringIn(metadata, 'ip'),
    role: stringIn(metadata, 'role'),
    labels: labelsIn(metadata),
    capabilities: payload.capabilities ?? {},
    endpoints: payload.endpoints ?? {},
    configuration: payload.configuration ?? {},
    current_state: currentState,
    metadata,
    health_status: healthOf(currentState.health_status),
    incarnation: payload.incarnation ?? incarnationInMetadata ?? 0,
    lease_ttl_ms: ttlMs(payload.lease_ttl_seconds, metadata, defaults.leaseTtlMs),
    reason: payload.reason ?? stringIn(metadata, 'reason') ?? 'introspection',
  };
}

export function fromDagi(body: DagiRegistration, defaults: RegistrationDefaults): Registration {
  checkDepth({ capabilities: body.capabilities, endpoints: body.endpoints, metadata: body.metadata });
  const metadata = body.metadata ?? {};
  return {
    namespace: body.namespace ?? defaults.namespace ?? DEFAULT_NAMESPACE,
    node_id: body.node_id ?? `node-${randomUUID()}`,
    node_name: body.hostname,
    node_type: body.node_type ?? 'node',
    node_version: body.node_version ?? stringIn(metadata, 'version') ?? '0.0.0',
    hostname: body.hostname,
    ip: body.ip ?? null,
    role: body.role,
    labels: body.labels ?? [],
    capabilities: body.capabilities ?? {},
    endpoints: body.endpoints ?? {},
    configuration: {},
    current_state: {},
    metadata,
    health_status: body.health_status ?? 'healthy',
    incarnation: body.incarnation ?? 0,
    lease_ttl_ms: ttlMs(body.lease_ttl_seconds, metadata, defaults.leaseTtlMs),
    reason: 'registration',
  };
}

/** Registration fields copied onto a record, leaving bookkeeping to the caller. */
export function recordFrom(reg: Registration, bookkeeping: Pick<NodeRecord, 'status' | 'registered_at' | 'updated_at' | 'last_heartbeat' | 'removed_at' | 'removal_reason'>): NodeRecord {
  const { reason: _reason, ...fields } = reg;
  return { ...fields, content_hash: contentHash(reg), ...bookkeeping };
}

export function isNodeRecord(value: unknown): value is NodeRecord {
  return isJsonObject(value) && typeof value.node_id === 'string' && typeof value.namespace === 'string';
}

export function nodeNotFound(namespace: string, nodeId: string): RollcallError {
  return new RollcallError('NODE_NOT_FOUND', `Node ${nodeId} is not registered in namespace ${namespace}.`, {
    details: { node_id: nodeId, namespace },
  });
}

/** Records holding a place in a namespace's quota (online and offline ones), in total and by node_type. */
export interface NamespacePlaces {
  total: number;
  byType: Map<string, number>;
}

/** Moves `by` places (one record of `nodeType`) into or out of `places`. */
export function shiftPlaces(places: NamespacePlaces, nodeType: string, by: number, total = true): void {
  if (total) places.total += by;
  places.byType.set(nodeType, (places.byType.get(nodeType) ?? 0) + by);
}

/** A registration that would take a place its namespace's quota does not have. */
export function quotaExceeded(registration: Registration, quota: 'max_nodes' | 'max_nodes_per_type', limit: number, used: number): RollcallError {
  const scope = quota === 'max_nodes' ? `namespace ${registration.namespace}` : `node_type ${registration.node_type} in namespace ${registration.namespace}`;
  return new RollcallError('QUOTA_EXCEEDED', `The ${scope} holds ${used} of at most ${limit} nodes; node ${registration.node_id} would exceed it.`, {
    details: { namespace: registration.namespace, node_id: registration.node_id, node_type: registration.node_type, quota, limit, used },
  });
}

/** A write from an older start of the node than the one registered. */
export function staleIncarnation(what: string, nodeId: string, incarnation: number, current: number): RollcallError {
  return new RollcallError('STALE_INCARNATION', `${what} of ${nodeId} from incarnation ${incarnation} is older than the registered incarnation ${current}.`, {
    details: { node_id: nodeId, incarnation, current_incarnation: current },
  });
}
