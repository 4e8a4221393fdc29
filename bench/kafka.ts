// The Kafka section of the benchmark: events through the event plane instead of HTTP requests.
//
//   K1. introspections/s: N distinct NODE_INTROSPECTION events are produced before the server starts,
//       then the server (a child, Kafka enabled, fresh topics, group and database) drains the backlog;
//       the figure is N / (time from its consumer joining to the N-th durable registration).
//   K2. heartbeats/s: the server is stopped (it commits what it consumed), M NODE_HEARTBEAT events for
//       those nodes are produced, and a new server drains them the same way.
//   K3. produce → TOPOLOGY_DIFF latency: introspections of new and changed nodes at a steady rate
//       (open loop), each carrying its produce time; this process consumes the topology-diff topic and
//       takes, for every change, receipt (and the diff's publish timestamp) minus produce time.
//
// Producing ahead keeps the producer out of K1 and K2 (its own rate is reported too) and keeps it
// from competing with the server for the cores while the server consumes.
import { randomBytes } from 'node:crypto';
import { readFileSync, readdirSync } from 'node:fs';
import { Kafka, Partitioners, logLevel, type Admin, type Consumer, type LogEntry, type Message, type Producer } from 'kafkajs';
import { EVENT_TYPES, envelope, topicNames, type TopicNames, type TopologyDiffPayload } from '../src/domain/events.js';
import type { JsonObject } from '../src/domain/json.js';
import { createTopicsAndWait } from '../src/bus/kafka-bus.js';
import {
  ADMIN_URL,
  CLOCK_TICKS,
  QUICK,
  cpuBetween,
  cpuContext,
  cpuSnapshot,
  createDatabase,
  deferCleanup,
  fmt,
  gc,
  log,
  metricsText,
  ms,
  percentiles,
  readProcStatus,
  sleep,
  startServerChild,
  stopServerChild,
  table,
  verdict,
  withDatabase,
  type CpuSnapshot,
  type CpuUse,
  type Machine,
  type Percentiles,
  type Server,
} from './common.js';

// ---------------------------------------------------------------------------------------------
// Settings

const BROKERS = (process.env.BENCH_KAFKA_BROKERS ?? process.env.ROLLCALL_KAFKA_BROKERS ?? '127.0.0.1:9092')
  .split(',')
  .map((broker) => broker.trim())
  .filter((broker) => broker !== '');
/** Partitions of the node event topics (the server's default is 6). */
const PARTITIONS = Number(process.env.BENCH_KAFKA_PARTITIONS ?? 6);

const SETTINGS = QUICK
  ? { introspections: 5_000, heartbeats: 40_000, latencySeconds: 3, latencyWarmupSeconds: 1 }
  : { introspections: 30_000, heartbeats: 200_000, latencySeconds: 10, latencyWarmupSeconds: 2 };
const LATENCY_RATE = 1_000;
/** Pre-produced events go out in sends of this many, this many sends at a time. */
const PRODUCE_CHUNK = 1_000;
const PRODUCE_IN_FLIGHT = 4;
const POLL_MS = 50;
/** A phase fails when nothing moves for this long. */
const STALL_MS = 30_000;

export const KAFKA_TARGETS = {
  introspectionsPerSecond: 10_000,
  heartbeatsPerSecond: 50_000,
  diffP99Ms: 500,
} as const;

export interface KafkaSectionContext {
  root: string;
  results: Record<string, unknown>;
  failures: string[];
  machine: Machine;
  /** When false, a broker that does not answer skips the section instead of failing it. */
  required: boolean;
}

// ---------------------------------------------------------------------------------------------
// Events

const ZONES = ['zone-a', 'zone-b', 'zone-c', 'zone-d'] as const;
const MODELS = ['llama-3-8b-instruct', 'mistral-7b-v0.3', 'whisper-large-v3', 'bge-m3', 'sdxl-turbo', 'qwen2-72b'] as const;
const INCARNATION = 1;

function kafkaNodeId(i: number): string {
  return `kn-${(Math.imul(i + 1, 2654435761) >>> 0).toString(16).padStart(8, '0')}-${i}`;
}

/** A typical introspection payload (~1 KB): node_type, node_version, capabilities, endpoints, metadata. */
function introspectionPayload(i: number, extraMetadata: JsonObject = {}): JsonObject {
  const zone = ZONES[i % ZONES.length] as string;
  const gpu = i % 8 === 0;
  const ip = `10.${(i >> 16) & 255}.${(i >> 8) & 255}.${i & 255}`;
  return {
    node_id: kafkaNodeId(i),
    node_name: `compute-${i}`,
    node_type: i % 5 === 0 ? 'effect' : 'compute',
    node_version: i % 100 === 0 ? '2.0.1' : `1.${i % 7}.${i % 3}`,
    incarnation: INCARNATION,
    lease_ttl_seconds: 3600,
    capabilities: {
      operations: ['infer', 'embed', i % 2 === 0 ? 'transcribe' : 'rerank'],
      gpu,
      gpu_model: gpu ? 'nvidia-a100-80gb' : null,
      cpu: { cores: 8 << (i % 3), arch: 'x86_64' },
      memory_mb: 32_768 << (i % 3),
      models: [MODELS[i % MODELS.length] as string, MODELS[(i + 1) % MODELS.length] as string, MODELS[(i + 3) % MODELS.length] as string],
      max_concurrent_jobs: 4 + (i % 12),
      max_throughput: 100 + (i % 400),
      features: { streaming: true, batching: i % 3 !== 0, quantization: ['fp16', 'int8'] },
    },
    endpoints: {
      api: `http://${ip}:8080`,
      health: `http://${ip}:8080/health`,
      metrics: `http://${ip}:9100/metrics`,
    },
    current_state: { status: 'active', health_status: 'healthy' },
    metadata: {
      hostname: `host-${i}.${zone}.bench.internal`,
      ip,
      role: `worker-${i % 10}`,
      labels: [zone, `rack-${i % 32}`, i % 2 === 0 ? 'ssd' : 'hdd', 'bench'],
      environment: 'bench',
      region: 'eu-west-1',
      datacenter: `dc-${i % 3}`,
      owner: 'platform-team',
      build: { commit: '9f1c2e7b4a0d', built_at: '2024-05-14T09:12:00Z' },
      ...extraMetadata,
    },
  };
}

