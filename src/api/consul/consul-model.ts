// Maps between Consul's HTTP API shapes and rollcall nodes: service definitions in, agent, catalog and
// health entries out, plus the small subset of Consul's filter language rollcall evaluates.
import { RollcallError } from '../../domain/errors.js';
import type { JsonObject, JsonValue } from '../../domain/json.js';
import { DEFAULT_NAMESPACE, type HealthStatus, type NodeRecord, type Registration } from '../../domain/node.js';
import { announcedAddress, nodeHost } from '../../domain/node-address.js';
import { LABEL_PATTERN, LIMITS, NODE_ID_PATTERN, NODE_TYPE_PATTERN } from '../../domain/schemas.js';

export const CHECK_STATUSES = ['passing', 'warning', 'critical'] as const;
export type CheckStatus = (typeof CHECK_STATUSES)[number];

/** One check of a service definition, as rollcall keeps it in metadata.consul.checks. */
export interface ConsulCheck {
  CheckID: string;
  Name: string;
  Type: 'ttl' | 'http' | 'tcp' | 'grpc' | 'script' | 'alias' | '';
  TTL?: string;
  HTTP?: string;
  TCP?: string;
  GRPC?: string;
  Interval?: string;
  Timeout?: string;
  DeregisterCriticalServiceAfter?: string;
  Notes?: string;
}

/** A service definition of `PUT /v1/agent/service/register`, its keys normalised. */
export interface ServiceDefinition {
  Name: string;
  ID: string;
  Tags: string[];
  Address: string;
  Port: number;
  Meta: Record<string, string>;
  Checks: ConsulCheck[];
  /** Initial status asked for by the definition's checks, if any. */
  Status: CheckStatus | null;
}

/** What rollcall keeps under metadata.consul of a node registered through the Consul API. */
export interface ConsulMetadata {
  service: string;
  tags: string[];
  meta: Record<string, string>;
  address: string;
  port: number;
  checks: ConsulCheck[];
  /** Node name of the agent (rollcall instance) the service was registered with. */
  agent: string;
}

const LABEL = new RegExp(LABEL_PATTERN);
const NODE_ID = new RegExp(NODE_ID_PATTERN);
const NODE_TYPE = new RegExp(NODE_TYPE_PATTERN);
const META_KEY = /^[A-Za-z0-9_-]{1,128}$/;

function invalid(field: string, message: string): RollcallError {
  return new RollcallError('VALIDATION_FAILED', `${field} ${message}.`, { details: { field } });
}

function isObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

/** Keys folded the way Consul's decoder and clients do: case-insensitive, underscores ignored. */
function folded(obj: Record<string, unknown>): Map<string, unknown> {
  const map = new Map<string, unknown>();
  for (const [key, value] of Object.entries(obj)) map.set(key.replace(/_/g, '').toLowerCase(), value);
  return map;
}

function optionalString(map: Map<string, unknown>, key: string, field: string, max = 1024): string | undefined {
  const value = map.get(key);
  if (value === undefined || value === null) return undefined;
  if (typeof value !== 'string' || value.length > max) throw invalid(field, `must be a string of at most ${max} characters`);
  return value;
}

const MAX_TTL_MS = 7 * 24 * 3_600_000;
const DURATION_UNITS: Record<string, number> = { ns: 1e-6, us: 1e-3, µs: 1e-3, ms: 1, s: 1000, m: 60_000, h: 3_600_000 };

/** Go durations as Consul takes them: `10s`, `1m30s`, `500ms`; null when not one. */
export function goDurationMs(text: string): number | null {
  if (text === '0') return 0;
  const parts = /^((?:\d+(?:\.\d+)?(?:ns|us|µs|ms|s|m|h))+)$/.exec(text);
  if (!parts) return null;
  let total = 0;
  for (const match of text.matchAll(/(\d+(?:\.\d+)?)(ns|us|µs|ms|s|m|h)/g)) total += Number(match[1]) * (DURATION_UNITS[match[2] as string] as number);
  return total;
}

