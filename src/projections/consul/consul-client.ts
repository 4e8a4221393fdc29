// A small client of the Consul agent HTTP API: the four calls the Consul sink makes, with Consul's
// documented field names, an ACL token header, a Consul Enterprise namespace (`ns`) when asked for,
// and a timeout on every request.

/** A health check of a service registration (the agent API's `Check` object). */
export interface ConsulCheckDefinition {
  CheckID?: string;
  Name?: string;
  TTL?: string;
  HTTP?: string;
  Interval?: string;
  Timeout?: string;
  /** Initial status; Consul starts TTL checks critical unless told otherwise. */
  Status?: 'passing' | 'warning' | 'critical';
  DeregisterCriticalServiceAfter?: string;
}

/** Body of `PUT /v1/agent/service/register`. */
export interface ConsulServiceRegistration {
  Name: string;
  ID: string;
  Tags: string[];
  Address: string;
  Port: number;
  Meta: Record<string, string>;
  Check?: ConsulCheckDefinition;
}

/** One entry of `GET /v1/agent/services` (the fields the sink reads). */
export interface ConsulAgentService {
  ID: string;
  Service: string;
  Tags?: string[] | null;
  Meta?: Record<string, string> | null;
  Address?: string;
  Port?: number;
}

/** A failed Consul call: `transient` ones (unreachable, timeout, 5xx, 429) are worth retrying. */
export class ConsulRequestError extends Error {
  constructor(
    message: string,
    readonly operation: string,
    readonly status: number | null,
    readonly transient: boolean,
    options: { cause?: unknown } = {},
  ) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.name = 'ConsulRequestError';
  }

  /** Consul's answer for an unknown service or check id (404, or 500 "Unknown check" from older agents). */
  get notFound(): boolean {
    return this.status === 404 || (this.status === 500 && /unknown (check|service)|does not have associated TTL/i.test(this.message));
  }
}

export interface ConsulClientOptions {
  /** `http(s)://host:port` or `host:port` (http). */
  address: string;
  token?: string | undefined;
  timeoutMs?: number;
}

/** Normalises `CONSUL_HTTP_ADDR` forms (`host:port`, `http://…`, `https://…`) to a base URL. */
export function consulBaseUrl(address: string): string {
  const withScheme = /^[a-z][a-z0-9+.-]*:\/\//i.test(address) ? address : `http://${address}`;
  const url = new URL(withScheme);
  if (url.protocol !== 'http:' && url.protocol !== 'https:') throw new Error(`Consul address must be http or https, got ${url.protocol}`);
  return `${url.protocol}//${url.host}`;
}

export class ConsulClient {
  readonly baseUrl: string;
  private readonly token: string | undefined;
  private readonly timeoutMs: number;

  constructor(options: ConsulClientOptions) {
    this.baseUrl = consulBaseUrl(options.address);
    this.token = options.token === '' ? undefined : options.token;
    this.timeoutMs = options.timeoutMs ?? 5000;
  }

  /** `namespace`: the Consul Enterprise namespace (`ns`); none sends no `ns`, as open-source Consul wants. */
  async register(service: ConsulServiceRegistration, namespace?: string): Promise<void> {
    await this.request('register', 'PUT', withQuery('/v1/agent/service/register', { ns: namespace }), service);
  }

  async deregister(serviceId: string, namespace?: string): Promise<void> {
    await this.request('deregister', 'PUT', withQuery(`/v1/agent/service/deregister/${encodeURIComponent(serviceId)}`, { ns: namespace }));
  }

  async passCheck(checkId: string, options: { note?: string; namespace?: string } = {}): Promise<void> {
    await this.request('pass', 'PUT', withQuery(`/v1/agent/check/pass/${encodeURIComponent(checkId)}`, { note: options.note, ns: options.namespace }));
  }

  /** The agent's services (of one Consul Enterprise namespace when `namespace` is given). */
  async services(namespace?: string): Promise<Record<string, ConsulAgentService>> {
    const body = await this.request('services', 'GET', withQuery('/v1/agent/services', { ns: namespace }));
    return (body ?? {}) as Record<string, ConsulAgentService>;
  }

  private async request(operation: string, method: string, path: string, body?: unknown): Promise<unknown> {
    const headers: Record<string, string> = { accept: 'application/json' };
    if (this.token !== undefined) headers['x-consul-token'] = this.token;
    if (body !== undefined) headers['content-type'] = 'application/json';
    let response: Response;
    try {
      response = await fetch(`${this.baseUrl}${path}`, {
        method,
        headers,
        ...(body !== undefined ? { body: JSON.stringify(body) } : {}),
        signal: AbortSignal.timeout(this.timeoutMs),
      });
    } catch (cause) {
      const timedOut = (cause as Error).name === 'TimeoutError';
      const reason = timedOut ? `timed out after ${this.timeoutMs} ms` : describeFetchError(cause);
      throw new ConsulRequestError(`Consul ${operation} failed: ${reason}`, operation, null, true, { cause });
    }
    let text: string;
    try {
      text = await response.text();
    } catch (cause) {
      throw new ConsulRequestError(`Consul ${operation} failed reading the answer: ${describeFetchError(cause)}`, operation, response.status, true, { cause });
    }
    if (!response.ok) {
      const transient = response.status >= 500 || response.status === 429;
      throw new ConsulRequestError(`Consul ${operation} answered ${response.status}: ${text.slice(0, 200)}`, operation, response.status, transient);
    }
    if (text === '') return null;
    try {
      return JSON.parse(text) as unknown;
    } catch {
      return text;
    }
  }
}

function withQuery(path: string, parameters: Record<string, string | undefined>): string {
  const query = new URLSearchParams();
  for (const [name, value] of Object.entries(parameters)) if (value !== undefined) query.set(name, value);
  const text = query.toString();
  return text === '' ? path : `${path}?${text}`;
}

function describeFetchError(cause: unknown): string {
  const error = cause as Error & { cause?: { code?: string; message?: string } };
  return error.cause?.code ?? error.cause?.message ?? error.message;
}
