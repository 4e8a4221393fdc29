// rollcall's benchmark against a real PostgreSQL: a server in a child process, the load generated here.
//
//   npm run bench                 full run (~100k nodes, 10 s phases; a few minutes on 2 cores)
//   BENCH_QUICK=1 npm run bench   smoke run (10k nodes, 2 s phases)
//
// Five sections, each with its own server children and databases: the HTTP API (here), the Kafka
// event plane (bench/kafka.ts: introspections/s and heartbeats/s through Kafka into the store, and
// produce → TOPOLOGY_DIFF latency; about a minute, 20 s with BENCH_QUICK=1), Consul
// (bench/consul.ts: registrations/s with the Consul sink on and off against a second instance, the
// sink's projection lag, and 1,000 blocking queries woken by one change; under 90 s, 30 s quick),
// signing (bench/signing.ts: registrations/s through POST /api/v1/introspection with signature
// verification in enforce mode next to the same pre-signed load with it off; about 40 s, 20 s quick),
// and readers (bench/readers.ts: heap before and after 10,000 long-polls, memory with 100 stuck SSE
// readers, seconds from SIGTERM to exit with 1,000 watchers open; about a minute; alone with
// `npm run bench:readers`).
//
// Environment:
//   BENCH_DATABASE_URL      admin URL (default postgres://postgres@127.0.0.1:5432/postgres); a fresh
//                           database rollcall_bench_<random> is created through it and dropped at the end
//   BENCH_QUICK=1           shrink every phase for a smoke run
//   BENCH_ONLY=kafka        run only these sections (comma separated): http, kafka, consul, signing,
//                           readers (default all)
//   BENCH_KAFKA_BROKERS     Kafka for the kafka section (default ROLLCALL_KAFKA_BROKERS, else
//                           127.0.0.1:9092; `bash scripts/kafka start` runs one); the section is
//                           skipped when it does not answer, unless BENCH_ONLY asks for it
//   BENCH_SERVER_NODE_ARGS  extra node flags for the server child, e.g. "--cpu-prof --cpu-prof-dir=/tmp/prof"
//
// It prints figures next to the targets and writes them to bench/results/latest.json. It never
// judges the figures by its exit code: it exits non-zero only when something broke (the server did
// not start or died, a request failed or got a non-2xx answer).
import { randomBytes } from 'node:crypto';
import { mkdirSync, writeFileSync } from 'node:fs';
import { Agent, request as httpRequest } from 'node:http';
import { availableParallelism, cpus, release, totalmem } from 'node:os';
import { join } from 'node:path';
import pg from 'pg';
import { redactUrl } from '../src/config/config.js';
import { PACKAGE } from '../src/version.js';
import {
  ADMIN_URL,
  JSON_HEADERS,
  QUICK,
  SERVER_NODE_ARGS,
  cannon,
  cleanupAll,
  cpuBetween,
  cpuContext,
  cpuSnapshot,
  createDatabase,
  deferCleanup,
  describeFailures,
  fleet,
  fmt,
  getJson,
  log,
  mb,
  measure,
  metricValue,
  metricsText,
  ms,
  nodeId,
  percentiles,
  projectRoot,
  readProcStatus,
  readRssMb,
  registrationBody,
  registrationBodyNext,
  sleep,
  startServerChild,
  stopServerChild,
  table,
  verdict,
  withDatabase,
  type CpuUse,
  type Machine,
  type Percentiles,
  type Server,
} from './common.js';
import { consulSection } from './consul.js';
import { kafkaSection } from './kafka.js';
import { readersSection } from './readers.js';
import { signingSection } from './signing.js';

// ---------------------------------------------------------------------------------------------
// Settings

const ALL_SECTIONS = ['http', 'kafka', 'consul', 'signing', 'readers'] as const;
type Section = (typeof ALL_SECTIONS)[number];
/** BENCH_ONLY=http, kafka, consul, signing or readers (comma separated) runs only those sections. */
const SECTIONS = new Set<Section>(
  (process.env.BENCH_ONLY ?? ALL_SECTIONS.join(','))
    .split(',')
    .map((name) => name.trim())
    .filter((name): name is Section => (ALL_SECTIONS as readonly string[]).includes(name)),
);

const SETTINGS = QUICK
  ? { phaseSeconds: 2, warmupSeconds: 0.5, listSeconds: 1, singleSeconds: 1, totalNodes: 10_000, heartbeatNodes: 2_000 }
  : { phaseSeconds: 10, warmupSeconds: 2, listSeconds: 5, singleSeconds: 2, totalNodes: 100_000, heartbeatNodes: 10_000 };
