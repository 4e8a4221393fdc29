// The event plane's vocabulary: topic names, the OnexEnvelopeV1 wrapper, and the payloads of the
// seeds' events (introspection, heartbeat, tombstone, registry request, topology diff).
import { randomUUID } from 'node:crypto';
import { Type, type Static } from '@sinclair/typebox';
import { TypeCompiler } from '@sinclair/typebox/compiler';
import { RollcallError } from './errors.js';
import { isJsonObject, type JsonObject } from './json.js';
import type { ChangeType, NodeRecord, TopologyChange } from './node.js';
import { Document, EnvelopeSchema, HeartbeatSchema, Incarnation, NAMESPACE_PATTERN, Namespace, NodeId, NodeType, Reason, type Envelope } from './schemas.js';

export const EVENT_TYPES = {
  introspection: 'NODE_INTROSPECTION',
  heartbeat: 'NODE_HEARTBEAT',
  tombstone: 'NODE_TOMBSTONE',
  requestIntrospection: 'REGISTRY_REQUEST_INTROSPECTION',
  topologyDiff: 'TOPOLOGY_DIFF',
} as const;
export type EventKind = keyof typeof EVENT_TYPES;

/** Event types accepted for each kind: the seeds spell them both ways (`NODE_HEARTBEAT`, `node-heartbeat`). */
const ACCEPTED_TYPES: Record<EventKind, readonly string[]> = {
  introspection: ['NODE_INTROSPECTION', 'node-introspection', 'NODE_REGISTRATION'],
  heartbeat: ['NODE_HEARTBEAT', 'node-heartbeat'],
  tombstone: ['NODE_TOMBSTONE', 'node-tombstone'],
  requestIntrospection: ['REGISTRY_REQUEST_INTROSPECTION', 'registry-request-introspection'],
  topologyDiff: ['TOPOLOGY_DIFF', 'topology-diff'],
};

export function eventKindOf(eventType: string): EventKind | null {
  for (const [kind, types] of Object.entries(ACCEPTED_TYPES) as [EventKind, readonly string[]][]) {
    if (types.includes(eventType)) return kind;
  }
  return null;
}

export const DEFAULT_TOPIC_PREFIX = (environment: string): string => `${environment}.omninode_bridge.onex.evt`;

export interface TopicNames {
  introspection: string;
  heartbeat: string;
  tombstone: string;
  requestIntrospection: string;
  topologyDiff: string;
  deadLetter: string;
}

/** The last part of each topic's name, after the prefix. */
export const TOPIC_SUFFIXES: Readonly<Record<keyof TopicNames, string>> = {
  introspection: 'node-introspection.v1',
  heartbeat: 'node-heartbeat.v1',
  tombstone: 'node-tombstone.v1',
  requestIntrospection: 'registry-request-introspection.v1',
  topologyDiff: 'topology-diff.v1',
  deadLetter: 'dead-letter.v1',
};

const TOPIC_KINDS = Object.keys(TOPIC_SUFFIXES) as (keyof TopicNames)[];

/** The seeds' topic names under a prefix (`{env}.omninode_bridge.onex.evt` by default). */
export function topicNames(prefix: string): TopicNames {
  return {
    introspection: `${prefix}.${TOPIC_SUFFIXES.introspection}`,
    heartbeat: `${prefix}.${TOPIC_SUFFIXES.heartbeat}`,
    tombstone: `${prefix}.${TOPIC_SUFFIXES.tombstone}`,
    requestIntrospection: `${prefix}.${TOPIC_SUFFIXES.requestIntrospection}`,
    topologyDiff: `${prefix}.${TOPIC_SUFFIXES.topologyDiff}`,
    deadLetter: `${prefix}.${TOPIC_SUFFIXES.deadLetter}`,
  };
}

/** Kafka's longest topic name. */
export const MAX_TOPIC_NAME_LENGTH = 249;

const namespacePattern = new RegExp(NAMESPACE_PATTERN);

/**
 * The prefix of a namespace's own topics, `{prefix}.ns.{namespace}`: one Kafka ACL on this prefix
 * gives a tenant its namespace's events and nothing of another's.
 */
export function namespaceTopicPrefix(prefix: string, namespace: string): string {
  if (!namespacePattern.test(namespace)) throw new RollcallError('VALIDATION_FAILED', `"${namespace}" is not a namespace (a DNS label: a-z, 0-9, -).`, { details: { namespace } });
  return `${prefix}.ns.${namespace}`;
}

/**
 * The topics of a namespace that has its own: `topicNames('{prefix}.ns.{namespace}')`. Takes the
 * prefix, or the shared topic set (named by `topicNames`) whose prefix it extends.
 */
