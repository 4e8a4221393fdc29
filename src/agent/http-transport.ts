// The agent's HTTP transport, for nodes that do not speak Kafka. Signed envelopes go whole to
// POST /api/v1/events, so the registry verifies heartbeats and tombstones as it does introspections;
// unsigned ones become the plain REST calls (introspection, heartbeat, DELETE). HTTP has no push
// channel, so registry requests do not reach the node; the registry asks for a re-announcement by
// refusing a heartbeat instead.
import pino, { type Logger } from 'pino';
import { isRollcallError } from '../domain/errors.js';
import { isJsonObject } from '../domain/json.js';
import type { Envelope } from '../domain/schemas.js';
import { RollcallClient } from '../client/rollcall-client.js';
import type { AgentEventKind, AgentTransport, PublishOutcome } from './node-agent.js';

export interface HttpTransportOptions {
  /** Base URL of the registry, e.g. http://rollcall:8080. */
  registryUrl: string;
  /** Per-request timeout; default 10 s. */
  timeoutMs?: number;
  /** API key sent as `Authorization: Bearer` (scope nodes:write); absent: none, for an open registry. */
  apiKey?: string;
  logger?: Logger;
}

/** Heartbeat refusals that mean "announce yourself again" rather than "try later". */
const REANNOUNCE_CODES: readonly string[] = ['NODE_NOT_FOUND', 'REGISTRATION_REQUIRED'];
/** Tombstone refusals that mean this start of the node has left anyway: already gone, or superseded by a newer start. */
const GONE_CODES: readonly string[] = ['NODE_NOT_FOUND', 'STALE_INCARNATION'];

export class HttpTransport implements AgentTransport {
  private readonly client: RollcallClient;
  private readonly log: Logger;
  /** False once the registry answered that it has no /api/v1/events (an older version): REST calls from then on. */
  private eventsEndpoint = true;

  constructor(options: HttpTransportOptions) {
    this.client = new RollcallClient(options.registryUrl, {
      ...(options.timeoutMs === undefined ? {} : { timeoutMs: options.timeoutMs }),
      ...(options.apiKey === undefined ? {} : { apiKey: options.apiKey }),
    });
    this.log = (options.logger ?? pino({ level: 'silent' })).child({ component: 'agent-http-transport' });
  }

  async publish(kind: AgentEventKind, event: Envelope): Promise<PublishOutcome> {
    if (event.security !== undefined && this.eventsEndpoint) {
      try {
        return await this.outcome(kind, this.client.publishEvent(event));
      } catch (error) {
        if (!isRollcallError(error) || error.code !== 'ROUTE_NOT_FOUND') throw error;
        this.eventsEndpoint = false;
        this.log.warn('the registry has no POST /api/v1/events; sending plain REST calls, which carry no signature for heartbeats and tombstones');
      }
    }
    return this.outcome(kind, this.rest(kind, event));
  }

  /** The unsigned path: the REST call of each kind. */
  private rest(kind: AgentEventKind, event: Envelope): Promise<unknown> {
    const payload = event.payload;
    switch (kind) {
      case 'introspection':
        return this.client.introspect(event);
      case 'heartbeat':
        return this.client.heartbeat({
          node_id: String(payload.node_id),
          ...(typeof payload.namespace === 'string' ? { namespace: payload.namespace } : {}),
          ...(typeof payload.incarnation === 'number' ? { incarnation: payload.incarnation } : {}),
          ...(typeof payload.health_status === 'string' ? { health_status: payload.health_status } : {}),
          ...(isJsonObject(payload.metrics) ? { metrics: payload.metrics } : {}),
        });
      case 'tombstone':
        return this.client.deregister(String(payload.node_id), {
          ...(typeof payload.namespace === 'string' ? { namespace: payload.namespace } : {}),
          reason: typeof payload.removal_reason === 'string' ? payload.removal_reason : 'graceful_shutdown',
          ...(typeof payload.incarnation === 'number' ? { incarnation: payload.incarnation } : {}),
        });
    }
  }

  /** Maps the registry's answer of either path to what became of the event. */
  private async outcome(kind: AgentEventKind, sent: Promise<unknown>): Promise<PublishOutcome> {
    try {
      await sent;
      return 'delivered';
    } catch (error) {
      if (!isRollcallError(error)) throw error;
      if (kind === 'heartbeat' && REANNOUNCE_CODES.includes(error.code)) return 'reannounce';
      if (kind === 'tombstone' && GONE_CODES.includes(error.code)) return 'delivered';
      throw error;
    }
  }

  async onRegistryRequest(): Promise<void> {
    // Nothing to listen on: heartbeats carry the registry's wish for a re-announcement.
  }

  async close(): Promise<void> {
    // fetch keeps no connection state of ours to release.
  }
}
