// rollcall's benchmark against a real PostgreSQL: a server in a child process, the load generated here.
//
//   npm run bench                 full run (~100k nodes, 10 s phases; a few minutes on 2 cores)
//   BENCH_QUICK=1 npm run bench   smoke run (10k nodes, 2 s phases)
//
// Environment:
//   BENCH_DATABASE_URL      admin URL (default postgres://postgres@127.0.0.1:5432/postgres); a fresh
//                           database rollcall_bench_<random> is created through it and dropped at the end
//   BENCH_QUICK=1           shrink every phase for a smoke run
//   BENCH_SERVER_NODE_ARGS  extra node flags for the server child, e.g. "--cpu-prof --cpu-prof-dir=/tmp/prof"
//
// It prints figures next to the targets and writes them to bench/results/latest.json. It never
// judges the figures by its exit code: it exits non-zero only when something broke (the server did
// not start or died, a request failed or got a non-2xx answer).
import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, readdirSync, writeFileSync } from 'node:fs';
import { Agent, request as httpRequest } from 'node:http';
import { createServer } from 'node:net';
import { availableParallelism, cpus, release, totalmem } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import autocannon from 'autocannon';
import pg from 'pg';
import { redactUrl } from '../src/config/config.js';
import { PACKAGE } from '../src/version.js';

// ---------------------------------------------------------------------------------------------
// Settings

const QUICK = process.env.BENCH_QUICK === '1';
const ADMIN_URL = process.env.BENCH_DATABASE_URL ?? 'postgres://postgres@127.0.0.1:5432/postgres';
const SERVER_NODE_ARGS = (process.env.BENCH_SERVER_NODE_ARGS ?? '').split(/\s+/).filter((arg) => arg !== '');

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
const JSON_HEADERS = { 'content-type': 'application/json' };

function log(message: string): void {
  process.stderr.write(`[bench] ${message}\n`);
}

function sleep(ms: number): Promise<void> {
  return new Promise((done) => setTimeout(done, ms));
}

function gc(): void {
  (globalThis as { gc?: () => void }).gc?.();
}

function projectRoot(): string {
  let dir = dirname(fileURLToPath(import.meta.url));
  for (let depth = 0; depth < 5; depth += 1) {
    if (existsSync(join(dir, 'bin', 'rollcall.js')) && existsSync(join(dir, 'package.json'))) return dir;
    dir = resolve(dir, '..');
  }
  throw new Error('cannot find the project root (bin/rollcall.js) above the benchmark');
}

// ---------------------------------------------------------------------------------------------
// The fleet: node i always has the same id and document, so later phases can address earlier nodes.

const ZONES = ['zone-a', 'zone-b', 'zone-c', 'zone-d'] as const;
const MODELS = ['llama-3-8b-instruct', 'mistral-7b-v0.3', 'whisper-large-v3', 'bge-m3', 'sdxl-turbo', 'qwen2-72b'] as const;

/** Distinct for every i, spread over the key space the way random ids are (not appended in order). */
function nodeId(i: number): string {
  return `node-${(Math.imul(i + 1, 2654435761) >>> 0).toString(16).padStart(8, '0')}-${i}`;
}

