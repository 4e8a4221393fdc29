// Namespace administration: the CEL admission policy (versioned) and the node quotas.
import { Type } from '@sinclair/typebox';
import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox';
import type { FastifyInstance, FastifyRequest } from 'fastify';
import { RollcallError } from '../../domain/errors.js';
import { Namespace, NodeType } from '../../domain/schemas.js';
import { ANONYMOUS } from '../../security/audit.js';
import { POLICY_MAX_CHARS, type NamespaceAdmission } from '../../admission/policy.js';

export interface PolicyRouteOptions {
  admission: NamespaceAdmission;
}

const NamespaceParams = Type.Object({ ns: Namespace });
const PolicyBody = Type.Object(
  { expression: Type.String({ minLength: 1, maxLength: POLICY_MAX_CHARS, description: 'CEL over `node`, `identity` and `ns` that yields a bool; true admits.' }) },
  { additionalProperties: false },
);
const PolicyQuery = Type.Object({ version: Type.Optional(Type.String({ pattern: '^\\d{1,9}$' })) }, { additionalProperties: false });
const QuotaLimit = Type.Integer({ minimum: 0, maximum: 10_000_000 });
const QuotasBody = Type.Object(
  {
    max_nodes: Type.Optional(Type.Union([QuotaLimit, Type.Null()], { description: 'Nodes (online or offline) the namespace may hold; null or absent: no limit.' })),
    max_nodes_per_type: Type.Optional(Type.Record(NodeType, QuotaLimit, { description: 'Limits by node_type; types not listed are unlimited.' })),
  },
  { additionalProperties: false },
);

/** The caller's credential, as API authentication (src/api/auth.ts) leaves it on the request. */
function principalOf(request: FastifyRequest): { id: string | null; namespace: string } | null {
  return (request as unknown as { auth?: { principal?: { id: string | null; namespace: string } | null } | null }).auth?.principal ?? null;
}

/** Who is asking, for the audit log: the credential id, else 'anonymous'. */
export function requestActor(request: FastifyRequest): string {
  return principalOf(request)?.id ?? ANONYMOUS;
}

/** A credential of one namespace administers that namespace only. */
function assertNamespace(request: FastifyRequest, namespace: string): void {
  const own = principalOf(request)?.namespace;
  if (own === undefined || own === '*' || own === namespace) return;
  throw new RollcallError('FORBIDDEN_NAMESPACE', `This credential belongs to namespace ${own}; it cannot administer namespace ${namespace}.`, { details: { namespace, credential_namespace: own } });
}

const ADMIN = { auth: { scope: 'admin' as const } };

export function policyRoutes(app: FastifyInstance, options: PolicyRouteOptions): void {
  const api = app.withTypeProvider<TypeBoxTypeProvider>();
  const { admission } = options;
  const { store } = admission;

  api.get(
    '/api/v1/namespaces/:ns/policy',
    {
      config: ADMIN,
      schema: { tags: ['namespaces'], summary: "The namespace's current admission policy, or one version of it.", params: NamespaceParams, querystring: PolicyQuery },
    },
    async (request) => {
      assertNamespace(request, request.params.ns);
      const version = request.query.version === undefined ? undefined : Number(request.query.version);
      const policy = await store.getPolicy(request.params.ns, version);
      if (!policy) {
        throw new RollcallError('POLICY_NOT_FOUND', version === undefined ? `Namespace ${request.params.ns} has no policy.` : `Namespace ${request.params.ns} has no policy version ${version}.`, {
          details: { namespace: request.params.ns, ...(version === undefined ? {} : { version }) },
        });
      }
      return policy;
    },
  );

  api.put(
    '/api/v1/namespaces/:ns/policy',
    {
      config: ADMIN,
      schema: { tags: ['namespaces'], summary: "Save a new version of the namespace's admission policy (validated first).", params: NamespaceParams, body: PolicyBody },
    },
    async (request) => {
      assertNamespace(request, request.params.ns);
      return admission.savePolicy(request.params.ns, request.body.expression, requestActor(request));
    },
  );

  api.get(
    '/api/v1/namespaces/:ns/policy/versions',
    {
      config: ADMIN,
      schema: { tags: ['namespaces'], summary: "Every version of the namespace's policy, newest first.", params: NamespaceParams },
    },
    async (request) => {
      assertNamespace(request, request.params.ns);
      const versions = await store.listPolicyVersions(request.params.ns);
      return { namespace: request.params.ns, versions, count: versions.length };
    },
  );

  api.get(
    '/api/v1/namespaces/:ns/quotas',
    {
      config: ADMIN,
      schema: { tags: ['namespaces'], summary: "The namespace's node quotas.", params: NamespaceParams },
    },
    async (request) => {
      assertNamespace(request, request.params.ns);
      const quotas = await store.getQuotas(request.params.ns);
      return quotas ?? { namespace: request.params.ns, max_nodes: null, max_nodes_per_type: {}, updated_by: null, updated_at: null };
    },
  );

  api.put(
    '/api/v1/namespaces/:ns/quotas',
    {
      config: ADMIN,
      schema: { tags: ['namespaces'], summary: "Set the namespace's node quotas (in total and per node_type).", params: NamespaceParams, body: QuotasBody },
    },
    async (request) => {
      assertNamespace(request, request.params.ns);
      return admission.putQuotas({ namespace: request.params.ns, max_nodes: request.body.max_nodes ?? null, max_nodes_per_type: request.body.max_nodes_per_type ?? {} }, requestActor(request));
    },
  );
}