export function namespaceTopicNames(shared: string | TopicNames, namespace: string): TopicNames {
  if (typeof shared === 'string') return topicNames(namespaceTopicPrefix(shared, namespace));
  const names = {} as TopicNames;
  for (const kind of TOPIC_KINDS) names[kind] = namespaceTopicName(shared[kind], namespace);
  return names;
}

/** One topic of a shared set (`{prefix}.topology-diff.v1`) as the namespace's own (`{prefix}.ns.{namespace}.topology-diff.v1`). */
export function namespaceTopicName(sharedTopic: string, namespace: string): string {
  for (const suffix of Object.values(TOPIC_SUFFIXES)) {
    if (sharedTopic.endsWith(`.${suffix}`)) return `${namespaceTopicPrefix(sharedTopic.slice(0, -suffix.length - 1), namespace)}.${suffix}`;
  }
  throw new RollcallError('VALIDATION_FAILED', `Topic ${sharedTopic} is not named like the seeds' topics ({prefix}.${TOPIC_SUFFIXES.introspection}, …): its namespace's topics cannot be derived.`, {
    details: { topic: sharedTopic },
  });
}

/** A set of topics and whose it is: a namespace's own, or the shared one (`namespace` null). */
export interface TopicSet {
  namespace: string | null;
  topics: TopicNames;
}

/**
 * Where each namespace's events travel: the namespaces listed (`kafkaNamespaceTopics`) on topics of
 * their own, every other namespace (the default one included) on the shared topics.
 */
export class TopicLayout {
  /** The shared set, then each namespace's own. */
  private readonly all: TopicSet[];
  private readonly own = new Map<string, TopicNames>();
  private readonly byTopic = new Map<string, TopicSet>();

  constructor(
    readonly shared: TopicNames,
    namespaces: Iterable<string> = [],
  ) {
    this.all = [{ namespace: null, topics: shared }];
    for (const namespace of namespaces) {
      if (this.own.has(namespace)) continue;
      const topics = namespaceTopicNames(shared, namespace);
      this.own.set(namespace, topics);
      this.all.push({ namespace, topics });
    }
    for (const set of this.all) {
      for (const kind of TOPIC_KINDS) this.byTopic.set(set.topics[kind], set);
    }
  }

  /** The namespaces with topics of their own. */
  get namespaces(): string[] {
    return [...this.own.keys()];
  }

  hasOwnTopics(namespace: string): boolean {
    return this.own.has(namespace);
  }

  /** The topics a namespace's events travel on. */
  topicsOf(namespace: string): TopicNames {
    return this.own.get(namespace) ?? this.shared;
  }

  /** Every set, the shared one first. */
  sets(): readonly TopicSet[] {
    return this.all;
  }

  /** The shared set. */
  get sharedSet(): TopicSet {
    return this.all[0] as TopicSet;
  }

  /** The set a topic belongs to; undefined for a topic of none. */
  setOf(topic: string): TopicSet | undefined {
    return this.byTopic.get(topic);
  }
}

export interface EnvelopeOptions {
  correlationId?: string | undefined;
  eventId?: string;
  now?: Date;
}

/** Wraps a payload in an OnexEnvelopeV1. */
export function envelope(eventType: string, sourceNodeId: string, payload: JsonObject, options: EnvelopeOptions = {}): Envelope {
  const event: Envelope = {
    envelope_version: '1.0',
    event_id: options.eventId ?? randomUUID(),
    event_type: eventType,
    event_timestamp: (options.now ?? new Date()).toISOString(),
    source_node_id: sourceNodeId,
    payload,
  };
  if (options.correlationId !== undefined) event.correlation_id = options.correlationId;
  return event;
}

const checkEnvelope = TypeCompiler.Compile(EnvelopeSchema);

/** Reads an envelope from raw bytes; refuses what is not JSON or not an OnexEnvelopeV1. */
export function decodeEnvelope(raw: string): Envelope {
  let body: unknown;
  try {
    body = JSON.parse(raw);
  } catch (error) {
    throw new RollcallError('MALFORMED_EVENT', `Event is not JSON: ${(error as Error).message}`);
  }
  if (!isJsonObject(body) || !checkEnvelope.Check(body)) {
    const first = isJsonObject(body) ? [...checkEnvelope.Errors(body)][0] : undefined;
    throw new RollcallError('MALFORMED_EVENT', `Event is not an OnexEnvelopeV1${first ? `: ${first.path || '/'} ${first.message}` : ''}.`);
  }
  return body;
}

/** A heartbeat event: the HTTP heartbeat's fields; events may carry more (uptime, counters). */
export const HeartbeatEventSchema = Type.Object(HeartbeatSchema.properties, { $id: 'HeartbeatEvent', additionalProperties: true });
export type HeartbeatEvent = Static<typeof HeartbeatEventSchema>;

