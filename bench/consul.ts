// The Consul section of the benchmark: the Consul sink and the Consul-compatible API.
//
//   C1. registrations/s on instance A with the Consul sink on (CONSUL_HTTP_ADDR → instance B, a
//       second rollcall serving the Consul API on its own database), next to the same load on an A
//       without the sink, in the same run; and the projection lag: from the last registration A
//       acknowledged until B shows every node.
//   C2. blocking-query fan-out on B: 1,000 watchers each in GET /v1/health/service/<name>?index=…&wait=60s,
//       all parked on the server, then one new instance of that service is registered; the time
//       until each watcher has its answer (and that every answer holds the new instance). Three
//       rounds; the median is reported.
//
// Every server is a child process with its own fresh database; the load comes from this process.
import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { Agent, request as httpRequest } from 'node:http';
import {
  ADMIN_URL,
  JSON_HEADERS,
  QUICK,
  cannon,
  cpuBetween,
  cpuContext,
  cpuSnapshot,
  createDatabase,
  deferCleanup,
  describeFailures,
  fmt,
  gc,
  getJson,
  log,
  metricValue,
  metricsText,
  ms,
  percentiles,
  registrationBodyNext,
  sleep,
  startServerChild,
  stopServerChild,
  table,
  withDatabase,
  type CpuSnapshot,
  type CpuUse,
  type LoadStats,
  type Machine,
  type Percentiles,
  type Server,
} from './common.js';

// ---------------------------------------------------------------------------------------------
// Settings

const SETTINGS = QUICK ? { warmupSeconds: 0.5, phaseSeconds: 2, lagTimeoutMs: 12_000, settleMs: 500 } : { warmupSeconds: 1, phaseSeconds: 6, lagTimeoutMs: 40_000, settleMs: 1_000 };
/** The projection is stuck (not merely slow) when B's count does not move for this long. */
const STALL_MS = 5_000;
const REGISTER_CONNECTIONS = 128;
const REGISTER_PATH = '/api/v1/nodes/register';
/** The service name the sink gives the benchmark's nodes (template {node_type}; node_type "node"). */
const SINK_SERVICE = 'node';
const WATCHERS = 1_000;
const ROUNDS = 3;
const WATCHED_SERVICE = 'bench-watched';
const WATCH_WAIT = '60s';
const POLL_MS = 20;

export interface ConsulSectionContext {
  root: string;
  results: Record<string, unknown>;
  failures: string[];
  machine: Machine;
}

// ---------------------------------------------------------------------------------------------
// Helpers

interface Health {
  nodes: { online: number; offline: number; removed: number };
  checks: Record<string, Record<string, unknown>>;
}

async function onlineNodes(server: Server): Promise<number> {
  return (await getJson<Health>(`${server.url}/health`)).nodes.online;
}

/** Server-side TCP connections in ESTABLISHED state on the server's port (IPv4 and IPv6 tables). */
function establishedTo(port: number): number {
  const hexPort = port.toString(16).toUpperCase().padStart(4, '0');
  let count = 0;
  for (const file of ['/proc/net/tcp', '/proc/net/tcp6']) {
    let text: string;
    try {
      text = readFileSync(file, 'utf8');
    } catch {
      continue;
    }
    for (const line of text.split('\n').slice(1)) {
      const fields = line.trim().split(/\s+/);
      if (fields.length < 4) continue;
      if ((fields[1] ?? '').endsWith(`:${hexPort}`) && fields[3] === '01') count += 1;
    }
  }
  return count;
}

/** Sum of a labelled counter's samples whose labels include every `labels` pair. */
function counterSum(text: string, name: string, labels: Record<string, string>): number {
  let sum = 0;
  for (const line of text.split('\n')) {
    if (!line.startsWith(`${name}{`)) continue;
    if (!Object.entries(labels).every(([key, value]) => line.includes(`${key}="${value}"`))) continue;
    const value = Number(line.slice(line.lastIndexOf(' ') + 1));
    if (Number.isFinite(value)) sum += value;
  }
  return sum;
}