function registrationBody(i: number): string {
  const zone = ZONES[i % ZONES.length] as string;
  const gpu = i % 8 === 0;
  const labels = [zone, `rack-${i % 32}`, i % 2 === 0 ? 'ssd' : 'hdd', 'bench'];
  if (i % 1000 === 7) labels.push('canary');
  return JSON.stringify({
    node_id: nodeId(i),
    hostname: `host-${i}.${zone}.bench.internal`,
    ip: `10.${(i >> 16) & 255}.${(i >> 8) & 255}.${i & 255}`,
    role: `worker-${i % 10}`,
    labels,
    node_type: 'node',
    node_version: i % 100 === 0 ? '2.0.1' : `1.${i % 7}.${i % 3}`,
    lease_ttl_seconds: 3600,
    endpoints: { api: `http://10.${(i >> 8) & 255}.${i & 255}.1:8080`, metrics: `http://10.${(i >> 8) & 255}.${i & 255}.1:9100/metrics` },
    capabilities: {
      gpu,
      gpu_model: gpu ? 'nvidia-a100-80gb' : null,
      gpu_count: gpu ? 1 + (i % 4) : 0,
      cpu: { cores: 8 << (i % 3), threads: 16 << (i % 3), arch: 'x86_64', model: 'Intel(R) Xeon(R) Gold 6338 CPU @ 2.00GHz' },
      memory_mb: 32_768 << (i % 3),
      disk: { type: i % 2 === 0 ? 'nvme' : 'hdd', size_gb: 960 << (i % 4), free_gb: 400 + (i % 500) },
      network: { bandwidth_gbps: 25, rdma: gpu },
      runtimes: ['python3.11', 'cuda-12.2', 'onnxruntime-1.17', 'triton-2.41'],
      models: [MODELS[i % MODELS.length], MODELS[(i + 1) % MODELS.length], MODELS[(i + 3) % MODELS.length]],
      max_concurrent_jobs: 4 + (i % 12),
      queues: ['default', `priority-${i % 3}`, 'batch'],
      features: { streaming: true, batching: i % 3 !== 0, quantization: ['fp16', 'int8'], tensor_parallel: gpu },
    },
    metadata: {
      version: '1.4.2',
      region: 'eu-west-1',
      datacenter: `dc-${i % 3}`,
      owner: 'platform-team',
      build: { commit: '9f1c2e7b4a0d', built_at: '2024-05-14T09:12:00Z' },
      os: 'linux 6.1.0-18-amd64',
    },
  });
}

function heartbeatBody(i: number): string {
  return `{"node_id":"${nodeId(i)}"}`;
}

/** Hands out node numbers: each one registered exactly once. */
const fleet = { next: 0 };

// ---------------------------------------------------------------------------------------------
// Statistics

interface Percentiles {
  samples: number;
  mean: number;
  p50: number;
  p90: number;
  p99: number;
  p999: number;
  max: number;
}

function percentiles(values: number[]): Percentiles {
  const sorted = Float64Array.from(values).sort();
  const n = sorted.length;
  const at = (q: number): number => (n === 0 ? NaN : (sorted[Math.min(n - 1, Math.max(0, Math.ceil(q * n) - 1))] as number));
  let sum = 0;
  for (const value of sorted) sum += value;
  const round = (value: number): number => Math.round(value * 1000) / 1000;
  return { samples: n, mean: round(n === 0 ? NaN : sum / n), p50: round(at(0.5)), p90: round(at(0.9)), p99: round(at(0.99)), p999: round(at(0.999)), max: round(n === 0 ? NaN : (sorted[n - 1] as number)) };
}

interface LoadStats {
  connections: number;
  seconds: number;
  responses: number;
  perSecond: number;
  ok: number;
  non2xx: number;
  errors: number;
  timeouts: number;
  statusCodes: Record<string, number>;
  /** Client-side latency from writing the request to its complete response, in ms. */
  latencyMs: Percentiles;
}

function describeFailures(stats: { non2xx: number; errors: number; timeouts?: number; statusCodes: Record<string, number> }): string | null {
  if (stats.non2xx === 0 && stats.errors === 0) return null;
  return `${stats.non2xx} non-2xx (${JSON.stringify(stats.statusCodes)}), ${stats.errors} errors${stats.timeouts ? ` (${stats.timeouts} timeouts)` : ''}`;
}

// ---------------------------------------------------------------------------------------------
// CPU accounting: who burns the cores during a phase (server, PostgreSQL, this load generator, others).

const CLOCK_TICKS = 100; // USER_HZ on Linux

interface ProcSample {
  comm: string;
  ticks: number;
}

/** CPU ticks (user + system) of every process, by pid. */
function processTicks(): Map<number, ProcSample> {
  const samples = new Map<number, ProcSample>();
  let entries: string[];
  try {
    entries = readdirSync('/proc');
  } catch {
    return samples;
  }
  for (const entry of entries) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const text = readFileSync(`/proc/${entry}/stat`, 'utf8');
      const fields = text.slice(text.lastIndexOf(')') + 2).split(' ');
      samples.set(Number(entry), { comm: text.slice(text.indexOf('(') + 1, text.lastIndexOf(')')), ticks: Number(fields[11]) + Number(fields[12]) });
    } catch {
      // gone meanwhile
    }
  }
  return samples;
}