function duration(map: Map<string, unknown>, key: string, field: string): string | undefined {
  const value = optionalString(map, key, field, 32);
  if (value === undefined) return undefined;
  if (goDurationMs(value) === null) throw invalid(field, 'must be a duration such as 10s, 1m or 500ms');
  return value;
}

function parseCheck(raw: unknown, field: string, serviceId: string, ordinal: number | null): { check: ConsulCheck; status: CheckStatus | null } {
  if (!isObject(raw)) throw invalid(field, 'must be an object');
  const map = folded(raw);
  const ttl = duration(map, 'ttl', `${field}.TTL`);
  const http = optionalString(map, 'http', `${field}.HTTP`);
  const tcp = optionalString(map, 'tcp', `${field}.TCP`);
  const grpc = optionalString(map, 'grpc', `${field}.GRPC`);
  const script = map.get('args') ?? map.get('script');
  const alias = map.get('aliasservice') ?? map.get('aliasnode');
  const interval = duration(map, 'interval', `${field}.Interval`);
  const type: ConsulCheck['Type'] = ttl ? 'ttl' : http ? 'http' : tcp ? 'tcp' : grpc ? 'grpc' : script !== undefined ? 'script' : alias !== undefined ? 'alias' : '';
  if (type === '') throw invalid(field, 'needs TTL, or HTTP/TCP/GRPC/Args with Interval');
  if (type !== 'ttl' && type !== 'alias' && interval === undefined) throw invalid(`${field}.Interval`, `is required with a ${type.toUpperCase()} check`);
  if (ttl !== undefined && (goDurationMs(ttl) as number) < 1000) throw invalid(`${field}.TTL`, 'must be at least 1s');
  // The TTL becomes the lease, which the schema bounds at a week.
  if (ttl !== undefined && (goDurationMs(ttl) as number) > MAX_TTL_MS) throw invalid(`${field}.TTL`, 'must be at most 168h');
  const statusText = optionalString(map, 'status', `${field}.Status`, 16);
  if (statusText !== undefined && statusText !== '' && !(CHECK_STATUSES as readonly string[]).includes(statusText)) {
    throw invalid(`${field}.Status`, `must be one of ${CHECK_STATUSES.join(', ')}`);
  }
  const defaultId = ordinal === null ? `service:${serviceId}` : `service:${serviceId}:${ordinal}`;
  const checkId = optionalString(map, 'checkid', `${field}.CheckID`, LIMITS.idLength) ?? optionalString(map, 'id', `${field}.ID`, LIMITS.idLength);
  const check: ConsulCheck = { CheckID: checkId || defaultId, Name: optionalString(map, 'name', `${field}.Name`, 255) || `Service '${serviceId}' check`, Type: type };
  const optional: Array<[keyof ConsulCheck, string | undefined]> = [
    ['TTL', ttl],
    ['HTTP', http],
    ['TCP', tcp],
    ['GRPC', grpc],
    ['Interval', interval],
    ['Timeout', duration(map, 'timeout', `${field}.Timeout`)],
    ['DeregisterCriticalServiceAfter', duration(map, 'deregistercriticalserviceafter', `${field}.DeregisterCriticalServiceAfter`)],
    ['Notes', optionalString(map, 'notes', `${field}.Notes`)],
  ];
  for (const [key, value] of optional) if (value !== undefined) (check as unknown as Record<string, string>)[key] = value;
  return { check, status: statusText ? (statusText as CheckStatus) : null };
}

