// The one rule for where a node is reached, whichever door it came through: its own host, its service
// address (host and port) and its scrape target. DNS (A and SRV), Prometheus HTTP SD, the
// Consul-compatible API and the Consul sink all answer from here, so a node resolves the same on each.
// No I/O.
//
// The shapes a record arrives in: a DAGI register gives `ip`/`hostname` and maybe endpoint URLs or a
// port field; an OmniNode introspection gives endpoint URLs (`api`, `health`, `metrics`…) and its
// ip/hostname in metadata; the Consul agent door stores the definition's Address and Port as the
// `service` endpoint `tcp://<Address>:<Port>` (127.0.0.1 when Address is empty) beside
// `metadata.consul`, and an HTTP check's URL as the `health` endpoint.
import { isIPv4 } from 'node:net';
import { isJsonObject, type JsonObject } from './json.js';
import type { NodeRecord } from './node.js';

/** The fields of a record (or of a registration not yet written) the rule reads. */
export type AddressSource = Pick<NodeRecord, 'ip' | 'hostname' | 'endpoints' | 'metadata'>;

export interface NodeAddress {
  /** A host name or an IP literal (IPv6 without brackets). */
  host: string;
  port: number;
  /** Which endpoint (or field) the address came from, e.g. `service`, `api`, `ip+port`. */
  source: string;
}

export interface ScrapeTarget extends NodeAddress {
  /** `http` or `https`, when the endpoint named one. */
  scheme: string | null;
  /** Path of a `metrics` URL; null means Prometheus' default (`/metrics`). */
  metricsPath: string | null;
  /** Query parameters of a `metrics` URL (Prometheus sends them as `__param_<name>`). */
  params: Record<string, string>;
}

/**
 * Endpoints tried, in order, for the address a service is reached at: `service` (an address the
 * record declares, as the Consul door does), then the node's own API, then what it serves beside it.
 */
export const SERVICE_ENDPOINTS = ['service', 'api', 'http', 'https', 'grpc', 'url', 'health', 'metrics'] as const;
/** Endpoints tried for a scrape target when there is no `metrics` URL: where metrics are likelier first. */
const SCRAPE_ENDPOINTS = ['health', 'api', 'http', 'https', 'url'] as const;
/** Fields (in endpoints, then metadata) holding a bare port for nodes that publish only ip/hostname. */
const SERVICE_PORT_FIELDS = ['port', 'api_port', 'metrics_port'] as const;
const SCRAPE_PORT_FIELDS = ['metrics_port', 'port'] as const;
const WILDCARD_HOSTS = new Set(['0.0.0.0', '::', '[::]']);
const DEFAULT_PORTS: Record<string, number> = { 'http:': 80, 'https:': 443, 'grpc:': 50051, 'grpcs:': 443, 'ws:': 80, 'wss:': 443 };

interface ParsedEndpoint {
  host: string;
  /** 0 when the URL names no port and its scheme has no default. */
  port: number;
  scheme: string;
  url: URL;
}

/** An endpoint URL with a host; null for anything else (a topic name, a path, not a string). */
function parseEndpoint(value: unknown): ParsedEndpoint | null {
  if (typeof value !== 'string' || value.length === 0) return null;
  let url: URL;
  try {
    url = new URL(value);
  } catch {
    return null;
  }
  if (url.hostname === '') return null;
  const port = url.port === '' ? (DEFAULT_PORTS[url.protocol] ?? 0) : Number(url.port);
  const host = url.hostname.startsWith('[') ? url.hostname.slice(1, -1) : url.hostname;
  return { host, port, scheme: url.protocol.slice(0, -1), url };
}

function portIn(obj: JsonObject, field: string): number | null {
  const value = obj[field];
  const port = typeof value === 'number' ? value : typeof value === 'string' && /^\d{1,5}$/.test(value) ? Number(value) : NaN;
  return Number.isInteger(port) && port > 0 && port < 65536 ? port : null;
}

/** The node's own host as it published it: its ip, else its hostname. */
function ownHost(node: AddressSource): string | null {
  return node.ip ?? node.hostname ?? null;
}

/** An endpoint bound to a wildcard address is reached at the node's own address. */
function reachableHost(host: string, node: AddressSource): string {
  return WILDCARD_HOSTS.has(host) ? (ownHost(node) ?? host) : host;
}

