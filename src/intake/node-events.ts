// The one seam every door writes nodes through: DAGI REST, introspection, events, the Consul agent
// API and the event bus hand it a parsed node event (a registration, a heartbeat or a deregistration)
// and who sent it; it checks the event's signature where the door carries signed envelopes, names the
// writer (the node its signature or its SVID proves, else the door's credential, else nobody), and
// writes through the engine, whose admission hook (policies, quotas) and audit trail see that writer.
// Doors only parse their wire shape, confine it to what the door allows, and map the result back.
import { RollcallError } from '../domain/errors.js';
import { eventKindOf, parseHeartbeatEvent, parseTombstoneEvent } from '../domain/events.js';
import { parseIntrospection } from '../domain/introspection.js';
import { DEFAULT_NAMESPACE, type Registration, type RegistrationDefaults } from '../domain/node.js';
import type { Envelope } from '../domain/schemas.js';
import type { AdmissionContext, DeregisterResult, HeartbeatInput, HeartbeatResult, RegisterResult, Registry } from '../engine/registry.js';
import type { ClaimedIdentity, IntrospectionVerifier, VerifiedIdentity, VerifyContext } from '../security/introspection-verifier.js';

/**
 * Who a door says sent the event: the principal its authentication established (API key, JWT, a
 * node's SVID over mTLS, the anonymous caller of an open registry), or null where the door
 * authenticates nobody (the event bus: there only a signature names the sender).
 */
export interface Writer {
  kind: 'api_key' | 'jwt' | 'svid' | 'anonymous';
  /** Key id, `jwt:<sub>`, the SPIFFE ID of an SVID, or null for the anonymous caller. */
  id: string | null;
}

/** A node event, parsed from whatever shape its door speaks. */
export type NodeEvent =
  | { kind: 'register'; registration: Registration }
  | { kind: 'heartbeat'; heartbeat: HeartbeatInput }
  | { kind: 'deregister'; namespace: string; node_id: string; node_type?: string | undefined; reason: string; incarnation?: number | undefined };

/** How an event came: who sent it and, at the doors of signed envelopes, the envelope to check. */
export interface Delivery {
  writer: Writer | null;
  /**
   * Present at doors that carry signed envelopes (introspection, events, the bus): the envelope (null:
   * a bare payload) is checked against the event's node before anything is written (signatureMode).
   */
  signed?: { envelope: Envelope | null } & VerifyContext;
}

/** What each kind of write comes to. */
interface Results {
  register: RegisterResult;
  heartbeat: HeartbeatResult;
  deregister: DeregisterResult;
}

/** What the write came to, and who it was written as; the door maps it to its answer. */
export type NodeEventResult<K extends NodeEvent['kind'] = NodeEvent['kind']> = { [Kind in K]: { kind: Kind; result: Results[Kind]; by: AdmissionContext } }[K];

export interface NodeEventsOptions {
  registry: Registry;
  /** Checks signed envelopes (signatureMode); absent: none checked. */
  verifier?: IntrospectionVerifier | undefined;
}

/**
 * The writer as the engine's admission hook and audit trail see it: a node that proved itself (a
 * verified signature, else its SVID over mTLS) is `identity` (audited as `node:<spiffe id>`, seen by
 * policies as `identity.spiffe_id`); any other credential is the actor; nobody is anonymous.
 */
export function writerContext(writer: Writer | null, verified: Pick<VerifiedIdentity, 'spiffeId'> | null = null): AdmissionContext {
  if (verified !== null) return { identity: { spiffeId: verified.spiffeId } };
  if (writer === null || writer.id === null) return {};
  if (writer.kind === 'svid') return { identity: { spiffeId: writer.id } };
  return { actor: writer.id };
}