/** Validates a register body (Consul's capitalised keys or their lower-case variants). */
export function parseServiceDefinition(body: unknown): ServiceDefinition {
  if (!isObject(body)) throw invalid('body', 'must be a JSON object (a Consul service definition)');
  const map = folded(body);
  const name = optionalString(map, 'name', 'Name', LIMITS.typeLength);
  if (!name) throw invalid('Name', 'is required');
  if (!NODE_TYPE.test(name)) throw invalid('Name', 'must be letters, digits, ".", "_" or "-"');
  const id = optionalString(map, 'id', 'ID', LIMITS.idLength) || name;
  if (!NODE_ID.test(id)) throw invalid('ID', 'must be letters, digits and . _ : @ -');

  const tagsRaw = map.get('tags') ?? [];
  if (!Array.isArray(tagsRaw) || tagsRaw.length > LIMITS.labelCount || tagsRaw.some((tag) => typeof tag !== 'string' || tag.length > 255)) {
    throw invalid('Tags', `must be an array of at most ${LIMITS.labelCount} strings`);
  }
  const portRaw = map.get('port') ?? 0;
  if (typeof portRaw !== 'number' || !Number.isInteger(portRaw) || portRaw < 0 || portRaw > 65535) throw invalid('Port', 'must be an integer from 0 to 65535');
  const metaRaw = map.get('meta') ?? {};
  if (!isObject(metaRaw) || Object.keys(metaRaw).length > 64) throw invalid('Meta', 'must be an object of at most 64 string values');
  for (const [key, value] of Object.entries(metaRaw)) {
    if (!META_KEY.test(key)) throw invalid(`Meta.${key}`, 'has a key that is not letters, digits, "_" or "-"');
    if (typeof value !== 'string' || value.length > 512) throw invalid(`Meta.${key}`, 'must be a string of at most 512 characters');
  }

  const checks: ConsulCheck[] = [];
  let status: CheckStatus | null = null;
  const checksRaw = map.get('checks');
  if (checksRaw !== undefined && checksRaw !== null) {
    if (!Array.isArray(checksRaw) || checksRaw.length > 16) throw invalid('Checks', 'must be an array of at most 16 checks');
    checksRaw.forEach((raw, index) => {
      const parsed = parseCheck(raw, `Checks[${index}]`, id, checksRaw.length === 1 ? null : index + 1);
      checks.push(parsed.check);
      status ??= parsed.status;
    });
  }
  const checkRaw = map.get('check');
  if (checkRaw !== undefined && checkRaw !== null) {
    const parsed = parseCheck(checkRaw, 'Check', id, checks.length === 0 ? null : checks.length + 1);
    checks.push(parsed.check);
    status ??= parsed.status;
  }
  if (new Set(checks.map((check) => check.CheckID)).size !== checks.length) throw invalid('Checks', 'must have distinct CheckIDs');
  return {
    Name: name,
    ID: id,
    Tags: tagsRaw as string[],
    Address: optionalString(map, 'address', 'Address', 255) ?? '',
    Port: portRaw,
    Meta: metaRaw as Record<string, string>,
    Checks: checks,
    Status: status,
  };
}

const IPV4 = /^\d{1,3}(\.\d{1,3}){3}$/;

/** Whether rollcall runs a check itself (HTTP and TCP; see consul-checks.ts). */
export function runnable(check: ConsulCheck): boolean {
  return (check.Type === 'http' && check.HTTP !== undefined) || (check.Type === 'tcp' && check.TCP !== undefined);
}

export function ttlCheckOf(checks: ConsulCheck[]): ConsulCheck | undefined {
  return checks.find((check) => check.Type === 'ttl');
}

export function healthOfStatus(status: CheckStatus): HealthStatus {
  return status === 'passing' ? 'healthy' : status === 'warning' ? 'degraded' : 'unhealthy';
}

/**
 * A service definition as a rollcall registration. A TTL check's TTL is the lease; without one the
 * default lease applies and the agent keeps it renewed. A TTL check starts critical unless its
 * Status says otherwise (as in Consul), and so do HTTP and TCP checks, which rollcall runs; other
 * checks are not executed, so a service with only those is passing.
 */
