// A Consul-compatible subset of the HTTP API served from the live view: agent service register,
// deregister and TTL check updates, agent/catalog/health reads, and blocking queries per service (or
// per namespace for the lists of every service).
import { setMaxListeners } from 'node:events';
import { Type } from '@sinclair/typebox';
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import type { Logger } from 'pino';
import { RollcallError } from '../../domain/errors.js';
import type { JsonObject } from '../../domain/json.js';
import { nodeKey, type NodeRecord } from '../../domain/node.js';
import { NAMESPACE_PATTERN } from '../../domain/schemas.js';
import type { Registry } from '../../engine/registry.js';
import type { NodeEvents } from '../../intake/node-events.js';
import type { MetricsRegistry } from '../../metrics.js';
import {
  CHECK_STATUSES,
  agentServiceOf,
  catalogEntryOf,
  consulMetadataOf,
  dueForReaping,
  goDurationMs,
  healthEntryOf,
  healthOfStatus,
  instanceOf,
  parseFilter,
  parseServiceDefinition,
  registrationOf,
  ttlCheckOf,
  type CheckStatus,
  type ConsulInstance,
  type FilterPredicate,
} from './consul-model.js';
import { ConsulCheckRunner } from './consul-checks.js';
import { ConsulIndex, namespaceKey, serviceKey } from './consul-index.js';
import * as params from '../query-params.js';
import { fieldsOf, stringOf, writerOf, type NodeWriteDeclaration } from '../auth.js';

export interface ConsulRouteOptions {
  /** Reads, and this agent's own upkeep (lease renewals of held services, the reaper). */
  registry: Registry;
  /** The agent writes (service register and deregister, check updates) go through the intake seam, as their writer. */
  nodes: NodeEvents;
  /** The server's metrics registry, handed in by the composition root. */
  metrics: MetricsRegistry;
  /** Node name of this instance as a Consul agent. */
  agentNode: string;
  defaultNamespace: string;
  defaultLeaseTtlMs: number;
  /** Datacenter name in answers (Consul's default: dc1). */
  datacenter?: string;
  /** How often services critical past their DeregisterCriticalServiceAfter are looked for (Consul: 30 s). */
  reapIntervalMs?: number;
  /** The shortest DeregisterCriticalServiceAfter honoured; shorter ones wait this long (Consul: 1 minute). */
  deregisterCriticalMinMs?: number;
}

/** Consul's blocking-query limits: wait defaults to 5 minutes and is capped at 10. */
const DEFAULT_WAIT_MS = 5 * 60_000;
const MAX_WAIT_MS = 10 * 60_000;
const MAX_OUTPUTS = 100_000;

const AGENT_FIELDS = ['Kind', 'ID', 'Service', 'Tags', 'Meta', 'Port', 'Address', 'TaggedAddresses', 'Weights', 'EnableTagOverride', 'Datacenter', 'Namespace'] as const;
const CATALOG_FIELDS = [
  'ID',
  'Node',
  'Address',
  'Datacenter',
  'TaggedAddresses',
  'NodeMeta',
  'ServiceKind',
  'ServiceID',
  'ServiceName',
  'ServiceTags',
  'ServiceAddress',
  'ServiceTaggedAddresses',
  'ServiceWeights',
  'ServiceMeta',
  'ServicePort',
  'ServiceEnableTagOverride',
  'Namespace',
  'CreateIndex',
  'ModifyIndex',
] as const;
const HEALTH_FIELDS = ['Node', 'Service', 'Checks'] as const;

const IdParams = Type.Object({ id: Type.String({ minLength: 1, maxLength: 512 }) });
const NameParams = Type.Object({ name: Type.String({ minLength: 1, maxLength: 512 }) });
const CHECK_ACTIONS = { pass: 'passing', warn: 'warning', fail: 'critical' } as const satisfies Record<string, CheckStatus>;

/** The node each agent write names (node binding): the service definition's, the path's, or the check's, found by the route. */
const NODE_WRITES = {
  register: {
    enforced: true,
    target: (request) => {
      if (request.body === undefined || request.body === null) return null;
      const definition = parseServiceDefinition(request.body);
      return { namespace: stringOf(fieldsOf(request.query).ns), node_id: definition.ID, node_type: definition.Name };
    },
  },
  deregister: {
    enforced: true,
    target: (request) => ({ namespace: stringOf(fieldsOf(request.query).ns), node_id: stringOf(fieldsOf(request.params).id) }),
  },
  // A check update names a check: the route finds its node and asks `request.assertNodeWrite`.
  check: { enforced: true, target: 'handler' },
} satisfies Record<string, NodeWriteDeclaration>;