export const TombstoneEventSchema = Type.Object(
  {
    node_id: NodeId,
    node_type: Type.Optional(NodeType),
    namespace: Type.Optional(Namespace),
    incarnation: Type.Optional(Incarnation),
    removal_reason: Type.Optional(Reason),
    removal_timestamp: Type.Optional(Type.String({ maxLength: 64 })),
    final_status: Type.Optional(Type.String({ maxLength: 50 })),
    metadata: Type.Optional(Document),
  },
  { $id: 'TombstoneEvent', additionalProperties: true },
);
export type TombstoneEvent = Static<typeof TombstoneEventSchema>;

export const RequestIntrospectionSchema = Type.Object(
  {
    reason: Type.Optional(Type.String({ maxLength: 100 })),
    registry_id: Type.Optional(Type.String({ maxLength: 255 })),
    /** Only these nodes should answer; absent means every node. */
    target_node_ids: Type.Optional(Type.Array(NodeId, { maxItems: 1000 })),
    namespace: Type.Optional(Namespace),
  },
  { $id: 'RequestIntrospection', additionalProperties: true },
);
export type RequestIntrospection = Static<typeof RequestIntrospectionSchema>;

const checkHeartbeat = TypeCompiler.Compile(HeartbeatEventSchema);
const checkTombstone = TypeCompiler.Compile(TombstoneEventSchema);
const checkRequest = TypeCompiler.Compile(RequestIntrospectionSchema);

function payloadOf<T>(what: string, checker: { Check(value: unknown): value is T; Errors(value: unknown): Iterable<{ path: string; message: string }> }, payload: unknown): T {
  if (checker.Check(payload)) return payload;
  const first = [...checker.Errors(payload)][0];
  throw new RollcallError('VALIDATION_FAILED', `Invalid ${what} payload${first ? `: ${first.path || '/'} ${first.message}` : ''}.`);
}

export const parseHeartbeatEvent = (payload: unknown): HeartbeatEvent => payloadOf('heartbeat', checkHeartbeat, payload);
export const parseTombstoneEvent = (payload: unknown): TombstoneEvent => payloadOf('tombstone', checkTombstone, payload);
export const parseRequestIntrospection = (payload: unknown): RequestIntrospection => payloadOf('registry request', checkRequest, payload);

/** Whether a node is asked by a registry request. */
export function requestAddresses(request: RequestIntrospection, namespace: string, nodeId: string): boolean {
  if (request.namespace !== undefined && request.namespace !== namespace) return false;
  return request.target_node_ids === undefined || request.target_node_ids.includes(nodeId);
}

/** One change of a TOPOLOGY_DIFF, in the seeds' shape plus what a follower needs to stay exact. */
export interface DiffChange {
  change_type: ChangeType;
  version: number;
  namespace: string;
  node_id: string;
  node_type: string;
  reason: string;
  changed_at: string;
  changed_fields?: string[];
  removal_reason?: string;
  node: NodeRecord;
}

export interface TopologyDiffPayload {
  /** The version of the diff's last change; versions are global, across namespaces. */
  topology_version: number;
  /**
   * The topology_version of the diff published before this one on the same topic: a follower that
   * holds this version (or a later one) missed none of the topic's changes.
   */
  previous_version: number;
  /** On a namespace's own topic, that namespace (every change is of it); absent on the shared topic. */
  namespace?: string;
  changes: DiffChange[];
  summary: { total_nodes: number; nodes_added: number; nodes_updated: number; nodes_removed: number };
}

/**
 * A TOPOLOGY_DIFF covering the versions (previousVersion, last change's version]. `total_nodes` is the
 * number of nodes not removed once these changes apply (in `namespace`, when the diff is of one).
 */
export function topologyDiff(previousVersion: number, changes: TopologyChange[], totalNodes: number, namespace?: string): TopologyDiffPayload {
  const summary = { total_nodes: totalNodes, nodes_added: 0, nodes_updated: 0, nodes_removed: 0 };
  const out: DiffChange[] = changes.map((change) => {
    if (change.change_type === 'added') summary.nodes_added += 1;
    else if (change.change_type === 'removed') summary.nodes_removed += 1;
    else summary.nodes_updated += 1;
    const diff: DiffChange = {
      change_type: change.change_type,
      version: change.version,
      namespace: change.namespace,
      node_id: change.node_id,
      node_type: change.node.node_type,
      reason: change.reason,
      changed_at: change.changed_at,
      node: change.node,
    };
    if (change.change_type !== 'added') diff.changed_fields = change.changed_fields;
    if (change.node.removal_reason !== null) diff.removal_reason = change.node.removal_reason;
    return diff;
  });
  const last = changes.at(-1);
  return {
    topology_version: last ? last.version : previousVersion,
    previous_version: previousVersion,
    ...(namespace === undefined ? {} : { namespace }),
    changes: out,
    summary,
  };
}