export function registrationOf(def: ServiceDefinition, context: { namespace: string; agent: string; defaultLeaseTtlMs: number; existing: NodeRecord | undefined }): Registration {
  const ttl = ttlCheckOf(def.Checks);
  // As in Consul, a check starts critical until it first passes; checks rollcall does not run
  // (script, gRPC, alias) cannot pass, so a service with only those starts passing.
  const status: CheckStatus = def.Status ?? (ttl || def.Checks.some(runnable) ? 'critical' : 'passing');
  const existing = context.existing;
  // Re-registering keeps the health the checks already have, as Consul keeps a check's status.
  const keepHealth = existing !== undefined && existing.status === 'online' && def.Status === null && ttl !== undefined;
  const consul: ConsulMetadata = { service: def.Name, tags: def.Tags, meta: def.Meta, address: def.Address, port: def.Port, checks: def.Checks, agent: context.agent };
  const endpoints: JsonObject = {};
  if (def.Address !== '' || def.Port !== 0) endpoints.service = `tcp://${def.Address.includes(':') ? `[${def.Address}]` : def.Address || '127.0.0.1'}:${def.Port}`;
  const httpCheck = def.Checks.find((check) => check.Type === 'http');
  if (httpCheck?.HTTP) endpoints.health = httpCheck.HTTP;
  const version = def.Meta.version ?? def.Meta.node_version;
  return {
    namespace: context.namespace || DEFAULT_NAMESPACE,
    node_id: def.ID,
    node_name: def.Name,
    node_type: def.Name,
    node_version: version !== undefined && version !== '' && version.length <= LIMITS.versionLength ? version : '0.0.0',
    hostname: def.Address !== '' && !IPV4.test(def.Address) && !def.Address.includes(':') ? def.Address : null,
    ip: IPV4.test(def.Address) || def.Address.includes(':') ? def.Address : null,
    role: null,
    labels: [...new Set(def.Tags.filter((tag) => tag.length <= LIMITS.labelLength && LABEL.test(tag)))],
    capabilities: {},
    endpoints,
    configuration: {},
    current_state: {},
    metadata: { consul: consul as unknown as JsonValue },
    health_status: keepHealth ? existing.health_status : healthOfStatus(status),
    incarnation: existing?.incarnation ?? 0,
    lease_ttl_ms: ttl?.TTL ? Math.round(goDurationMs(ttl.TTL) as number) : context.defaultLeaseTtlMs,
    reason: 'consul_register',
  };
}

/** The shortest DeregisterCriticalServiceAfter of a service's checks, in ms; null when none sets one. */
export function deregisterCriticalAfterMs(consul: ConsulMetadata): number | null {
  let shortest: number | null = null;
  for (const check of consul.checks) {
    const after = check.DeregisterCriticalServiceAfter === undefined ? null : goDurationMs(check.DeregisterCriticalServiceAfter);
    if (after !== null && (shortest === null || after < shortest)) shortest = after;
  }
  return shortest;
}

/**
 * Since when a service's check has been critical: from its lease lapsing (the node went offline) or
 * from the update that made it fail (health unhealthy while online); null while it is not critical.
 */
export function criticalSinceMs(node: NodeRecord): number | null {
  if (node.status === 'offline') return Date.parse(node.removed_at ?? node.updated_at);
  if (node.status === 'online' && node.health_status === 'unhealthy') return Date.parse(node.updated_at);
  return null;
}

/**
 * Consul's reaper: a service whose check has stayed critical for its DeregisterCriticalServiceAfter
 * (never less than `minimumMs`; Consul's own minimum is one minute) is due to be deregistered.
 */
export function dueForReaping(node: NodeRecord, nowMs: number, minimumMs: number): boolean {
  const consul = consulMetadataOf(node);
  if (!consul) return false;
  const after = deregisterCriticalAfterMs(consul);
  if (after === null) return false;
  const since = criticalSinceMs(node);
  return since !== null && nowMs - since >= Math.max(after, minimumMs);
}

export function consulMetadataOf(node: NodeRecord): ConsulMetadata | null {
  const value = node.metadata.consul;
  if (!isObject(value) || typeof value.service !== 'string' || !Array.isArray(value.checks)) return null;
  return value as unknown as ConsulMetadata;
}

/**
 * The Consul service names a node answers under: its node_type, by which the service routes select
 * a service's nodes, and the name of its Consul definition (what `instanceOf` calls it) when that
 * differs, which only a node written through rollcall's own API with a hand-made metadata.consul can do.
 */
