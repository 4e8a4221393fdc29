// The consumer SDK's HTTP client: typed calls to the REST API; failures are RollcallErrors by code.
import { ERROR_CODES, RollcallError, type ErrorCode } from '../domain/errors.js';
import type { JsonObject } from '../domain/json.js';
import type { DagiRegistration, IntrospectionPayload, NodeRecord, NodeStatus, TopologyChange } from '../domain/node.js';
import type { Envelope } from '../domain/schemas.js';
import type { SvidResponse } from '../security/identity-service.js';

export type PresentedNode = NodeRecord & { lease_expires_at: string | null };

export interface ListNodesQuery {
  namespace?: string;
  role?: string;
  labels?: string[];
  status?: NodeStatus[];
  node_type?: string;
  capability?: JsonObject;
  version?: string;
  limit?: number;
  cursor?: string;
}

export interface NodeList {
  nodes: PresentedNode[];
  count: number;
  next_cursor: string | null;
  topology_version: number;
}

export interface RegisterResponse {
  node_id: string;
  namespace: string;
  status: NodeStatus;
  outcome: 'added' | 'updated' | 'unchanged';
  incarnation: number;
  topology_version: number;
  registered_at: string;
  lease_expires_at: string;
}

/** An X.509 SVID as the identity API issues it (POST /api/v1/identity/svid and …/svid/renew). */
export type SvidDocument = SvidResponse;

/** What POST /api/v1/events answers, by event kind: the introspection, heartbeat or deregistration result. */
export type EventResponse = Record<string, unknown> & { event_id: string; event_type: string };

export interface ClientOptions {
  /** Per-request timeout; default 10 s. */
  timeoutMs?: number;
  /** API key (or JWT) sent as `Authorization: Bearer`; absent: none (an open registry). */
  apiKey?: string;
}

/**
 * One JSON request to a registry's API (the client's and the CLI's): an unreachable registry is
 * REGISTRY_UNAVAILABLE, and a refusal's problem answer becomes a RollcallError with its code, detail and
 * details (REGISTRY_UNAVAILABLE or INTERNAL, by status, when the code is none of ours).
 */
export async function requestJson<T>(baseUrl: string, method: string, path: string, options: { headers?: Record<string, string>; body?: unknown; timeoutMs: number }): Promise<T> {
  const { body } = options;
  let response: Response;
  try {
    response = await fetch(`${baseUrl}${path}`, {
      method,
      headers: { ...options.headers, accept: 'application/json', ...(body === undefined ? {} : { 'content-type': 'application/json' }) },
      ...(body === undefined ? {} : { body: JSON.stringify(body) }),
      signal: AbortSignal.timeout(options.timeoutMs),
    });
  } catch (cause) {
    throw new RollcallError('REGISTRY_UNAVAILABLE', `Cannot reach the registry at ${baseUrl}: ${(cause as Error).message}`, { cause });
  }
  const text = await response.text();
  let parsed: unknown = null;
  try {
    parsed = text.length > 0 ? JSON.parse(text) : null;
  } catch {
    parsed = null;
  }
  if (!response.ok) {
    const problem = (parsed ?? {}) as { code?: string; detail?: string; details?: Record<string, unknown> };
    const code: ErrorCode = problem.code !== undefined && problem.code in ERROR_CODES ? (problem.code as ErrorCode) : response.status >= 500 ? 'REGISTRY_UNAVAILABLE' : 'INTERNAL';
    throw new RollcallError(code, problem.detail ?? `${method} ${path} answered ${response.status}`, problem.details ? { details: problem.details } : {});
  }
  return parsed as T;
}

export class RollcallClient {
  readonly baseUrl: string;
  private readonly timeoutMs: number;
  private readonly authorization: Record<string, string>;

  constructor(baseUrl: string, options: ClientOptions = {}) {
    this.baseUrl = baseUrl.replace(/\/+$/, '');
    this.timeoutMs = options.timeoutMs ?? 10_000;
    this.authorization = options.apiKey === undefined ? {} : { authorization: `Bearer ${options.apiKey}` };
  }

  private request<T>(method: string, path: string, body?: unknown, timeoutMs = this.timeoutMs): Promise<T> {
    return requestJson<T>(this.baseUrl, method, path, { headers: this.authorization, body, timeoutMs });
  }

  register(body: DagiRegistration): Promise<RegisterResponse> {
    return this.request('POST', '/api/v1/nodes/register', body);
  }