function introspectionMessage(i: number, extraMetadata: JsonObject = {}): Message {
  const payload = introspectionPayload(i, extraMetadata);
  const nodeId = payload.node_id as string;
  return { key: nodeId, value: JSON.stringify(envelope(EVENT_TYPES.introspection, nodeId, payload)) };
}

function heartbeatMessage(i: number): Message {
  const nodeId = kafkaNodeId(i);
  return { key: nodeId, value: JSON.stringify(envelope(EVENT_TYPES.heartbeat, nodeId, { node_id: nodeId, incarnation: INCARNATION })) };
}

const bytesOf = (message: Message): number => Buffer.byteLength(message.value as string);

// ---------------------------------------------------------------------------------------------
// Kafka clients of the load generator

interface ProduceStats {
  events: number;
  seconds: number;
  perSecond: number;
  mbPerSecond: number;
}

/** Sends every message as fast as the broker takes them (acks from all replicas, like the server). */
async function produceAll(producer: Producer, topic: string, messages: Message[]): Promise<ProduceStats> {
  const started = performance.now();
  let next = 0;
  let bytes = 0;
  const worker = async (): Promise<void> => {
    while (next < messages.length) {
      const chunk = messages.slice(next, next + PRODUCE_CHUNK);
      next += chunk.length;
      for (const message of chunk) bytes += bytesOf(message);
      await producer.send({ topic, acks: -1, messages: chunk });
    }
  };
  await Promise.all(Array.from({ length: PRODUCE_IN_FLIGHT }, () => worker()));
  const seconds = (performance.now() - started) / 1000;
  return { events: messages.length, seconds: round(seconds, 2), perSecond: Math.round(messages.length / seconds), mbPerSecond: round(bytes / 2 ** 20 / seconds, 1) };
}

/** Sum of the high watermarks of a topic: how many events it holds (from offset 0). */
async function topicEnd(admin: Admin, topic: string): Promise<number> {
  const offsets = await admin.fetchTopicOffsets(topic);
  return offsets.reduce((sum, partition) => sum + Number(partition.high), 0);
}

/** Sum of a group's committed offsets on a topic (partitions without a commit count 0). */
async function committed(admin: Admin, group: string, topic: string): Promise<number> {
  const [entry] = await admin.fetchOffsets({ groupId: group, topics: [topic] });
  return (entry?.partitions ?? []).reduce((sum, partition) => sum + Math.max(0, Number(partition.offset)), 0);
}

function kafkaLogCreator(): (entry: LogEntry) => void {
  return (entry: LogEntry) => {
    const { message, ...extra } = entry.log;
    log(`kafkajs ${entry.namespace}: ${message} ${JSON.stringify(extra)}`);
  };
}

// ---------------------------------------------------------------------------------------------
// The server's /metrics

/** Sum of a metric's samples whose labels include `labels`. */
function metricSum(text: string, name: string, labels: Record<string, string> = {}): number {
  let sum = 0;
  for (const line of text.split('\n')) {
    if (!line.startsWith(name)) continue;
    const rest = line.slice(name.length);
    if (rest[0] !== ' ' && rest[0] !== '{') continue;
    const labelText = rest[0] === '{' ? rest.slice(1, rest.indexOf('}')) : '';
    if (!Object.entries(labels).every(([key, value]) => labelText.includes(`${key}="${value}"`))) continue;
    const value = Number(line.slice(line.lastIndexOf(' ') + 1));
    if (Number.isFinite(value)) sum += value;
  }
  return sum;
}

interface Histogram {
  count: number;
  sum: number;
  /** Cumulative count by upper bound, in the order /metrics lists them ("+Inf" last). */
  buckets: Array<[string, number]>;
}

function histogram(text: string, name: string): Histogram {
  const buckets = new Map<string, number>();
  const prefix = `${name}_bucket{`;
  for (const line of text.split('\n')) {
    if (!line.startsWith(prefix)) continue;
    const le = /le="([^"]+)"/.exec(line)?.[1];
    if (le !== undefined) buckets.set(le, (buckets.get(le) ?? 0) + Number(line.slice(line.lastIndexOf(' ') + 1)));
  }
  return { count: metricSum(text, `${name}_count`), sum: metricSum(text, `${name}_sum`), buckets: [...buckets] };
}