export function serviceNamesOf(node: NodeRecord): string[] {
  const named = consulMetadataOf(node)?.service;
  return named === undefined || named === node.node_type ? [node.node_type] : [node.node_type, named];
}

/** online+healthy (or unknown) → passing, degraded → warning, offline or unhealthy → critical. */
export function statusOf(node: NodeRecord): CheckStatus {
  if (node.status !== 'online' || node.health_status === 'unhealthy') return 'critical';
  return node.health_status === 'degraded' ? 'warning' : 'passing';
}

/** The Consul view of one node: which agent node it sits on, its service and its checks. */
export interface ConsulInstance {
  node: string;
  nodeAddress: string;
  id: string;
  service: string;
  tags: string[];
  meta: Record<string, string>;
  address: string;
  port: number;
  status: CheckStatus;
  checks: ConsulCheck[];
  record: NodeRecord;
}

export function instanceOf(node: NodeRecord): ConsulInstance {
  const consul = consulMetadataOf(node);
  // Address and port by the one rule (domain/node-address.ts), as DNS, Prometheus SD and the Consul sink tell them.
  const service = announcedAddress(node);
  const nodeAddress = nodeHost(node) ?? '127.0.0.1';
  if (consul) {
    return {
      node: consul.agent,
      nodeAddress,
      id: node.node_id,
      service: consul.service,
      tags: consul.tags,
      meta: consul.meta,
      // An empty Address stays empty, as in Consul: the service is at its node's address.
      address: consul.address === '' ? '' : service.host,
      port: service.port,
      status: statusOf(node),
      checks: consul.checks,
      record: node,
    };
  }
  const meta: Record<string, string> = { node_type: node.node_type, node_version: node.node_version, namespace: node.namespace, health_status: node.health_status };
  if (node.role !== null) meta.role = node.role;
  return {
    node: node.hostname ?? node.node_id,
    nodeAddress,
    id: node.node_id,
    service: node.node_type,
    tags: node.labels,
    meta,
    address: service.host,
    port: service.port,
    status: statusOf(node),
    checks: [{ CheckID: `service:${node.node_id}`, Name: `Service '${node.node_type}' lease`, Type: 'ttl', TTL: `${Math.round(node.lease_ttl_ms / 1000)}s` }],
    record: node,
  };
}

const WEIGHTS = { Passing: 1, Warning: 1 };

/** An entry of `GET /v1/agent/services`. */
export function agentServiceOf(instance: ConsulInstance, datacenter: string): JsonObject {
  return {
    Kind: '',
    ID: instance.id,
    Service: instance.service,
    Tags: instance.tags,
    Meta: instance.meta,
    Port: instance.port,
    Address: instance.address,
    TaggedAddresses: {},
    Weights: WEIGHTS,
    EnableTagOverride: false,
    Datacenter: datacenter,
    Namespace: instance.record.namespace,
  };
}

function indexes(version: number): { CreateIndex: number; ModifyIndex: number } {
  // Records carry no per-record version; the topology version bounds both indexes.
  return { CreateIndex: version, ModifyIndex: version };
}

/** An entry of `GET /v1/catalog/service/{name}`. */
export function catalogEntryOf(instance: ConsulInstance, datacenter: string, version: number): JsonObject {
  return {
    ID: '',
    Node: instance.node,
    Address: instance.nodeAddress,
    Datacenter: datacenter,
    TaggedAddresses: { lan: instance.nodeAddress, wan: instance.nodeAddress },
    NodeMeta: {},
    ServiceKind: '',
    ServiceID: instance.id,
    ServiceName: instance.service,
    ServiceTags: instance.tags,
    ServiceAddress: instance.address,
    ServiceTaggedAddresses: {},
    ServiceWeights: WEIGHTS,
    ServiceMeta: instance.meta,
    ServicePort: instance.port,
    ServiceEnableTagOverride: false,
    Namespace: instance.record.namespace,
    ...indexes(version),
  };
}

