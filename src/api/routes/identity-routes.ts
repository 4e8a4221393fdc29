// The identity endpoints: trust bundle, join tokens, SVID issuance and renewal, revocations.
import { Type } from '@sinclair/typebox';
import type { FastifyInstance, FastifyRequest } from 'fastify';
import client from 'prom-client';
import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox';
import { RollcallError } from '../../domain/errors.js';
import { Namespace, NodeId, NodeType } from '../../domain/schemas.js';
import { MAX_JOIN_TOKEN_TTL_SECONDS } from '../../security/join-tokens.js';
import type { IdentityService } from '../../security/identity-service.js';
import type { AuditLog } from '../../security/audit.js';
import { metricOnce } from '../../metrics.js';

export interface IdentityRouteOptions {
  /** Null when no CA is configured: every identity endpoint answers CA_NOT_CONFIGURED. */
  identity: IdentityService | null;
  defaultNamespace: string;
  /** Refused exchanges and renewals are counted here (`rollcall_identity_refusals_total`). */
  metrics: client.Registry;
  /** Issuance, renewal, join tokens and revocations, allowed or refused, are recorded here. */
  audit?: AuditLog;
}

type IdentityAction = 'identity.svid' | 'identity.renew' | 'identity.token_create' | 'identity.revoke';

const Pem = Type.String({ minLength: 1, maxLength: 16 * 1024 });
const TokenBody = Type.Object(
  {
    namespace: Type.Optional(Namespace),
    node_type: NodeType,
    ttl_seconds: Type.Optional(Type.Integer({ minimum: 1, maximum: MAX_JOIN_TOKEN_TTL_SECONDS, description: 'Default 3600.' })),
    uses: Type.Optional(Type.Integer({ minimum: 1, maximum: 10_000, description: 'Default 1 (single use).' })),
  },
  { additionalProperties: false },
);
const SvidBody = Type.Object(
  {
    token: Type.String({ minLength: 1, maxLength: 200 }),
    csr: Pem,
    node_id: NodeId,
    node_type: Type.Optional(NodeType),
  },
  { additionalProperties: false },
);
const RenewBody = Type.Object(
  {
    certificate: Pem,
    csr: Pem,
    proof: Type.Optional(Type.String({ minLength: 1, maxLength: 512, description: 'base64 signature of the CSR DER by the current SVID key, when the CSR has a new key.' })),
  },
  { additionalProperties: false },
);
const RevocationBody = Type.Object(
  {
    serial: Type.Optional(Type.String({ minLength: 1, maxLength: 64, pattern: '^[0-9A-Fa-f]+$' })),
    spiffe_id: Type.Optional(Type.String({ minLength: 1, maxLength: 2048 })),
    reason: Type.Optional(Type.String({ minLength: 1, maxLength: 100, pattern: '^[A-Za-z0-9_.:-]+$' })),
  },
  { additionalProperties: false },
);