/** Means of the write path over an interval, from two /metrics scrapes of one server. */
interface WritePath {
  registrations: number;
  transactions: number;
  /** Registrations per store transaction (group commit). */
  mean_batch: number | null;
  /** Server side, from receipt to durable acknowledgement. */
  mean_registration_ms: number | null;
}

interface WriteCounters {
  durationSum: number;
  durationCount: number;
  batchSum: number;
  batchCount: number;
}

async function writeCounters(server: Server): Promise<WriteCounters> {
  const text = await metricsText(server);
  return {
    durationSum: metricValue(text, 'rollcall_registration_duration_seconds_sum') ?? 0,
    durationCount: metricValue(text, 'rollcall_registration_duration_seconds_count') ?? 0,
    batchSum: metricValue(text, 'rollcall_write_batch_size_sum') ?? 0,
    batchCount: metricValue(text, 'rollcall_write_batch_size_count') ?? 0,
  };
}

function writePath(before: WriteCounters, after: WriteCounters): WritePath {
  const registrations = after.durationCount - before.durationCount;
  const transactions = after.batchCount - before.batchCount;
  return {
    registrations,
    transactions,
    mean_batch: transactions > 0 ? Math.round(((after.batchSum - before.batchSum) / transactions) * 10) / 10 : null,
    mean_registration_ms: registrations > 0 ? Math.round(((after.durationSum - before.durationSum) / registrations) * 1e5) / 100 : null,
  };
}

interface PhaseCpu {
  /** The measured instance (A), or B in the fan-out. */
  a: CpuUse;
  /** B's share (the Consul side) during the same phase. */
  b: number;
}

function cpuOf(before: CpuSnapshot, after: CpuSnapshot, a: Server, b: Server | null): PhaseCpu {
  return { a: cpuBetween(before, after, a.child.pid), b: b ? cpuBetween(before, after, b.child.pid).server : 0 };
}

async function put(server: Server, path: string, body: unknown): Promise<void> {
  const response = await fetch(`${server.url}${path}`, { method: 'PUT', headers: JSON_HEADERS, body: JSON.stringify(body), signal: AbortSignal.timeout(30_000) });
  const text = await response.text();
  if (!response.ok) throw new Error(`PUT ${path} answered ${response.status}: ${text.slice(0, 300)}`);
}

function watchedService(id: string, port: number): Record<string, unknown> {
  // A TTL check: the service's lease is the TTL, nothing renews it during the benchmark.
  return { ID: id, Name: WATCHED_SERVICE, Address: '10.0.0.1', Port: port, Tags: ['bench'], Meta: { version: '1.0.0' }, Check: { TTL: '600s', Status: 'passing' } };
}

// ---------------------------------------------------------------------------------------------
// C1. Registrations with and without the sink, and the projection lag

interface ThroughputRun {
  sink: boolean;
  warmup: LoadStats;
  load: LoadStats;
  cpu: PhaseCpu;
  /** A's write path during the measured load. */
  a_writes: WritePath;
  /** Sink on: the projection into B. */
  projection?: {
    nodes: number;
    visible_when_load_ended: number;
    lag_ms: number | null;
    /** When the wait ran out while the sink was still progressing: the lag at its rate meanwhile. */
    estimated_lag_ms: number | null;
    stalled: boolean;
    reached: number;
    /** From the start of the measured load to the last node visible in B. */
    /** B's intake from the sink: nodes per second from the start of the measured load. */
    projected_per_second: number;
    drain_cpu: PhaseCpu;
    /** B's write path from the start of the measured load until every node was in B. */
    b_writes: WritePath;
    consul_calls: { register_ok: number; register_error: number; rejected: number };
    catalog_count: number | null;
  };
}