/** An entry of `GET /v1/health/service/{name}`: the node, the service and its checks. */
export function healthEntryOf(instance: ConsulInstance, datacenter: string, version: number, output: string): JsonObject {
  const node = instance.record;
  const checks: JsonObject[] = [
    {
      Node: instance.node,
      CheckID: 'serfHealth',
      Name: 'Serf Health Status',
      Status: 'passing',
      Notes: '',
      Output: 'Agent alive and reachable',
      ServiceID: '',
      ServiceName: '',
      ServiceTags: [],
      Type: '',
      Namespace: node.namespace,
      ...indexes(version),
    },
    ...instance.checks.map((check) => ({
      Node: instance.node,
      CheckID: check.CheckID,
      Name: check.Name,
      Status: instance.status,
      Notes: check.Notes ?? '',
      Output: output || (node.status === 'online' ? `health_status ${node.health_status}` : `Node ${node.status} (${node.removal_reason ?? 'lease_expired'})`),
      ServiceID: instance.id,
      ServiceName: instance.service,
      ServiceTags: instance.tags,
      Type: check.Type,
      Definition: {},
      Namespace: node.namespace,
      ...indexes(version),
    })),
  ];
  return {
    Node: {
      ID: '',
      Node: instance.node,
      Address: instance.nodeAddress,
      Datacenter: datacenter,
      TaggedAddresses: { lan: instance.nodeAddress, wan: instance.nodeAddress },
      Meta: {},
      ...indexes(version),
    },
    Service: { ...agentServiceOf(instance, datacenter), ...indexes(version) },
    Checks: checks,
  };
}

const MAX_FILTER_DEPTH = 32;

/** A parsed `filter` expression: true when an entry matches. */
export type FilterPredicate = (entry: JsonObject) => boolean;

type Token = { kind: 'word' | 'string' | 'op' | 'paren'; text: string };

function tokenize(expression: string): Token[] {
  const tokens: Token[] = [];
  const pattern = /\s*(?:"((?:[^"\\]|\\.)*)"|`([^`]*)`|(==|!=)|([()])|([A-Za-z0-9_.\-/:@]+))/y;
  let at = 0;
  while (at < expression.length) {
    if (/^\s*$/.test(expression.slice(at))) break;
    pattern.lastIndex = at;
    const match = pattern.exec(expression);
    if (!match) throw filterError(expression, `unexpected character at ${at}`);
    at = pattern.lastIndex;
    if (match[1] !== undefined) tokens.push({ kind: 'string', text: match[1].replace(/\\(.)/g, '$1') });
    else if (match[2] !== undefined) tokens.push({ kind: 'string', text: match[2] });
    else if (match[3] !== undefined) tokens.push({ kind: 'op', text: match[3] });
    else if (match[4] !== undefined) tokens.push({ kind: 'paren', text: match[4] });
    else tokens.push({ kind: 'word', text: match[5] as string });
  }
  return tokens;
}

function filterError(expression: string, message: string): RollcallError {
  return new RollcallError(
    'VALIDATION_FAILED',
    `Query parameter filter is not supported: ${message}. Supported: <Selector> ==|!= "v", <Selector> contains|not contains "v", "v" in|not in <Selector>, <Selector> is empty|is not empty, joined by and/or/not and parentheses.`,
    {
      details: { parameter: 'filter', filter: expression },
    },
  );
}

function resolve(entry: JsonObject, selector: string[]): JsonValue | undefined {
  let value: JsonValue | undefined = entry;
  for (const part of selector) {
    if (typeof value !== 'object' || value === null || Array.isArray(value)) return undefined;
    value = value[part];
  }
  return value;
}

function scalarText(value: JsonValue | undefined): string | undefined {
  if (typeof value === 'string') return value;
  if (typeof value === 'number' || typeof value === 'boolean') return String(value);
  return undefined;
}

function containsValue(value: JsonValue | undefined, needle: string): boolean {
  if (Array.isArray(value)) return value.some((item) => scalarText(item) === needle);
  if (typeof value === 'string') return value.includes(needle);
  if (typeof value === 'object' && value !== null) return Object.hasOwn(value, needle);
  return false;
}