function commandLine(pid: number, fallback: string): string {
  try {
    const args = readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0').filter((arg) => arg !== '');
    const text = args.length === 0 ? fallback : args.join(' ');
    return text.length > 70 ? `${text.slice(0, 67)}...` : text;
  } catch {
    return fallback;
  }
}

function machineTicks(): { busy: number; total: number } {
  try {
    const line = readFileSync('/proc/stat', 'utf8').split('\n')[0] ?? '';
    const values = line.trim().split(/\s+/).slice(1, 9).map(Number);
    const total = values.reduce((sum, value) => sum + value, 0);
    const idle = (values[3] ?? 0) + (values[4] ?? 0);
    return { busy: total - idle, total };
  } catch {
    return { busy: NaN, total: NaN };
  }
}

interface CpuSnapshot {
  at: number;
  processes: Map<number, ProcSample>;
  /** PostgreSQL backends serving other databases: their work is not ours. */
  foreignBackends: Set<number>;
  machine: { busy: number; total: number };
}

/** CPU use over a phase, in % of one core (the machine has cores × 100 %). */
interface CpuUse {
  server: number;
  postgres: number;
  loadgen: number;
  other: number;
  machine_busy: number;
  /** The biggest consumers outside this benchmark, e.g. "node test/e2e/... 45%". */
  other_top: string[];
}

/** Client backends of other databases (tests running meanwhile, …), via pg_stat_activity. */
async function foreignBackends(databaseUrl: string | null, ownDatabase: string): Promise<Set<number>> {
  const pids = new Set<number>();
  if (databaseUrl === null) return pids;
  const client = new pg.Client({ connectionString: databaseUrl });
  try {
    await client.connect();
    const result = await client.query<{ pid: number }>(
      `SELECT pid FROM pg_stat_activity WHERE backend_type = 'client backend' AND datname IS DISTINCT FROM $1 AND pid <> pg_backend_pid()`,
      [ownDatabase],
    );
    for (const row of result.rows) pids.add(row.pid);
  } catch {
    // best effort
  } finally {
    await client.end().catch(() => undefined);
  }
  return pids;
}

const cpuContext = { databaseUrl: null as string | null, database: '' };

async function cpuSnapshot(): Promise<CpuSnapshot> {
  const foreign = await foreignBackends(cpuContext.databaseUrl, cpuContext.database);
  return { at: performance.now(), processes: processTicks(), foreignBackends: foreign, machine: machineTicks() };
}

function cpuBetween(before: CpuSnapshot, after: CpuSnapshot, serverPid: number | undefined): CpuUse {
  const seconds = (after.at - before.at) / 1000;
  const pct = (cpuSeconds: number): number => Math.round((cpuSeconds / seconds) * 1000) / 10;
  let server = 0;
  let loadgen = 0;
  let postgres = 0;
  const others: Array<{ label: string; seconds: number }> = [];
  for (const [pid, sample] of after.processes) {
    const delta = (sample.ticks - (before.processes.get(pid)?.ticks ?? 0)) / CLOCK_TICKS;
    if (delta <= 0) continue;
    if (pid === serverPid) server += delta;
    else if (pid === process.pid) loadgen += delta;
    else if (sample.comm === 'postgres' && !before.foreignBackends.has(pid) && !after.foreignBackends.has(pid)) postgres += delta;
    else others.push({ label: sample.comm === 'postgres' ? 'postgres (other databases)' : commandLine(pid, sample.comm), seconds: delta });
  }
  const busy = (after.machine.busy - before.machine.busy) / CLOCK_TICKS;
  const grouped = new Map<string, number>();
  for (const { label, seconds: used } of others) grouped.set(label, (grouped.get(label) ?? 0) + used);
  const top = [...grouped].sort((a, b) => b[1] - a[1]).filter(([, used]) => pct(used) >= 2).slice(0, 4);
  const other = Math.max(0, busy - server - loadgen - postgres);
  const attributed = others.reduce((sum, { seconds: used }) => sum + used, 0);
  const unattributed = pct(other - attributed);
  const otherTop = top.map(([label, used]) => `${label} ${pct(used)}%`);
  if (unattributed >= 5) otherTop.push(`processes that came and went during the phase ${unattributed}%`);
  return {
    server: pct(server),
    postgres: pct(postgres),
    loadgen: pct(loadgen),
    other: pct(other),
    machine_busy: pct(busy),
    other_top: otherTop,
  };
}

