// Where a node can be reached, read from its registration: the service address (host and port) that
// DNS answers and the scrape target Prometheus discovery hands out. No I/O.
import { isIPv4 } from 'node:net';
import type { JsonObject } from './json.js';
import type { NodeRecord } from './node.js';

export interface NodeAddress {
  /** A host name or an IP literal (IPv6 without brackets). */
  host: string;
  port: number;
  /** Which endpoint (or field) the address came from, e.g. `api`, `metrics`, `ip+port`. */
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

/** Endpoints tried, in order, for the address a service is reached at. */
export const SERVICE_ENDPOINTS = ['api', 'health', 'metrics'] as const;
/** Fields (in endpoints, then metadata) holding a bare port for nodes that publish only ip/hostname. */
const PORT_FIELDS = ['port', 'api_port', 'metrics_port'] as const;
const WILDCARD_HOSTS = new Set(['0.0.0.0', '::', '[::]']);
const DEFAULT_PORTS: Record<string, number> = { 'http:': 80, 'https:': 443 };

interface ParsedEndpoint {
  host: string;
  port: number;
  scheme: string;
  url: URL;
}

function parseEndpoint(value: unknown): ParsedEndpoint | null {
  if (typeof value !== 'string' || value.length === 0) return null;
  let url: URL;
  try {
    url = new URL(value);
  } catch {
    return null;
  }
  const port = url.port === '' ? DEFAULT_PORTS[url.protocol] : Number(url.port);
  if (port === undefined || url.hostname === '') return null;
  const host = url.hostname.startsWith('[') ? url.hostname.slice(1, -1) : url.hostname;
  return { host, port, scheme: url.protocol.slice(0, -1), url };
}

function portIn(obj: JsonObject, field: string): number | null {
  const value = obj[field];
  const port = typeof value === 'number' ? value : typeof value === 'string' && /^\d{1,5}$/.test(value) ? Number(value) : NaN;
  return Number.isInteger(port) && port > 0 && port < 65536 ? port : null;
}

/** The node's own host: its ip, else its hostname. */
function ownHost(node: NodeRecord): string | null {
  return node.ip ?? node.hostname ?? null;
}

/** An endpoint bound to a wildcard address is reached at the node's own address. */
function reachableHost(host: string, node: NodeRecord): string {
  return WILDCARD_HOSTS.has(host) ? (ownHost(node) ?? host) : host;
}

function bareAddress(node: NodeRecord, fields: readonly string[]): NodeAddress | null {
  const host = ownHost(node);
  if (host === null) return null;
  for (const field of fields) {
    const port = portIn(node.endpoints, field) ?? portIn(node.metadata, field);
    if (port !== null) return { host, port, source: `${node.ip !== null ? 'ip' : 'hostname'}+${field}` };
  }
  return null;
}

/** Where the node serves: its `api`, `health` or `metrics` endpoint, else ip/hostname and a port field. */
export function serviceAddress(node: NodeRecord): NodeAddress | null {
  for (const name of SERVICE_ENDPOINTS) {
    const endpoint = parseEndpoint(node.endpoints[name]);
    if (endpoint) return { host: reachableHost(endpoint.host, node), port: endpoint.port, source: name };
  }
  return bareAddress(node, PORT_FIELDS);
}

/**
 * What Prometheus should scrape: a `metrics` URL gives host, port, scheme, path and parameters;
 * otherwise the `health` or `api` endpoint's host and port (scheme kept, default path), otherwise
 * ip/hostname with a `metrics_port` or `port` field. Null when the node publishes none of these.
 */
export function scrapeTarget(node: NodeRecord): ScrapeTarget | null {
  const metrics = parseEndpoint(node.endpoints.metrics);
  if (metrics) {
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
  for (const name of ['health', 'api'] as const) {
    const endpoint = parseEndpoint(node.endpoints[name]);
    if (endpoint) return { host: reachableHost(endpoint.host, node), port: endpoint.port, source: name, scheme: endpoint.scheme, metricsPath: null, params: {} };
  }
  const bare = bareAddress(node, ['metrics_port', 'port']);
  return bare ? { ...bare, scheme: null, metricsPath: null, params: {} } : null;
}

/** `host:port`, bracketing IPv6 literals. */
export function hostPort(address: Pick<NodeAddress, 'host' | 'port'>): string {
  return `${address.host.includes(':') ? `[${address.host}]` : address.host}:${address.port}`;
}

/** The node's IPv4 address for A records: its ip, else the host of its service address if that is one. */
export function ipv4Of(node: NodeRecord, service: NodeAddress | null = serviceAddress(node)): string | null {
  if (node.ip !== null && isIPv4(node.ip)) return node.ip;
  if (service !== null && isIPv4(service.host)) return service.host;
  return null;
}