const REGISTER_CONNECTIONS = 128;
const HEARTBEAT_CONNECTIONS = 64;
const FILL_CONNECTIONS = 128;
const LIST_CONNECTIONS = 8;
const PACED_RATE = 1_000;

const TARGETS = {
  registrationsPerSecond: 5_000,
  heartbeatsPerSecond: 20_000,
  pacedP99Ms: 25,
  listP99Ms: 20,
  rssMb: 512,
} as const;

const REGISTER_PATH = '/api/v1/nodes/register';
const HEARTBEAT_PATH = '/api/v1/nodes/heartbeat';

// The fleet (node i always the same id and document) and the autocannon load live in common.ts.
function heartbeatBody(i: number): string {
  return `{"node_id":"${nodeId(i)}"}`;
}

// ---------------------------------------------------------------------------------------------
// HTTP helpers

interface Health {
  status: string;
  nodes: { online: number; offline: number; removed: number };
}

async function onlineBenchNodes(server: Server): Promise<number> {
  const health = await getJson<Health>(`${server.url}/health`);
  return health.nodes.online - 1; // the registry registers itself
}

async function writeBatchStats(server: Server): Promise<{ sum: number; count: number }> {
  const text = await metricsText(server);
  return { sum: metricValue(text, 'rollcall_write_batch_size_sum') ?? 0, count: metricValue(text, 'rollcall_write_batch_size_count') ?? 0 };
}

// ---------------------------------------------------------------------------------------------
// Load: open-loop (paced) with node:http (closed-loop autocannon: cannon() in common.ts)

interface PacedStats {
  offeredPerSecond: number;
  seconds: number;
  sent: number;
  achievedPerSecond: number;
  ok: number;
  non2xx: number;
  errors: number;
  statusCodes: Record<string, number>;
  maxInFlight: number;
  /** From when the request was due to be sent (open loop: includes any lag of the sender). */
  latencyMs: Percentiles;
  /** From when the request was actually written. */
  serviceMs: Percentiles;
}

/**
 * Sends requests at a steady rate whatever the answers do (open loop), each due at start + n/rate.
 * Not autocannon's overallRate: it lets each connection fire its whole per-second quota back to
 * back at the start of every second and then idle, so "1,000/s" arrives as one burst of 1,000 a
 * second, and its latency then measures how fast a burst drains rather than a steady load.
 */
function paced(server: Server, agent: Agent, rate: number, seconds: number, path: string, body: () => string): Promise<PacedStats> {
  const total = Math.round(rate * seconds);
  const fromDue: number[] = [];
  const service: number[] = [];
  const statusCodes: Record<string, number> = {};
  let sent = 0;
  let finished = 0;
  let ok = 0;
  let errors = 0;
  let inFlight = 0;
  let maxInFlight = 0;
  const start = performance.now() + 2;
  return new Promise((done) => {
    const finish = (): void => {
      finished += 1;
      inFlight -= 1;
      if (finished < total) return;
      const elapsed = (performance.now() - start) / 1000;
      done({
        offeredPerSecond: rate,
        seconds: Math.round(elapsed * 100) / 100,
        sent,
        achievedPerSecond: Math.round(ok / elapsed),
        ok,
        non2xx: finished - ok - errors,
        errors,
        statusCodes,
        maxInFlight,
        latencyMs: percentiles(fromDue),
        serviceMs: percentiles(service),
      });
    };
    const fire = (due: number): void => {
      const payload = body();
      const written = performance.now();
      inFlight += 1;
      maxInFlight = Math.max(maxInFlight, inFlight);
      const request = httpRequest(
        {
          agent,
          host: '127.0.0.1',
          port: server.port,
          method: 'POST',
          path,
          headers: { ...JSON_HEADERS, 'content-length': Buffer.byteLength(payload) },
        },
        (response) => {
          response.resume();
          response.once('end', () => {
            const now = performance.now();
            fromDue.push(now - due);
            service.push(now - written);
            const code = response.statusCode ?? 0;
            statusCodes[code] = (statusCodes[code] ?? 0) + 1;
            if (code >= 200 && code < 300) ok += 1;
            finish();
          });
        },
      );
      request.setTimeout(30_000, () => request.destroy(new Error('timed out')));
      request.once('error', () => {
        errors += 1;
        finish();
      });
      request.end(payload);
    };
    const tick = (): void => {
      const now = performance.now();
      const due = Math.min(total, Math.floor(((now - start) * rate) / 1000) + 1);
      while (sent < due) {
        fire(start + (sent * 1000) / rate);
        sent += 1;
      }
      if (sent < total) setTimeout(tick, 1);
    };
    setTimeout(tick, 2);
  });
}

