// One configuration schema: each option's default, environment variable and meaning stand together.
// Sources, later winning: defaults, a JSON config file, environment variables, command-line flags.
import { readFileSync } from 'node:fs';
import { hostname } from 'node:os';
import { Type, type Static } from '@sinclair/typebox';
import { Value } from '@sinclair/typebox/value';
import { RollcallError } from '../domain/errors.js';
import { LOG_FORMATS } from './logger.js';
import { DEFAULT_TOPIC_PREFIX, MAX_TOPIC_NAME_LENGTH, namespaceTopicNames } from '../domain/events.js';
import { NAMESPACE_PATTERN } from '../domain/schemas.js';

const LOG_LEVELS = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'] as const;
export const CONSUL_MODES = ['projection', 'atomic'] as const;

export const ConfigSchema = Type.Object({
  host: Type.String({ default: '127.0.0.1', description: 'Address the HTTP API listens on. Env ROLLCALL_HOST.' }),
  port: Type.Integer({ minimum: 0, maximum: 65535, default: 9205, description: 'HTTP port. Env ROLLCALL_PORT.' }),
  dataDir: Type.String({
    minLength: 1,
    default: '.rollcall/data',
    description: 'Folder of the embedded database (used when no databaseUrl); memory:// keeps it in memory only. Env ROLLCALL_DATA_DIR.',
  }),
  databaseUrl: Type.Optional(
    Type.String({
      minLength: 1,
      description: "PostgreSQL URL; when set, PostgreSQL replaces the embedded database. Env ROLLCALL_DATABASE_URL or DATABASE_URL, or the seeds' POSTGRES_HOST/PORT/DB/USER/PASSWORD.",
    }),
  ),
  databasePoolSize: Type.Integer({ minimum: 2, maximum: 200, default: 10, description: 'PostgreSQL connections. Env ROLLCALL_DATABASE_POOL_SIZE.' }),
  instanceId: Type.Optional(Type.String({ minLength: 1, maxLength: 255, description: "This instance's node id in its own registry. Env ROLLCALL_INSTANCE_ID. Default registry-<hostname>-<port>." })),
  namespace: Type.String({ pattern: NAMESPACE_PATTERN, default: 'default', description: 'Namespace of records that name none. Env ROLLCALL_NAMESPACE.' }),
  leaseTtlSeconds: Type.Number({
    minimum: 1,
    maximum: 604800,
    default: 90,
    description: 'Lease of a node that names none: offline this long after its last heartbeat. Env ROLLCALL_LEASE_TTL_SECONDS.',
  }),
  heartbeatIntervalSeconds: Type.Number({ exclusiveMinimum: 0, default: 30, description: 'How often the registry renews its own lease. Env ROLLCALL_HEARTBEAT_INTERVAL_SECONDS.' }),
  heartbeatFlushMs: Type.Integer({
    minimum: 10,
    maximum: 60000,
    default: 1000,
    description: 'Heartbeats are kept in memory and written to the store in one batch this often. Env ROLLCALL_HEARTBEAT_FLUSH_MS.',
  }),
  sweepIntervalMs: Type.Integer({ minimum: 50, maximum: 3600000, default: 1000, description: 'How often lapsed leases are looked for. Env ROLLCALL_SWEEP_INTERVAL_MS.' }),
  retentionHours: Type.Number({
    exclusiveMinimum: 0,
    default: 24,
    description: "Offline and removed records are purged this long after they left. Env ROLLCALL_RETENTION_HOURS or the seeds' NODE_TTL_HOURS.",
  }),
  cleanupIntervalHours: Type.Number({
    exclusiveMinimum: 0,
    default: 1,
    description: "How often records, changes and heartbeat history are purged. Env ROLLCALL_CLEANUP_INTERVAL_HOURS or the seeds' CLEANUP_INTERVAL_HOURS.",
  }),
  changeRetentionHours: Type.Number({ exclusiveMinimum: 0, default: 24, description: 'How long topology changes are kept for readers that resume by version. Env ROLLCALL_CHANGE_RETENTION_HOURS.' }),
  heartbeatHistory: Type.Boolean({ default: false, description: 'Keep a history of heartbeats (heartbeat_log). Env ROLLCALL_HEARTBEAT_HISTORY.' }),
  heartbeatHistoryHours: Type.Number({ exclusiveMinimum: 0, default: 24, description: 'Retention of the heartbeat history. Env ROLLCALL_HEARTBEAT_HISTORY_HOURS.' }),
  maxBatch: Type.Integer({ minimum: 1, maximum: 10000, default: 500, description: 'Most registrations committed in one transaction. Env ROLLCALL_MAX_BATCH.' }),
  writeConcurrency: Type.Integer({
    minimum: 1,
    maximum: 32,
    default: 3,
    description: 'Write transactions in flight at once (PostgreSQL; the embedded database runs one). Env ROLLCALL_WRITE_CONCURRENCY.',
  }),
  requestTimeoutMs: Type.Integer({
    minimum: 100,
    maximum: 3_600_000,
    default: 30_000,
    description:
      "A request's headers and body must have arrived this long after it began, else 408 and the connection is closed (slow senders). Responses are not bounded by it: long-polls and event streams run longer. Env ROLLCALL_REQUEST_TIMEOUT_MS.",
  }),
  sseMaxBufferBytes: Type.Integer({
    minimum: 4096,
    maximum: 1024 * 1024 * 1024,
    default: 4 * 1024 * 1024,
    description:
      "A topology event stream whose reader stops taking events is closed once this many bytes (its socket buffer, and the changes committed since it last took any) are waiting for it; the client resumes with Last-Event-ID. Not memory: a stream holds at most its socket buffer and one event, since a blocked reader's events are read again from the registry when it drains. Larger than a burst of changes (a group commit of 500 registrations of 2 KiB is 1 MiB), so readers that keep up are not dropped. Env ROLLCALL_SSE_MAX_BUFFER_BYTES.",
  }),
  logLevel: Type.Union(
    LOG_LEVELS.map((level) => Type.Literal(level)),
    { default: 'info', description: 'Env ROLLCALL_LOG_LEVEL.' },
  ),
  logFormat: Type.Union(
    LOG_FORMATS.map((format) => Type.Literal(format)),
    { default: 'auto', description: 'Log lines as JSON, or pretty for people; auto is pretty when standard output is a terminal. Env ROLLCALL_LOG_FORMAT.' },
  ),
  kafkaBrokers: Type.Optional(
    Type.String({
      minLength: 1,
      description:
        "Kafka bootstrap servers (host:port, comma separated); when set, Kafka replaces the in-process event bus. Env ROLLCALL_KAFKA_BROKERS, or the seeds' KAFKA_BROKER_URL, or KAFKA_BOOTSTRAP_SERVERS.",
    }),
  ),
  kafkaEnvironment: Type.String({
    minLength: 1,
    maxLength: 100,
    pattern: '^[A-Za-z0-9._-]+$',
    default: 'dev',
    description: "Environment part of the topic names ({env}.omninode_bridge.onex.evt.*). Env ROLLCALL_KAFKA_ENVIRONMENT or the seeds' KAFKA_ENVIRONMENT.",
  }),
  kafkaTopicPrefix: Type.Optional(
    Type.String({ minLength: 1, maxLength: 200, pattern: '^[A-Za-z0-9._-]+$', description: 'Topic prefix replacing {env}.omninode_bridge.onex.evt. Env ROLLCALL_KAFKA_TOPIC_PREFIX.' }),
  ),
  kafkaPartitions: Type.Integer({
    minimum: 1,
    maximum: 1000,
    default: 6,
    description: 'Partitions of the node event topics when rollcall creates them (the registry-request and topology-diff topics have one, to keep order). Env ROLLCALL_KAFKA_PARTITIONS.',
  }),
  kafkaReplicationFactor: Type.Integer({ minimum: 1, maximum: 10, default: 1, description: 'Replication factor of topics rollcall creates. Env ROLLCALL_KAFKA_REPLICATION_FACTOR.' }),
  kafkaCreateTopics: Type.Boolean({ default: true, description: 'Create missing topics at start. Env ROLLCALL_KAFKA_CREATE_TOPICS.' }),
  kafkaGroupId: Type.String({ minLength: 1, maxLength: 255, default: 'bridge-registry-group', description: 'Consumer group of the registry instances. Env ROLLCALL_KAFKA_GROUP_ID.' }),
  kafkaClientId: Type.String({ minLength: 1, maxLength: 255, default: 'rollcall', description: 'Kafka client id. Env ROLLCALL_KAFKA_CLIENT_ID.' }),
  requestIntrospectionOnStart: Type.Boolean({
    default: true,
    description: 'Publish REGISTRY_REQUEST_INTROSPECTION at start, so running nodes announce themselves. Env ROLLCALL_REQUEST_INTROSPECTION_ON_START.',
  }),
  topologyDiffRelay: Type.Boolean({ default: true, description: 'Publish the topology log to the topology-diff topic (one instance at a time does). Env ROLLCALL_TOPOLOGY_DIFF_RELAY.' }),
  maxEventBytes: Type.Integer({ minimum: 1024, maximum: 16 * 1024 * 1024, default: 256 * 1024, description: 'Larger events go to the dead-letter topic unread. Env ROLLCALL_MAX_EVENT_BYTES.' }),
  eventDedupeSize: Type.Integer({ minimum: 0, maximum: 10_000_000, default: 10_000, description: 'Event ids remembered to drop redelivered events. Env ROLLCALL_EVENT_DEDUPE_SIZE.' }),
  eventDedupeTtlSeconds: Type.Number({ exclusiveMinimum: 0, default: 3600, description: 'How long an event id is remembered. Env ROLLCALL_EVENT_DEDUPE_TTL_SECONDS.' }),
  dnsPort: Type.Optional(
    Type.Integer({
      minimum: 0,
      maximum: 65535,
      description: 'UDP and TCP port of the DNS interface (Consul semantics; Consul uses 8600); off when unset, 0 picks a free port. Env ROLLCALL_DNS_PORT.',
    }),
  ),
  dnsHost: Type.String({ minLength: 1, default: '127.0.0.1', description: 'Address the DNS interface listens on. Env ROLLCALL_DNS_HOST.' }),
  dnsDomain: Type.String({
    minLength: 1,
    maxLength: 200,
    pattern: '^[A-Za-z0-9-]+(\\.[A-Za-z0-9-]+)*\\.?$',
    default: 'consul',
    description: 'Zone the DNS interface answers for: <service>.service.<domain>. Env ROLLCALL_DNS_DOMAIN.',
  }),
  dnsNamespaces: Type.Optional(
    Type.Array(Type.Union([Type.String({ pattern: NAMESPACE_PATTERN }), Type.Literal('*')]), {
      minItems: 1,
      description:
        'Namespaces the DNS interface answers for; DNS carries no credential, so names in any other namespace answer NXDOMAIN as if absent. * serves every namespace. Default: the default namespace (namespace). Env ROLLCALL_DNS_NAMESPACES (comma separated).',
    }),
  ),
  dnsTtlSeconds: Type.Integer({ minimum: 0, maximum: 86400, default: 0, description: 'TTL of DNS answers (0, as Consul, lets no resolver cache them). Env ROLLCALL_DNS_TTL_SECONDS.' }),
  consulAddr: Type.Optional(
    Type.String({
      minLength: 1,
      description: "Consul agent to project nodes into (http(s)://host:port or host:port); the Consul sink runs only when set. Env CONSUL_HTTP_ADDR, or the seeds' CONSUL_HOST/CONSUL_PORT.",
    }),
  ),
  consulToken: Type.Optional(Type.String({ description: 'Consul ACL token, sent as X-Consul-Token; never logged. Env CONSUL_HTTP_TOKEN.' })),
  consulMode: Type.Union(
    CONSUL_MODES.map((mode) => Type.Literal(mode)),
    {
      default: 'projection',
      description:
        "projection: PostgreSQL is the truth and Consul follows it, repaired by the reconciler (rollcall goes on while Consul is down). atomic: the seeds' saga, Consul first then PostgreSQL, a failed PostgreSQL write compensated in Consul; writes are refused (CONSUL_UNAVAILABLE) while Consul is down. Env ROLLCALL_CONSUL_MODE.",
    },
  ),
  consulServiceName: Type.String({
    minLength: 1,
    maxLength: 200,
    default: '{node_type}',
    description: 'Consul service name template: {node_type}, {namespace}, {role}, {node_id}, {node_name}. Env ROLLCALL_CONSUL_SERVICE_NAME.',
  }),
  consulCheck: Type.Union([Type.Literal('ttl'), Type.Literal('http')], {
    default: 'ttl',
    description: "Consul check of each service: ttl (the node's lease, passed by heartbeats) or http (the node's health endpoint; ttl when it has none). Env ROLLCALL_CONSUL_CHECK.",
  }),
  consulCheckInterval: Type.String({ pattern: '^[0-9]+(ms|s|m|h)$', default: '30s', description: 'Interval of HTTP checks. Env ROLLCALL_CONSUL_CHECK_INTERVAL.' }),
  consulCheckTimeout: Type.String({ pattern: '^[0-9]+(ms|s|m|h)$', default: '5s', description: 'Timeout of HTTP checks. Env ROLLCALL_CONSUL_CHECK_TIMEOUT.' }),
  consulDeregisterAfter: Type.String({
    pattern: '^[0-9]+(ms|s|m|h)$',
    default: '90s',
    description: 'Consul removes a service whose check stayed critical this long. Env ROLLCALL_CONSUL_DEREGISTER_AFTER.',
  }),
  consulReconcileIntervalMs: Type.Integer({
    minimum: 100,
    maximum: 86_400_000,
    default: 60_000,
    description: 'How often the Consul reconciler compares Consul with the registry (also at start and when Consul comes back). Env ROLLCALL_CONSUL_RECONCILE_INTERVAL_MS.',
  }),
  consulRenewIntervalMs: Type.Integer({
    minimum: 10,
    maximum: 60_000,
    default: 1000,
    description: 'How often heartbeats are looked for to pass TTL checks; each node is passed at most once per TTL/3. Env ROLLCALL_CONSUL_RENEW_INTERVAL_MS.',
  }),
  consulTimeoutMs: Type.Integer({ minimum: 10, maximum: 120_000, default: 5000, description: 'Timeout of one Consul request. Env ROLLCALL_CONSUL_TIMEOUT_MS.' }),
  consulConcurrency: Type.Integer({ minimum: 1, maximum: 256, default: 16, description: 'Consul calls in flight at once when projecting or reconciling. Env ROLLCALL_CONSUL_CONCURRENCY.' }),
  consulRetries: Type.Integer({ minimum: 0, maximum: 10, default: 2, description: 'Retries of a transient Consul failure, with exponential backoff and jitter. Env ROLLCALL_CONSUL_RETRIES.' }),
  consulBreakerFailures: Type.Integer({ minimum: 1, maximum: 1000, default: 5, description: 'Consecutive Consul failures that open the circuit (seeds: 5). Env ROLLCALL_CONSUL_BREAKER_FAILURES.' }),
  consulBreakerResetMs: Type.Integer({
    minimum: 10,
    maximum: 3_600_000,
    default: 60_000,
    description: 'Time the circuit stays open before trial calls (seeds: 60 s). Env ROLLCALL_CONSUL_BREAKER_RESET_MS.',
  }),
  consulBreakerHalfOpenCalls: Type.Integer({ minimum: 1, maximum: 1000, default: 3, description: 'Trial calls admitted while half-open (seeds: 3). Env ROLLCALL_CONSUL_BREAKER_HALF_OPEN_CALLS.' }),
  consulBreakerSuccesses: Type.Integer({ minimum: 1, maximum: 1000, default: 2, description: 'Successful trials that close the circuit (seeds: 2). Env ROLLCALL_CONSUL_BREAKER_SUCCESSES.' }),
  trustDomain: Type.Optional(
    Type.String({
      minLength: 1,
      maxLength: 255,
      pattern: '^[a-z0-9._-]+$',
      description: 'SPIFFE trust domain of the built-in CA; when unset, read from the CA certificate. Env ROLLCALL_TRUST_DOMAIN.',
    }),
  ),
  caCertFile: Type.Optional(
    Type.String({
      minLength: 1,
      description: 'PEM root certificate of the built-in CA (`rollcall ca init` writes <dir>/ca.pem); with caKeyFile it turns on the identity API. Env ROLLCALL_CA_CERT_FILE.',
    }),
  ),
  caKeyFile: Type.Optional(Type.String({ minLength: 1, description: 'PEM PKCS#8 private key of the built-in CA (<dir>/ca.key, mode 0600). Env ROLLCALL_CA_KEY_FILE.' })),
  svidTtlSeconds: Type.Integer({ minimum: 60, maximum: 30 * 86400, default: 3600, description: 'Lifetime of the X.509 SVIDs the CA issues. Env ROLLCALL_SVID_TTL_SECONDS.' }),
  authMode: Type.Union([Type.Literal('auto'), Type.Literal('keys'), Type.Literal('off')], {
    default: 'auto',
    description:
      'API authentication. auto: required once any API key was created (or a JWKS is configured); keys: always required; off: never (a non-loopback listener then also needs insecure). Env ROLLCALL_AUTH_MODE.',
  }),
  insecure: Type.Boolean({ default: false, description: 'Allow serving a non-loopback address (host, or dnsHost when DNS is on) without authentication; refused otherwise. Env ROLLCALL_INSECURE.' }),
  rateLimitPerMinute: Type.Integer({
    minimum: 0,
    maximum: 10_000_000,
    default: 6000,
    description: 'Requests per minute per credential (API key or JWT subject); 0 turns it off. Env ROLLCALL_RATE_LIMIT_PER_MINUTE.',
  }),
  rateLimitAnonymousPerMinute: Type.Integer({
    minimum: 0,
    maximum: 10_000_000,
    default: 600,
    description: 'Requests per minute per client address without a valid credential while authentication is required; 0 turns it off. Env ROLLCALL_RATE_LIMIT_ANONYMOUS_PER_MINUTE.',
  }),
  jwksUrl: Type.Optional(Type.String({ minLength: 1, description: 'JWKS URL: bearer JWTs signed by its keys are accepted (claims scope, space separated, and namespace). Env ROLLCALL_JWKS_URL.' })),
  jwtIssuer: Type.Optional(Type.String({ minLength: 1, description: 'Required iss of bearer JWTs. Env ROLLCALL_JWT_ISSUER.' })),
  jwtAudience: Type.Optional(Type.String({ minLength: 1, description: 'Required aud of bearer JWTs. Env ROLLCALL_JWT_AUDIENCE.' })),
  auditFlushMs: Type.Integer({ minimum: 10, maximum: 60_000, default: 200, description: 'Audit entries are buffered and written in one batch this often (and on stop). Env ROLLCALL_AUDIT_FLUSH_MS.' }),
  auditRetentionDays: Type.Number({ exclusiveMinimum: 0, default: 90, description: 'Audit entries older than this are purged by the cleanup duty. Env ROLLCALL_AUDIT_RETENTION_DAYS.' }),
  policyRefreshMs: Type.Integer({
    minimum: 100,
    maximum: 3_600_000,
    default: 5000,
    description: 'How often namespace policies and quotas saved through another instance are reloaded. Env ROLLCALL_POLICY_REFRESH_MS.',
  }),
  signatureMode: Type.Union([Type.Literal('off'), Type.Literal('permissive'), Type.Literal('enforce')], {
    default: 'off',
    description:
      'Signed envelopes. off: not checked; permissive: checked when signed, failures counted and logged but accepted; enforce: unsigned or invalid introspections (HTTP and bus) and bus heartbeats and tombstones are refused, and the REST node writes (DAGI register, heartbeat, DELETE, Consul agent register/deregister/check) are taken only from the node itself (its SVID over mTLS) or an admin credential (403 NODE_IDENTITY_REQUIRED otherwise). Needs trustBundleFile or caCertFile. Env ROLLCALL_SIGNATURE_MODE.',
  }),
  signatureMaxSkewSeconds: Type.Integer({
    minimum: 1,
    maximum: 86400,
    default: 300,
    description: "A signed event's signed_at may differ this much from the registry's clock; event ids are remembered against replay for twice this. Env ROLLCALL_SIGNATURE_MAX_SKEW_SECONDS.",
  }),
  signatureReplayCacheSize: Type.Integer({ minimum: 1, maximum: 10_000_000, default: 100_000, description: 'Signed event ids remembered against replay. Env ROLLCALL_SIGNATURE_REPLAY_CACHE_SIZE.' }),
  trustBundleFile: Type.Optional(
    Type.String({ minLength: 1, description: 'PEM CA certificates that SVIDs of signed envelopes must chain to; default: caCertFile. Re-read when it changes. Env ROLLCALL_TRUST_BUNDLE_FILE.' }),
  ),
  revocationFile: Type.Optional(
    Type.String({ minLength: 1, description: 'Revoked SVIDs for signature checks: one serial (hex) or SPIFFE ID per line, # comments. Re-read when it changes. Env ROLLCALL_REVOCATION_FILE.' }),
  ),
  tlsCertFile: Type.Optional(
    Type.String({ minLength: 1, description: 'PEM certificate (chain) of the HTTP listener; with tlsKeyFile the API is served over HTTPS only. Env ROLLCALL_TLS_CERT_FILE.' }),
  ),
  tlsKeyFile: Type.Optional(Type.String({ minLength: 1, description: 'PEM private key of tlsCertFile. Env ROLLCALL_TLS_KEY_FILE.' })),
  tlsClientAuth: Type.Optional(
    Type.Union([Type.Literal('off'), Type.Literal('optional'), Type.Literal('require')], {
      description:
        'mTLS: the TLS listener asks for a client certificate; one that verifies as an SVID (chain to the trust bundle, validity, not revoked) authenticates its node, which may then write only itself. optional: asked for, API keys work too (authentication becomes required, as with a JWKS); require: every request but /, /health and /openapi.json needs one; off: not asked for. Default optional when TLS and a trust bundle (trustBundleFile or caCertFile) are configured, else off; optional and require need both. Env ROLLCALL_TLS_CLIENT_AUTH.',
    }),
  ),
  kafkaNamespaceTopics: Type.Array(Type.String({ pattern: NAMESPACE_PATTERN }), {
    default: [],
    description:
      'Namespaces with Kafka topics of their own, {prefix}.ns.{namespace}.* (node events, registry requests, topology diffs, dead letters), so Kafka ACLs on that prefix keep a tenant to its namespace; their events are refused on the shared topics. Other namespaces, and the default one, use the shared topics. Env ROLLCALL_KAFKA_NAMESPACE_TOPICS (comma separated).',
  }),
  consulApiReapIntervalMs: Type.Integer({
    minimum: 100,
    maximum: 3_600_000,
    default: 30_000,
    description:
      'Consul-compatible API: how often services whose check stayed critical past its DeregisterCriticalServiceAfter are looked for and deregistered (Consul: 30 s). Env ROLLCALL_CONSUL_API_REAP_INTERVAL_MS.',
  }),
  consulApiDeregisterMinMs: Type.Integer({
    minimum: 0,
    maximum: 86_400_000,
    default: 60_000,
    description: 'Consul-compatible API: the shortest DeregisterCriticalServiceAfter honoured; a shorter one waits this long (Consul: 1 minute). Env ROLLCALL_CONSUL_API_DEREGISTER_MIN_MS.',
  }),
  consulNamespaces: Type.Union([Type.Literal('off'), Type.Literal('enterprise')], {
    default: 'off',
    description:
      'How rollcall namespaces map onto Consul. off: one Consul namespace; nodes outside the default namespace get service ID <namespace>~<node_id> and, by default, a name prefixed by <namespace>-. enterprise: each rollcall namespace is projected into the Consul Enterprise namespace of the same name (the ns parameter; it must exist in Consul), with the plain node_id as service ID. Env ROLLCALL_CONSUL_NAMESPACES.',
  }),
  consulNamespaceServiceName: Type.Optional(
    Type.String({
      minLength: 1,
      maxLength: 200,
      description:
        'Consul service name template of nodes outside the default namespace (placeholders as consulServiceName). Default: consulServiceName when it names {namespace} or consulNamespaces is enterprise, else {namespace}- followed by consulServiceName. Env ROLLCALL_CONSUL_NAMESPACE_SERVICE_NAME.',
    }),
  ),
});

