// The node endpoints: DAGI register/heartbeat/list/get, introspection, deregistration, role profiles.
import { Type } from '@sinclair/typebox';
import type { FastifyInstance } from 'fastify';
import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox';
import { RollcallError } from '../../domain/errors.js';
import { isJsonObject } from '../../domain/json.js';
import { isEnvelope, parseIntrospection } from '../../domain/introspection.js';
import { checkDepth, fromDagi, type NodeRecord } from '../../domain/node.js';
import { DagiRegistrationSchema, HeartbeatSchema, NodeId, ProfileBodySchema, Reason, NodeType, type Envelope } from '../../domain/schemas.js';
import type { DeregisterResult, RegisterResult, Registry } from '../../engine/registry.js';
import type { NodeEvents } from '../../intake/node-events.js';
import type { ProfileStore } from '../../store/store.js';
import { credentialNamespace, fieldsOf, stringOf, writerOf, type NodeWriteDeclaration } from '../auth.js';
import * as params from '../query-params.js';

export interface NodeRouteOptions {
  /** Reads (lists, records, profiles). */
  registry: Registry;
  /** Role profiles, read and written by GET and PUT /api/v1/profiles. */
  profiles: ProfileStore;
  /** Every node write goes through the intake seam, as its writer. */
  nodes: NodeEvents;
  defaultNamespace: string;
  defaultLeaseTtlMs: number;
}

/** The node each write route writes (node binding), read from the request before validation. */
const NODE_WRITES = {
  register: {
    enforced: true,
    target: (request, principal) => {
      const body = request.body;
      if (!isJsonObject(body)) return null;
      // An SVID registers its own node: node_id and node_type default to its own, as the namespace does.
      if (principal.node) {
        body.node_id ??= principal.node.nodeId;
        body.node_type ??= principal.node.nodeType;
      }
      return { namespace: stringOf(body.namespace), node_id: stringOf(body.node_id), node_type: stringOf(body.node_type) };
    },
  },
  heartbeat: {
    enforced: true,
    target: (request) => (isJsonObject(request.body) ? { namespace: stringOf(request.body.namespace), node_id: stringOf(request.body.node_id) } : null),
  },
  deregister: {
    enforced: true,
    target: (request) => ({ namespace: stringOf(fieldsOf(request.query).namespace), node_id: stringOf(fieldsOf(request.params).node_id) }),
  },
  // Its signatures are checked by the intake, so enforce mode leaves it alone; an SVID still names only its node.
  introspection: {
    enforced: false,
    target: (request) => {
      const body = request.body;
      const payload = isJsonObject(body) && isEnvelope(body) ? body.payload : body;
      if (!isJsonObject(payload)) return null;
      const metadata = fieldsOf(payload.metadata);
      return { namespace: stringOf(payload.namespace) ?? stringOf(metadata.namespace), node_id: stringOf(payload.node_id), node_type: stringOf(payload.node_type) };
    },
  },
} satisfies Record<string, NodeWriteDeclaration>;

/** The answer to an accepted introspection (HTTP and signed events), with the event's ids when it came in an envelope. */
export function introspectionAnswer(result: RegisterResult, startedMs: number, envelope: Envelope | null): Record<string, unknown> {
  return {
    status: 'success',
    registered_node_id: result.node.node_id,
    namespace: result.node.namespace,
    outcome: result.outcome,
    topology_version: result.version,
    registration_time_ms: Math.round((performance.now() - startedMs) * 1000) / 1000,
    ...(envelope ? { event_id: envelope.event_id, correlation_id: envelope.correlation_id ?? null } : {}),
  };
}

/** The answer to a deregistration (DELETE and signed tombstones). */
export function deregistrationAnswer(result: DeregisterResult): Record<string, unknown> {
  return {
    node_id: result.node.node_id,
    namespace: result.node.namespace,
    status: result.node.status,
    reason: result.node.removal_reason,
    changed: result.change !== null,
    topology_version: result.version,
  };
}

/** A record as the API shows it: the stored fields plus when its lease runs out. */
export function presentNode(node: NodeRecord): NodeRecord & { lease_expires_at: string | null } {
  return {
    ...node,
    lease_expires_at: node.status === 'online' ? new Date(Date.parse(node.last_heartbeat) + node.lease_ttl_ms).toISOString() : null,
  };
}