// ---------------------------------------------------------------------------------------------
// Phases

/** Registers new nodes until `target` bench nodes are online, printing progress every 10k. */
async function fillTo(server: Server, target: number, failures: string[]): Promise<{ registered: number; seconds: number; perSecond: number }> {
  const startedAt = performance.now();
  let registered = 0;
  for (let round = 0; round < 3; round += 1) {
    const online = await onlineBenchNodes(server);
    const missing = target - online;
    if (missing <= 0) break;
    const already = online;
    let lastReport = Math.floor(online / 10_000);
    log(`registering ${missing.toLocaleString('en-US')} nodes to reach ${target.toLocaleString('en-US')} (${online.toLocaleString('en-US')} online)`);
    const stats = await cannon({
      title: 'fill',
      server,
      method: 'POST',
      path: REGISTER_PATH,
      connections: Math.min(FILL_CONNECTIONS, missing),
      amount: missing,
      body: registrationBodyNext,
      onOk: (okSoFar) => {
        const total = already + okSoFar;
        if (Math.floor(total / 10_000) > lastReport) {
          lastReport = Math.floor(total / 10_000);
          const seconds = (performance.now() - startedAt) / 1000;
          log(`  ${total.toLocaleString('en-US')} nodes registered (${Math.round((registered + okSoFar) / seconds).toLocaleString('en-US')}/s)`);
        }
      },
    });
    registered += stats.ok;
    const failed = describeFailures(stats);
    if (failed) {
      failures.push(`fill: ${failed}`);
      break;
    }
  }
  const seconds = (performance.now() - startedAt) / 1000;
  return { registered, seconds: Math.round(seconds * 100) / 100, perSecond: Math.round(registered / seconds) };
}

interface ListQuery {
  name: string;
  query: string;
}

function listQueries(): ListQuery[] {
  return [
    { name: 'role', query: 'role=worker-3&limit=100' },
    { name: 'label+status', query: 'label=zone-a&status=online&limit=100' },
    { name: 'capability', query: `capability=${encodeURIComponent('{"gpu":true}')}&limit=100` },
    { name: 'node_type, 1000/page', query: 'node_type=node&limit=1000' },
    { name: 'rare label (0.1%)', query: 'label=canary&limit=100' },
    { name: 'version range (1%)', query: `version=${encodeURIComponent('>=2.0.0')}&limit=100` },
  ];
}

// ---------------------------------------------------------------------------------------------
// Main

interface SectionContext {
  root: string;
  results: Record<string, unknown>;
  failures: string[];
  machine: Machine;
  background: CpuUse;
}