export type Config = Static<typeof ConfigSchema>;

/** Environment variables of rollcall's own, by option. */
const ENV: Partial<Record<keyof Config, string[]>> = {
  host: ['ROLLCALL_HOST'],
  port: ['ROLLCALL_PORT'],
  dataDir: ['ROLLCALL_DATA_DIR'],
  databaseUrl: ['ROLLCALL_DATABASE_URL', 'DATABASE_URL'],
  databasePoolSize: ['ROLLCALL_DATABASE_POOL_SIZE'],
  instanceId: ['ROLLCALL_INSTANCE_ID'],
  namespace: ['ROLLCALL_NAMESPACE'],
  leaseTtlSeconds: ['ROLLCALL_LEASE_TTL_SECONDS'],
  heartbeatIntervalSeconds: ['ROLLCALL_HEARTBEAT_INTERVAL_SECONDS'],
  heartbeatFlushMs: ['ROLLCALL_HEARTBEAT_FLUSH_MS'],
  sweepIntervalMs: ['ROLLCALL_SWEEP_INTERVAL_MS'],
  retentionHours: ['ROLLCALL_RETENTION_HOURS', 'NODE_TTL_HOURS'],
  cleanupIntervalHours: ['ROLLCALL_CLEANUP_INTERVAL_HOURS', 'CLEANUP_INTERVAL_HOURS'],
  changeRetentionHours: ['ROLLCALL_CHANGE_RETENTION_HOURS'],
  heartbeatHistory: ['ROLLCALL_HEARTBEAT_HISTORY'],
  heartbeatHistoryHours: ['ROLLCALL_HEARTBEAT_HISTORY_HOURS'],
  maxBatch: ['ROLLCALL_MAX_BATCH'],
  writeConcurrency: ['ROLLCALL_WRITE_CONCURRENCY'],
  requestTimeoutMs: ['ROLLCALL_REQUEST_TIMEOUT_MS'],
  sseMaxBufferBytes: ['ROLLCALL_SSE_MAX_BUFFER_BYTES'],
  logLevel: ['ROLLCALL_LOG_LEVEL'],
  logFormat: ['ROLLCALL_LOG_FORMAT'],
  kafkaBrokers: ['ROLLCALL_KAFKA_BROKERS', 'KAFKA_BROKER_URL', 'KAFKA_BOOTSTRAP_SERVERS'],
  kafkaEnvironment: ['ROLLCALL_KAFKA_ENVIRONMENT', 'KAFKA_ENVIRONMENT'],
  kafkaTopicPrefix: ['ROLLCALL_KAFKA_TOPIC_PREFIX'],
  kafkaPartitions: ['ROLLCALL_KAFKA_PARTITIONS'],
  kafkaReplicationFactor: ['ROLLCALL_KAFKA_REPLICATION_FACTOR'],
  kafkaCreateTopics: ['ROLLCALL_KAFKA_CREATE_TOPICS'],
  kafkaGroupId: ['ROLLCALL_KAFKA_GROUP_ID'],
  kafkaClientId: ['ROLLCALL_KAFKA_CLIENT_ID'],
  requestIntrospectionOnStart: ['ROLLCALL_REQUEST_INTROSPECTION_ON_START'],
  topologyDiffRelay: ['ROLLCALL_TOPOLOGY_DIFF_RELAY'],
  maxEventBytes: ['ROLLCALL_MAX_EVENT_BYTES'],
  eventDedupeSize: ['ROLLCALL_EVENT_DEDUPE_SIZE'],
  eventDedupeTtlSeconds: ['ROLLCALL_EVENT_DEDUPE_TTL_SECONDS'],
  dnsPort: ['ROLLCALL_DNS_PORT'],
  dnsHost: ['ROLLCALL_DNS_HOST'],
  dnsDomain: ['ROLLCALL_DNS_DOMAIN'],
  dnsNamespaces: ['ROLLCALL_DNS_NAMESPACES'],
  dnsTtlSeconds: ['ROLLCALL_DNS_TTL_SECONDS'],
  consulAddr: ['CONSUL_HTTP_ADDR'],
  consulToken: ['CONSUL_HTTP_TOKEN'],
  consulMode: ['ROLLCALL_CONSUL_MODE'],
  consulServiceName: ['ROLLCALL_CONSUL_SERVICE_NAME'],
  consulCheck: ['ROLLCALL_CONSUL_CHECK'],
  consulCheckInterval: ['ROLLCALL_CONSUL_CHECK_INTERVAL'],
  consulCheckTimeout: ['ROLLCALL_CONSUL_CHECK_TIMEOUT'],
  consulDeregisterAfter: ['ROLLCALL_CONSUL_DEREGISTER_AFTER'],
  consulReconcileIntervalMs: ['ROLLCALL_CONSUL_RECONCILE_INTERVAL_MS'],
  consulRenewIntervalMs: ['ROLLCALL_CONSUL_RENEW_INTERVAL_MS'],
  consulTimeoutMs: ['ROLLCALL_CONSUL_TIMEOUT_MS'],
  consulConcurrency: ['ROLLCALL_CONSUL_CONCURRENCY'],
  consulRetries: ['ROLLCALL_CONSUL_RETRIES'],
  consulBreakerFailures: ['ROLLCALL_CONSUL_BREAKER_FAILURES'],
  consulBreakerResetMs: ['ROLLCALL_CONSUL_BREAKER_RESET_MS'],
  consulBreakerHalfOpenCalls: ['ROLLCALL_CONSUL_BREAKER_HALF_OPEN_CALLS'],
  consulBreakerSuccesses: ['ROLLCALL_CONSUL_BREAKER_SUCCESSES'],
  trustDomain: ['ROLLCALL_TRUST_DOMAIN'],
  caCertFile: ['ROLLCALL_CA_CERT_FILE'],
  caKeyFile: ['ROLLCALL_CA_KEY_FILE'],
  svidTtlSeconds: ['ROLLCALL_SVID_TTL_SECONDS'],
  authMode: ['ROLLCALL_AUTH_MODE'],
  insecure: ['ROLLCALL_INSECURE'],
  rateLimitPerMinute: ['ROLLCALL_RATE_LIMIT_PER_MINUTE'],
  rateLimitAnonymousPerMinute: ['ROLLCALL_RATE_LIMIT_ANONYMOUS_PER_MINUTE'],
  jwksUrl: ['ROLLCALL_JWKS_URL'],
  jwtIssuer: ['ROLLCALL_JWT_ISSUER'],
  jwtAudience: ['ROLLCALL_JWT_AUDIENCE'],
  auditFlushMs: ['ROLLCALL_AUDIT_FLUSH_MS'],
  auditRetentionDays: ['ROLLCALL_AUDIT_RETENTION_DAYS'],
  policyRefreshMs: ['ROLLCALL_POLICY_REFRESH_MS'],
  signatureMode: ['ROLLCALL_SIGNATURE_MODE'],
  signatureMaxSkewSeconds: ['ROLLCALL_SIGNATURE_MAX_SKEW_SECONDS'],
  signatureReplayCacheSize: ['ROLLCALL_SIGNATURE_REPLAY_CACHE_SIZE'],
  trustBundleFile: ['ROLLCALL_TRUST_BUNDLE_FILE'],
  revocationFile: ['ROLLCALL_REVOCATION_FILE'],
  tlsCertFile: ['ROLLCALL_TLS_CERT_FILE'],
  tlsKeyFile: ['ROLLCALL_TLS_KEY_FILE'],
  tlsClientAuth: ['ROLLCALL_TLS_CLIENT_AUTH'],
  kafkaNamespaceTopics: ['ROLLCALL_KAFKA_NAMESPACE_TOPICS'],
  consulApiReapIntervalMs: ['ROLLCALL_CONSUL_API_REAP_INTERVAL_MS'],
  consulApiDeregisterMinMs: ['ROLLCALL_CONSUL_API_DEREGISTER_MIN_MS'],
  consulNamespaces: ['ROLLCALL_CONSUL_NAMESPACES'],
  consulNamespaceServiceName: ['ROLLCALL_CONSUL_NAMESPACE_SERVICE_NAME'],
};

