// The package's library surface: the client SDK, the join agent, the server, and the model's types.
export { RollcallClient, type ListNodesQuery, type NodeList, type PresentedNode, type RegisterResponse } from './client/rollcall-client.js';
export { DagiAgent, type DagiAgentOptions } from './agent/dagi-agent.js';
export { startServer, type RunningServer } from './server.js';
export { loadConfig, type Config } from './config/config.js';
export { createLogger } from './config/logger.js';
export { RollcallError, ERROR_CODES, isRollcallError, type ErrorCode } from './domain/errors.js';
export type { NodeRecord, Registration, TopologyChange, ChangeType, NodeStatus, HealthStatus, IntrospectionPayload, DagiRegistration } from './domain/node.js';
// The event plane: the agent SDK (node side), the topology follower (consumer side) and the buses.
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
} from './agent/node-agent.js';
export { BusTransport, type BusTransportOptions } from './agent/bus-transport.js';
export { HttpTransport, type HttpTransportOptions } from './agent/http-transport.js';
export { SvidRotator, renewalTime, type SvidRotatorOptions, type SvidRotatorEvents, type SvidRotatorState, type SvidRotation, type SvidRotationFailure } from './agent/svid-rotator.js';
export { enrollSvid, renewSvid, newSvidKey, createCsr, describeSvid, type NodeSvid, type SvidKeyPair } from './agent/svid-requests.js';
export type { SvidCredentials } from './security/signing.js';
export type { SvidDocument, EventResponse, ClientOptions } from './client/rollcall-client.js';
export { TopologyFollower, followerKey, type TopologyFollowerOptions, type TopologyFollowerEvents, type ResyncEvent } from './client/topology-follower.js';
export { topicNames, namespaceTopicNames, TopicLayout, envelope, DEFAULT_TOPIC_PREFIX, EVENT_TYPES, type TopicNames, type DiffChange, type TopologyDiffPayload } from './domain/events.js';
export type { EventBus, BusMessage, OutgoingMessage, SubscribeOptions, Subscription } from './bus/bus.js';
export { MemoryBus } from './bus/memory-bus.js';
export { KafkaBus, type KafkaBusOptions } from './bus/kafka-bus.js';