async function main(): Promise<number> {
  const root = projectRoot();
  const failures: string[] = [];
  for (const signal of ['SIGINT', 'SIGTERM'] as const) {
    process.once(signal, () => {
      log(`${signal}: stopping`);
      void cleanupAll().finally(() => process.exit(130));
    });
  }

  const machine: Machine = {
    cores: availableParallelism(),
    cpu_model: cpus()[0]?.model ?? 'unknown',
    memory_gb: Math.round(totalmem() / 2 ** 30),
    node: process.version,
    platform: `${process.platform} ${release()}`,
    postgres: 'unknown',
  };
  const startedAt = new Date();
  const results: Record<string, unknown> = {
    rollcall_version: PACKAGE.version,
    started_at: startedAt.toISOString(),
    mode: QUICK ? 'quick' : 'full',
    sections: [...SECTIONS],
    machine,
    settings: {
      ...SETTINGS,
      register_connections: REGISTER_CONNECTIONS,
      heartbeat_connections: HEARTBEAT_CONNECTIONS,
      list_connections: LIST_CONNECTIONS,
      paced_rate: PACED_RATE,
      server_node_args: SERVER_NODE_ARGS,
    },
    targets: TARGETS,
  };
  const out: string[] = [];

  try {
    log(`mode ${QUICK ? 'quick (BENCH_QUICK=1)' : 'full'}, sections ${[...SECTIONS].join(', ')}; admin database ${redactUrl(ADMIN_URL)}`);
    // Anything else running skews every figure on a small machine: look before starting, and say so.
    cpuContext.databaseUrl = ADMIN_URL;
    cpuContext.database = '';
    const quietBefore = await cpuSnapshot();
    await sleep(1_000);
    const background = cpuBetween(quietBefore, await cpuSnapshot(), undefined);
    results.background_load_before_start = background;
    if (background.machine_busy > 15) {
      log(
        `WARNING: the machine is not idle before the benchmark: ${fmt(background.machine_busy)}% of ${machine.cores * 100}% busy (${background.other_top.join(', ') || 'unattributed'}); figures will be lower than on a quiet machine`,
      );
    }
    const stats = new pg.Client({ connectionString: ADMIN_URL });
    await stats.connect();
    try {
      const version = await stats.query<{ server_version: string }>('SHOW server_version');
      machine.postgres = version.rows[0]?.server_version ?? 'unknown';
      const settings = await stats.query<{ name: string; setting: string }>(
        `SELECT name, setting FROM pg_settings WHERE name IN ('synchronous_commit', 'fsync', 'shared_buffers', 'wal_sync_method', 'commit_delay')`,
      );
      results.postgres_settings = Object.fromEntries(settings.rows.map((row) => [row.name, row.setting]));
    } finally {
      await stats.end();
    }
    out.push('');
    out.push(
      `rollcall ${PACKAGE.version} benchmark (${QUICK ? 'QUICK smoke run: BENCH_QUICK=1' : 'full run'}${SECTIONS.size < ALL_SECTIONS.length ? `, only ${[...SECTIONS].join(', ')}: BENCH_ONLY` : ''}), ${startedAt.toISOString()}`,
    );
    out.push(
      `machine: ${machine.cores} cores (${machine.cpu_model}), ${machine.memory_gb} GB, Node ${machine.node}, ${machine.platform}; PostgreSQL ${machine.postgres} on ${new URL(ADMIN_URL).host}`,
    );

    const context: SectionContext = { root, results, failures, machine, background };
    // Each section has its own server and database; one that breaks does not stop the next.
    const sections: Array<[Section, () => Promise<string[]>]> = [
      ['http', () => httpSection(context)],
      ['kafka', () => kafkaSection({ ...context, required: process.env.BENCH_ONLY !== undefined })],
      ['consul', () => consulSection(context)],
      ['signing', () => signingSection(context)],
      ['readers', () => readersSection(context)],
    ];
    for (const [name, run] of sections) {
      if (!SECTIONS.has(name)) continue;
      try {
        out.push('', ...(await run()));
      } catch (error) {
        failures.push(`${name}: aborted: ${(error as Error).message}`);
        log(`${name} aborted: ${(error as Error).stack ?? String(error)}`);
      } finally {
        await cleanupAll();
      }
    }
  } catch (error) {
    failures.push(`aborted: ${(error as Error).message}`);
    log(`aborted: ${(error as Error).stack ?? String(error)}`);
  } finally {
    await cleanupAll();
  }

  const finishedAt = new Date();
  results.finished_at = finishedAt.toISOString();
  results.failures = failures;
  out.push('');
  out.push(failures.length === 0 ? 'Every request was answered 2xx and every event was applied.' : `FAILURES:\n  ${failures.join('\n  ')}`);
  out.push(`Duration ${fmt((finishedAt.getTime() - startedAt.getTime()) / 1000, 1)} s. Results: bench/results/latest.json`);
  process.stdout.write(`${out.join('\n')}\n`);

  const resultsDir = join(root, 'bench', 'results');
  mkdirSync(resultsDir, { recursive: true });
  writeFileSync(join(resultsDir, 'latest.json'), `${JSON.stringify(results, null, 2)}\n`);
  return failures.length === 0 ? 0 : 1;
}

