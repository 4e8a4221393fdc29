// `rollcall/client`: the consumer SDK — query the registry, follow the topology stream with resync.
// Loads none of the server (fastify, pg, PGlite).
export { RollcallClient, type ListNodesQuery, type NodeList, type PresentedNode, type RegisterResponse, type SvidDocument, type EventResponse, type ClientOptions } from './rollcall-client.js';
export { TopologyFollower, followerKey, type TopologyFollowerOptions, type TopologyFollowerEvents, type ResyncEvent } from './topology-follower.js';
export { KafkaBus, type KafkaBusOptions } from '../bus/kafka-bus.js';
export type { EventBus, BusMessage, Subscription } from '../bus/bus.js';
export { topicNames, namespaceTopicNames, DEFAULT_TOPIC_PREFIX, type TopicNames, type DiffChange, type TopologyDiffPayload } from '../domain/events.js';
export { RollcallError, ERROR_CODES, isRollcallError, type ErrorCode } from '../domain/errors.js';
export type { NodeRecord, TopologyChange, ChangeType, NodeStatus, HealthStatus } from '../domain/node.js';