interface HistogramDelta {
  count: number;
  mean: number | null;
  /** Observations per bucket (not cumulative), e.g. {"<=500": 12, "<=1000": 3}. */
  by_bucket: Record<string, number>;
}

function histogramDelta(before: Histogram, after: Histogram, digits = 1): HistogramDelta {
  const count = after.count - before.count;
  const earlier = new Map(before.buckets);
  const byBucket: Record<string, number> = {};
  let previous = 0;
  for (const [le, cumulative] of after.buckets) {
    const delta = cumulative - (earlier.get(le) ?? 0);
    if (delta - previous > 0) byBucket[`<=${le}`] = delta - previous;
    previous = delta;
  }
  return { count, mean: count > 0 ? round((after.sum - before.sum) / count, digits) : null, by_bucket: byBucket };
}

interface ServerMetrics {
  text: string;
  registered: number;
  renewed: number;
  deadLettered: number;
  busBatch: Histogram;
  writeBatch: Histogram;
  publishDelay: Histogram;
  diffsPublished: number;
  relayLag: number;
}

async function serverMetrics(server: Server): Promise<ServerMetrics> {
  const text = await metricsText(server);
  return {
    text,
    registered: metricSum(text, 'rollcall_bus_events_total', { event_type: EVENT_TYPES.introspection, outcome: 'registered' }),
    renewed: metricSum(text, 'rollcall_bus_events_total', { event_type: EVENT_TYPES.heartbeat, outcome: 'renewed' }),
    deadLettered: metricSum(text, 'rollcall_bus_events_total', { outcome: 'dead_lettered' }),
    busBatch: histogram(text, 'rollcall_bus_batch_size'),
    writeBatch: histogram(text, 'rollcall_write_batch_size'),
    publishDelay: histogram(text, 'rollcall_topology_diff_publish_delay_seconds'),
    diffsPublished: metricSum(text, 'rollcall_topology_diffs_published_total'),
    relayLag: metricSum(text, 'rollcall_topology_diff_lag_versions'),
  };
}

// ---------------------------------------------------------------------------------------------
// CPU of the broker (a JVM on this machine, when it runs here)

function brokerPids(): number[] {
  const pids: number[] = [];
  let entries: string[];
  try {
    entries = readdirSync('/proc');
  } catch {
    return pids;
  }
  for (const entry of entries) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const args = readFileSync(`/proc/${entry}/cmdline`, 'utf8');
      if (/java/.test(args) && /kafka/i.test(args)) pids.push(Number(entry));
    } catch {
      // gone meanwhile
    }
  }
  return pids;
}

interface KafkaCpuUse extends CpuUse {
  /** The Kafka broker, when it runs on this machine (taken out of `other`). */
  kafka: number;
}

function kafkaCpuBetween(before: CpuSnapshot, after: CpuSnapshot, server: Server, broker: number[]): KafkaCpuUse {
  const use = cpuBetween(before, after, server.child.pid);
  const seconds = (after.at - before.at) / 1000;
  let ticks = 0;
  for (const pid of broker) ticks += (after.processes.get(pid)?.ticks ?? 0) - (before.processes.get(pid)?.ticks ?? 0);
  const kafka = Math.round((ticks / CLOCK_TICKS / seconds) * 1000) / 10;
  return { ...use, kafka, other: Math.max(0, Math.round((use.other - kafka) * 10) / 10), other_top: use.other_top.filter((entry) => !/java.*kafka|kafka.*java/i.test(entry)) };
}

function rssOf(server: Server): { rss_mb: number | null; peak_rss_mb: number | null } {
  const status = readProcStatus(server.child.pid);
  return {
    rss_mb: status.VmRSS === undefined ? null : Math.round(status.VmRSS / 1024),
    peak_rss_mb: status.VmHWM === undefined ? null : Math.round(status.VmHWM / 1024),
  };
}

// ---------------------------------------------------------------------------------------------
// Phases

interface Drained {
  /** From the server's consumer joining the group (its "event bus ready" log line). */
  seconds: number;
  perSecond: number;
  /** Between 10 % and 90 % of the events: the rate once started, without start-up and tail. */
  steadyPerSecond: number | null;
  /** The group's offsets covered every event this long after the last one was applied. */
  committedAfterMs: number | null;
  events: number;
  deadLettered: number;
}

/**
 * Polls /metrics until `count(metrics)` reaches `total`, then the group's committed offsets until
 * they cover the topic. Fails when the server dies or nothing moves for STALL_MS.
 */