/** The HTTP figures: registrations, heartbeats, fixed-rate latency, list queries and memory. */
async function httpSection(context: SectionContext): Promise<string[]> {
  const { root, results, failures, machine, background } = context;
  const dbName = `rollcall_bench_${randomBytes(4).toString('hex')}`;
  const databaseUrl = withDatabase(ADMIN_URL, dbName);
  const dropDatabase = await createDatabase(dbName);
  cpuContext.database = dbName;
  let server: Server | null = null;
  let stopServer: (() => Promise<void>) | null = null;
  try {
    server = await startServerChild(root, databaseUrl);
    const srv = server;
    stopServer = deferCleanup(() => stopServerChild(srv));
    const rssAtStartMb = readRssMb(srv.child.pid);
    log(`server pid ${srv.child.pid} ready at ${srv.url} (RSS ${fmt(rssAtStartMb)} MB)`);
    const sample = registrationBody(0);
    const capabilitiesBytes = Buffer.byteLength(JSON.stringify((JSON.parse(sample) as { capabilities: unknown }).capabilities));
    results.registration_body = { bytes: Buffer.byteLength(sample), capabilities_bytes: capabilitiesBytes };
    log(`registration body ${Buffer.byteLength(sample)} bytes (capabilities ${capabilitiesBytes} bytes)`);

    const check = (phase: string, failed: string | null): void => {
      if (failed) {
        failures.push(`${phase}: ${failed}`);
        log(`!! ${phase}: ${failed}`);
      }
      if (srv.exitCode !== undefined) throw new Error(`the server exited (code ${srv.exitCode}) during ${phase}`);
    };

    // 1. Durable registrations/s
    log(`warm-up: ${SETTINGS.warmupSeconds} s of registrations`);
    const warm = await cannon({ title: 'warmup', server: srv, method: 'POST', path: REGISTER_PATH, connections: REGISTER_CONNECTIONS, seconds: SETTINGS.warmupSeconds, body: registrationBodyNext });
    check('warm-up', describeFailures(warm));
    log(`1. registrations: ${SETTINGS.phaseSeconds} s, ${REGISTER_CONNECTIONS} connections, a new node per request`);
    const batchBefore = await writeBatchStats(srv);
    const reg = await measure(srv, () =>
      cannon({ title: 'register', server: srv, method: 'POST', path: REGISTER_PATH, connections: REGISTER_CONNECTIONS, seconds: SETTINGS.phaseSeconds, body: registrationBodyNext }),
    );
    const batchAfter = await writeBatchStats(srv);
    const regBatch = batchAfter.count > batchBefore.count ? (batchAfter.sum - batchBefore.sum) / (batchAfter.count - batchBefore.count) : NaN;
    const added = reg.stats.statusCodes['201'] ?? 0;
    check('registrations', describeFailures(reg.stats));
    if (added !== reg.stats.ok) check('registrations', `${reg.stats.ok - added} of ${reg.stats.ok} answers were not 201 (added): not every request was a new node`);
    results.registrations = { ...reg.stats, added, transactions: batchAfter.count - batchBefore.count, mean_batch: Math.round(regBatch * 10) / 10, cpu_pct_of_core: reg.cpu };
    log(`   ${fmt(reg.stats.perSecond)} registrations/s, p50 ${ms(reg.stats.latencyMs.p50)}, p99 ${ms(reg.stats.latencyMs.p99)}, mean batch ${fmt(regBatch, 1)}`);

    // 2. Heartbeats/s
    if (fleet.next < SETTINGS.heartbeatNodes + 2 * REGISTER_CONNECTIONS) {
      await fillTo(srv, SETTINGS.heartbeatNodes + 2 * REGISTER_CONNECTIONS, failures);
    }
    const heartbeatNodes = SETTINGS.heartbeatNodes;
    const heartbeatBodies = Array.from({ length: heartbeatNodes }, (_, i) => heartbeatBody(i));
    let beat = 0;
    const nextHeartbeat = (): string => heartbeatBodies[beat++ % heartbeatNodes] as string;
    await cannon({ title: 'warmup', server: srv, method: 'POST', path: HEARTBEAT_PATH, connections: HEARTBEAT_CONNECTIONS, seconds: Math.min(1, SETTINGS.warmupSeconds), body: nextHeartbeat }).then(
      (warmBeats) => check('heartbeat warm-up', describeFailures(warmBeats)),
    );
    log(`2. heartbeats: ${SETTINGS.phaseSeconds} s, ${HEARTBEAT_CONNECTIONS} connections, round-robin over ${fmt(heartbeatNodes)} nodes`);
    const hb = await measure(srv, () =>
      cannon({ title: 'heartbeat', server: srv, method: 'POST', path: HEARTBEAT_PATH, connections: HEARTBEAT_CONNECTIONS, seconds: SETTINGS.phaseSeconds, body: nextHeartbeat }),
    );
    check('heartbeats', describeFailures(hb.stats));
    results.heartbeats = { ...hb.stats, nodes: heartbeatNodes, cpu_pct_of_core: hb.cpu };
    log(`   ${fmt(hb.stats.perSecond)} heartbeats/s, p50 ${ms(hb.stats.latencyMs.p50)}, p99 ${ms(hb.stats.latencyMs.p99)}`);

    // 3. Registration latency at a fixed offered load
    // One keep-alive agent for the warm-up and the run: the run starts on open connections.
    const pacedAgent = new Agent({ keepAlive: true, maxSockets: 1024 });
    await paced(srv, pacedAgent, PACED_RATE, Math.min(2, SETTINGS.warmupSeconds), REGISTER_PATH, registrationBodyNext).then((warmPaced) => check('paced warm-up', describeFailures(warmPaced)));
    log(`3. registrations at a steady ${fmt(PACED_RATE)}/s (open loop): ${SETTINGS.phaseSeconds} s`);
    const pacedBatchBefore = await writeBatchStats(srv);
    const fixed = await measure(srv, () => paced(srv, pacedAgent, PACED_RATE, SETTINGS.phaseSeconds, REGISTER_PATH, registrationBodyNext));
    pacedAgent.destroy();
    const pacedBatchAfter = await writeBatchStats(srv);
    check('fixed-rate registrations', describeFailures(fixed.stats));
    const pacedBatch = pacedBatchAfter.count > pacedBatchBefore.count ? (pacedBatchAfter.sum - pacedBatchBefore.sum) / (pacedBatchAfter.count - pacedBatchBefore.count) : NaN;
    results.fixed_rate_registrations = { ...fixed.stats, mean_batch: Math.round(pacedBatch * 10) / 10, cpu_pct_of_core: fixed.cpu };
    log(`   p50 ${ms(fixed.stats.latencyMs.p50)}, p99 ${ms(fixed.stats.latencyMs.p99)} (achieved ${fmt(fixed.stats.achievedPerSecond)}/s, mean batch ${fmt(pacedBatch, 1)})`);

    // 4. List queries at 100k nodes
    log(`4. filling the registry to ${fmt(SETTINGS.totalNodes)} nodes`);
    const fill = await measure(srv, () => fillTo(srv, SETTINGS.totalNodes, failures));
    check('fill', null);
    const nodesOnline = await onlineBenchNodes(srv);
    results.fill = { ...fill.stats, nodes_online: nodesOnline, cpu_pct_of_core: fill.cpu };
    log(`   ${fmt(nodesOnline)} nodes online; fill ran at ${fmt(fill.stats.perSecond)} registrations/s`);
    await sleep(2_000); // let the last heartbeat flush and catch-up settle
    const memoryAfterFill = await memorySample(srv);
    log(`   server RSS ${fmt(memoryAfterFill.rss_mb)} MB, heap used ${fmt(memoryAfterFill.heap_used_mb)} of ${fmt(memoryAfterFill.heap_total_mb)} MB`);
    const listResults: Record<string, unknown>[] = [];
    for (const { name, query } of listQueries()) {
      const path = `/api/v1/nodes?${query}`;
      const probe = await fetch(`${srv.url}${path}`);
      const probeText = await probe.text();
      if (!probe.ok) {
        check(`list ${name}`, `GET ${path} answered ${probe.status}: ${probeText.slice(0, 200)}`);
        continue;
      }
      const count = (JSON.parse(probeText) as { count: number }).count;
      await cannon({ title: 'warmup', server: srv, method: 'GET', path, connections: LIST_CONNECTIONS, seconds: QUICK ? 0.5 : 1 });
      const list = await measure(srv, () => cannon({ title: name, server: srv, method: 'GET', path, connections: LIST_CONNECTIONS, seconds: SETTINGS.listSeconds }));
      check(`list ${name}`, describeFailures(list.stats));
      // One connection: the service time of the query itself, without queueing behind the other seven.
      const single = await cannon({ title: name, server: srv, method: 'GET', path, connections: 1, seconds: SETTINGS.singleSeconds });
      check(`list ${name} (1 connection)`, describeFailures(single));
      listResults.push({
        name,
        path,
        page_count: count,
        body_bytes: Buffer.byteLength(probeText),
        ...list.stats,
        cpu_pct_of_core: list.cpu,
        one_connection: { perSecond: single.perSecond, responses: single.responses, latencyMs: single.latencyMs },
      });
      log(
        `   ${name}: ${count} rows, ${fmt(Buffer.byteLength(probeText) / 1024)} KB, ${fmt(list.stats.perSecond)}/s, p50 ${ms(list.stats.latencyMs.p50)}, p99 ${ms(list.stats.latencyMs.p99)}; 1 connection p50 ${ms(single.latencyMs.p50)}`,
      );
    }
    results.list_queries = { nodes_online: nodesOnline, connections: LIST_CONNECTIONS, queries: listResults };

    // 5. Memory: after the fill (before the list queries) and at the end (after them)
    await sleep(2_000);
    const memoryAtEnd = await memorySample(srv);
    const sizes = await databaseSizes(databaseUrl);
    const memory = {
      nodes_online: memoryAtEnd.nodes_online,
      rss_at_start_mb: rssAtStartMb,
      after_fill: memoryAfterFill,
      at_end: memoryAtEnd,
      /** The figure compared with the target: the larger of the two. */
      rss_mb: Math.max(memoryAfterFill.rss_mb ?? 0, memoryAtEnd.rss_mb ?? 0) || null,
      database: sizes,
    };
    results.memory = memory;
    log(`5. memory: RSS ${fmt(memoryAtEnd.rss_mb)} MB (peak ${fmt(memoryAtEnd.peak_rss_mb)} MB), heap used ${fmt(memoryAtEnd.heap_used_mb)} of ${fmt(memoryAtEnd.heap_total_mb)} MB`);

    // The report
    const listRows = listResults.map((entry) => {
      const latency = entry.latencyMs as Percentiles;
      const single = (entry.one_connection as { latencyMs: Percentiles }).latencyMs;
      return [
        `4. List ${String(entry.name)} (${String(entry.page_count)} rows)`,
        `p50 ${ms(latency.p50)} / p99 ${ms(latency.p99)}  (${fmt(entry.perSecond as number)}/s; 1 conn: p50 ${ms(single.p50)} / p99 ${ms(single.p99)})`,
        `p99 < ${TARGETS.listP99Ms} ms`,
        verdict(latency.p99 < TARGETS.listP99Ms),
      ];
    });
    const rows: string[][] = [
      [
        '1. Durable registrations/s',
        `${fmt(reg.stats.perSecond)}/s  (p50 ${ms(reg.stats.latencyMs.p50)} / p99 ${ms(reg.stats.latencyMs.p99)}, non-2xx ${reg.stats.non2xx}, errors ${reg.stats.errors})`,
        `>= ${fmt(TARGETS.registrationsPerSecond)}/s`,
        verdict(reg.stats.perSecond >= TARGETS.registrationsPerSecond),
      ],
      [
        '2. Heartbeats/s',
        `${fmt(hb.stats.perSecond)}/s  (p50 ${ms(hb.stats.latencyMs.p50)} / p99 ${ms(hb.stats.latencyMs.p99)}, non-2xx ${hb.stats.non2xx}, errors ${hb.stats.errors})`,
        `>= ${fmt(TARGETS.heartbeatsPerSecond)}/s`,
        verdict(hb.stats.perSecond >= TARGETS.heartbeatsPerSecond),
      ],
      [
        `3. Registration latency @ ${fmt(PACED_RATE)}/s`,
        `p50 ${ms(fixed.stats.latencyMs.p50)} / p99 ${ms(fixed.stats.latencyMs.p99)}  (achieved ${fmt(fixed.stats.achievedPerSecond)}/s, non-2xx ${fixed.stats.non2xx}, errors ${fixed.stats.errors})`,
        `p99 < ${TARGETS.pacedP99Ms} ms`,
        verdict(fixed.stats.latencyMs.p99 < TARGETS.pacedP99Ms),
      ],
      ...listRows,
      [
        `5. Server RSS @ ${fmt(memory.nodes_online)} nodes`,
        `${fmt(memoryAfterFill.rss_mb)} MB after the fill, ${fmt(memoryAtEnd.rss_mb)} MB after the list queries  (heap used ${fmt(memoryAfterFill.heap_used_mb)} / ${fmt(memoryAtEnd.heap_used_mb)} MB, peak RSS ${fmt(memoryAtEnd.peak_rss_mb)} MB)`,
        `< ${TARGETS.rssMb} MB`,
        verdict((memory.rss_mb ?? Infinity) < TARGETS.rssMb),
      ],
    ];
    const cpuRows: string[][] = [
      ['1. registrations', reg.cpu],
      ['2. heartbeats', hb.cpu],
      ['3. fixed 1,000 reg/s', fixed.cpu],
      ['   fill', fill.cpu],
      ...listResults.map((entry) => [`4. list ${String(entry.name)}`, entry.cpu_pct_of_core as CpuUse] as [string, CpuUse]),
    ].map(([name, cpu]) => {
      const use = cpu as CpuUse;
      return [name as string, `${fmt(use.server)}%`, `${fmt(use.postgres)}%`, `${fmt(use.loadgen)}%`, `${fmt(use.other)}%`, `${fmt(use.machine_busy)}% / ${machine.cores * 100}%`];
    });
    const out: string[] = [];
    out.push('HTTP API');
    out.push(`server: child process (node bin/rollcall.js serve --database-url …/${dbName}), load generator in this process; both share the machine with PostgreSQL`);
    out.push(`registration body ${Buffer.byteLength(sample)} B (capabilities ${capabilitiesBytes} B); heartbeats over ${fmt(heartbeatNodes)} nodes; latencies measured by the client`);
    out.push('');
    out.push(table(['Figure', 'Result', 'Target', 'vs target'], rows));
    out.push('');
    out.push(
      `Group commit: mean ${fmt(regBatch, 1)} registrations per transaction at full load (${fmt(batchAfter.count - batchBefore.count)} transactions), ${fmt(pacedBatch, 1)} at ${fmt(PACED_RATE)}/s.`,
    );
    out.push(`Fill: ${fmt(fill.stats.registered)} registrations in ${fmt(fill.stats.seconds, 1)} s (${fmt(fill.stats.perSecond)}/s at ${FILL_CONNECTIONS} connections).`);
    out.push(
      `Fixed-rate latency is counted from when each request was due (open loop); from when it was written: p50 ${ms(fixed.stats.serviceMs.p50)} / p99 ${ms(fixed.stats.serviceMs.p99)}; at most ${fixed.stats.maxInFlight} in flight.`,
    );
    out.push(
      `Database at the end: ${sizes ? `${fmt(sizes.database_mb)} MB (node_registrations ${fmt(sizes.node_registrations_mb)} MB, topology_changes ${fmt(sizes.topology_changes_mb)} MB, node_leases ${fmt(sizes.node_leases_mb)} MB)` : 'unknown'}.`,
    );
    out.push('');
    out.push(`CPU by process during each phase (% of one core; the machine has ${machine.cores * 100}%):`);
    out.push(table(['Phase', 'server', 'postgres', 'loadgen', 'other', 'machine busy'], cpuRows));
    const interference = [
      ['1. registrations', reg.cpu] as const,
      ['2. heartbeats', hb.cpu] as const,
      ['3. fixed 1,000 reg/s', fixed.cpu] as const,
      ['fill', fill.cpu] as const,
      ...listResults.map((entry) => [`4. list ${String(entry.name)}`, entry.cpu_pct_of_core as CpuUse] as const),
    ].filter(([, use]) => use.other >= 10);
    if (background.machine_busy > 15 || interference.length > 0) {
      out.push('');
      out.push(
        `WARNING: other processes used the CPU during the HTTP phases (before start: ${fmt(background.machine_busy)}% busy${background.other_top.length > 0 ? `: ${background.other_top.join(', ')}` : ''}).`,
      );
      for (const [name, use] of interference) out.push(`  ${name}: other ${fmt(use.other)}%${use.other_top.length > 0 ? ` (${use.other_top.join(', ')})` : ''}`);
      out.push('  Figures from a shared machine understate rollcall; rerun on a quiet one to compare with the targets.');
    }
    return out;
  } catch (error) {
    if (server && server.output.length > 0) log(`last server output:\n${server.output.slice(-20).join('\n')}`);
    throw error;
  } finally {
    await stopServer?.();
    await dropDatabase();
  }
}