async function throughputRun(root: string, b: Server, sink: boolean, failures: string[]): Promise<ThroughputRun> {
  const label = sink ? 'sink on' : 'sink off';
  const dbName = `rollcall_bench_${randomBytes(4).toString('hex')}`;
  const dropDatabase = await createDatabase(dbName);
  cpuContext.moreDatabases.push(dbName);
  let stopA: (() => Promise<void>) | null = null;
  try {
    const a = await startServerChild(root, withDatabase(ADMIN_URL, dbName), sink ? { env: { CONSUL_HTTP_ADDR: b.url } } : {});
    stopA = deferCleanup(() => stopServerChild(a));
    log(`A (${label}) pid ${a.child.pid} at ${a.url}`);
    const check = (phase: string, stats: LoadStats): void => {
      const failed = describeFailures(stats);
      if (failed) {
        failures.push(`consul ${label} ${phase}: ${failed}`);
        log(`!! consul ${label} ${phase}: ${failed}`);
      }
      if (a.exitCode !== undefined) throw new Error(`A (${label}) exited (code ${a.exitCode}) during ${phase}`);
    };

    if (sink) {
      // The sink holds the duty and has reconciled (A's own node is in B) before the load starts.
      const deadline = Date.now() + 20_000;
      for (;;) {
        const consul = (await getJson<Health>(`${a.url}/health`)).checks.consul;
        if (consul && consul.active === true && consul.pending_reconciliation === false && consul.circuit_breaker === 'closed') break;
        if (Date.now() > deadline) throw new Error(`A's Consul sink did not become active within 20 s: ${JSON.stringify(consul)}`);
        await sleep(100);
      }
    }
    const baseline = await onlineNodes(b);
    const baselineA = await onlineNodes(a);
    let lastOkAt = 0;
    const onOk = (): void => {
      lastOkAt = performance.now();
    };

    log(`C1 ${label}: warm-up ${SETTINGS.warmupSeconds} s, then ${SETTINGS.phaseSeconds} s of registrations on A, ${REGISTER_CONNECTIONS} connections`);
    const warmup = await cannon({
      title: 'warmup',
      server: a,
      method: 'POST',
      path: REGISTER_PATH,
      connections: REGISTER_CONNECTIONS,
      seconds: SETTINGS.warmupSeconds,
      body: registrationBodyNext,
      onOk,
    });
    check('warm-up', warmup);
    gc();
    const aCountersBefore = await writeCounters(a);
    const bCountersBefore = await writeCounters(b);
    const visibleBeforeLoad = sink ? (await onlineNodes(b)) - baseline : 0;
    const before = await cpuSnapshot();
    const loadStarted = performance.now();
    const load = await cannon({
      title: 'register',
      server: a,
      method: 'POST',
      path: REGISTER_PATH,
      connections: REGISTER_CONNECTIONS,
      seconds: SETTINGS.phaseSeconds,
      body: registrationBodyNext,
      onOk,
    });
    const after = await cpuSnapshot();
    const aWrites = writePath(aCountersBefore, await writeCounters(a));
    check('registrations', load);
    const cpu = cpuOf(before, after, a, b);
    log(
      `   ${fmt(load.perSecond)} registrations/s, p50 ${ms(load.latencyMs.p50)}, p99 ${ms(load.latencyMs.p99)} (A: mean batch ${fmt(aWrites.mean_batch, 1)}, ${fmt(aWrites.mean_registration_ms, 1)} ms in the server); CPU A ${fmt(cpu.a.server)}%, B ${fmt(cpu.b)}%, postgres ${fmt(cpu.a.postgres)}%`,
    );
    const result: ThroughputRun = { sink, warmup, load, cpu, a_writes: aWrites };
    if (!sink) return result;

    // The projection: every node A holds (warm-up and load; also those whose answers were still in
    // flight when autocannon stopped) must show up in B.
    await sleep(200);
    const nodes = Math.max(warmup.ok + load.ok, (await onlineNodes(a)) - baselineA);
    const target = baseline + nodes;
    const visibleAtEnd = (await onlineNodes(b)) - baseline;
    log(`   projection: ${fmt(visibleAtEnd)} of ${fmt(nodes)} nodes in B when the load ended; waiting for the rest (at most ${SETTINGS.lagTimeoutMs / 1000} s)`);
    const drainBefore = await cpuSnapshot();
    const deadline = performance.now() + SETTINGS.lagTimeoutMs;
    const waitStarted = performance.now();
    let reached = visibleAtEnd;
    let allAt: number | null = null;
    let movedAt = waitStarted;
    let stalled = false;
    for (;;) {
      const online = await onlineNodes(b);
      const now = performance.now();
      if (online - baseline > reached) movedAt = now;
      reached = online - baseline;
      if (online >= target) {
        allAt = now;
        break;
      }
      if (now - movedAt > STALL_MS) {
        stalled = true;
        break;
      }
      if (now > deadline) break;
      await sleep(POLL_MS);
    }
    const waited = performance.now() - waitStarted;
    const drainRate = (reached - visibleAtEnd) / waited; // nodes per ms while waiting
    const estimatedLag = allAt === null && !stalled && drainRate > 0 ? Math.round(waitStarted - lastOkAt + (nodes - visibleAtEnd) / drainRate) : null;
    const drainCpu = cpuOf(drainBefore, await cpuSnapshot(), a, b);
    const bWrites = writePath(bCountersBefore, await writeCounters(b));
    if (stalled) {
      failures.push(`consul projection: stuck at ${reached} of ${nodes} nodes in B (no progress for ${STALL_MS / 1000} s)`);
    } else if (allAt === null) {
      log(`   the wait ran out at ${fmt(reached)} of ${fmt(nodes)} nodes, still progressing at ${fmt(drainRate * 1000)}/s: lag estimated at ${ms(estimatedLag ?? NaN)}`);
    }
    const metrics = await metricsText(a);
    // One check through the Consul API itself (not only B's node count).
    let catalogCount: number | null = null;
    try {
      catalogCount = (await getJson<unknown[]>(`${b.url}/v1/catalog/service/${SINK_SERVICE}`)).length;
    } catch (error) {
      log(`catalog read failed: ${(error as Error).message}`);
    }
    if (allAt !== null && catalogCount !== null && catalogCount < nodes) {
      failures.push(`consul projection: B's /v1/catalog/service/${SINK_SERVICE} lists ${catalogCount} instances, A registered ${nodes}`);
    }
    result.projection = {
      nodes,
      visible_when_load_ended: visibleAtEnd,
      lag_ms: allAt === null ? null : Math.round(allAt - lastOkAt),
      estimated_lag_ms: estimatedLag,
      stalled,
      reached,
      // Nodes that arrived in B from the start of the measured load until all were there (or the wait ran out).
      projected_per_second: Math.round((reached - visibleBeforeLoad) / (((allAt ?? performance.now()) - loadStarted) / 1000)),
      drain_cpu: drainCpu,
      b_writes: bWrites,
      consul_calls: {
        register_ok: counterSum(metrics, 'rollcall_consul_operations_total', { operation: 'register', outcome: 'ok' }),
        register_error: counterSum(metrics, 'rollcall_consul_operations_total', { operation: 'register', outcome: 'error' }),
        rejected: counterSum(metrics, 'rollcall_consul_operations_total', { outcome: 'rejected' }),
      },
      catalog_count: catalogCount,
    };
    log(
      `   projection lag ${allAt === null ? 'timed out' : ms(allAt - lastOkAt)} (${fmt(reached)} of ${fmt(nodes)} nodes in B; catalog lists ${fmt(catalogCount)}); B: mean batch ${fmt(bWrites.mean_batch, 1)}, ${fmt(bWrites.mean_registration_ms, 1)} ms in the server; CPU while draining: A ${fmt(drainCpu.a.server)}%, B ${fmt(drainCpu.b)}%, postgres ${fmt(drainCpu.a.postgres)}%`,
    );
    return result;
  } finally {
    await stopA?.();
    await dropDatabase();
    cpuContext.moreDatabases = cpuContext.moreDatabases.filter((name) => name !== dbName);
  }
}

