// JSON schemas of the wire: what the HTTP API and event intake accept. Types derive from them.
import { Type, type Static } from '@sinclair/typebox';
import type { JsonObject } from './json.js';

export const LIMITS = {
  idLength: 255,
  typeLength: 100,
  versionLength: 50,
  labelCount: 64,
  labelLength: 63,
  /** Serialised size of each JSON document field (capabilities, endpoints, metadata, …). */
  documentBytes: 32 * 1024,
  /** Nesting depth of each JSON document field: deeper ones would exhaust the stack when serialised. */
  documentDepth: 64,
  /** Whole request body. */
  bodyBytes: 128 * 1024,
} as const;

export const NODE_ID_PATTERN = '^[A-Za-z0-9][A-Za-z0-9._:@-]*$';
export const NODE_TYPE_PATTERN = '^[A-Za-z0-9][A-Za-z0-9._-]*$';
export const NAMESPACE_PATTERN = '^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$';
export const LABEL_PATTERN = '^[A-Za-z0-9]([A-Za-z0-9._:/=-]*[A-Za-z0-9])?$';

export const NodeId = Type.String({ minLength: 1, maxLength: LIMITS.idLength, pattern: NODE_ID_PATTERN });
export const NodeType = Type.String({ minLength: 1, maxLength: LIMITS.typeLength, pattern: NODE_TYPE_PATTERN });
export const Namespace = Type.String({ minLength: 1, maxLength: 63, pattern: NAMESPACE_PATTERN });
export const Version = Type.String({ minLength: 1, maxLength: LIMITS.versionLength });
export const Incarnation = Type.Integer({ minimum: 0, maximum: Number.MAX_SAFE_INTEGER });
export const LeaseTtlSeconds = Type.Number({ minimum: 1, maximum: 7 * 24 * 3600 });
export const Reason = Type.String({ minLength: 1, maxLength: 100, pattern: '^[A-Za-z0-9_.:-]+$' });
export const HealthStatusSchema = Type.Union([Type.Literal('healthy'), Type.Literal('degraded'), Type.Literal('unhealthy'), Type.Literal('unknown')]);
export const Document = Type.Unsafe<JsonObject>(Type.Record(Type.String({ maxLength: 255 }), Type.Unknown()));
export const Labels = Type.Array(Type.String({ minLength: 1, maxLength: LIMITS.labelLength, pattern: LABEL_PATTERN }), {
  maxItems: LIMITS.labelCount,
});

export const IntrospectionSchema = Type.Object(
  {
    node_id: NodeId,
    node_name: Type.Optional(Type.String({ maxLength: LIMITS.idLength })),
    node_type: NodeType,
    node_version: Type.Optional(Version),
    namespace: Type.Optional(Namespace),
    incarnation: Type.Optional(Incarnation),
    lease_ttl_seconds: Type.Optional(LeaseTtlSeconds),
    capabilities: Type.Optional(Document),
    endpoints: Type.Optional(Document),
    configuration: Type.Optional(Document),
    current_state: Type.Optional(Document),
    metadata: Type.Optional(Document),
    introspection_timestamp: Type.Optional(Type.String({ maxLength: 64 })),
    introspection_version: Type.Optional(Type.String({ maxLength: 64 })),
    reason: Type.Optional(Reason),
  },
  { $id: 'Introspection', additionalProperties: true },
);

export const EnvelopeSchema = Type.Object(
  {
    envelope_version: Type.String({ maxLength: 16 }),
    event_id: Type.String({ minLength: 1, maxLength: 128 }),
    event_type: Type.String({ minLength: 1, maxLength: 64 }),
    event_timestamp: Type.Optional(Type.String({ maxLength: 64 })),
    source_node_id: Type.Optional(Type.String({ maxLength: LIMITS.idLength })),
    correlation_id: Type.Optional(Type.String({ maxLength: 128 })),
    payload: Type.Record(Type.String(), Type.Unknown()),
    security: Type.Optional(Type.Record(Type.String(), Type.Unknown())),
  },
  { $id: 'OnexEnvelopeV1', additionalProperties: true },
);
export type Envelope = Static<typeof EnvelopeSchema>;

export const DagiRegistrationSchema = Type.Object(
  {
    node_id: Type.Optional(NodeId),
    hostname: Type.String({ minLength: 1, maxLength: 253 }),
    ip: Type.Optional(Type.String({ maxLength: 45 })),
    role: NodeType,
    labels: Type.Optional(Labels),
    metadata: Type.Optional(Document),
    namespace: Type.Optional(Namespace),
    node_type: Type.Optional(NodeType),
    node_version: Type.Optional(Version),
    capabilities: Type.Optional(Document),
    endpoints: Type.Optional(Document),
    incarnation: Type.Optional(Incarnation),
    lease_ttl_seconds: Type.Optional(LeaseTtlSeconds),
    health_status: Type.Optional(HealthStatusSchema),
  },
  { $id: 'DagiRegistration', additionalProperties: false },
);

export const HeartbeatSchema = Type.Object(
  {
    node_id: NodeId,
    namespace: Type.Optional(Namespace),
    incarnation: Type.Optional(Incarnation),
    status: Type.Optional(Type.String({ maxLength: 50 })),
    health_status: Type.Optional(HealthStatusSchema),
    metrics: Type.Optional(Document),
  },
  { $id: 'Heartbeat', additionalProperties: false },
);
export type HeartbeatBody = Static<typeof HeartbeatSchema>;

export const ProfileBodySchema = Type.Object({ config: Document }, { $id: 'ProfileBody', additionalProperties: false });
