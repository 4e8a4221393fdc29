// POST /api/v1/events: one OnexEnvelopeV1 (introspection, heartbeat or tombstone) over HTTP, parsed,
// verified and applied as the event intake does for its kind, so a node without Kafka keeps the
// signatures of its heartbeats and tombstones (the plain REST calls carry none).
import { Type } from '@sinclair/typebox';
import type { FastifyInstance, FastifyRequest } from 'fastify';
import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox';
import { RollcallError } from '../../domain/errors.js';
import { eventKindOf, parseHeartbeatEvent, parseTombstoneEvent } from '../../domain/events.js';
import { parseIntrospection } from '../../domain/introspection.js';
import type { RegistrationDefaults } from '../../domain/node.js';
import { EnvelopeSchema, type Envelope } from '../../domain/schemas.js';
import type { HeartbeatInput, Registry } from '../../engine/registry.js';
import { admissionContext, credentialNamespace } from '../auth.js';
import { deregistrationAnswer, introspectionAnswer } from './node-routes.js';
import type { ClaimedIdentity, IntrospectionVerifier, VerifiedIdentity } from '../../security/introspection-verifier.js';

export interface EventRouteOptions {
  registry: Registry;
  defaultNamespace: string;
  defaultLeaseTtlMs: number;
  /** Checks signed envelopes (signatureMode); absent: none checked. */
  verifier?: IntrospectionVerifier;
}

const EventBody = Type.Object(EnvelopeSchema.properties, {
  additionalProperties: true,
  description: 'An OnexEnvelopeV1 of event_type NODE_INTROSPECTION, NODE_HEARTBEAT or NODE_TOMBSTONE, signed (security block) or not.',
});

export function eventRoutes(app: FastifyInstance, options: EventRouteOptions): void {
  const api = app.withTypeProvider<TypeBoxTypeProvider>();
  const { registry, verifier } = options;

  /** A namespaced credential acts in its own namespace: the default for events that name none, and the only one allowed. */
  const confine = (request: FastifyRequest, namespace: string): void => {
    const own = credentialNamespace(request);
    if (own !== null && namespace !== own) {
      throw new RollcallError('FORBIDDEN_NAMESPACE', `The credential is for namespace ${own}; it cannot act in namespace ${namespace}.`, { details: { namespace, credential_namespace: own } });
    }
  };
  const verify = async (event: Envelope, claim: ClaimedIdentity): Promise<VerifiedIdentity | null> =>
    verifier !== undefined && verifier.mode !== 'off' ? verifier.verify(event, claim, { source: 'http' }) : null;
  /** The write; when the registry fails (not the sender), the same signed event may be sent again. */
  const applying = async <T>(event: Envelope, write: T | Promise<T>): Promise<T> => {
    try {
      return await write;
    } catch (error) {
      if (!(error instanceof RollcallError) || error.status >= 500) verifier?.forget(event);
      throw error;
    }
  };
  api.post(
    '/api/v1/events',
    {
      config: { auth: { scope: 'nodes:write' } },
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
      const namespaceOf = (named: string | undefined): string => named ?? (defaults.namespace as string);
      const echo = { event_id: event.event_id, event_type: event.event_type, correlation_id: event.correlation_id ?? null };
      const kind = eventKindOf(event.event_type);
      switch (kind) {
        case 'introspection': {
          const started = performance.now();
          const { registration } = parseIntrospection(event, defaults);
          confine(request, registration.namespace);
          const verified = await verify(event, { namespace: registration.namespace, node_id: registration.node_id, node_type: registration.node_type });
          const result = await applying(event, registry.register(registration, admissionContext(request, verified)));
          return reply.code(result.outcome === 'added' ? 201 : 200).send({ ...introspectionAnswer(result, started, event), ...echo });
        }
        case 'heartbeat': {
          const heartbeat = parseHeartbeatEvent(event.payload);
          const namespace = namespaceOf(heartbeat.namespace);
          confine(request, namespace);
          await verify(event, { namespace, node_id: heartbeat.node_id });
          const input: HeartbeatInput = { namespace, node_id: heartbeat.node_id };
          if (heartbeat.incarnation !== undefined) input.incarnation = heartbeat.incarnation;
          if (heartbeat.health_status !== undefined) input.health_status = heartbeat.health_status;
          if (heartbeat.status !== undefined) input.status = heartbeat.status;
          if (heartbeat.metrics !== undefined) input.metrics = heartbeat.metrics;
          // NODE_NOT_FOUND and REGISTRATION_REQUIRED pass through as problems: the node announces again.
          const renewed = await applying(event, registry.heartbeat(input));
          return { ...renewed, ...echo };
        }
        case 'tombstone': {
          const tombstone = parseTombstoneEvent(event.payload);
          const namespace = namespaceOf(tombstone.namespace);
          confine(request, namespace);
          const verified = await verify(event, { namespace, node_id: tombstone.node_id, node_type: tombstone.node_type });
          const result = await applying(
            event,
            registry.deregister(namespace, tombstone.node_id, tombstone.removal_reason ?? 'graceful_shutdown', tombstone.incarnation, admissionContext(request, verified)),
          );
          return { ...deregistrationAnswer(result), ...echo };
        }
        default:
          throw new RollcallError('UNKNOWN_EVENT_TYPE', `Event type ${event.event_type} is not an introspection, heartbeat or tombstone.`, { details: { event_type: event.event_type } });
      }
    },
  );
}