interface MemorySample {
  nodes_online: number;
  rss_mb: number | null;
  peak_rss_mb: number | null;
  heap_used_mb: number | null;
  heap_total_mb: number | null;
  external_mb: number | null;
}

/** RSS from /proc (the figure the target is about), the V8 heap from the server's own /metrics. */
async function memorySample(server: Server): Promise<MemorySample> {
  const metrics = await metricsText(server);
  const status = readProcStatus(server.child.pid);
  return {
    nodes_online: await onlineBenchNodes(server),
    rss_mb: status.VmRSS === undefined ? null : Math.round(status.VmRSS / 1024),
    peak_rss_mb: status.VmHWM === undefined ? null : Math.round(status.VmHWM / 1024),
    heap_used_mb: mb(metricValue(metrics, 'rollcall_nodejs_heap_size_used_bytes')),
    heap_total_mb: mb(metricValue(metrics, 'rollcall_nodejs_heap_size_total_bytes')),
    external_mb: mb(metricValue(metrics, 'rollcall_nodejs_external_memory_bytes')),
  };
}

async function databaseSizes(url: string): Promise<Record<string, number> | null> {
  const client = new pg.Client({ connectionString: url });
  try {
    await client.connect();
    const result = await client.query<Record<string, string>>(
      `SELECT pg_database_size(current_database()) AS database,
              pg_total_relation_size('node_registrations') AS node_registrations,
              pg_total_relation_size('topology_changes') AS topology_changes,
              pg_total_relation_size('node_leases') AS node_leases`,
    );
    const row = result.rows[0] ?? {};
    return Object.fromEntries(Object.entries(row).map(([key, value]) => [`${key}_mb`, Math.round(Number(value) / 2 ** 20)]));
  } catch {
    return null;
  } finally {
    await client.end().catch(() => undefined);
  }
}

main().then(
  (code) => {
    process.exitCode = code;
  },
  (error: unknown) => {
    log(`fatal: ${(error as Error).stack ?? String(error)}`);
    process.exitCode = 1;
  },
);