const NodeIdParams = Type.Object({ node_id: NodeId });
const RoleParams = Type.Object({ role: NodeType });
const DeleteQuery = Type.Object(
  {
    reason: Type.Optional(Reason),
    namespace: Type.Optional(Type.String()),
    incarnation: Type.Optional(Type.String({ pattern: '^\\d{1,16}$' })),
  },
  { additionalProperties: false },
);
const NamespaceQuery = Type.Object({ namespace: Type.Optional(Type.String()) }, { additionalProperties: false });
const ListQuery = Type.Object(
  {
    role: Type.Optional(Type.String({ maxLength: 100 })),
    label: Type.Optional(Type.Union([Type.String(), Type.Array(Type.String())])),
    status: Type.Optional(Type.Union([Type.String(), Type.Array(Type.String())])),
    node_type: Type.Optional(Type.String({ maxLength: 100 })),
    namespace: Type.Optional(Type.String({ description: 'Namespace to list (default: the default namespace); * lists every namespace.' })),
    capability: Type.Optional(Type.String({ maxLength: 4096, description: 'JSON object matched by containment, e.g. {"gpu":true}' })),
    version: Type.Optional(Type.String({ description: 'A version or semver range the node_version must satisfy, e.g. >=1.2.0' })),
    limit: Type.Optional(Type.String({ description: 'Page size, 1 to 1000 (default 100)' })),
    cursor: Type.Optional(Type.String({ description: 'next_cursor of the previous page' })),
  },
  { additionalProperties: false },
);

