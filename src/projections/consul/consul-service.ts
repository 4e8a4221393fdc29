// How a rollcall node becomes a Consul service registration (the seeds' mapping): name from a
// template, ID from node_id (scoped by namespace), address and port by the one address rule, tags,
// bounded meta, check; and how a service found in Consul maps back to its namespace and node.
import type { JsonObject } from '../../domain/json.js';
import { announcedAddress } from '../../domain/node-address.js';
import { DEFAULT_NAMESPACE, type Registration } from '../../domain/node.js';
import { NAMESPACE_PATTERN } from '../../domain/schemas.js';
import type { ConsulAgentService, ConsulServiceRegistration } from './consul-client.js';

export const CONSUL_CHECK_KINDS = ['ttl', 'http'] as const;
export type ConsulCheckKind = (typeof CONSUL_CHECK_KINDS)[number];

/**
 * How rollcall namespaces map onto Consul. off: all in one Consul namespace, told apart by service
 * ID (`<namespace>~<node_id>` outside the default namespace) and name; enterprise: each into the
 * Consul Enterprise namespace of the same name (the `ns` parameter), with plain node_id IDs.
 */
export const CONSUL_NAMESPACE_MODES = ['off', 'enterprise'] as const;
export type ConsulNamespaceMode = (typeof CONSUL_NAMESPACE_MODES)[number];

/** Joins namespace and node_id in a service ID: allowed in neither, and URL-safe, so an ID parses back unambiguously. */
export const NAMESPACE_SEPARATOR = '~';

/** The tag on every service rollcall registers. */
export const ROLLCALL_TAG = 'rollcall';
/** Meta marking a service as managed by rollcall: only these are ever removed as stale. */
export const MANAGED_META: Readonly<[string, string]> = ['managed_by', 'rollcall'];

/** Consul's meta limits: key pattern and length, value length, pair count. */
const META_KEY = /^[A-Za-z0-9_-]{1,128}$/;
const META_VALUE_MAX = 512;
const META_PAIRS_MAX = 64;

export interface ServiceMapping {
  /** Service name template; placeholders {node_type}, {namespace}, {role}, {node_id}, {node_name}. */
  serviceName: string;
  /**
   * Template for nodes outside the default namespace. Default: `serviceName` when it names
   * {namespace} or namespaces go to Consul Enterprise namespaces, else `{namespace}-` + `serviceName`,
   * so that another namespace's nodes never join the default namespace's services.
   */
  namespaceServiceName?: string | undefined;
  /** rollcall's default namespace (config `namespace`): its nodes keep the seeds' plain IDs and names. Default `default`. */
  defaultNamespace?: string;
  /** Default `off`. */
  namespaces?: ConsulNamespaceMode;
  check: ConsulCheckKind;
  /** HTTP checks: Consul's duration strings (seeds: 30s, 5s); deregister-after applies to both kinds (seeds: 90s). */
  checkInterval: string;
  checkTimeout: string;
  deregisterAfter: string;
  /** Default `environment` meta, unless the node's metadata names one. */
  environment: string;
}

/** What a service is made of: a stored record or a registration not yet written (atomic mode). */
export type ServiceSource = Pick<
  Registration,
  'namespace' | 'node_id' | 'node_name' | 'node_type' | 'node_version' | 'hostname' | 'ip' | 'role' | 'labels' | 'capabilities' | 'endpoints' | 'metadata' | 'lease_ttl_ms'
>;

/** Where a service lives in Consul: its ID, and its Consul Enterprise namespace (none outside enterprise mode). */
export interface ServiceLocation {
  id: string;
  namespace: string | undefined;
}

const defaultNamespaceOf = (mapping: ServiceMapping): string => mapping.defaultNamespace ?? DEFAULT_NAMESPACE;

/** The Consul Enterprise namespace of `namespace`'s services; undefined when namespaces are off. */
export function consulNamespaceOf(namespace: string, mapping: ServiceMapping): string | undefined {
  return mapping.namespaces === 'enterprise' ? namespace : undefined;
}