// ---------------------------------------------------------------------------------------------
// C2. Blocking-query fan-out

interface Watch {
  /** performance.now() when the whole answer had arrived. */
  endedAt: number;
  status: number;
  index: number;
  body: string;
  error: string | null;
}

function watch(agent: Agent, server: Server, path: string, onWritten: () => void): Promise<Watch> {
  return new Promise((done) => {
    const request = httpRequest({ agent, host: '127.0.0.1', port: server.port, method: 'GET', path }, (response) => {
      const chunks: Buffer[] = [];
      response.on('data', (chunk: Buffer) => chunks.push(chunk));
      response.once('end', () => {
        done({ endedAt: performance.now(), status: response.statusCode ?? 0, index: Number(response.headers['x-consul-index'] ?? NaN), body: Buffer.concat(chunks).toString('utf8'), error: null });
      });
      response.once('error', (error) => done({ endedAt: performance.now(), status: 0, index: NaN, body: '', error: error.message }));
    });
    request.setTimeout(90_000, () => request.destroy(new Error('timed out')));
    request.once('error', (error) => done({ endedAt: performance.now(), status: 0, index: NaN, body: '', error: error.message }));
    request.once('finish', onWritten);
    request.end();
  });
}

interface FanoutRound {
  round: number;
  watchers: number;
  /** Server-side established connections on B's port when the change was made. */
  server_connections: number;
  parked_ms: number;
  early_returns: number;
  registration_ack_ms: number;
  /** From sending the registration to each watcher's complete answer. */
  returned_ms: Percentiles;
  first_returned_ms: number;
  last_returned_ms: number;
  saw_new_instance: number;
  failed: number;
  cpu: PhaseCpu;
}