type Env = Record<string, string | undefined>;

function fromEnv(env: Env): Record<string, unknown> {
  const values: Record<string, unknown> = {};
  for (const [option, names] of Object.entries(ENV)) {
    const name = names.find((candidate) => env[candidate] !== undefined && env[candidate] !== '');
    if (name !== undefined) values[option] = env[name];
  }
  // The seeds' PostgreSQL variables make a URL when no URL is given.
  if (values.databaseUrl === undefined && env.POSTGRES_HOST) {
    const url = new URL('postgres://localhost');
    url.hostname = env.POSTGRES_HOST;
    url.port = env.POSTGRES_PORT ?? '5432';
    url.pathname = `/${env.POSTGRES_DB ?? 'postgres'}`;
    url.username = env.POSTGRES_USER ?? 'postgres';
    if (env.POSTGRES_PASSWORD) url.password = env.POSTGRES_PASSWORD;
    values.databaseUrl = url.toString();
  }
  // The seeds' Consul variables make an address when CONSUL_HTTP_ADDR is not given.
  if (values.consulAddr === undefined && env.CONSUL_HOST) values.consulAddr = `${env.CONSUL_HOST.includes(':') ? `[${env.CONSUL_HOST}]` : env.CONSUL_HOST}:${env.CONSUL_PORT ?? '8500'}`;
  return values;
}