async function drain(server: Server, admin: Admin, group: string, topic: string, startedAt: number, total: number, count: (metrics: ServerMetrics) => number): Promise<Drained> {
  const samples: Array<[number, number]> = [];
  let last = -1;
  let movedAt = Date.now();
  let metrics: ServerMetrics;
  for (;;) {
    if (server.exitCode !== undefined) throw new Error(`the server exited (code ${server.exitCode}) while consuming ${topic}`);
    metrics = await serverMetrics(server);
    const now = Date.now();
    const done = count(metrics);
    samples.push([now, done]);
    if (done !== last) {
      last = done;
      movedAt = now;
    }
    if (done + metrics.deadLettered >= total) break;
    if (now - movedAt > STALL_MS) throw new Error(`the intake stalled at ${done} of ${total} events of ${topic} (${metrics.deadLettered} dead-lettered)`);
    await sleep(POLL_MS);
  }
  const finishedAt = samples[samples.length - 1]?.[0] ?? Date.now();
  const seconds = (finishedAt - startedAt) / 1000;
  const at = (share: number): [number, number] | undefined => samples.find(([, done]) => done >= share * total);
  const low = at(0.1);
  const high = at(0.9);
  const steady = low && high && high[0] > low[0] ? Math.round(((high[1] - low[1]) * 1000) / (high[0] - low[0])) : null;
  let committedAfterMs: number | null = null;
  const end = await topicEnd(admin, topic);
  const commitDeadline = Date.now() + 10_000;
  while (Date.now() < commitDeadline) {
    if ((await committed(admin, group, topic)) >= end) {
      committedAfterMs = Date.now() - finishedAt;
      break;
    }
    await sleep(20);
  }
  return { seconds: round(seconds, 2), perSecond: Math.round(total / seconds), steadyPerSecond: steady, committedAfterMs, events: total, deadLettered: metrics.deadLettered };
}

interface LatencySample {
  produced: number;
  committed: number;
  published: number;
  received: number;
}

interface LatencyStats {
  rate: number;
  seconds: number;
  sent: number;
  received: number;
  missing: number;
  producer: { max_lag_ms: number; send_errors: number };
  diffs: number;
  mean_changes_per_diff: number | null;
  /** Produce → this process read the diff carrying the change (what a follower sees). */
  produce_to_received_ms: Percentiles;
  /** Produce → the diff's Kafka timestamp (the relay's send). */
  produce_to_published_ms: Percentiles;
  /** Produce → the change's changed_at (the registry's write; ms resolution). */
  produce_to_committed_ms: Percentiles;
  committed_to_published_ms: Percentiles;
  published_to_received_ms: Percentiles;
}

const nowMs = (): number => performance.timeOrigin + performance.now();

/**
 * Produces introspections at a steady rate (open loop, each due at start + n/rate), alternately of a
 * new node and a change of a node from K1, each with its produce time in metadata.
 */
async function steadyIntrospections(
  producer: Producer,
  topic: string,
  runId: string,
  phase: string,
  rate: number,
  seconds: number,
  nextNode: () => number,
): Promise<{ sent: number; maxLagMs: number; sendErrors: number }> {
  const total = Math.round(rate * seconds);
  const start = nowMs() + 5;
  let sent = 0;
  let maxLagMs = 0;
  let sendErrors = 0;
  const sends: Array<Promise<unknown>> = [];
  while (sent < total) {
    const now = nowMs();
    const due = Math.min(total, Math.floor(((now - start) * rate) / 1000) + 1);
    if (due > sent) {
      const messages: Message[] = [];
      for (; sent < due; sent += 1) {
        maxLagMs = Math.max(maxLagMs, now - (start + (sent * 1000) / rate));
        messages.push(introspectionMessage(nextNode(), { bench_run: runId, bench_phase: phase, bench_seq: sent, bench_produced_at: nowMs() }));
      }
      sends.push(
        producer.send({ topic, acks: -1, messages }).catch(() => {
          sendErrors += messages.length;
        }),
      );
    }
    await sleep(1);
  }
  await Promise.all(sends);
  return { sent, maxLagMs: round(maxLagMs, 1), sendErrors };
}

// ---------------------------------------------------------------------------------------------
// The section