async function fanoutRound(b: Server, agent: Agent, round: number): Promise<FanoutRound> {
  const first = await fetch(`${b.url}/v1/health/service/${WATCHED_SERVICE}`, { signal: AbortSignal.timeout(30_000) });
  await first.arrayBuffer();
  const index = Number(first.headers.get('x-consul-index'));
  if (!first.ok || !Number.isFinite(index)) throw new Error(`GET /v1/health/service/${WATCHED_SERVICE} answered ${first.status} without an X-Consul-Index`);
  const path = `/v1/health/service/${WATCHED_SERVICE}?index=${index}&wait=${WATCH_WAIT}`;
  let written = 0;
  const parkStarted = performance.now();
  let changedAt = Number.POSITIVE_INFINITY;
  const watches = Array.from({ length: WATCHERS }, () =>
    watch(agent, b, path, () => {
      written += 1;
    }),
  );
  let early = 0;
  for (const pending of watches) {
    void pending.then((result) => {
      if (result.endedAt < changedAt) early += 1;
    });
  }
  // All parked: every request written, the server holding a connection for each, and a moment more to read them.
  const deadline = performance.now() + 20_000;
  let connections = establishedTo(b.port);
  while (written < WATCHERS || connections < WATCHERS) {
    if (performance.now() > deadline) throw new Error(`only ${written} watchers written and ${connections} connections established after 20 s`);
    await sleep(50);
    connections = establishedTo(b.port);
  }
  await sleep(SETTINGS.settleMs);
  connections = establishedTo(b.port);
  const parkedMs = performance.now() - parkStarted;
  if (early > 0) log(`!! ${early} watchers returned before the change`);

  const id = `${WATCHED_SERVICE}-new-${round}-${randomBytes(3).toString('hex')}`;
  gc();
  const before = await cpuSnapshot();
  changedAt = performance.now();
  await put(b, '/v1/agent/service/register', watchedService(id, 9000 + round));
  const ackMs = performance.now() - changedAt;
  const results = await Promise.all(watches);
  const after = await cpuSnapshot();
  const returned: number[] = [];
  let saw = 0;
  let failed = 0;
  for (const result of results) {
    if (result.error !== null || result.status !== 200) {
      failed += 1;
      continue;
    }
    returned.push(result.endedAt - changedAt);
    try {
      const entries = JSON.parse(result.body) as Array<{ Service?: { ID?: string } }>;
      if (result.index > index && entries.some((entry) => entry.Service?.ID === id)) saw += 1;
    } catch {
      // counted as not seen
    }
  }
  const stats = percentiles(returned);
  return {
    round,
    watchers: WATCHERS,
    server_connections: connections,
    parked_ms: Math.round(parkedMs),
    early_returns: early,
    registration_ack_ms: Math.round(ackMs * 100) / 100,
    returned_ms: stats,
    first_returned_ms: Math.round(Math.min(...returned) * 1000) / 1000,
    last_returned_ms: stats.max,
    saw_new_instance: saw,
    failed,
    cpu: cpuOf(before, after, b, null),
  };
}

