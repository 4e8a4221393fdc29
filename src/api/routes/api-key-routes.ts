// Administration of API keys: create (the key is in the answer, once), list (never the secret), revoke.
import { Type } from '@sinclair/typebox';
import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox';
import type { FastifyInstance, FastifyRequest } from 'fastify';
import { RollcallError } from '../../domain/errors.js';
import { ALL_NAMESPACES, API_KEY_SCOPES, createApiKey, presentApiKey, type ApiKeyRing } from '../../security/api-keys.js';
import type { ApiKeyStore } from '../../store/store.js';

export interface ApiKeyRouteOptions {
  store: ApiKeyStore;
  keys: ApiKeyRing;
  defaultNamespace: string;
}

const CreateBody = Type.Object(
  {
    scope: Type.Union(API_KEY_SCOPES.map((scope) => Type.Literal(scope))),
    namespace: Type.Optional(Type.String({ minLength: 1, maxLength: 63, description: "Namespace of the key (default: the caller's, or the default namespace); * for every namespace." })),
    name: Type.Optional(Type.String({ minLength: 1, maxLength: 200 })),
  },
  { additionalProperties: false },
);
const IdParams = Type.Object({ id: Type.String({ minLength: 1, maxLength: 64 }) });
const NoQuery = Type.Object({}, { additionalProperties: false });

/** The namespace the caller administers: `*` for an open registry or an all-namespace key. */
function callerNamespace(request: FastifyRequest): string {
  return request.auth?.principal?.namespace ?? ALL_NAMESPACES;
}

export function apiKeyRoutes(app: FastifyInstance, options: ApiKeyRouteOptions): void {
  const api = app.withTypeProvider<TypeBoxTypeProvider>();
  const { store, keys } = options;
  const notFound = (id: string): RollcallError => new RollcallError('API_KEY_NOT_FOUND', `No API key ${id}.`, { details: { id } });

  api.post(
    '/api/v1/admin/keys',
    {
      schema: { tags: ['admin'], summary: 'Create an API key; the key is returned once and stored only hashed.', body: CreateBody, querystring: NoQuery },
    },
    async (request, reply) => {
      const caller = callerNamespace(request);
      const namespace = request.body.namespace ?? (caller === ALL_NAMESPACES ? options.defaultNamespace : caller);
      if (caller !== ALL_NAMESPACES && namespace !== caller) {
        throw new RollcallError('FORBIDDEN_NAMESPACE', `The credential is for namespace ${caller}; it cannot create keys for ${namespace}.`, {
          details: { namespace, credential_namespace: caller },
        });
      }
      const created = await createApiKey(store, { scope: request.body.scope, namespace, name: request.body.name });
      keys.noteCreated();
      return reply.code(201).send({ ...presentApiKey(created.record), key: created.token });
    },
  );

  api.get(
    '/api/v1/admin/keys',
    {
      schema: { tags: ['admin'], summary: 'API keys (never their secrets), revoked ones included.', querystring: NoQuery },
    },
    async (request) => {
      const caller = callerNamespace(request);
      const all = await store.listApiKeys();
      const visible = all.filter((key) => caller === ALL_NAMESPACES || key.namespace === caller);
      return { keys: visible.map(presentApiKey), count: visible.length };
    },
  );

  api.delete(
    '/api/v1/admin/keys/:id',
    {
      schema: { tags: ['admin'], summary: 'Revoke an API key; it is refused from then on.', params: IdParams, querystring: NoQuery },
    },
    async (request) => {
      const caller = callerNamespace(request);
      const existing = await store.getApiKey(request.params.id);
      // A key of another namespace is as invisible as a missing one.
      if (!existing || (caller !== ALL_NAMESPACES && existing.namespace !== caller)) throw notFound(request.params.id);
      const revoked = await store.revokeApiKey(existing.id, Date.now());
      if (!revoked) throw notFound(request.params.id);
      keys.forget(revoked.id);
      return presentApiKey(revoked);
    },
  );
}