export function nodeRoutes(app: FastifyInstance, options: NodeRouteOptions): void {
  const api = app.withTypeProvider<TypeBoxTypeProvider>();
  const { registry, nodes } = options;
  const defaults = { namespace: options.defaultNamespace, leaseTtlMs: options.defaultLeaseTtlMs };

  api.post(
    '/api/v1/nodes/register',
    {
      config: { nodeWrite: NODE_WRITES.register },
      schema: { tags: ['nodes'], summary: 'Register or update a node (DAGI shape); node_id is generated when absent.', body: DagiRegistrationSchema },
    },
    async (request, reply) => {
      const { result } = await nodes.apply({ kind: 'register', registration: fromDagi(request.body, defaults) }, { writer: writerOf(request) });
      const node = result.node;
      return reply.code(result.outcome === 'added' ? 201 : 200).send({
        node_id: node.node_id,
        namespace: node.namespace,
        status: node.status,
        outcome: result.outcome,
        incarnation: node.incarnation,
        topology_version: result.version,
        registered_at: node.registered_at,
        lease_expires_at: new Date(Date.parse(node.last_heartbeat) + node.lease_ttl_ms).toISOString(),
      });
    },
  );

  api.post(
    '/api/v1/nodes/heartbeat',
    {
      config: { nodeWrite: NODE_WRITES.heartbeat },
      schema: { tags: ['nodes'], summary: "Renew a node's lease.", body: HeartbeatSchema },
    },
    async (request) => {
      const body = request.body;
      const heartbeat = {
        namespace: body.namespace ?? options.defaultNamespace,
        node_id: body.node_id,
        ...(body.incarnation === undefined ? {} : { incarnation: body.incarnation }),
        ...(body.health_status === undefined ? {} : { health_status: body.health_status }),
        ...(body.status === undefined ? {} : { status: body.status }),
        ...(body.metrics === undefined ? {} : { metrics: body.metrics }),
      };
      return (await nodes.apply({ kind: 'heartbeat', heartbeat }, { writer: writerOf(request) })).result;
    },
  );

  api.post(
    '/api/v1/introspection',
    {
      config: { nodeWrite: NODE_WRITES.introspection },
      schema: {
        tags: ['nodes'],
        summary: 'Accept an OmniNode introspection, bare or in an OnexEnvelopeV1.',
        body: Type.Object({}, { additionalProperties: true, description: 'An introspection payload or an OnexEnvelopeV1 wrapping one.' }),
      },
    },
    async (request, reply) => {
      const started = performance.now();
      // A signed envelope without a namespace belongs to the credential's namespace (auth leaves its body as signed).
      const { registration, envelope } = parseIntrospection(request.body, { ...defaults, namespace: credentialNamespace(request) ?? defaults.namespace });
      // A signed envelope names its node: the intake checks it (signatureMode) and writes as that node.
      const { result } = await nodes.apply({ kind: 'register', registration }, { writer: writerOf(request), signed: { envelope, source: 'http' } });
      return reply.code(result.outcome === 'added' ? 201 : 200).send(introspectionAnswer(result, started, envelope));
    },
  );

  api.get(
    '/api/v1/nodes',
    {
      schema: { tags: ['nodes'], summary: 'List nodes by role, label, status, type, namespace, capability and version.', querystring: ListQuery },
    },
    async (request) => {
      const query = request.query as params.Query;
      const after = params.decodeCursor(query);
      // Like other namespaced registries: the default namespace unless asked, `*` for all of them.
      const namespace = params.single(query, 'namespace') === '*' ? undefined : params.namespace(query, options.defaultNamespace);
      const filter = {
        namespace,
        role: params.single(query, 'role'),
        node_type: params.single(query, 'node_type'),
        labels: params.list(query, 'label'),
        status: params.statuses(query),
        capability: params.jsonObject(query, 'capability'),
        version: params.versionRange(query, 'version'),
        after,
        limit: params.integer(query, 'limit', { min: 1, max: 1000, fallback: 100 }),
      };
      const page = registry.list(Object.fromEntries(Object.entries(filter).filter(([, value]) => value !== undefined)) as typeof filter);
      return {
        nodes: page.nodes.map(presentNode),
        count: page.nodes.length,
        next_cursor: page.next === null ? null : params.encodeCursor(page.next),
        topology_version: registry.view.version,
      };
    },
  );

  api.get(
    '/api/v1/nodes/:node_id',
    {
      schema: { tags: ['nodes'], summary: 'One node.', params: NodeIdParams, querystring: NamespaceQuery },
    },
    async (request) => {
      const namespace = params.namespace(request.query, options.defaultNamespace) as string;
      return presentNode(registry.get(namespace, request.params.node_id));
    },
  );

  api.delete(
    '/api/v1/nodes/:node_id',
    {
      config: { nodeWrite: NODE_WRITES.deregister },
      schema: { tags: ['nodes'], summary: 'Deregister a node (tombstone) with a reason.', params: NodeIdParams, querystring: DeleteQuery },
    },
    async (request) => {
      const query = request.query;
      const namespace = params.namespace(query, options.defaultNamespace) as string;
      const reason = query.reason ?? 'manual_deregistration';
      const incarnation = query.incarnation === undefined ? undefined : Number(query.incarnation);
      const { result } = await nodes.apply({ kind: 'deregister', namespace, node_id: request.params.node_id, reason, incarnation }, { writer: writerOf(request) });
      return deregistrationAnswer(result);
    },
  );

  api.get(
    '/api/v1/profiles/:role',
    {
      schema: { tags: ['profiles'], summary: 'The configuration profile of a role.', params: RoleParams, querystring: NamespaceQuery },
    },
    async (request) => {
      const namespace = params.namespace(request.query, options.defaultNamespace) as string;
      const profile = await options.profiles.getProfile(namespace, request.params.role);
      if (!profile) {
        throw new RollcallError('PROFILE_NOT_FOUND', `No profile for role ${request.params.role} in namespace ${namespace}.`, {
          details: { role: request.params.role, namespace },
        });
      }
      return profile;
    },
  );

  api.put(
    '/api/v1/profiles/:role',
    {
      // A role's profile is no node's: an SVID may not write it.
      config: { nodeWrite: 'none' },
      schema: { tags: ['profiles'], summary: 'Create or replace the configuration profile of a role.', params: RoleParams, querystring: NamespaceQuery, body: ProfileBodySchema },
    },
    async (request) => {
      const namespace = params.namespace(request.query, options.defaultNamespace) as string;
      checkDepth({ config: request.body.config });
      return options.profiles.putProfile(namespace, request.params.role, request.body.config, Date.now());
    },
  );
}