function invalidQuery(parameter: string, message: string): RollcallError {
  return new RollcallError('VALIDATION_FAILED', `Query parameter ${parameter} ${message}.`, { details: { parameter } });
}

/** `?passing`, `?passing=true|1` filter; `?passing=false|0` does not. */
function flag(query: params.Query, name: string): boolean {
  const value = params.single(query, name);
  if (value === undefined) return false;
  if (value === '' || value === 'true' || value === '1') return true;
  if (value === 'false' || value === '0') return false;
  throw invalidQuery(name, 'must be true or false');
}

export async function consulRoutes(app: FastifyInstance, options: ConsulRouteOptions): Promise<void> {
  const { registry, nodes } = options;
  const datacenter = options.datacenter ?? 'dc1';
  const namespacePattern = new RegExp(NAMESPACE_PATTERN);
  /** Services registered here without a TTL check: this agent keeps their leases, as Consul's agent keeps its services. */
  const held = new Set<string>();
  /** Latest `note`/Output of a check update, per node (this instance's memory only). */
  const outputs = new Map<string, string>();

  const checks = new ConsulCheckRunner({
    registry,
    agentNode: options.agentNode,
    logger: app.log as unknown as Logger,
    onResult: (namespace, nodeId, result) => {
      const key = nodeKey(namespace, nodeId);
      if (outputs.size >= MAX_OUTPUTS && !outputs.has(key)) outputs.clear();
      outputs.set(key, result.output);
    },
  });
  app.addHook('onClose', (_instance, done) => {
    checks.close();
    done();
  });
  /** Drops what this agent keeps of a service that left. */
  const forget = (key: string): void => {
    checks.stop(key);
    held.delete(key);
    outputs.delete(key);
  };

  // Consul clients send JSON bodies with any content type, or none: parse every body here as JSON.
  app.removeAllContentTypeParsers();
  app.addContentTypeParser('*', { parseAs: 'string' }, (_request, body, done) => {
    const text = (body as string).trim();
    if (text === '') return done(null, undefined);
    try {
      done(null, JSON.parse(text));
    } catch (error) {
      done(new RollcallError('MALFORMED_JSON', `The body is not valid JSON: ${(error as Error).message}`), undefined);
    }
  });

  const indexes = new ConsulIndex(registry.view, { metrics: options.metrics });
  app.addHook('onClose', (_instance, done) => {
    indexes.close();
    done();
  });

  const shutdown = new AbortController();
  // Every parked blocking query listens for shutdown: thousands of watchers are normal.
  setMaxListeners(0, shutdown.signal);
  app.addHook('preClose', (done) => {
    shutdown.abort();
    done();
  });

  // Leases of held services are renewed at a third of their TTL; a service that went away is let go.
  const renewer = setInterval(
    () => {
      for (const key of held) {
        const [namespace, nodeId] = key.split('\u0000') as [string, string];
        try {
          const renewed = registry.heartbeat({ namespace, node_id: nodeId });
          if (renewed instanceof Promise) renewed.catch(() => held.delete(key));
        } catch {
          held.delete(key);
        }
      }
    },
    Math.max(1000, Math.floor(options.defaultLeaseTtlMs / 3)),
  );
  renewer.unref();
  app.addHook('onClose', (_instance, done) => {
    clearInterval(renewer);
    done();
  });
  // The reaper: services whose check stayed critical past their DeregisterCriticalServiceAfter are
  // deregistered, as Consul's agent does. Every instance looks; a second deregistration is a no-op.
  const minimumMs = options.deregisterCriticalMinMs ?? 60_000;
  let reaping = false;
  const reap = async (): Promise<void> => {
    if (reaping) return;
    reaping = true;
    try {
      const now = Date.now();
      for (const node of registry.list({ status: ['online', 'offline'], limit: Number.MAX_SAFE_INTEGER }).nodes) {
        if (!dueForReaping(node, now, minimumMs)) continue;
        try {
          await registry.deregister(node.namespace, node.node_id, 'deregister_critical_service');
          forget(nodeKey(node.namespace, node.node_id));
        } catch (err) {
          app.log.warn({ err, namespace: node.namespace, node_id: node.node_id }, 'could not deregister a critical Consul service; trying again');
        }
      }
    } finally {
      reaping = false;
    }
  };
  const reaper = setInterval(() => void reap(), options.reapIntervalMs ?? 30_000);
  reaper.unref();
  app.addHook('onClose', (_instance, done) => {
    clearInterval(reaper);
    done();
  });

  app.addHook('onReady', (done) => {
    // After a restart this agent takes its held services back.
    for (const node of registry.list({ status: ['online'], limit: Number.MAX_SAFE_INTEGER }).nodes) {
      const consul = consulMetadataOf(node);
      if (consul && consul.agent === options.agentNode && !ttlCheckOf(consul.checks)) held.add(nodeKey(node.namespace, node.node_id));
      checks.sync(node);
    }
    done();
  });

  const namespaceOf = (query: params.Query): string => {
    const value = params.single(query, 'ns') ?? options.defaultNamespace;
    if (!namespacePattern.test(value)) throw invalidQuery('ns', 'must be a DNS label (a-z, 0-9, -)');
    return value;
  };

  const filterOf = (query: params.Query, fields: readonly string[]): FilterPredicate | null => {
    const text = params.single(query, 'filter');
    return text === undefined || text.trim() === '' ? null : parseFilter(text, fields);
  };

  /**
   * Waits as a Consul blocking query does: until the index of `key` (a service's or a namespace's)
   * passes `index`, or `wait` (+ jitter) ends; returns the index to answer with.
   */
  const block = async (request: FastifyRequest, key: string): Promise<number> => {
    const query = request.query as params.Query;
    const indexText = params.single(query, 'index');
    const waitText = params.single(query, 'wait');
    let waitMs = DEFAULT_WAIT_MS;
    if (waitText !== undefined && waitText !== '') {
      const parsed = goDurationMs(waitText);
      if (parsed === null) throw invalidQuery('wait', 'must be a duration such as 10s or 5m');
      waitMs = Math.min(parsed, MAX_WAIT_MS);
    }
    if (indexText === undefined || indexText === '') return indexes.indexOf(key);
    if (!/^\d{1,20}$/.test(indexText)) throw invalidQuery('index', 'must be a whole number');
    const index = Number(indexText);
    // Index 0 never blocks; an index ahead of ours (a replaced database) answers at once so the client
    // resets, and one behind it at once with the newer index: only the current index parks (and not
    // once shutdown has begun).
    if (index === 0 || index !== indexes.indexOf(key) || shutdown.signal.aborted) return indexes.indexOf(key);
    const closed = new AbortController();
    const abort = (): void => closed.abort();
    request.raw.once('close', abort);
    shutdown.signal.addEventListener('abort', abort, { once: true });
    try {
      await indexes.waitPast(key, index, waitMs + Math.random() * (waitMs / 16), closed.signal);
    } finally {
      request.raw.off('close', abort);
      shutdown.signal.removeEventListener('abort', abort);
    }
    return indexes.indexOf(key);
  };

  const answer = <T>(reply: FastifyReply, version: number, body: T): T => {
    void reply.headers({ 'x-consul-index': String(Math.max(1, version)), 'x-consul-knownleader': 'true', 'x-consul-lastcontact': '0' });
    return body;
  };

  const present = (namespace: string, nodeType?: string): ConsulInstance[] =>
    registry
      .list({ namespace, ...(nodeType === undefined ? {} : { node_type: nodeType }), limit: Number.MAX_SAFE_INTEGER })
      .nodes.filter((node) => node.status !== 'removed')
      .map(instanceOf);

  const tagged = (query: params.Query) => {
    const tags = query.tag === undefined ? [] : Array.isArray(query.tag) ? query.tag : [query.tag];
    return (instance: ConsulInstance): boolean => tags.every((tag) => instance.tags.includes(tag));
  };

  /** A check id as Consul names a service's checks (`service:<id>`, `service:<id>:<n>`) or a CheckID given at registration. */
  const nodeOfCheck = (namespace: string, checkId: string): NodeRecord => {
    const found = (id: string): NodeRecord | undefined => {
      const node = registry.view.get(namespace, id);
      return node && node.status !== 'removed' ? node : undefined;
    };
    let node: NodeRecord | undefined;
    if (checkId.startsWith('service:')) {
      const rest = checkId.slice('service:'.length);
      const numbered = /^(.*):\d+$/.exec(rest);
      node = found(rest) ?? (numbered ? found(numbered[1] as string) : undefined);
    }
    node ??= registry
      .list({ namespace, status: ['online', 'offline'], limit: Number.MAX_SAFE_INTEGER })
      .nodes.find((candidate) => consulMetadataOf(candidate)?.checks.some((check) => check.CheckID === checkId));
    if (!node) throw new RollcallError('NODE_NOT_FOUND', `Unknown check ID "${checkId}".`, { details: { check_id: checkId, namespace } });
    return node;
  };

  const updateCheck = async (request: FastifyRequest, namespace: string, checkId: string, status: CheckStatus, output: string): Promise<void> => {
    const node = nodeOfCheck(namespace, checkId);
    // The node is known only now: an SVID may update its own checks alone; enforce mode wants the node or an operator.
    request.assertNodeWrite?.({ namespace: node.namespace, node_id: node.node_id, node_type: node.node_type });
    const key = nodeKey(node.namespace, node.node_id);
    if (outputs.size >= MAX_OUTPUTS && !outputs.has(key)) outputs.clear();
    outputs.set(key, output);
    const health = healthOfStatus(status);
    const writer = writerOf(request);
    if (node.status === 'online') {
      await nodes.apply({ kind: 'heartbeat', heartbeat: { namespace: node.namespace, node_id: node.node_id, health_status: health, ...(output ? { status: output } : {}) } }, { writer });
      return;
    }
    // The TTL ran out (offline): an update brings the service back, as a TTL check recovers in Consul.
    const { status: _s, content_hash: _h, registered_at: _r, updated_at: _u, last_heartbeat: _l, removed_at: _ra, removal_reason: _rr, ...fields } = node;
    await nodes.apply({ kind: 'register', registration: { ...fields, health_status: health, reason: 'consul_check_update' } }, { writer });
  };

  app.put(
    '/v1/agent/service/register',
    {
      config: { nodeWrite: NODE_WRITES.register },
      schema: { tags: ['consul'], summary: "Consul: register a service (an ordinary rollcall node; a TTL check's TTL is its lease)." },
    },
    async (request, reply) => {
      const namespace = namespaceOf(request.query as params.Query);
      const definition = parseServiceDefinition(request.body);
      const existing = registry.view.get(namespace, definition.ID);
      const registration = registrationOf(definition, { namespace, agent: options.agentNode, defaultLeaseTtlMs: options.defaultLeaseTtlMs, existing });
      const { result: registered } = await nodes.apply({ kind: 'register', registration }, { writer: writerOf(request) });
      const key = nodeKey(namespace, definition.ID);
      if (ttlCheckOf(definition.Checks)) held.delete(key);
      else held.add(key);
      checks.sync(registered.node);
      return reply.code(200).send();
    },
  );

  app.put(
    '/v1/agent/service/deregister/:id',
    {
      config: { nodeWrite: NODE_WRITES.deregister },
      schema: { tags: ['consul'], summary: 'Consul: deregister a service (tombstone, manual_deregistration).', params: IdParams },
    },
    async (request, reply) => {
      const namespace = namespaceOf(request.query as params.Query);
      const { id } = request.params as { id: string };
      await nodes.apply({ kind: 'deregister', namespace, node_id: id, reason: 'manual_deregistration' }, { writer: writerOf(request) });
      forget(nodeKey(namespace, id));
      return reply.code(200).send();
    },
  );

  for (const [action, status] of Object.entries(CHECK_ACTIONS)) {
    app.put(
      `/v1/agent/check/${action}/:id`,
      {
        config: { nodeWrite: NODE_WRITES.check },
        schema: { tags: ['consul'], summary: `Consul: set a service's check to ${status} (renews a TTL lease); optional note.`, params: IdParams },
      },
      async (request, reply) => {
        const query = request.query as params.Query;
        await updateCheck(request, namespaceOf(query), (request.params as { id: string }).id, status, params.single(query, 'note') ?? '');
        return reply.code(200).send();
      },
    );
  }

  app.put(
    '/v1/agent/check/update/:id',
    {
      config: { nodeWrite: NODE_WRITES.check },
      schema: { tags: ['consul'], summary: "Consul: set a check's Status and Output from the body.", params: IdParams },
    },
    async (request, reply) => {
      const body = request.body as Record<string, unknown> | undefined;
      const status = body?.Status ?? body?.status;
      const output = body?.Output ?? body?.output ?? '';
      if (typeof status !== 'string' || !(CHECK_STATUSES as readonly string[]).includes(status)) {
        throw new RollcallError('VALIDATION_FAILED', `Status must be one of ${CHECK_STATUSES.join(', ')}.`, { details: { field: 'Status' } });
      }
      if (typeof output !== 'string') throw new RollcallError('VALIDATION_FAILED', 'Output must be a string.', { details: { field: 'Output' } });
      await updateCheck(request, namespaceOf(request.query as params.Query), (request.params as { id: string }).id, status as CheckStatus, output);
      return reply.code(200).send();
    },
  );

  app.get(
    '/v1/agent/services',
    {
      schema: { tags: ['consul'], summary: 'Consul: services by ID (every node of the namespace). Supports filter and blocking queries.' },
    },
    async (request, reply) => {
      const query = request.query as params.Query;
      const namespace = namespaceOf(query);
      const filter = filterOf(query, AGENT_FIELDS);
      const version = await block(request, namespaceKey(namespace));
      const services: Record<string, JsonObject> = {};
      for (const instance of present(namespace)) {
        const entry = agentServiceOf(instance, datacenter);
        if (!filter || filter(entry)) services[instance.id] = entry;
      }
      return answer(reply, version, services);
    },
  );

  app.get(
    '/v1/catalog/services',
    {
      schema: { tags: ['consul'], summary: 'Consul: service names with their tags. Supports filter (on catalog entries) and blocking queries.' },
    },
    async (request, reply) => {
      const query = request.query as params.Query;
      const namespace = namespaceOf(query);
      const filter = filterOf(query, CATALOG_FIELDS);
      const version = await block(request, namespaceKey(namespace));
      const services: Record<string, string[]> = {};
      for (const instance of present(namespace)) {
        if (filter && !filter(catalogEntryOf(instance, datacenter, version))) continue;
        const tags = (services[instance.service] ??= []);
        for (const tag of instance.tags) if (!tags.includes(tag)) tags.push(tag);
      }
      return answer(reply, version, services);
    },
  );

  app.get(
    '/v1/catalog/service/:name',
    {
      schema: { tags: ['consul'], summary: 'Consul: instances of a service. Supports tag, filter and blocking queries.', params: NameParams },
    },
    async (request, reply) => {
      const query = request.query as params.Query;
      const namespace = namespaceOf(query);
      const filter = filterOf(query, CATALOG_FIELDS);
      const { name } = request.params as { name: string };
      const version = await block(request, serviceKey(namespace, name));
      const entries = present(namespace, name)
        .filter(tagged(query))
        .map((instance) => catalogEntryOf(instance, datacenter, version))
        .filter((entry) => !filter || filter(entry));
      return answer(reply, version, entries);
    },
  );

  app.get(
    '/v1/health/service/:name',
    {
      schema: { tags: ['consul'], summary: 'Consul: instances of a service with their checks. Supports passing, tag, filter and blocking queries.', params: NameParams },
    },
    async (request, reply) => {
      const query = request.query as params.Query;
      const namespace = namespaceOf(query);
      const filter = filterOf(query, HEALTH_FIELDS);
      const passing = flag(query, 'passing');
      const { name } = request.params as { name: string };
      const version = await block(request, serviceKey(namespace, name));
      const entries = present(namespace, name)
        .filter(tagged(query))
        .filter((instance) => !passing || instance.status === 'passing')
        .map((instance) => healthEntryOf(instance, datacenter, version, outputs.get(nodeKey(instance.record.namespace, instance.id)) ?? ''))
        .filter((entry) => !filter || filter(entry));
      return answer(reply, version, entries);
    },
  );
}