function median(values: number[]): number {
  const sorted = [...values].sort((x, y) => x - y);
  const n = sorted.length;
  if (n === 0) return NaN;
  return n % 2 === 1 ? (sorted[(n - 1) / 2] as number) : ((sorted[n / 2 - 1] as number) + (sorted[n / 2] as number)) / 2;
}

async function fanout(b: Server, failures: string[]): Promise<FanoutRound[]> {
  for (let i = 0; i < 3; i += 1) await put(b, '/v1/agent/service/register', watchedService(`${WATCHED_SERVICE}-${i}`, 8000 + i));
  const agent = new Agent({ keepAlive: true, maxSockets: WATCHERS + 16, maxFreeSockets: WATCHERS + 16 });
  const rounds: FanoutRound[] = [];
  try {
    for (let round = 1; round <= ROUNDS; round += 1) {
      const result = await fanoutRound(b, agent, round);
      rounds.push(result);
      log(
        `C2 round ${round}: ${result.server_connections} connections on B; all ${WATCHERS} returned ${ms(result.last_returned_ms)} after the change (first ${ms(result.first_returned_ms)}, p50 ${ms(result.returned_ms.p50)}, p99 ${ms(result.returned_ms.p99)}), registration acknowledged in ${ms(result.registration_ack_ms)}; ${result.saw_new_instance} saw the new instance; B CPU ${fmt(result.cpu.a.server)}%`,
      );
      const problems: string[] = [];
      if (result.failed > 0) problems.push(`${result.failed} watchers failed`);
      if (result.early_returns > 0) problems.push(`${result.early_returns} returned before the change`);
      if (result.saw_new_instance < WATCHERS) problems.push(`${WATCHERS - result.saw_new_instance} did not see the new instance`);
      if (problems.length > 0) failures.push(`consul fan-out round ${round}: ${problems.join(', ')}`);
    }
  } finally {
    agent.destroy();
  }
  return rounds;
}

// ---------------------------------------------------------------------------------------------
// The section