  introspect(payload: IntrospectionPayload | Record<string, unknown>): Promise<Record<string, unknown>> {
    return this.request('POST', '/api/v1/introspection', payload);
  }

  /**
   * One OnexEnvelopeV1 (NODE_INTROSPECTION, NODE_HEARTBEAT or NODE_TOMBSTONE), signed or not, applied
   * as the event intake applies it. A heartbeat for a node the registry does not hold is refused with
   * NODE_NOT_FOUND or REGISTRATION_REQUIRED: announce again.
   */
  publishEvent(event: Envelope): Promise<EventResponse> {
    return this.request('POST', '/api/v1/events', event);
  }

  /** Exchanges a join token and a PEM CSR for an SVID. */
  issueSvid(body: { token: string; csr: string; node_id: string; node_type?: string }): Promise<SvidDocument> {
    return this.request('POST', '/api/v1/identity/svid', body);
  }

  /** Renews an SVID: the current certificate and a CSR of its key, or of a new key with `proof` (the CSR's DER signed by the current key, base64). */
  renewSvid(body: { certificate: string; csr: string; proof?: string }): Promise<SvidDocument> {
    return this.request('POST', '/api/v1/identity/svid/renew', body);
  }

  heartbeat(body: { node_id: string; namespace?: string; incarnation?: number; health_status?: string; metrics?: JsonObject }): Promise<{ lease_expires_at: string }> {
    return this.request('POST', '/api/v1/nodes/heartbeat', body);
  }

  deregister(nodeId: string, options: { namespace?: string; reason?: string; incarnation?: number } = {}): Promise<{ status: string; changed: boolean }> {
    const query = new URLSearchParams();
    if (options.namespace) query.set('namespace', options.namespace);
    if (options.reason) query.set('reason', options.reason);
    if (options.incarnation !== undefined) query.set('incarnation', String(options.incarnation));
    return this.request('DELETE', `/api/v1/nodes/${encodeURIComponent(nodeId)}?${query.toString()}`);
  }

  getNode(nodeId: string, namespace?: string): Promise<PresentedNode> {
    const query = namespace ? `?namespace=${encodeURIComponent(namespace)}` : '';
    return this.request('GET', `/api/v1/nodes/${encodeURIComponent(nodeId)}${query}`);
  }

  listNodes(query: ListNodesQuery = {}): Promise<NodeList> {
    const params = new URLSearchParams();
    if (query.namespace) params.set('namespace', query.namespace);
    if (query.role) params.set('role', query.role);
    if (query.node_type) params.set('node_type', query.node_type);
    if (query.labels?.length) params.set('label', query.labels.join(','));
    if (query.status?.length) params.set('status', query.status.join(','));
    if (query.capability) params.set('capability', JSON.stringify(query.capability));
    if (query.version) params.set('version', query.version);
    if (query.limit !== undefined) params.set('limit', String(query.limit));
    if (query.cursor) params.set('cursor', query.cursor);
    return this.request('GET', `/api/v1/nodes?${params.toString()}`);
  }

  /** Every page of a query. */
  async listAllNodes(query: Omit<ListNodesQuery, 'cursor'> = {}): Promise<PresentedNode[]> {
    const nodes: PresentedNode[] = [];
    let cursor: string | undefined;
    do {
      const page = await this.listNodes({ ...query, limit: query.limit ?? 1000, ...(cursor ? { cursor } : {}) });
      nodes.push(...page.nodes);
      cursor = page.next_cursor ?? undefined;
    } while (cursor);
    return nodes;
  }

  topology(namespace?: string): Promise<{ version: number; count: number; nodes: PresentedNode[] }> {
    return this.request('GET', `/api/v1/topology${namespace ? `?namespace=${encodeURIComponent(namespace)}` : ''}`);
  }

  changes(since: number, options: { waitMs?: number; namespace?: string } = {}): Promise<{ version: number; changes: TopologyChange[] }> {
    const params = new URLSearchParams({ since: String(since) });
    if (options.waitMs) params.set('wait', `${options.waitMs}ms`);
    if (options.namespace) params.set('namespace', options.namespace);
    return this.request('GET', `/api/v1/topology/changes?${params.toString()}`, undefined, this.timeoutMs + (options.waitMs ?? 0));
  }

  health(): Promise<Record<string, unknown>> {
    return this.request('GET', '/health');
  }
}