function readConfigFile(path: string): Record<string, unknown> {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (cause) {
    throw new RollcallError('CONFIG_INVALID', `Cannot read config file ${path}: ${(cause as Error).message}`, { cause });
  }
  try {
    const parsed: unknown = JSON.parse(text);
    if (parsed === null || typeof parsed !== 'object' || Array.isArray(parsed)) throw new Error('not a JSON object');
    return parsed as Record<string, unknown>;
  } catch (cause) {
    throw new RollcallError('CONFIG_INVALID', `Config file ${path} is not a JSON object: ${(cause as Error).message}`, { cause });
  }
}

export interface ConfigSources {
  env?: Env;
  file?: string;
  /** Values from command-line flags; undefined entries are ignored. */
  flags?: Partial<Record<keyof Config, unknown>>;
}

/** Builds and validates the configuration; the error names the offending option and its source. */
export function loadConfig(sources: ConfigSources = {}): Config {
  const env = sources.env ?? process.env;
  const file = sources.file ?? env.ROLLCALL_CONFIG;
  const layers: Array<[string, Record<string, unknown>]> = [
    ['config file', file ? readConfigFile(file) : {}],
    ['environment', fromEnv(env)],
    ['flags', Object.fromEntries(Object.entries(sources.flags ?? {}).filter(([, value]) => value !== undefined))],
  ];
  const known = new Set(Object.keys(ConfigSchema.properties));
  const merged: Record<string, unknown> = {};
  const origin: Record<string, string> = {};
  for (const [source, values] of layers) {
    for (const [key, value] of Object.entries(values)) {
      if (!known.has(key)) throw new RollcallError('CONFIG_INVALID', `Unknown option "${key}" in ${source}.`, { details: { field: key } });
      merged[key] = value;
      origin[key] = source;
    }
  }
  // A list given as text (the environment's way) is comma separated.
  for (const list of ['kafkaNamespaceTopics', 'dnsNamespaces'] as const) {
    const text = merged[list];
    if (typeof text === 'string')
      merged[list] = text
        .split(',')
        .map((entry) => entry.trim())
        .filter((entry) => entry !== '');
  }
  const config = Value.Default(ConfigSchema, Value.Convert(ConfigSchema, merged)) as Record<string, unknown>;
  const firstError = Value.Errors(ConfigSchema, config).First();
  if (firstError) {
    const field = firstError.path.replace(/^\//, '').split('/')[0] ?? '';
    const where = origin[field] ?? 'defaults';
    // A bad database URL may carry a password: name the field, never echo its value.
    const shown = field === 'databaseUrl' ? '' : ` (got ${JSON.stringify(firstError.value)})`;
    throw new RollcallError('CONFIG_INVALID', `Invalid option "${field}" from ${where}: ${firstError.message}${shown}.`, {
      details: { field, source: where },
    });
  }
  if (typeof config.databaseUrl === 'string') {
    try {
      new URL(config.databaseUrl);
    } catch {
      throw new RollcallError('CONFIG_INVALID', `Invalid option "databaseUrl" from ${origin.databaseUrl ?? 'defaults'}: not a URL.`, {
        details: { field: 'databaseUrl' },
      });
    }
  }
  if ((config.tlsCertFile === undefined) !== (config.tlsKeyFile === undefined)) {
    const missing = config.tlsCertFile === undefined ? 'tlsCertFile' : 'tlsKeyFile';
    throw new RollcallError('CONFIG_INVALID', `Option "${missing}" is missing: set both tlsCertFile and tlsKeyFile (or neither).`, { details: { field: missing } });
  }
  if (config.tlsClientAuth === 'optional' || config.tlsClientAuth === 'require') {
    const lacking =
      config.tlsCertFile === undefined
        ? 'TLS (tlsCertFile and tlsKeyFile)'
        : config.trustBundleFile === undefined && config.caCertFile === undefined
          ? 'a trust bundle (trustBundleFile, or caCertFile and caKeyFile)'
          : null;
    if (lacking !== null) {
      const where = origin.tlsClientAuth ?? 'defaults';
      throw new RollcallError('CONFIG_INVALID', `Invalid option "tlsClientAuth" from ${where}: ${config.tlsClientAuth} needs ${lacking}.`, { details: { field: 'tlsClientAuth', source: where } });
    }
  }
  config.tlsClientAuth = tlsClientAuthOf(config);
  config.dnsNamespaces ??= [config.namespace];
  checkNamespaceTopics(config as Config, origin.kafkaNamespaceTopics ?? 'defaults');
  return config as Config;
}

/** The default namespace keeps the shared topics (events naming no namespace are of it), and topic names must fit Kafka's limit. */
function checkNamespaceTopics(config: Config, where: string): void {
  const fail = (why: string): never => {
    throw new RollcallError('CONFIG_INVALID', `Invalid option "kafkaNamespaceTopics" from ${where}: ${why}.`, { details: { field: 'kafkaNamespaceTopics', source: where } });
  };
  if (config.kafkaNamespaceTopics.includes(config.namespace)) fail(`the default namespace (${config.namespace}) always uses the shared topics`);
  for (const namespace of config.kafkaNamespaceTopics) {
    const longest = namespaceTopicNames(topicPrefixOf(config), namespace).requestIntrospection;
    if (longest.length > MAX_TOPIC_NAME_LENGTH) fail(`topic ${longest} is longer than Kafka's ${MAX_TOPIC_NAME_LENGTH} characters`);
  }
}

/** tlsClientAuth, or its default: optional when TLS and a trust bundle are configured, else off. */
export function tlsClientAuthOf(config: Pick<Config, 'tlsClientAuth' | 'tlsCertFile' | 'trustBundleFile' | 'caCertFile'>): 'off' | 'optional' | 'require' {
  return config.tlsClientAuth ?? (config.tlsCertFile !== undefined && (config.trustBundleFile !== undefined || config.caCertFile !== undefined) ? 'optional' : 'off');
}

/** Topic names of this configuration: the seeds' names under the environment's prefix. */
export function topicPrefixOf(config: Config): string {
  return config.kafkaTopicPrefix ?? DEFAULT_TOPIC_PREFIX(config.kafkaEnvironment);
}

export function instanceIdOf(config: Config): string {
  return config.instanceId ?? `registry-${hostname().replace(/[^A-Za-z0-9._-]/g, '-')}-${config.port}`;
}

/** The database URL with its password masked, for logs and /health. */
export function redactUrl(url: string): string {
  try {
    const parsed = new URL(url);
    if (parsed.password) parsed.password = '***';
    return parsed.toString();
  } catch {
    return '***';
  }
}