export async function consulSection(context: ConsulSectionContext): Promise<string[]> {
  const { root, results, failures, machine } = context;
  const startedAt = performance.now();
  const dbName = `rollcall_bench_${randomBytes(4).toString('hex')}`;
  const dropDatabase = await createDatabase(dbName);
  cpuContext.database = dbName;
  cpuContext.moreDatabases = [];
  let b: Server | null = null;
  try {
    b = await startServerChild(root, withDatabase(ADMIN_URL, dbName));
    const server = b;
    deferCleanup(() => stopServerChild(server));
    log(`B (Consul API, no sink) pid ${server.child.pid} at ${server.url}`);

    log(`C2: ${fmt(WATCHERS)} blocking queries on B's /v1/health/service/${WATCHED_SERVICE}, woken by one registration, ${ROUNDS} rounds`);
    const rounds = await fanout(server, failures);

    const off = await throughputRun(root, server, false, failures);
    const on = await throughputRun(root, server, true, failures);

    const fan = {
      watchers: WATCHERS,
      wait: WATCH_WAIT,
      rounds,
      median: {
        last_returned_ms: median(rounds.map((round) => round.last_returned_ms)),
        first_returned_ms: median(rounds.map((round) => round.first_returned_ms)),
        p50_ms: median(rounds.map((round) => round.returned_ms.p50)),
        p99_ms: median(rounds.map((round) => round.returned_ms.p99)),
        registration_ack_ms: median(rounds.map((round) => round.registration_ack_ms)),
        server_cpu_pct: median(rounds.map((round) => round.cpu.a.server)),
      },
    };
    const ratio = off.load.perSecond > 0 ? on.load.perSecond / off.load.perSecond : NaN;
    results.consul = {
      settings: { ...SETTINGS, register_connections: REGISTER_CONNECTIONS, watchers: WATCHERS, rounds: ROUNDS },
      registrations_sink_off: { ...off.load, a_writes: off.a_writes, cpu_pct_of_core: off.cpu },
      registrations_sink_on: { ...on.load, a_writes: on.a_writes, cpu_pct_of_core: on.cpu, sink_on_vs_off: Math.round(ratio * 1000) / 1000 },
      projection: on.projection ?? null,
      fanout: fan,
      seconds: Math.round((performance.now() - startedAt) / 100) / 10,
    };

    const load = (stats: LoadStats): string => `${fmt(stats.perSecond)}/s  (p50 ${ms(stats.latencyMs.p50)} / p99 ${ms(stats.latencyMs.p99)}, non-2xx ${stats.non2xx}, errors ${stats.errors})`;
    const projection = on.projection;
    const m = fan.median;
    const rows: string[][] = [
      ['C1. Registrations/s on A, sink off', load(off.load)],
      ['C1. Registrations/s on A, sink on (→ B)', `${load(on.load)}; ${fmt(ratio * 100)}% of sink off`],
      [
        'C1. Projection lag (last ack → all in B)',
        projection
          ? `${projection.lag_ms !== null ? ms(projection.lag_ms) : projection.estimated_lag_ms !== null ? `~${ms(projection.estimated_lag_ms)} (estimated: ${fmt(projection.reached)} of ${fmt(projection.nodes)} in B after ${fmt(SETTINGS.lagTimeoutMs / 1000)} s)` : `stuck at ${fmt(projection.reached)} of ${fmt(projection.nodes)}`}  (${fmt(projection.nodes)} nodes; ${fmt(projection.visible_when_load_ended)} in B when the load ended; sink delivered ${fmt(projection.projected_per_second)}/s)`
          : '-',
      ],
      [
        `C2. ${fmt(WATCHERS)} blocking queries woken by 1 change`,
        `all returned in ${ms(m.last_returned_ms)}  (first ${ms(m.first_returned_ms)}, per watcher p50 ${ms(m.p50_ms)} / p99 ${ms(m.p99_ms)}; registration ack ${ms(m.registration_ack_ms)}; median of ${ROUNDS})`,
      ],
      ['    rounds (time until the last)', rounds.map((round) => `${ms(round.last_returned_ms)} (${round.saw_new_instance}/${WATCHERS} saw it, ${round.server_connections} conns)`).join(', ')],
    ];
    const cpuRow = (name: string, cpu: PhaseCpu): string[] => [
      name,
      `${fmt(cpu.a.server)}%`,
      `${fmt(cpu.b)}%`,
      `${fmt(cpu.a.postgres)}%`,
      `${fmt(cpu.a.loadgen)}%`,
      `${fmt(Math.max(0, cpu.a.other - cpu.b))}%`,
      `${fmt(cpu.a.machine_busy)}% / ${machine.cores * 100}%`,
    ];
    const cpuRows = [cpuRow('C1. sink off', off.cpu), cpuRow('C1. sink on', on.cpu)];
    if (projection) cpuRows.push(cpuRow('C1. draining into B', projection.drain_cpu));
    const middle = rounds[Math.floor(rounds.length / 2)];
    const out: string[] = [];
    out.push('Consul');
    out.push('servers: children with their own databases: A (registrations; CONSUL_HTTP_ADDR → B for "sink on"), B (Consul API, no sink); load generator and watchers in this process');
    out.push(
      `registrations: ${SETTINGS.phaseSeconds} s after ${SETTINGS.warmupSeconds} s warm-up, ${REGISTER_CONNECTIONS} connections, a new node per request; fan-out: ${fmt(WATCHERS)} × GET /v1/health/service/${WATCHED_SERVICE}?index=<X-Consul-Index>&wait=${WATCH_WAIT}`,
    );
    out.push('');
    out.push(table(['Figure', 'Result'], rows));
    out.push('');
    out.push(
      `A's write path (server side): sink off mean batch ${fmt(off.a_writes.mean_batch, 1)}, ${fmt(off.a_writes.mean_registration_ms, 1)} ms per registration; sink on ${fmt(on.a_writes.mean_batch, 1)}, ${fmt(on.a_writes.mean_registration_ms, 1)} ms.`,
    );
    if (projection) {
      out.push(
        `B's write path while the sink fed it: ${fmt(projection.b_writes.registrations)} registrations in ${fmt(projection.b_writes.transactions)} transactions (mean batch ${fmt(projection.b_writes.mean_batch, 1)}), ${fmt(projection.b_writes.mean_registration_ms, 1)} ms each in B's server.`,
      );
      out.push(
        `Sink calls (A's rollcall_consul_operations_total): register ok ${fmt(projection.consul_calls.register_ok)}, error ${fmt(projection.consul_calls.register_error)}, rejected by the breaker ${fmt(projection.consul_calls.rejected)}; B's /v1/catalog/service/${SINK_SERVICE} lists ${fmt(projection.catalog_count)}.`,
      );
    }
    out.push('');
    out.push(`CPU by process (% of one core; the machine has ${machine.cores * 100}%); "A" is B during the fan-out:`);
    if (middle) cpuRows.push(cpuRow(`C2. fan-out wake (round ${middle.round})`, middle.cpu));
    out.push(table(['Phase', 'A', 'B', 'postgres', 'loadgen', 'other', 'machine busy'], cpuRows));
    const phases: Array<[string, PhaseCpu]> = [
      ['C1. sink off', off.cpu],
      ['C1. sink on', on.cpu],
      ...(projection ? [['C1. draining into B', projection.drain_cpu] as [string, PhaseCpu]] : []),
      ...rounds.map((round) => [`C2. round ${round.round}`, round.cpu] as [string, PhaseCpu]),
    ];
    const interference = phases.filter(([, cpu]) => cpu.a.other - cpu.b >= 10);
    if (interference.length > 0) {
      out.push('');
      out.push('WARNING: other processes used the CPU during the Consul phases:');
      for (const [name, cpu] of interference) {
        const others = cpu.a.other_top.filter((entry) => !entry.includes(' serve --database-url '));
        out.push(`  ${name}: other ${fmt(cpu.a.other - cpu.b)}%${others.length > 0 ? ` (${others.join(', ')})` : ''}`);
      }
      out.push('  Figures from a shared machine understate rollcall; rerun on a quiet one.');
    }
    return out;
  } catch (error) {
    if (b && b.output.length > 0) log(`last output of B:\n${b.output.slice(-20).join('\n')}`);
    throw error;
  } finally {
    if (b) await stopServerChild(b);
    await dropDatabase();
  }
}