function bareAddress(node: AddressSource, fields: readonly string[]): NodeAddress | null {
  const host = ownHost(node);
  if (host === null) return null;
  for (const field of fields) {
    const port = portIn(node.endpoints, field) ?? portIn(node.metadata, field);
    if (port !== null) return { host, port, source: `${node.ip !== null ? 'ip' : 'hostname'}+${field}` };
  }
  return null;
}

/**
 * Whether the record declares its service address, so nothing else is guessed: it has a `service`
 * endpoint, or it came through the Consul door (metadata.consul with a Port, 0 meaning none).
 */
function declaresService(node: AddressSource): boolean {
  const consul = node.metadata.consul;
  return parseEndpoint(node.endpoints.service) !== null || (isJsonObject(consul) && typeof consul.port === 'number');
}

/**
 * Where the node serves (DNS SRV): its declared `service` address; else the first of its `api`,
 * `http`, `https`, `grpc`, `url`, `health`, `metrics` endpoints that gives a host and a port; else
 * ip/hostname with a `port`, `api_port` or `metrics_port` field. Null when it publishes no port.
 */
export function serviceAddress(node: AddressSource): NodeAddress | null {
  if (declaresService(node)) {
    const declared = parseEndpoint(node.endpoints.service);
    return declared !== null && declared.port > 0 ? { host: reachableHost(declared.host, node), port: declared.port, source: 'service' } : null;
  }
  for (const name of SERVICE_ENDPOINTS) {
    const endpoint = parseEndpoint(node.endpoints[name]);
    if (endpoint && endpoint.port > 0) return { host: reachableHost(endpoint.host, node), port: endpoint.port, source: name };
  }
  return bareAddress(node, SERVICE_PORT_FIELDS);
}

/** The host the node is at (Consul's node Address): its ip, else its service address' host, else its hostname. */
export function nodeHost(node: AddressSource, service: NodeAddress | null = serviceAddress(node)): string | null {
  return node.ip ?? service?.host ?? node.hostname ?? null;
}

/**
 * What a catalog that always names an address and a port announces (the Consul-compatible API, the
 * Consul sink): the service address, else the node's host (empty when it has none) and port 0.
 */
export function announcedAddress(node: AddressSource): { host: string; port: number } {
  const service = serviceAddress(node);
  return service ? { host: service.host, port: service.port } : { host: nodeHost(node, null) ?? '', port: 0 };
}

/**
 * What Prometheus should scrape: a `metrics` URL gives host, port, scheme, path and parameters;
 * otherwise the declared service address (as consul_sd_configs would take a Consul service's); otherwise
 * the `health`, `api`, `http`, `https` or `url` endpoint's host and port (scheme kept, default path);
 * otherwise ip/hostname with a `metrics_port` or `port` field. Null when the node publishes none of these.
 */
export function scrapeTarget(node: AddressSource): ScrapeTarget | null {
  const metrics = parseEndpoint(node.endpoints.metrics);
  if (metrics && metrics.port > 0) {
    const params: Record<string, string> = {};
    for (const [name, value] of metrics.url.searchParams) params[name] = value;
    return {
      host: reachableHost(metrics.host, node),
      port: metrics.port,
      source: 'metrics',
      scheme: metrics.scheme,
      metricsPath: metrics.url.pathname,
      params,
    };
  }
  if (declaresService(node)) {
    const service = serviceAddress(node);
    return service ? { ...service, scheme: null, metricsPath: null, params: {} } : null;
  }
  for (const name of SCRAPE_ENDPOINTS) {
    const endpoint = parseEndpoint(node.endpoints[name]);
    if (endpoint && endpoint.port > 0) return { host: reachableHost(endpoint.host, node), port: endpoint.port, source: name, scheme: endpoint.scheme, metricsPath: null, params: {} };
  }
  const bare = bareAddress(node, SCRAPE_PORT_FIELDS);
  return bare ? { ...bare, scheme: null, metricsPath: null, params: {} } : null;
}

/** `host:port`, bracketing IPv6 literals. */
export function hostPort(address: Pick<NodeAddress, 'host' | 'port'>): string {
  return `${address.host.includes(':') ? `[${address.host}]` : address.host}:${address.port}`;
}

/** The node's IPv4 address for A records: its ip, else the host of its service address if that is one. */
export function ipv4Of(node: AddressSource, service: NodeAddress | null = serviceAddress(node)): string | null {
  if (node.ip !== null && isIPv4(node.ip)) return node.ip;
  if (service !== null && isIPv4(service.host)) return service.host;
  return null;
}