export async function kafkaSection(context: KafkaSectionContext): Promise<string[]> {
  const { root, results, failures, machine } = context;
  const runId = randomBytes(4).toString('hex');
  const prefix = `bench${runId}.omninode_bridge.onex.evt`;
  const topics: TopicNames = topicNames(prefix);
  const group = `bench${runId}-registry`;
  const diffGroup = `bench${runId}-diff-reader`;
  const kafka = new Kafka({ clientId: `rollcall-bench-${runId}`, brokers: BROKERS, connectionTimeout: 3000, retry: { retries: 2 }, logLevel: logLevel.ERROR, logCreator: kafkaLogCreator });
  const admin = kafka.admin();
  try {
    await admin.connect();
    await admin.describeCluster();
  } catch (error) {
    await admin.disconnect().catch(() => undefined);
    const why = `no Kafka answers at ${BROKERS.join(',')} (${(error as Error).message}); \`bash scripts/kafka start\` runs one`;
    if (context.required) throw new Error(why);
    log(`kafka section skipped: ${why}`);
    results.kafka = { skipped: why };
    return ['Kafka event plane: skipped, ' + why];
  }
  deferCleanup(() => admin.disconnect());
  const out: string[] = [];
  const section: Record<string, unknown> = {
    brokers: BROKERS,
    topic_prefix: prefix,
    partitions: PARTITIONS,
    group,
    settings: { ...SETTINGS, latency_rate: LATENCY_RATE, produce_chunk: PRODUCE_CHUNK, produce_in_flight: PRODUCE_IN_FLIGHT, poll_ms: POLL_MS },
    targets: KAFKA_TARGETS,
  };
  results.kafka = section;

  // Fresh topics (the server's layout: node topics partitioned, the ordered ones with one partition),
  // a fresh group and a fresh database; all removed at the end.
  const nodeTopics = [topics.introspection, topics.heartbeat, topics.tombstone, topics.deadLetter];
  const orderedTopics = [topics.requestIntrospection, topics.topologyDiff];
  await createTopicsAndWait(admin, [...nodeTopics.map((name) => ({ name, partitions: PARTITIONS })), ...orderedTopics.map((name) => ({ name, partitions: 1 }))]);
  deferCleanup(async () => {
    await admin.deleteGroups([group, diffGroup]).catch(() => undefined);
    await admin.deleteTopics({ topics: [...nodeTopics, ...orderedTopics] }).catch((error: unknown) => log(`could not delete topics ${prefix}.*: ${(error as Error).message}`));
    log(`deleted topics ${prefix}.*`);
  });
  log(`kafka: topics ${prefix}.* (${PARTITIONS} partitions), group ${group}, brokers ${BROKERS.join(',')}`);
  const dbName = `rollcall_bench_kafka_${runId}`;
  const databaseUrl = withDatabase(ADMIN_URL, dbName);
  const dropDatabase = await createDatabase(dbName);
  cpuContext.database = dbName;
  section.database = dbName;

  const producer = kafka.producer({ createPartitioner: Partitioners.DefaultPartitioner, allowAutoTopicCreation: false });
  await producer.connect();
  deferCleanup(() => producer.disconnect());
  const broker = brokerPids();

  const serverEnv = {
    ROLLCALL_KAFKA_BROKERS: BROKERS.join(','),
    ROLLCALL_KAFKA_TOPIC_PREFIX: prefix,
    ROLLCALL_KAFKA_GROUP_ID: group,
    ROLLCALL_KAFKA_PARTITIONS: String(PARTITIONS),
    // info: the "event bus ready" line marks when the consumer joined the group.
    ROLLCALL_LOG_LEVEL: 'info',
  };
  /** The running server child, for its last output when something breaks. */
  const current: { server: Server | null } = { server: null };
  let stopServer: (() => Promise<void>) | null = null;
  /** Starts a server child; resolves with it and the time its consumer joined the group. */
  const start = async (): Promise<{ srv: Server; joinedAt: number }> => {
    let joinedAt: number | null = null;
    const srv = await startServerChild(root, databaseUrl, {
      env: serverEnv,
      onLine: (line) => {
        if (joinedAt !== null || !line.includes('event bus ready')) return;
        try {
          const entry = JSON.parse(line) as { msg?: string; time?: number };
          if (entry.msg === 'event bus ready' && typeof entry.time === 'number') joinedAt = entry.time;
        } catch {
          // not a log line of ours
        }
      },
    });
    current.server = srv;
    stopServer = deferCleanup(() => stopServerChild(srv));
    for (let wait = 0; joinedAt === null && wait < 20; wait += 1) await sleep(10);
    log(`server pid ${srv.child.pid} ready at ${srv.url}`);
    return { srv, joinedAt: joinedAt ?? Date.now() };
  };
  const stop = async (): Promise<void> => {
    await stopServer?.();
    stopServer = null;
    current.server = null;
  };

  try {
    // K1. Introspections
    const n = SETTINGS.introspections;
    log(`K1. producing ${fmt(n)} introspections ahead of the server`);
    const introspections = Array.from({ length: n }, (_, i) => introspectionMessage(i));
    const introspectionBytes = introspections.reduce((sum, message) => sum + bytesOf(message), 0) / n;
    const payloadBytes = Buffer.byteLength(JSON.stringify(introspectionPayload(0)));
    const heartbeatBytes = bytesOf(heartbeatMessage(0));
    section.event_bytes = { introspection: Math.round(introspectionBytes), introspection_payload: payloadBytes, heartbeat: heartbeatBytes };
    gc();
    const producedIntrospections = await produceAll(producer, topics.introspection, introspections);
    introspections.length = 0;
    log(`   producer: ${fmt(producedIntrospections.perSecond)} events/s (${fmt(producedIntrospections.mbPerSecond, 1)} MB/s)`);
    const first = await start();
    const cpu1Before = await cpuSnapshot();
    const k1 = await drain(first.srv, admin, group, topics.introspection, first.joinedAt, n, (metrics) => metrics.registered);
    const cpu1 = kafkaCpuBetween(cpu1Before, await cpuSnapshot(), first.srv, broker);
    const k1Metrics = await serverMetrics(first.srv);
    const k1Rss = rssOf(first.srv);
    if (k1.deadLettered > 0) failures.push(`kafka K1: ${k1.deadLettered} introspections dead-lettered`);
    log(
      `   ${fmt(k1.perSecond)} introspections/s durable (${fmt(n)} in ${fmt(k1.seconds, 2)} s; steady ${fmt(k1.steadyPerSecond)}/s), mean batch ${fmt(histogramDelta(emptyHistogram(), k1Metrics.busBatch).mean, 1)} events, ${fmt(histogramDelta(emptyHistogram(), k1Metrics.writeBatch).mean, 1)} writes per transaction`,
    );
    // The relay publishes the N changes meanwhile; let it finish so it does not run into K2.
    let relayCaughtUp: number | null = null;
    for (let metrics = k1Metrics; ; metrics = await serverMetrics(first.srv)) {
      if (metrics.relayLag === 0 && metrics.diffsPublished > 0) {
        relayCaughtUp = (Date.now() - first.joinedAt) / 1000;
        break;
      }
      if (Date.now() - first.joinedAt > 120_000) break;
      await sleep(POLL_MS);
    }
    const relayMetrics = await serverMetrics(first.srv);
    section.introspections = {
      producer: producedIntrospections,
      ...k1,
      bus_batch: histogramDelta(emptyHistogram(), k1Metrics.busBatch),
      write_batch: histogramDelta(emptyHistogram(), k1Metrics.writeBatch),
      relay: {
        caught_up_after_s: relayCaughtUp === null ? null : round(relayCaughtUp, 2),
        diffs_published: relayMetrics.diffsPublished,
        publish_delay_s: histogramDelta(emptyHistogram(), relayMetrics.publishDelay, 3),
      },
      cpu_pct_of_core: cpu1,
      server: k1Rss,
    };
    if (relayCaughtUp === null) failures.push('kafka K1: the topology-diff relay did not catch up within 120 s');
    else log(`   relay: every change published ${fmt(relayCaughtUp, 2)} s after the consumer joined (${fmt(relayMetrics.diffsPublished)} diffs)`);
    await stop();

    // K2. Heartbeats
    const m = SETTINGS.heartbeats;
    log(`K2. producing ${fmt(m)} heartbeats over ${fmt(n)} nodes while no server runs`);
    const heartbeats = Array.from({ length: m }, (_, i) => heartbeatMessage(i % n));
    gc();
    const producedHeartbeats = await produceAll(producer, topics.heartbeat, heartbeats);
    heartbeats.length = 0;
    log(`   producer: ${fmt(producedHeartbeats.perSecond)} events/s (${fmt(producedHeartbeats.mbPerSecond, 1)} MB/s)`);
    const second = await start();
    const cpu2Before = await cpuSnapshot();
    const k2 = await drain(second.srv, admin, group, topics.heartbeat, second.joinedAt, m, (metrics) => metrics.renewed);
    const cpu2 = kafkaCpuBetween(cpu2Before, await cpuSnapshot(), second.srv, broker);
    const k2Metrics = await serverMetrics(second.srv);
    const k2Rss = rssOf(second.srv);
    if (k2.deadLettered > 0) failures.push(`kafka K2: ${k2.deadLettered} heartbeats dead-lettered`);
    const k2Durable = k2.committedAfterMs === null ? null : Math.round(m / (k2.seconds + k2.committedAfterMs / 1000));
    section.heartbeats = {
      nodes: n,
      producer: producedHeartbeats,
      ...k2,
      durable_per_second: k2Durable,
      bus_batch: histogramDelta(emptyHistogram(), k2Metrics.busBatch),
      heartbeat_flushes: metricSum(k2Metrics.text, 'rollcall_heartbeat_flushes_total'),
      cpu_pct_of_core: cpu2,
      server: k2Rss,
    };
    log(`   ${fmt(k2.perSecond)} heartbeats/s consumed (${fmt(m)} in ${fmt(k2.seconds, 2)} s; steady ${fmt(k2.steadyPerSecond)}/s), all committed ${fmt(k2.committedAfterMs)} ms later`);

    // K3. Produce → TOPOLOGY_DIFF latency at a steady rate
    const srv = second.srv;
    const samples = new Map<number, LatencySample>();
    let diffs = 0;
    let diffChanges = 0;
    const consumer: Consumer = kafka.consumer({ groupId: diffGroup, maxWaitTimeInMs: 100, sessionTimeout: 10_000, heartbeatInterval: 1_000, allowAutoTopicCreation: false });
    // Start the reader at the end of the topic: K1's diffs are not read again.
    const diffEnd = await admin.fetchTopicOffsets(topics.topologyDiff);
    await admin.setOffsets({ groupId: diffGroup, topic: topics.topologyDiff, partitions: diffEnd.map((partition) => ({ partition: partition.partition, offset: partition.high })) });
    const joined = new Promise<void>((resolve) => consumer.on(consumer.events.GROUP_JOIN, () => resolve()));
    await consumer.connect();
    deferCleanup(() => consumer.disconnect());
    await consumer.subscribe({ topics: [topics.topologyDiff], fromBeginning: true });
    await consumer.run({
      eachBatchAutoResolve: true,
      eachBatch: async ({ batch }) => {
        const received = nowMs();
        for (const message of batch.messages) {
          const published = Number(message.timestamp);
          let payload: TopologyDiffPayload;
          try {
            payload = (JSON.parse(message.value?.toString() ?? '') as { payload: TopologyDiffPayload }).payload;
          } catch {
            continue;
          }
          diffs += 1;
          diffChanges += payload.changes.length;
          for (const change of payload.changes) {
            const metadata = change.node.metadata;
            if (metadata.bench_run !== runId || metadata.bench_phase !== 'measure') continue;
            const seq = metadata.bench_seq;
            const produced = metadata.bench_produced_at;
            if (typeof seq !== 'number' || typeof produced !== 'number' || samples.has(seq)) continue;
            samples.set(seq, { produced, committed: Date.parse(change.changed_at), published, received });
          }
        }
      },
    });
    let joinTimer: NodeJS.Timeout | undefined;
    await Promise.race([
      joined,
      new Promise<never>((_, reject) => {
        joinTimer = setTimeout(() => reject(new Error('the topology-diff reader did not join its group within 30 s')), 30_000);
      }),
    ]).finally(() => clearTimeout(joinTimer));
    let node = n;
    let changed = 0;
    // Even events add a node, odd ones change a node of K1 (a new produce time is new content).
    const nextNode = (): number => ((node + changed) % 2 === 0 ? node++ : changed++ % n);
    log(`K3. introspections at a steady ${fmt(LATENCY_RATE)}/s: ${SETTINGS.latencyWarmupSeconds} s warm-up, ${SETTINGS.latencySeconds} s measured`);
    await steadyIntrospections(producer, topics.introspection, runId, 'warmup', LATENCY_RATE, SETTINGS.latencyWarmupSeconds, nextNode);
    const before3 = await serverMetrics(srv);
    const diffsBefore = { diffs, diffChanges };
    const cpu3Before = await cpuSnapshot();
    const paced = await steadyIntrospections(producer, topics.introspection, runId, 'measure', LATENCY_RATE, SETTINGS.latencySeconds, nextNode);
    const cpu3 = kafkaCpuBetween(cpu3Before, await cpuSnapshot(), srv, broker);
    const expected = paced.sent - paced.sendErrors;
    const waitUntil = Date.now() + 20_000;
    while (samples.size < expected && Date.now() < waitUntil && srv.exitCode === undefined) await sleep(POLL_MS);
    const after3 = await serverMetrics(srv);
    const k3Rss = rssOf(srv);
    const values = [...samples.values()];
    const diff3 = diffs - diffsBefore.diffs;
    const k3: LatencyStats = {
      rate: LATENCY_RATE,
      seconds: SETTINGS.latencySeconds,
      sent: paced.sent,
      received: samples.size,
      missing: expected - samples.size,
      producer: { max_lag_ms: paced.maxLagMs, send_errors: paced.sendErrors },
      diffs: diff3,
      mean_changes_per_diff: diff3 > 0 ? round((diffChanges - diffsBefore.diffChanges) / diff3, 1) : null,
      produce_to_received_ms: percentiles(values.map((sample) => sample.received - sample.produced)),
      produce_to_published_ms: percentiles(values.map((sample) => sample.published - sample.produced)),
      produce_to_committed_ms: percentiles(values.map((sample) => sample.committed - sample.produced)),
      committed_to_published_ms: percentiles(values.map((sample) => sample.published - sample.committed)),
      published_to_received_ms: percentiles(values.map((sample) => sample.received - sample.published)),
    };
    if (k3.missing > 0) failures.push(`kafka K3: ${k3.missing} of ${expected} changes never appeared in a TOPOLOGY_DIFF within 20 s`);
    if (paced.sendErrors > 0) failures.push(`kafka K3: ${paced.sendErrors} introspections were not accepted by Kafka`);
    if (after3.deadLettered > before3.deadLettered) failures.push(`kafka K3: ${after3.deadLettered - before3.deadLettered} introspections dead-lettered`);
    section.diff_latency = {
      ...k3,
      bus_batch: histogramDelta(before3.busBatch, after3.busBatch),
      write_batch: histogramDelta(before3.writeBatch, after3.writeBatch),
      /** The relay's own figure: change committed → its diff published, in seconds. */
      relay_publish_delay_s: histogramDelta(before3.publishDelay, after3.publishDelay, 3),
      cpu_pct_of_core: cpu3,
      server: k3Rss,
    };
    const r = k3.produce_to_received_ms;
    log(`   produce → diff received: p50 ${ms(r.p50)}, p99 ${ms(r.p99)}, max ${ms(r.max)} (${fmt(k3.received)} of ${fmt(expected)} changes in ${fmt(diff3)} diffs)`);
    await consumer.disconnect();

    // The report
    const introBatch = section.introspections as { bus_batch: HistogramDelta; write_batch: HistogramDelta };
    const hbBatch = (section.heartbeats as { bus_batch: HistogramDelta }).bus_batch;
    const p = k3.produce_to_published_ms;
    const rows: string[][] = [
      [
        'K1. Kafka introspections/s (durable)',
        `${fmt(k1.perSecond)}/s  (${fmt(n)} in ${fmt(k1.seconds, 2)} s, steady ${fmt(k1.steadyPerSecond)}/s; producer alone ${fmt(producedIntrospections.perSecond)}/s)`,
        `>= ${fmt(KAFKA_TARGETS.introspectionsPerSecond)}/s`,
        verdict(k1.perSecond >= KAFKA_TARGETS.introspectionsPerSecond),
      ],
      [
        'K2. Kafka heartbeats/s',
        `${fmt(k2.perSecond)}/s  (${fmt(m)} in ${fmt(k2.seconds, 2)} s, steady ${fmt(k2.steadyPerSecond)}/s; durable ${fmt(k2Durable)}/s; producer alone ${fmt(producedHeartbeats.perSecond)}/s)`,
        `>= ${fmt(KAFKA_TARGETS.heartbeatsPerSecond)}/s`,
        verdict(k2.perSecond >= KAFKA_TARGETS.heartbeatsPerSecond),
      ],
      [
        `K3. Produce → TOPOLOGY_DIFF @ ${fmt(LATENCY_RATE)}/s`,
        `p50 ${ms(r.p50)} / p99 ${ms(r.p99)} / max ${ms(r.max)} received  (published: p50 ${ms(p.p50)} / p99 ${ms(p.p99)}; ${fmt(k3.received)}/${fmt(expected)} changes)`,
        `p99 < ${KAFKA_TARGETS.diffP99Ms} ms`,
        verdict(k3.missing === 0 && r.p99 < KAFKA_TARGETS.diffP99Ms),
      ],
    ];
    const cpuRows = (
      [
        ['K1. introspections', cpu1],
        ['K2. heartbeats', cpu2],
        [`K3. ${fmt(LATENCY_RATE)} introspections/s`, cpu3],
      ] as Array<[string, KafkaCpuUse]>
    ).map(([name, use]) => [
      name,
      `${fmt(use.server)}%`,
      `${fmt(use.postgres)}%`,
      broker.length > 0 ? `${fmt(use.kafka)}%` : '-',
      `${fmt(use.loadgen)}%`,
      `${fmt(use.other)}%`,
      `${fmt(use.machine_busy)}% / ${machine.cores * 100}%`,
    ]);
    out.push('Kafka event plane');
    out.push(
      `server: child process with Kafka at ${BROKERS.join(',')} (topics ${prefix}.*, ${PARTITIONS} partitions, group ${group}), database …/${dbName}; producer and diff reader (kafkajs) in this process`,
    );
    out.push(
      `introspection event ${fmt(introspectionBytes)} B (payload ${fmt(payloadBytes)} B), heartbeat event ${fmt(heartbeatBytes)} B; K1 and K2 are produced before the server starts and timed from its consumer joining the group`,
    );
    out.push('');
    out.push(table(['Figure', 'Result', 'Target', 'vs target'], rows));
    out.push('');
    out.push(
      `K1: mean ${fmt(introBatch.bus_batch.mean, 1)} events per consumed batch, ${fmt(introBatch.write_batch.mean, 1)} registrations per transaction (${fmt(introBatch.write_batch.count)} transactions); offsets committed ${fmt(k1.committedAfterMs)} ms after the last write; relay published every change ${relayCaughtUp === null ? 'not within 120 s' : `${fmt(relayCaughtUp, 2)} s after the join`} (${fmt(relayMetrics.diffsPublished)} diffs).`,
    );
    out.push(`K2: mean ${fmt(hbBatch.mean, 1)} events per consumed batch; offsets covering every heartbeat committed ${fmt(k2.committedAfterMs)} ms after the last was counted.`);
    out.push(
      `K3: produce → registry write p50 ${ms(k3.produce_to_committed_ms.p50)} / p99 ${ms(k3.produce_to_committed_ms.p99)}, write → diff published p50 ${ms(k3.committed_to_published_ms.p50)} / p99 ${ms(k3.committed_to_published_ms.p99)}, published → received p50 ${ms(k3.published_to_received_ms.p50)} / p99 ${ms(k3.published_to_received_ms.p99)}; ${fmt(k3.mean_changes_per_diff, 1)} changes per diff; producer at most ${fmt(k3.producer.max_lag_ms, 1)} ms behind schedule.`,
    );
    out.push(
      `Server RSS: ${fmt(k1Rss.rss_mb)} MB after K1 (peak ${fmt(k1Rss.peak_rss_mb)} MB), ${fmt(k2Rss.rss_mb)} MB after K2, ${fmt(k3Rss.rss_mb)} MB after K3 (peak ${fmt(k3Rss.peak_rss_mb)} MB; K2 and K3 share the second server).`,
    );
    out.push('');
    out.push(`CPU by process during each Kafka phase (% of one core; the machine has ${machine.cores * 100}%; K1/K2 from the server answering /health to the last event):`);
    out.push(table(['Phase', 'server', 'postgres', 'kafka', 'loadgen', 'other', 'machine busy'], cpuRows));
    const interference = (
      [
        ['K1', cpu1],
        ['K2', cpu2],
        ['K3', cpu3],
      ] as Array<[string, KafkaCpuUse]>
    ).filter(([, use]) => use.other >= 10);
    if (interference.length > 0) {
      out.push('');
      out.push('WARNING: other processes used the CPU during the Kafka phases:');
      for (const [name, use] of interference) out.push(`  ${name}: other ${fmt(use.other)}%${use.other_top.length > 0 ? ` (${use.other_top.join(', ')})` : ''}`);
    }
    return out;
  } catch (error) {
    const running = current.server;
    if (running && running.output.length > 0) log(`last server output:\n${running.output.slice(-20).join('\n')}`);
    throw error;
  } finally {
    await stop();
    await dropDatabase();
  }
}

function emptyHistogram(): Histogram {
  return { count: 0, sum: 0, buckets: [] };
}

function round(value: number, digits: number): number {
  const factor = 10 ** digits;
  return Math.round(value * factor) / factor;
}