// ---------------------------------------------------------------------------------------------
// The server child and the database

interface Server {
  child: ChildProcess;
  url: string;
  port: number;
  output: string[];
  exited: Promise<number | null>;
  exitCode: number | null | undefined;
}

/** Every server child still running: whatever happens, none outlives the benchmark. */
const liveChildren = new Set<ChildProcess>();
process.once('exit', () => {
  for (const child of liveChildren) child.kill('SIGKILL');
});

function freePort(): Promise<number> {
  return new Promise((done, fail) => {
    const probe = createServer();
    probe.once('error', fail);
    probe.listen(0, '127.0.0.1', () => {
      const address = probe.address();
      const port = typeof address === 'object' && address !== null ? address.port : 0;
      probe.close(() => done(port));
    });
  });
}

async function startServerChild(root: string, databaseUrl: string): Promise<Server> {
  const port = await freePort();
  const args = [...SERVER_NODE_ARGS, join(root, 'bin', 'rollcall.js'), 'serve', '--database-url', databaseUrl, '--port', String(port)];
  const child = spawn(process.execPath, args, {
    cwd: root,
    env: { ...process.env, ROLLCALL_LOG_LEVEL: 'warn' },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  liveChildren.add(child);
  const output: string[] = [];
  const server: Server = { child, url: `http://127.0.0.1:${port}`, port, output, exited: Promise.resolve(null), exitCode: undefined };
  server.exited = new Promise((done) => {
    child.once('exit', (code, signal) => {
      liveChildren.delete(child);
      server.exitCode = code;
      if (signal) log(`server exited on ${signal}`);
      done(code);
    });
  });
  for (const stream of [child.stdout, child.stderr]) {
    if (!stream) continue;
    createInterface({ input: stream }).on('line', (line) => {
      output.push(line);
      if (output.length > 200) output.shift();
      process.stderr.write(`[server] ${line}\n`);
    });
  }
  const deadline = Date.now() + 30_000;
  for (;;) {
    if (server.exitCode !== undefined) throw new Error(`the server exited with code ${server.exitCode} before it was ready`);
    try {
      const response = await fetch(`${server.url}/health`, { signal: AbortSignal.timeout(1_000) });
      await response.arrayBuffer();
      if (response.status === 200) return server;
    } catch {
      // not listening yet
    }
    if (Date.now() > deadline) {
      await stopServerChild(server);
      throw new Error('the server did not answer GET /health with 200 within 30 s');
    }
    await sleep(100);
  }
}

async function stopServerChild(server: Server): Promise<void> {
  if (server.exitCode !== undefined) return;
  server.child.kill('SIGTERM');
  const exited = await Promise.race([server.exited.then(() => true), sleep(10_000).then(() => false)]);
  if (!exited) {
    log('server did not stop within 10 s of SIGTERM; killing it');
    server.child.kill('SIGKILL');
    await server.exited;
  }
}

function withDatabase(url: string, name: string): string {
  const parsed = new URL(url);
  parsed.pathname = `/${name}`;
  return parsed.toString();
}

async function adminQuery(sql: string): Promise<void> {
  const admin = new pg.Client({ connectionString: ADMIN_URL });
  await admin.connect();
  try {
    await admin.query(sql);
  } finally {
    await admin.end();
  }
}

// ---------------------------------------------------------------------------------------------
// HTTP helpers

async function getJson<T>(url: string): Promise<T> {
  const response = await fetch(url, { signal: AbortSignal.timeout(30_000) });
  const text = await response.text();
  if (!response.ok) throw new Error(`GET ${url} answered ${response.status}: ${text.slice(0, 300)}`);
  return JSON.parse(text) as T;
}

interface Health {
  status: string;
  nodes: { online: number; offline: number; removed: number };
}

async function onlineBenchNodes(server: Server): Promise<number> {
  const health = await getJson<Health>(`${server.url}/health`);
  return health.nodes.online - 1; // the registry registers itself
}

function metricValue(text: string, name: string): number | null {
  const line = text.split('\n').find((candidate) => candidate.startsWith(`${name} `) || candidate.startsWith(`${name}{`));
  if (line === undefined) return null;
  const value = Number(line.slice(line.lastIndexOf(' ') + 1));
  return Number.isFinite(value) ? value : null;
}

async function metricsText(server: Server): Promise<string> {
  const response = await fetch(`${server.url}/metrics`, { signal: AbortSignal.timeout(30_000) });
  return response.text();
}

async function writeBatchStats(server: Server): Promise<{ sum: number; count: number }> {
  const text = await metricsText(server);
  return { sum: metricValue(text, 'rollcall_write_batch_size_sum') ?? 0, count: metricValue(text, 'rollcall_write_batch_size_count') ?? 0 };
}

// ---------------------------------------------------------------------------------------------
// Load: closed-loop with autocannon, open-loop (paced) with node:http

interface CannonSpec {
  title: string;
  server: Server;
  method: 'GET' | 'POST';
  path: string;
  connections: number;
  /** Runs this long, unless `amount` is given. */
  seconds?: number;
  /** Exactly this many requests, spread over the connections. */
  amount?: number;
  /** A fresh body for every request. */
  body?: () => string;
  onOk?: (okSoFar: number) => void;
}

function cannon(spec: CannonSpec): Promise<LoadStats> {
  const latencies: number[] = [];
  const statusCodes: Record<string, number> = {};
  let ok = 0;
  let started = 0;
  return new Promise((done, fail) => {
    const makeBody = spec.body;
    const instance = autocannon(
      {
        url: spec.server.url,
        connections: spec.connections,
        ...(spec.amount === undefined ? { duration: spec.seconds ?? 10 } : { amount: spec.amount }),
        timeout: 30,
        requests: [{
          method: spec.method,
          path: spec.path,
          ...(spec.method === 'POST' ? { headers: JSON_HEADERS } : {}),
          ...(makeBody ? { setupRequest: (request: autocannon.Request): autocannon.Request => ({ ...request, body: makeBody() }) } : {}),
        }],
      },
      (error: unknown, result: autocannon.Result) => {
        if (error) {
          fail(error instanceof Error ? error : new Error(JSON.stringify(error)));
          return;
        }
        const seconds = (performance.now() - started) / 1000;
        const responses = latencies.length;
        done({
          connections: spec.connections,
          seconds: Math.round(seconds * 100) / 100,
          responses,
          perSecond: Math.round(responses / seconds),
          ok,
          non2xx: responses - ok,
          errors: result.errors,
          timeouts: result.timeouts,
          statusCodes,
          latencyMs: percentiles(latencies),
        });
      },
    );
    started = performance.now();
    instance.on('response', (_client, statusCode, _bytes, responseTime) => {
      latencies.push(responseTime);
      statusCodes[statusCode] = (statusCodes[statusCode] ?? 0) + 1;
      if (statusCode >= 200 && statusCode < 300) {
        ok += 1;
        spec.onOk?.(ok);
      }
    });
  });
}

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
      const request = httpRequest({
        agent,
        host: '127.0.0.1',
        port: server.port,
        method: 'POST',
        path,
        headers: { ...JSON_HEADERS, 'content-length': Buffer.byteLength(payload) },
      }, (response) => {
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
      });
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

const registrationBodyNext = (): string => registrationBody(fleet.next++);

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

interface Measured<T> {
  stats: T;
  cpu: CpuUse;
}

async function measure<T>(server: Server, run: () => Promise<T>): Promise<Measured<T>> {
  gc();
  const before = await cpuSnapshot();
  const stats = await run();
  const after = await cpuSnapshot();
  return { stats, cpu: cpuBetween(before, after, server.child.pid) };
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
// Report

function fmt(value: number | null | undefined, digits = 0): string {
  if (value === null || value === undefined || Number.isNaN(value)) return '-';
  return value.toLocaleString('en-US', { minimumFractionDigits: digits, maximumFractionDigits: digits });
}

function ms(value: number): string {
  return `${fmt(value, value < 10 ? 2 : 1)} ms`;
}

function table(header: string[], rows: string[][]): string {
  const widths = header.map((title, column) => Math.max(title.length, ...rows.map((row) => (row[column] ?? '').length)));
  const line = (cells: string[]): string => cells.map((cell, column) => cell.padEnd(widths[column] ?? 0)).join('  ').trimEnd();
  return [line(header), line(widths.map((width) => '-'.repeat(width))), ...rows.map(line)].join('\n');
}

function verdict(meets: boolean): string {
  return meets ? 'met' : 'NOT met';
}

// ---------------------------------------------------------------------------------------------
// Main

async function main(): Promise<number> {
  const root = projectRoot();
  const failures: string[] = [];
  const dbName = `rollcall_bench_${randomBytes(4).toString('hex')}`;
  const databaseUrl = withDatabase(ADMIN_URL, dbName);
  let server: Server | null = null;
  let dbCreated = false;
  let cleaning: Promise<void> | null = null;

  const cleanup = (): Promise<void> => {
    cleaning ??= (async () => {
      if (server) await stopServerChild(server).catch((error: unknown) => log(`stopping the server failed: ${(error as Error).message}`));
      for (const child of liveChildren) child.kill('SIGKILL'); // one still starting up
      if (dbCreated) {
        await adminQuery(`DROP DATABASE IF EXISTS ${dbName} WITH (FORCE)`)
          .then(() => log(`dropped database ${dbName}`))
          .catch((error: unknown) => log(`could not drop database ${dbName}: ${(error as Error).message}`));
      }
    })();
    return cleaning;
  };
  for (const signal of ['SIGINT', 'SIGTERM'] as const) {
    process.once(signal, () => {
      log(`${signal}: stopping`);
      void cleanup().finally(() => process.exit(130));
    });
  }

  const machine = {
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
    machine,
    settings: { ...SETTINGS, register_connections: REGISTER_CONNECTIONS, heartbeat_connections: HEARTBEAT_CONNECTIONS, list_connections: LIST_CONNECTIONS, paced_rate: PACED_RATE, server_node_args: SERVER_NODE_ARGS },
    targets: TARGETS,
  };

  try {
    log(`mode ${QUICK ? 'quick (BENCH_QUICK=1)' : 'full'}; admin database ${redactUrl(ADMIN_URL)}`);
    // Anything else running skews every figure on a small machine: look before starting, and say so.
    cpuContext.databaseUrl = ADMIN_URL;
    cpuContext.database = dbName;
    const quietBefore = await cpuSnapshot();
    await sleep(1_000);
    const background = cpuBetween(quietBefore, await cpuSnapshot(), undefined);
    results.background_load_before_start = background;
    if (background.machine_busy > 15) {
      log(`WARNING: the machine is not idle before the benchmark: ${fmt(background.machine_busy)}% of ${machine.cores * 100}% busy (${background.other_top.join(', ') || 'unattributed'}); figures will be lower than on a quiet machine`);
    }
    await adminQuery(`CREATE DATABASE ${dbName}`);
    dbCreated = true;
    log(`created database ${dbName}`);
    const stats = new pg.Client({ connectionString: databaseUrl });
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

    server = await startServerChild(root, databaseUrl);
    const srv = server;
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
    const reg = await measure(srv, () => cannon({ title: 'register', server: srv, method: 'POST', path: REGISTER_PATH, connections: REGISTER_CONNECTIONS, seconds: SETTINGS.phaseSeconds, body: registrationBodyNext }));
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
    await cannon({ title: 'warmup', server: srv, method: 'POST', path: HEARTBEAT_PATH, connections: HEARTBEAT_CONNECTIONS, seconds: Math.min(1, SETTINGS.warmupSeconds), body: nextHeartbeat })
      .then((warmBeats) => check('heartbeat warm-up', describeFailures(warmBeats)));
    log(`2. heartbeats: ${SETTINGS.phaseSeconds} s, ${HEARTBEAT_CONNECTIONS} connections, round-robin over ${fmt(heartbeatNodes)} nodes`);
    const hb = await measure(srv, () => cannon({ title: 'heartbeat', server: srv, method: 'POST', path: HEARTBEAT_PATH, connections: HEARTBEAT_CONNECTIONS, seconds: SETTINGS.phaseSeconds, body: nextHeartbeat }));
    check('heartbeats', describeFailures(hb.stats));
    results.heartbeats = { ...hb.stats, nodes: heartbeatNodes, cpu_pct_of_core: hb.cpu };
    log(`   ${fmt(hb.stats.perSecond)} heartbeats/s, p50 ${ms(hb.stats.latencyMs.p50)}, p99 ${ms(hb.stats.latencyMs.p99)}`);

    // 3. Registration latency at a fixed offered load
    // One keep-alive agent for the warm-up and the run: the run starts on open connections.
    const pacedAgent = new Agent({ keepAlive: true, maxSockets: 1024 });
    await paced(srv, pacedAgent, PACED_RATE, Math.min(2, SETTINGS.warmupSeconds), REGISTER_PATH, registrationBodyNext)
      .then((warmPaced) => check('paced warm-up', describeFailures(warmPaced)));
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
      log(`   ${name}: ${count} rows, ${fmt(Buffer.byteLength(probeText) / 1024)} KB, ${fmt(list.stats.perSecond)}/s, p50 ${ms(list.stats.latencyMs.p50)}, p99 ${ms(list.stats.latencyMs.p99)}; 1 connection p50 ${ms(single.latencyMs.p50)}`);
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
    const finishedAt = new Date();
    results.finished_at = finishedAt.toISOString();
    results.failures = failures;
    const listRows = listResults.map((entry) => {
      const latency = entry.latencyMs as Percentiles;
      const single = (entry.one_connection as { latencyMs: Percentiles }).latencyMs;
      return [`4. List ${String(entry.name)} (${String(entry.page_count)} rows)`, `p50 ${ms(latency.p50)} / p99 ${ms(latency.p99)}  (${fmt(entry.perSecond as number)}/s; 1 conn: p50 ${ms(single.p50)} / p99 ${ms(single.p99)})`, `p99 < ${TARGETS.listP99Ms} ms`, verdict(latency.p99 < TARGETS.listP99Ms)];
    });
    const rows: string[][] = [
      ['1. Durable registrations/s', `${fmt(reg.stats.perSecond)}/s  (p50 ${ms(reg.stats.latencyMs.p50)} / p99 ${ms(reg.stats.latencyMs.p99)}, non-2xx ${reg.stats.non2xx}, errors ${reg.stats.errors})`, `>= ${fmt(TARGETS.registrationsPerSecond)}/s`, verdict(reg.stats.perSecond >= TARGETS.registrationsPerSecond)],
      ['2. Heartbeats/s', `${fmt(hb.stats.perSecond)}/s  (p50 ${ms(hb.stats.latencyMs.p50)} / p99 ${ms(hb.stats.latencyMs.p99)}, non-2xx ${hb.stats.non2xx}, errors ${hb.stats.errors})`, `>= ${fmt(TARGETS.heartbeatsPerSecond)}/s`, verdict(hb.stats.perSecond >= TARGETS.heartbeatsPerSecond)],
      [`3. Registration latency @ ${fmt(PACED_RATE)}/s`, `p50 ${ms(fixed.stats.latencyMs.p50)} / p99 ${ms(fixed.stats.latencyMs.p99)}  (achieved ${fmt(fixed.stats.achievedPerSecond)}/s, non-2xx ${fixed.stats.non2xx}, errors ${fixed.stats.errors})`, `p99 < ${TARGETS.pacedP99Ms} ms`, verdict(fixed.stats.latencyMs.p99 < TARGETS.pacedP99Ms)],
      ...listRows,
      [`5. Server RSS @ ${fmt(memory.nodes_online)} nodes`, `${fmt(memoryAfterFill.rss_mb)} MB after the fill, ${fmt(memoryAtEnd.rss_mb)} MB after the list queries  (heap used ${fmt(memoryAfterFill.heap_used_mb)} / ${fmt(memoryAtEnd.heap_used_mb)} MB, peak RSS ${fmt(memoryAtEnd.peak_rss_mb)} MB)`, `< ${TARGETS.rssMb} MB`, verdict((memory.rss_mb ?? Infinity) < TARGETS.rssMb)],
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
    out.push('');
    out.push(`rollcall ${PACKAGE.version} benchmark (${QUICK ? 'QUICK smoke run: BENCH_QUICK=1' : 'full run'}), ${startedAt.toISOString()}`);
    out.push(`machine: ${machine.cores} cores (${machine.cpu_model}), ${machine.memory_gb} GB, Node ${machine.node}, ${machine.platform}; PostgreSQL ${machine.postgres} on ${new URL(ADMIN_URL).host}`);
    out.push(`server: child process (node bin/rollcall.js serve --database-url …/${dbName}), load generator in this process; both share the machine with PostgreSQL`);
    out.push(`registration body ${Buffer.byteLength(sample)} B (capabilities ${capabilitiesBytes} B); heartbeats over ${fmt(heartbeatNodes)} nodes; latencies measured by the client`);
    out.push('');
    out.push(table(['Figure', 'Result', 'Target', 'vs target'], rows));
    out.push('');
    out.push(`Group commit: mean ${fmt(regBatch, 1)} registrations per transaction at full load (${fmt(batchAfter.count - batchBefore.count)} transactions), ${fmt(pacedBatch, 1)} at ${fmt(PACED_RATE)}/s.`);
    out.push(`Fill: ${fmt(fill.stats.registered)} registrations in ${fmt(fill.stats.seconds, 1)} s (${fmt(fill.stats.perSecond)}/s at ${FILL_CONNECTIONS} connections).`);
    out.push(`Fixed-rate latency is counted from when each request was due (open loop); from when it was written: p50 ${ms(fixed.stats.serviceMs.p50)} / p99 ${ms(fixed.stats.serviceMs.p99)}; at most ${fixed.stats.maxInFlight} in flight.`);
    out.push(`Database at the end: ${sizes ? `${fmt(sizes.database_mb)} MB (node_registrations ${fmt(sizes.node_registrations_mb)} MB, topology_changes ${fmt(sizes.topology_changes_mb)} MB, node_leases ${fmt(sizes.node_leases_mb)} MB)` : 'unknown'}.`);
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
      out.push(`WARNING: other processes used the CPU during the benchmark (before start: ${fmt(background.machine_busy)}% busy${background.other_top.length > 0 ? `: ${background.other_top.join(', ')}` : ''}).`);
      for (const [name, use] of interference) out.push(`  ${name}: other ${fmt(use.other)}%${use.other_top.length > 0 ? ` (${use.other_top.join(', ')})` : ''}`);
      out.push('  Figures from a shared machine understate rollcall; rerun on a quiet one to compare with the targets.');
    }
    out.push('');
    out.push(failures.length === 0 ? 'Every request was answered 2xx.' : `FAILURES:\n  ${failures.join('\n  ')}`);
    out.push(`Duration ${fmt((finishedAt.getTime() - startedAt.getTime()) / 1000, 1)} s. Results: bench/results/latest.json`);
    process.stdout.write(`${out.join('\n')}\n`);
  } catch (error) {
    failures.push(`aborted: ${(error as Error).message}`);
    results.failures = failures;
    log(`aborted: ${(error as Error).stack ?? String(error)}`);
    if (server && server.output.length > 0) log(`last server output:\n${server.output.slice(-20).join('\n')}`);
  } finally {
    await cleanup();
  }

  const resultsDir = join(root, 'bench', 'results');
  mkdirSync(resultsDir, { recursive: true });
  writeFileSync(join(resultsDir, 'latest.json'), `${JSON.stringify(results, null, 2)}\n`);
  return failures.length === 0 ? 0 : 1;
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

function readProcStatus(pid: number | undefined): Record<string, number> {
  const values: Record<string, number> = {};
  if (pid === undefined) return values;
  try {
    for (const line of readFileSync(`/proc/${pid}/status`, 'utf8').split('\n')) {
      const match = /^(Vm\w+):\s+(\d+) kB/.exec(line);
      if (match) values[match[1] as string] = Number(match[2]);
    }
  } catch {
    // not on Linux, or gone
  }
  return values;
}

function readRssMb(pid: number | undefined): number | null {
  const rss = readProcStatus(pid).VmRSS;
  return rss === undefined ? null : Math.round(rss / 1024);
}

function mb(bytes: number | null): number | null {
  return bytes === null ? null : Math.round(bytes / 2 ** 20);
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