export function identityRoutes(app: FastifyInstance, options: IdentityRouteOptions): void {
  const api = app.withTypeProvider<TypeBoxTypeProvider>();
  const identity = (): IdentityService => {
    if (!options.identity) throw new RollcallError('CA_NOT_CONFIGURED', 'No CA is configured: run `rollcall ca init` and set caCertFile and caKeyFile.');
    return options.identity;
  };
  const refusals = metricOnce<client.Counter<'action' | 'code'>>(
    options.metrics,
    'rollcall_identity_refusals_total',
    () =>
      new client.Counter({
        name: 'rollcall_identity_refusals_total',
        help: 'Join-token exchanges and SVID renewals refused, by action and error code.',
        labelNames: ['action', 'code'],
        registers: [options.metrics],
      }),
  );
  /** The caller: its credential, else its address (a join token or an SVID is never written down). */
  const actorOf = (request: FastifyRequest): string => request.auth?.principal?.id ?? `address:${request.ip}`;
  /** Runs an identity operation and audits it, allowed or refused; refusals are counted too. */
  const audited = async <T>(
    request: FastifyRequest,
    action: IdentityAction,
    subject: { namespace?: string | null; node_id?: string | null; details?: Record<string, string | number | null> },
    run: () => Promise<T>,
    describe: (result: T) => Record<string, string | number | null>,
  ): Promise<T> => {
    try {
      const result = await run();
      options.audit?.record({
        actor: actorOf(request),
        action,
        namespace: subject.namespace ?? null,
        node_id: subject.node_id ?? null,
        decision: 'allowed',
        details: { ...subject.details, ...describe(result) },
      });
      return result;
    } catch (error) {
      if (error instanceof RollcallError && error.status < 500 && error.code !== 'CA_NOT_CONFIGURED') {
        refusals.inc({ action, code: error.code });
        options.audit?.record({
          actor: actorOf(request),
          action,
          namespace: subject.namespace ?? null,
          node_id: subject.node_id ?? null,
          decision: 'denied',
          reason: error.code,
          details: { ...subject.details, message: error.message },
        });
      }
      throw error;
    }
  };

  api.get(
    '/api/v1/identity/bundle',
    {
      config: { auth: 'public' },
      schema: { tags: ['identity'], summary: 'The trust bundle: the root CA certificate(s), PEM.' },
    },
    async (_request, reply) => reply.type('application/x-pem-file').send(identity().bundlePem),
  );

  api.post(
    '/api/v1/identity/tokens',
    {
      config: { auth: { scope: 'admin' } },
      schema: { tags: ['identity'], summary: 'Create a join token (admin); the token is shown once.', body: TokenBody },
    },
    async (request, reply) => {
      const body = request.body;
      const namespace = body.namespace ?? options.defaultNamespace;
      const created = await audited(
        request,
        'identity.token_create',
        { namespace, details: { node_type: body.node_type } },
        () =>
          identity().createJoinToken({
            namespace,
            nodeType: body.node_type,
            ...(body.ttl_seconds !== undefined ? { ttlSeconds: body.ttl_seconds } : {}),
            ...(body.uses !== undefined ? { uses: body.uses } : {}),
          }),
        (result) => ({ expires_at: result.expires_at }),
      );
      return reply.code(201).header('cache-control', 'no-store').send(created);
    },
  );

  api.post(
    '/api/v1/identity/svid',
    {
      // The join token is the credential.
      config: { auth: 'public' },
      schema: { tags: ['identity'], summary: 'Exchange a join token and a PKCS#10 CSR for an X.509 SVID.', body: SvidBody },
    },
    async (request, reply) => {
      const body = request.body;
      const svid = await audited(
        request,
        'identity.svid',
        { node_id: body.node_id, details: { node_type: body.node_type ?? null } },
        () => identity().exchangeJoinToken({ token: body.token, csr: body.csr, nodeId: body.node_id, ...(body.node_type !== undefined ? { nodeType: body.node_type } : {}) }),
        (result) => ({ spiffe_id: result.spiffe_id, serial: result.serial }),
      );
      return reply.code(201).send(svid);
    },
  );

  api.post(
    '/api/v1/identity/svid/renew',
    {
      // The current SVID is the credential.
      config: { auth: 'public' },
      schema: { tags: ['identity'], summary: 'Renew an SVID: the current SVID and a CSR with its key (or a new key and a proof signed by the current one).', body: RenewBody },
    },
    async (request, reply) => {
      const body = request.body;
      const svid = await audited(
        request,
        'identity.renew',
        {},
        () => identity().renew({ certificate: body.certificate, csr: body.csr, ...(body.proof !== undefined ? { proof: body.proof } : {}) }),
        (result) => ({ spiffe_id: result.spiffe_id, serial: result.serial }),
      );
      return reply.code(201).send(svid);
    },
  );

  api.post(
    '/api/v1/identity/revocations',
    {
      config: { auth: { scope: 'admin' } },
      schema: { tags: ['identity'], summary: 'Revoke certificates by serial or SPIFFE ID (admin).', body: RevocationBody },
    },
    async (request, reply) => {
      const body = request.body;
      const revocation = await audited(
        request,
        'identity.revoke',
        { details: { serial: body.serial ?? null, spiffe_id: body.spiffe_id ?? null, reason: body.reason ?? null } },
        () =>
          identity().revoke({
            ...(body.serial !== undefined ? { serial: body.serial } : {}),
            ...(body.spiffe_id !== undefined ? { spiffeId: body.spiffe_id } : {}),
            ...(body.reason !== undefined ? { reason: body.reason } : {}),
          }),
        () => ({}),
      );
      return reply.code(201).send(revocation);
    },
  );

  api.get(
    '/api/v1/identity/revocations',
    {
      config: { auth: { scope: 'nodes:read' } },
      schema: { tags: ['identity'], summary: 'Every revocation, oldest first.' },
    },
    async () => ({ revocations: await identity().listRevocations() }),
  );
}
