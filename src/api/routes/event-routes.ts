// POST /api/v1/events: one OnexEnvelopeV1 (introspection, heartbeat or tombstone) over HTTP, parsed,
// verified and applied as the event intake does for its kind, so a node without Kafka keeps the
// signatures of its heartbeats and tombstones (the plain REST calls carry none).
import { Type } from '@sinclair/typebox';
import type { FastifyInstance, FastifyRequest } from 'fastify';
import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox';
import { RollcallError } from '../../domain/errors.js';
import { isJsonObject } from '../../domain/json.js';
import type { RegistrationDefaults } from '../../domain/node.js';
import { EnvelopeSchema, type Envelope } from '../../domain/schemas.js';
import { claimOf, nodeEventOf, type NodeEvents } from '../../intake/node-events.js';
import { credentialNamespace, fieldsOf, stringOf, writerOf, type NodeWriteDeclaration } from '../auth.js';
import { deregistrationAnswer, introspectionAnswer } from './node-routes.js';

export interface EventRouteOptions {
  /** Every node write goes through the intake seam, as its writer (and the node its signature proves). */
  nodes: NodeEvents;
  defaultNamespace: string;
  defaultLeaseTtlMs: number;
}

const EventBody = Type.Object(EnvelopeSchema.properties, {
  additionalProperties: true,
  description: 'An OnexEnvelopeV1 of event_type NODE_INTROSPECTION, NODE_HEARTBEAT or NODE_TOMBSTONE, signed (security block) or not.',
});

/** Its signatures are checked by the intake, so enforce mode leaves it alone; an SVID still names only its node. */
const EVENT_WRITE: NodeWriteDeclaration = {
  enforced: false,
  target: (request, principal) => {
    const body = request.body;
    const payload = isJsonObject(body) ? body.payload : undefined;
    if (!isJsonObject(payload)) return null;
    const metadata = fieldsOf(payload.metadata);
    // An event naming no namespace is about the credential's own, as the route reads it.
    return { namespace: stringOf(payload.namespace) ?? stringOf(metadata.namespace) ?? principal.namespace, node_id: stringOf(payload.node_id), node_type: stringOf(payload.node_type) };
  },
};

export function eventRoutes(app: FastifyInstance, options: EventRouteOptions): void {
  const api = app.withTypeProvider<TypeBoxTypeProvider>();
  const { nodes } = options;

  /** A namespaced credential acts in its own namespace: the default for events that name none, and the only one allowed. */
  const confine = (request: FastifyRequest, namespace: string): void => {
    const own = credentialNamespace(request);
    if (own !== null && namespace !== own) {
      throw new RollcallError('FORBIDDEN_NAMESPACE', `The credential is for namespace ${own}; it cannot act in namespace ${namespace}.`, { details: { namespace, credential_namespace: own } });
    }
  };
  api.post(
    '/api/v1/events',
    {
      config: { auth: { scope: 'nodes:write' }, nodeWrite: EVENT_WRITE },
      schema: {
        tags: ['nodes'],
        summary: 'Accept one node event (introspection, heartbeat or tombstone) in an OnexEnvelopeV1, verified as on the event bus.',
        description:
          'Introspection: answered as POST /api/v1/introspection. Heartbeat: the renewed lease; 404 NODE_NOT_FOUND or 409 REGISTRATION_REQUIRED ' +
          'mean the node must announce itself again. Tombstone: the deregistration, as DELETE /api/v1/nodes/{node_id}. With signatureMode enforce, unsigned ' +
          "envelopes and envelopes signed for another node are refused with the verifier's codes.",
        body: EventBody,
      },
    },
    async (request, reply) => {
      const event: Envelope = request.body;
      const defaults: RegistrationDefaults = { namespace: credentialNamespace(request) ?? options.defaultNamespace, leaseTtlMs: options.defaultLeaseTtlMs };
      const echo = { event_id: event.event_id, event_type: event.event_type, correlation_id: event.correlation_id ?? null };
      const started = performance.now();
      const parsed = nodeEventOf(event, defaults);
      confine(request, claimOf(parsed).namespace);
      // NODE_NOT_FOUND and REGISTRATION_REQUIRED of a heartbeat pass through as problems: the node announces again.
      const applied = await nodes.apply(parsed, { writer: writerOf(request), signed: { envelope: event, source: 'http' } });
      switch (applied.kind) {
        case 'register':
          // Answered as POST /api/v1/introspection.
          return reply.code(applied.result.outcome === 'added' ? 201 : 200).send({ ...introspectionAnswer(applied.result, started, event), ...echo });
        case 'heartbeat':
          return { ...applied.result, ...echo };
        case 'deregister':
          return { ...deregistrationAnswer(applied.result), ...echo };
      }
    },
  );
}