/** The service ID of a node: its node_id, prefixed by `<namespace>~` outside the default namespace unless namespaces are Consul's. */
export function serviceIdOf(node: { namespace: string; node_id: string }, mapping: ServiceMapping): string {
  if (mapping.namespaces === 'enterprise' || node.namespace === defaultNamespaceOf(mapping)) return node.node_id;
  return `${node.namespace}${NAMESPACE_SEPARATOR}${node.node_id}`;
}

export function serviceLocationOf(node: { namespace: string; node_id: string }, mapping: ServiceMapping): ServiceLocation {
  return { id: serviceIdOf(node, mapping), namespace: consulNamespaceOf(node.namespace, mapping) };
}

/** One string per location, for maps. */
export function locationKey(location: ServiceLocation): string {
  return `${location.namespace ?? ''}\u0000${location.id}`;
}

/** The name template of `namespace`'s nodes (see ServiceMapping.namespaceServiceName). */
export function serviceNameTemplateOf(namespace: string, mapping: ServiceMapping): string {
  if (namespace === defaultNamespaceOf(mapping)) return mapping.serviceName;
  if (mapping.namespaceServiceName !== undefined) return mapping.namespaceServiceName;
  if (mapping.namespaces === 'enterprise' || mapping.serviceName.includes('{namespace}')) return mapping.serviceName;
  return `{namespace}-${mapping.serviceName}`;
}

const namespacePattern = new RegExp(NAMESPACE_PATTERN);

/**
 * The namespace and node a service in Consul stands for: in enterprise mode the Consul namespace it
 * was found in; otherwise the `<namespace>~` prefix of its ID, else its `namespace` meta (services
 * registered before IDs were scoped), else the default namespace.
 */
export function nodeOfService(service: ConsulAgentService, consulNamespace: string | undefined, mapping: ServiceMapping): { namespace: string; node_id: string } {
  const meta = service.Meta?.namespace;
  const metaNamespace = typeof meta === 'string' && namespacePattern.test(meta) ? meta : undefined;
  if (mapping.namespaces === 'enterprise') return { namespace: consulNamespace ?? metaNamespace ?? defaultNamespaceOf(mapping), node_id: service.ID };
  const separator = service.ID.indexOf(NAMESPACE_SEPARATOR);
  if (separator > 0) return { namespace: service.ID.slice(0, separator), node_id: service.ID.slice(separator + 1) };
  return { namespace: metaNamespace ?? defaultNamespaceOf(mapping), node_id: service.ID };
}

/** The TTL check id Consul gives the single check of service `id`. */
export function ttlCheckId(serviceId: string): string {
  return `service:${serviceId}`;
}

export function serviceNameOf(node: ServiceSource, template: string): string {
  const values: Record<string, string> = {
    node_type: node.node_type,
    namespace: node.namespace,
    role: node.role ?? '',
    node_id: node.node_id,
    node_name: node.node_name ?? '',
  };
  const raw = template.replace(/\{(\w+)\}/g, (whole, name: string) => values[name] ?? whole);
  // DNS-friendly: Consul cannot serve other characters over DNS.
  const name = raw
    .replace(/[^A-Za-z0-9-]+/g, '-')
    .replace(/-{2,}/g, '-')
    .replace(/^-|-$/g, '');
  return name === '' ? 'node' : name.slice(0, 63);
}

/** Address and port by the one rule (domain/node-address.ts), as DNS, Prometheus SD and the Consul API tell them. */
export function addressOf(node: ServiceSource): { address: string; port: number } {
  const { host, port } = announcedAddress(node);
  return { address: host, port };
}

