// `rollcall/agent`: the node-side SDK — announce, heartbeat, answer registry requests, rotate SVIDs,
// tombstone at stop — over HTTP or an event bus. Loads none of the server (fastify, pg, PGlite).
export {
  NodeAgent,
  INTROSPECTION_VERSION,
  AGENT_EVENT_KINDS,
  type NodeAgentOptions,
  type AgentIdentity,
  type IntrospectionState,
  type AgentTransport,
  type AgentEventKind,
  type PublishOutcome,
  type AgentStats,
} from './node-agent.js';
export { BusTransport, type BusTransportOptions } from './bus-transport.js';
export { HttpTransport, type HttpTransportOptions } from './http-transport.js';
export { DagiAgent, type DagiAgentOptions } from './dagi-agent.js';
export { SvidRotator, renewalTime, type SvidRotatorOptions, type SvidRotatorEvents, type SvidRotatorState, type SvidRotation, type SvidRotationFailure } from './svid-rotator.js';
export { enrollSvid, renewSvid, newSvidKey, createCsr, describeSvid, type NodeSvid, type SvidKeyPair } from './svid-requests.js';
export type { SvidCredentials } from '../security/signing.js';
export { KafkaBus, type KafkaBusOptions } from '../bus/kafka-bus.js';
export { MemoryBus } from '../bus/memory-bus.js';
export type { EventBus, BusMessage, OutgoingMessage, SubscribeOptions, Subscription } from '../bus/bus.js';
export { topicNames, namespaceTopicNames, envelope, DEFAULT_TOPIC_PREFIX, EVENT_TYPES, type TopicNames } from '../domain/events.js';
export { RollcallError, ERROR_CODES, isRollcallError, type ErrorCode } from '../domain/errors.js';
export type { HealthStatus, IntrospectionPayload, DagiRegistration } from '../domain/node.js';
