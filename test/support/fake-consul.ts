// A recording stand-in for the Consul agent API, with fault injection: it answers, fails (500),
// hangs, or is unreachable (closed), and a hook can act between taking a request and answering it.
// It keeps services per Consul Enterprise namespace (the `ns` parameter; none means `default`).
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import { ClosableServer } from './closable-server.js';

export interface Recorded {
  method: string;
  /** The request target, query included. */
  path: string;
  /** The path without the query. */
  pathname: string;
  /** The `ns` query parameter (Consul Enterprise namespace), when sent. */
  ns: string | undefined;
  token: string | undefined;
  body: unknown;
  at: number;
}

export interface FakeService {
  ID: string;
  Service: string;
  Tags: string[];
  Meta: Record<string, string>;
  Address: string;
  Port: number;
}

export type FakeConsulMode = 'ok' | 'error' | 'hang';

interface FakeNamespace {
  services: Map<string, FakeService>;
  passes: Map<string, number>;
}

export class FakeConsul {
  readonly requests: Recorded[] = [];
  private readonly namespaces = new Map<string, FakeNamespace>();
  mode: FakeConsulMode = 'ok';
  /** Runs after a request took effect and before it is answered (a fault injected mid-saga). */
  beforeAnswer: ((request: Recorded) => Promise<void> | void) | null = null;
  private readonly endpoint = new ClosableServer(() => createServer((request, response) => void this.handle(request, response)));

  private namespace(name: string): FakeNamespace {
    let found = this.namespaces.get(name);
    if (!found) {
      found = { services: new Map(), passes: new Map() };
      this.namespaces.set(name, found);
    }
    return found;
  }

  /** The services of the `default` namespace (all of them unless `ns` is sent). */
  get services(): Map<string, FakeService> {
    return this.namespace('default').services;
  }

  /** TTL passes by check id in the `default` namespace. */
  get passes(): Map<string, number> {
    return this.namespace('default').passes;
  }

  servicesIn(namespace: string): Map<string, FakeService> {
    return this.namespace(namespace).services;
  }

  passesIn(namespace: string): Map<string, number> {
    return this.namespace(namespace).passes;
  }

  get port(): number {
    return this.endpoint.port;
  }

  get url(): string {
    return `http://127.0.0.1:${this.port}`;
  }

  listen(): Promise<void> {
    return this.endpoint.listen();
  }

  /** Unreachable: the port refuses connections until listen() again. */
  close(): Promise<void> {
    return this.endpoint.close();
  }

  private async handle(request: IncomingMessage, response: ServerResponse): Promise<void> {
    let text = '';
    for await (const chunk of request) text += String(chunk);
    const path = request.url ?? '';
    const url = new URL(path, 'http://consul');
    const token = request.headers['x-consul-token'];
    const recorded: Recorded = {
      method: request.method ?? '',
      path,
      pathname: url.pathname,
      ns: url.searchParams.get('ns') ?? undefined,
      token: typeof token === 'string' ? token : undefined,
      body: text ? JSON.parse(text) : null,
      at: Date.now(),
    };
    this.requests.push(recorded);
    if (this.mode === 'hang') return;
    if (this.mode === 'error') {
      response.writeHead(500).end('rpc error: No cluster leader');
      return;
    }
    const [status, body] = this.answer(recorded.method, recorded.pathname, text, this.namespace(recorded.ns ?? 'default'));
    if (this.beforeAnswer) await this.beforeAnswer(recorded);
    response.writeHead(status, { 'content-type': 'application/json' }).end(body === null ? '' : JSON.stringify(body));
  }

  private answer(method: string, pathname: string, text: string, { services, passes }: FakeNamespace): [number, unknown] {
    if (method === 'PUT' && pathname === '/v1/agent/service/register') {
      const def = JSON.parse(text) as { ID: string; Name: string; Tags: string[]; Meta: Record<string, string>; Address: string; Port: number };
      services.set(def.ID, { ID: def.ID, Service: def.Name, Tags: def.Tags, Meta: def.Meta, Address: def.Address, Port: def.Port });
      return [200, null];
    }
    if (method === 'PUT' && pathname.startsWith('/v1/agent/service/deregister/')) {
      const id = decodeURIComponent(pathname.slice('/v1/agent/service/deregister/'.length));
      return services.delete(id) ? [200, null] : [404, `Unknown service ID "${id}"`];
    }
    if (method === 'PUT' && pathname.startsWith('/v1/agent/check/pass/')) {
      const checkId = decodeURIComponent(pathname.slice('/v1/agent/check/pass/'.length));
      if (!services.has(checkId.replace(/^service:/, ''))) return [404, `Unknown check ID "${checkId}"`];
      passes.set(checkId, (passes.get(checkId) ?? 0) + 1);
      return [200, null];
    }
    if (method === 'GET' && pathname === '/v1/agent/services') return [200, Object.fromEntries(services)];
    return [404, 'no such endpoint'];
  }

  registrationsOf(id: string): Array<Record<string, unknown>> {
    return this.requests.filter((r) => r.pathname === '/v1/agent/service/register' && (r.body as { ID?: string } | null)?.ID === id).map((r) => r.body as Record<string, unknown>);
  }

  deregistrationsOf(id: string): number {
    return this.requests.filter((r) => r.pathname === `/v1/agent/service/deregister/${encodeURIComponent(id)}`).length;
  }

  /** The register and deregister calls about service `id`, in order: 'register' or 'deregister'. */
  writesOf(id: string): Array<'register' | 'deregister'> {
    const writes: Array<'register' | 'deregister'> = [];
    for (const r of this.requests) {
      if (r.pathname === '/v1/agent/service/register' && (r.body as { ID?: string } | null)?.ID === id) writes.push('register');
      else if (r.pathname === `/v1/agent/service/deregister/${encodeURIComponent(id)}`) writes.push('deregister');
    }
    return writes;
  }
}