/** The node's health endpoint as a URL, when it has one. */
export function healthUrlOf(node: ServiceSource): string | null {
  const health = node.endpoints.health;
  if (typeof health === 'string' && /^https?:\/\//.test(health)) return health;
  return null;
}

function capabilitySummary(capabilities: JsonObject): string {
  const names: string[] = [];
  for (const [key, value] of Object.entries(capabilities)) {
    if (value === false || value === null) continue;
    if (Array.isArray(value) && value.every((item) => typeof item === 'string')) names.push(...value);
    else names.push(key);
  }
  return [...new Set(names)].sort().join(',');
}

function boundedMeta(entries: Array<[string, string | null | undefined]>): Record<string, string> {
  const meta: Record<string, string> = {};
  let pairs = 0;
  for (const [key, value] of entries) {
    if (value === null || value === undefined || !META_KEY.test(key) || key.startsWith('consul-')) continue;
    if (pairs >= META_PAIRS_MAX) break;
    meta[key] = value.length > META_VALUE_MAX ? value.slice(0, META_VALUE_MAX) : value;
    pairs++;
  }
  return meta;
}

function durationOf(ms: number): string {
  return ms % 1000 === 0 ? `${ms / 1000}s` : `${Math.max(1, Math.round(ms))}ms`;
}

export function serviceRegistrationOf(node: ServiceSource, mapping: ServiceMapping): ConsulServiceRegistration {
  const id = serviceIdOf(node, mapping);
  const { address, port } = addressOf(node);
  const tags = [...new Set([...node.labels.filter((label) => label !== ''), ROLLCALL_TAG])];
  const environment = typeof node.metadata.environment === 'string' ? node.metadata.environment : mapping.environment;
  const meta = boundedMeta([
    MANAGED_META as [string, string],
    ['node_type', node.node_type],
    ['node_version', node.node_version],
    // What consumers filter a namespace's services by (`Meta.namespace == "beta"`); no tag is added.
    ['namespace', node.namespace],
    ['environment', environment],
    ['capabilities', capabilitySummary(node.capabilities)],
    ['role', node.role],
  ]);
  const healthUrl = mapping.check === 'http' ? healthUrlOf(node) : null;
  const check =
    healthUrl !== null
      ? { HTTP: healthUrl, Interval: mapping.checkInterval, Timeout: mapping.checkTimeout, DeregisterCriticalServiceAfter: mapping.deregisterAfter }
      : {
          // A TTL check lives as long as the node's lease; heartbeats pass it.
          CheckID: ttlCheckId(id),
          Name: `rollcall lease of ${id}`,
          TTL: durationOf(node.lease_ttl_ms),
          Status: 'passing' as const,
          DeregisterCriticalServiceAfter: mapping.deregisterAfter,
        };
  return { Name: serviceNameOf(node, serviceNameTemplateOf(node.namespace, mapping)), ID: id, Tags: tags, Address: address, Port: port, Meta: meta, Check: check };
}

/** Whether a service in Consul was registered by rollcall (and may be removed as stale). */
export function isManaged(service: ConsulAgentService): boolean {
  return (service.Tags ?? []).includes(ROLLCALL_TAG) && service.Meta?.[MANAGED_META[0]] === MANAGED_META[1];
}

/** The fields of `actual` that differ from `desired` (name, tags, meta, address, port). */
export function driftOf(actual: ConsulAgentService, desired: ConsulServiceRegistration): string[] {
  const drift: string[] = [];
  if (actual.Service !== desired.Name) drift.push('name');
  const tags = [...new Set(actual.Tags ?? [])].sort();
  if (JSON.stringify(tags) !== JSON.stringify([...new Set(desired.Tags)].sort())) drift.push('tags');
  const meta = actual.Meta ?? {};
  const keys = new Set([...Object.keys(meta), ...Object.keys(desired.Meta)]);
  for (const key of keys) {
    if (meta[key] !== desired.Meta[key]) {
      drift.push('meta');
      break;
    }
  }
  if ((actual.Address ?? '') !== desired.Address) drift.push('address');
  if ((actual.Port ?? 0) !== desired.Port) drift.push('port');
  return drift;
}