/** The node an event names, as a signature must prove it. */
export function claimOf(event: NodeEvent): ClaimedIdentity {
  switch (event.kind) {
    case 'register':
      return { namespace: event.registration.namespace, node_id: event.registration.node_id, node_type: event.registration.node_type };
    case 'heartbeat':
      return { namespace: event.heartbeat.namespace, node_id: event.heartbeat.node_id };
    case 'deregister':
      return { namespace: event.namespace, node_id: event.node_id, node_type: event.node_type };
  }
}

/**
 * The node event an OnexEnvelopeV1 carries (introspection, heartbeat or tombstone), with `defaults`
 * for what it does not name (the namespace, the lease). Throws UNKNOWN_EVENT_TYPE for any other type.
 */
export function nodeEventOf(envelope: Envelope, defaults: RegistrationDefaults): NodeEvent {
  const namespaceOf = (named: string | undefined): string => named ?? defaults.namespace ?? DEFAULT_NAMESPACE;
  switch (eventKindOf(envelope.event_type)) {
    case 'introspection':
      return { kind: 'register', registration: parseIntrospection(envelope, defaults).registration };
    case 'heartbeat': {
      const heartbeat = parseHeartbeatEvent(envelope.payload);
      const input: HeartbeatInput = { namespace: namespaceOf(heartbeat.namespace), node_id: heartbeat.node_id };
      if (heartbeat.incarnation !== undefined) input.incarnation = heartbeat.incarnation;
      if (heartbeat.health_status !== undefined) input.health_status = heartbeat.health_status;
      if (heartbeat.status !== undefined) input.status = heartbeat.status;
      if (heartbeat.metrics !== undefined) input.metrics = heartbeat.metrics;
      return { kind: 'heartbeat', heartbeat: input };
    }
    case 'tombstone': {
      const tombstone = parseTombstoneEvent(envelope.payload);
      return {
        kind: 'deregister',
        namespace: namespaceOf(tombstone.namespace),
        node_id: tombstone.node_id,
        node_type: tombstone.node_type,
        reason: tombstone.removal_reason ?? 'graceful_shutdown',
        incarnation: tombstone.incarnation,
      };
    }
    default:
      throw new RollcallError('UNKNOWN_EVENT_TYPE', `Event type ${envelope.event_type} is not an introspection, heartbeat or tombstone.`, {
        details: { event_type: envelope.event_type },
      });
  }
}

export class NodeEvents {
  constructor(private readonly options: NodeEventsOptions) {}

  /** Verifies (where signed), admits and writes `event` as its writer; throws the RollcallError that refused it. */
  async apply<K extends NodeEvent['kind']>(event: Extract<NodeEvent, { kind: K }>, delivery: Delivery): Promise<NodeEventResult<K>> {
    const verified = await this.verify(event, delivery);
    const by = writerContext(delivery.writer, verified);
    try {
      return (await this.write(event, by)) as NodeEventResult<K>;
    } catch (error) {
      // The registry failed, not the sender: the same signed event may be sent again.
      if (delivery.signed && (!(error instanceof RollcallError) || error.status >= 500)) this.options.verifier?.forget(delivery.signed.envelope);
      throw error;
    }
  }

  private async verify(event: NodeEvent, delivery: Delivery): Promise<VerifiedIdentity | null> {
    const { verifier } = this.options;
    if (!delivery.signed || verifier === undefined || verifier.mode === 'off') return null;
    const { envelope, ...context } = delivery.signed;
    return verifier.verify(envelope, claimOf(event), context);
  }

  private async write(event: NodeEvent, by: AdmissionContext): Promise<NodeEventResult> {
    const { registry } = this.options;
    switch (event.kind) {
      case 'register':
        return { kind: 'register', result: await registry.register(event.registration, by), by };
      case 'heartbeat':
        return { kind: 'heartbeat', result: await registry.heartbeat(event.heartbeat, by), by };
      case 'deregister':
        return { kind: 'deregister', result: await registry.deregister(event.namespace, event.node_id, event.reason, event.incarnation, by), by };
    }
  }
}