/**
 * Parses the documented subset of Consul's filter language. Selectors are paths into the entries
 * the endpoint returns (`Service.Tags`, `Service.Meta.env`, `ServiceTags`, `Checks`…); the first
 * part must be one of `fields` (the top-level fields of that endpoint's entries) or it is refused.
 */
export function parseFilter(expression: string, fields: readonly string[]): FilterPredicate {
  const tokens = tokenize(expression);
  let position = 0;
  const peek = (): Token | undefined => tokens[position];
  const isWord = (text: string, token = peek()): boolean => token?.kind === 'word' && token.text.toLowerCase() === text;
  const next = (): Token => {
    const token = tokens[position];
    if (!token) throw filterError(expression, 'unexpected end');
    position += 1;
    return token;
  };
  const selectorOf = (token: Token): string[] => {
    if (token.kind !== 'word') throw filterError(expression, `expected a selector, found "${token.text}"`);
    const parts = token.text.split('.');
    if (!fields.includes(parts[0] as string)) throw filterError(expression, `unknown selector ${token.text}`);
    return parts;
  };
  const valueOf = (token: Token): string => {
    if (token.kind === 'string' || (token.kind === 'word' && /^[-0-9.]+$|^(true|false)$/.test(token.text))) return token.text;
    throw filterError(expression, `expected a quoted value, found ${token.text}`);
  };

  // Parentheses and `not` recurse: bound their nesting so a crafted filter cannot exhaust the stack.
  let depth = 0;
  const primary = (): FilterPredicate => {
    if (depth >= MAX_FILTER_DEPTH) throw filterError(expression, `nested deeper than ${MAX_FILTER_DEPTH} levels`);
    depth += 1;
    try {
      return term();
    } finally {
      depth -= 1;
    }
  };
  const term = (): FilterPredicate => {
    const token = next();
    if (token.kind === 'paren' && token.text === '(') {
      const inner = or();
      const close = next();
      if (close.kind !== 'paren' || close.text !== ')') throw filterError(expression, 'missing )');
      return inner;
    }
    if (isWord('not', token)) {
      const inner = primary();
      return (entry) => !inner(entry);
    }
    if (token.kind === 'string') {
      const needle = token.text;
      const negated = isWord('not') ? (next(), true) : false;
      if (!isWord('in')) throw filterError(expression, `expected "in" after "${needle}"`);
      next();
      const selector = selectorOf(next());
      return (entry) => containsValue(resolve(entry, selector), needle) !== negated;
    }
    const selector = selectorOf(token);
    const operator = next();
    if (operator.kind === 'op') {
      const expected = valueOf(next());
      const equal = operator.text === '==';
      return (entry) => (scalarText(resolve(entry, selector)) === expected) === equal;
    }
    if (isWord('is', operator)) {
      const negated = isWord('not') ? (next(), true) : false;
      if (!isWord('empty', next())) throw filterError(expression, 'expected "empty" after "is"');
      return (entry) => {
        const value = resolve(entry, selector);
        const empty = value === undefined || value === null || value === '' || (Array.isArray(value) ? value.length === 0 : typeof value === 'object' && Object.keys(value).length === 0);
        return empty !== negated;
      };
    }
    const negated = isWord('not', operator);
    const verb = negated ? next() : operator;
    if (!isWord('contains', verb)) throw filterError(expression, `unsupported operator ${verb.text}`);
    const needle = valueOf(next());
    return (entry) => containsValue(resolve(entry, selector), needle) !== negated;
  };
  const and = (): FilterPredicate => {
    let left = primary();
    while (isWord('and')) {
      next();
      const a = left;
      const b = primary();
      left = (entry) => a(entry) && b(entry);
    }
    return left;
  };
  const or = (): FilterPredicate => {
    let left = and();
    while (isWord('or')) {
      next();
      const a = left;
      const b = and();
      left = (entry) => a(entry) || b(entry);
    }
    return left;
  };
  if (tokens.length === 0) throw filterError(expression, 'empty expression');
  const predicate = or();
  if (position !== tokens.length) throw filterError(expression, `unexpected "${tokens[position]?.text ?? ''}"`);
  return predicate;
}
