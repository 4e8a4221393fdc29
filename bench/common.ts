// What the benchmark's sections share: settings from the environment, the server child, the
// database, CPU and memory accounting of the processes, statistics and the report's formatting.
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, readFileSync, readdirSync } from 'node:fs';
import { createServer } from 'node:net';
import { dirname, join, resolve } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import autocannon from 'autocannon';
import pg from 'pg';

export const QUICK = process.env.BENCH_QUICK === '1';
export const ADMIN_URL = process.env.BENCH_DATABASE_URL ?? 'postgres://postgres@127.0.0.1:5432/postgres';
export const JSON_HEADERS = { 'content-type': 'application/json' };
export const SERVER_NODE_ARGS = (process.env.BENCH_SERVER_NODE_ARGS ?? '').split(/\s+/).filter((arg) => arg !== '');

export function log(message: string): void {
  process.stderr.write(`[bench] ${message}\n`);
}

export function sleep(ms: number): Promise<void> {
  return new Promise((done) => setTimeout(done, ms));
}

export function gc(): void {
  (globalThis as { gc?: () => void }).gc?.();
}

export function projectRoot(): string {
  let dir = dirname(fileURLToPath(import.meta.url));
  for (let depth = 0; depth < 5; depth += 1) {
    if (existsSync(join(dir, 'bin', 'rollcall.js')) && existsSync(join(dir, 'package.json'))) return dir;
    dir = resolve(dir, '..');
  }
  throw new Error('cannot find the project root (bin/rollcall.js) above the benchmark');
}

export interface Percentiles {
  samples: number;
  mean: number;
  p50: number;
  p90: number;
  p99: number;
  p999: number;
  max: number;
}

export function percentiles(values: number[]): Percentiles {
  const sorted = Float64Array.from(values).sort();
  const n = sorted.length;
  const at = (q: number): number => (n === 0 ? NaN : (sorted[Math.min(n - 1, Math.max(0, Math.ceil(q * n) - 1))] as number));
  let sum = 0;
  for (const value of sorted) sum += value;
  const round = (value: number): number => Math.round(value * 1000) / 1000;
  return {
    samples: n,
    mean: round(n === 0 ? NaN : sum / n),
    p50: round(at(0.5)),
    p90: round(at(0.9)),
    p99: round(at(0.99)),
    p999: round(at(0.999)),
    max: round(n === 0 ? NaN : (sorted[n - 1] as number)),
  };
}

// ---------------------------------------------------------------------------------------------
// The fleet: node i always has the same id and document, so later phases can address earlier nodes.

export const ZONES = ['zone-a', 'zone-b', 'zone-c', 'zone-d'] as const;
export const MODELS = ['llama-3-8b-instruct', 'mistral-7b-v0.3', 'whisper-large-v3', 'bge-m3', 'sdxl-turbo', 'qwen2-72b'] as const;

/** Distinct for every i, spread over the key space the way random ids are (not appended in order). */
export function nodeId(i: number): string {
  return `node-${(Math.imul(i + 1, 2654435761) >>> 0).toString(16).padStart(8, '0')}-${i}`;
}

export function registrationBody(i: number): string {
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

/** Hands out node numbers: each one registered exactly once. */
export const fleet = { next: 0 };

export const registrationBodyNext = (): string => registrationBody(fleet.next++);

// ---------------------------------------------------------------------------------------------
// Load: closed loop with autocannon

export interface LoadStats {
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

export function describeFailures(stats: { non2xx: number; errors: number; timeouts?: number; statusCodes: Record<string, number> }): string | null {
  if (stats.non2xx === 0 && stats.errors === 0) return null;
  return `${stats.non2xx} non-2xx (${JSON.stringify(stats.statusCodes)}), ${stats.errors} errors${stats.timeouts ? ` (${stats.timeouts} timeouts)` : ''}`;
}

export interface CannonSpec {
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

export function cannon(spec: CannonSpec): Promise<LoadStats> {
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
        requests: [
          {
            method: spec.method,
            path: spec.path,
            ...(spec.method === 'POST' ? { headers: JSON_HEADERS } : {}),
            ...(makeBody ? { setupRequest: (request: autocannon.Request): autocannon.Request => ({ ...request, body: makeBody() }) } : {}),
          },
        ],
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

// ---------------------------------------------------------------------------------------------
// CPU accounting: who burns the cores during a phase (server, PostgreSQL, this load generator, others).

export const CLOCK_TICKS = 100; // USER_HZ on Linux

export interface ProcSample {
  comm: string;
  ticks: number;
}

/** CPU ticks (user + system) of every process, by pid. */
export function processTicks(): Map<number, ProcSample> {
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

export function commandLine(pid: number, fallback: string): string {
  try {
    const args = readFileSync(`/proc/${pid}/cmdline`, 'utf8')
      .split('\0')
      .filter((arg) => arg !== '');
    const text = args.length === 0 ? fallback : args.join(' ');
    return text.length > 70 ? `${text.slice(0, 67)}...` : text;
  } catch {
    return fallback;
  }
}

export function machineTicks(): { busy: number; total: number } {
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

export interface CpuSnapshot {
  at: number;
  processes: Map<number, ProcSample>;
  /** PostgreSQL backends serving other databases: their work is not ours. */
  foreignBackends: Set<number>;
  machine: { busy: number; total: number };
}

/** CPU use over a phase, in % of one core (the machine has cores × 100 %). */
export interface CpuUse {
  server: number;
  postgres: number;
  loadgen: number;
  other: number;
  machine_busy: number;
  /** The biggest consumers outside this benchmark, e.g. "node test/e2e/... 45%". */
  other_top: string[];
}

/** Client backends of other databases (tests running meanwhile, …), via pg_stat_activity. */
export async function foreignBackends(databaseUrl: string | null, ownDatabases: string | string[]): Promise<Set<number>> {
  const pids = new Set<number>();
  if (databaseUrl === null) return pids;
  const client = new pg.Client({ connectionString: databaseUrl });
  try {
    await client.connect();
    const result = await client.query<{ pid: number }>(
      `SELECT pid FROM pg_stat_activity WHERE backend_type = 'client backend' AND (datname IS NULL OR datname <> ALL($1::text[])) AND pid <> pg_backend_pid()`,
      [typeof ownDatabases === 'string' ? [ownDatabases] : ownDatabases],
    );
    for (const row of result.rows) pids.add(row.pid);
  } catch {
    // best effort
  } finally {
    await client.end().catch(() => undefined);
  }
  return pids;
}

/** `database` is the section's database; `moreDatabases` those of its other server children (consul). */
export const cpuContext = { databaseUrl: null as string | null, database: '', moreDatabases: [] as string[] };

export async function cpuSnapshot(): Promise<CpuSnapshot> {
  const foreign = await foreignBackends(cpuContext.databaseUrl, [cpuContext.database, ...cpuContext.moreDatabases]);
  return { at: performance.now(), processes: processTicks(), foreignBackends: foreign, machine: machineTicks() };
}

export function cpuBetween(before: CpuSnapshot, after: CpuSnapshot, serverPid: number | undefined): CpuUse {
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
  const top = [...grouped]
    .sort((a, b) => b[1] - a[1])
    .filter(([, used]) => pct(used) >= 2)
    .slice(0, 4);
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

export interface Server {
  child: ChildProcess;
  url: string;
  port: number;
  output: string[];
  exited: Promise<number | null>;
  exitCode: number | null | undefined;
}

/** Every server child still running: whatever happens, none outlives the benchmark. */
export const liveChildren = new Set<ChildProcess>();
process.once('exit', () => {
  for (const child of liveChildren) child.kill('SIGKILL');
});

export function freePort(): Promise<number> {
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

export interface ServerOptions {
  /** Extra environment of the child (it gets ROLLCALL_LOG_LEVEL=warn unless this sets it). */
  env?: Record<string, string>;
  /** Every line the server writes, as it comes (besides the copy on stderr). */
  onLine?: (line: string) => void;
}

export async function startServerChild(root: string, databaseUrl: string, options: ServerOptions = {}): Promise<Server> {
  const port = await freePort();
  const args = [...SERVER_NODE_ARGS, join(root, 'bin', 'rollcall.js'), 'serve', '--database-url', databaseUrl, '--port', String(port)];
  const child = spawn(process.execPath, args, {
    cwd: root,
    env: { ...process.env, ROLLCALL_LOG_LEVEL: 'warn', ...options.env },
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
      options.onLine?.(line);
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

export async function stopServerChild(server: Server): Promise<void> {
  if (server.exitCode !== undefined) return;
  server.child.kill('SIGTERM');
  // The timer is cleared once the child exits: a pending one would keep the benchmark alive 10 s.
  let timer: NodeJS.Timeout | undefined;
  const exited = await Promise.race([
    server.exited.then(() => true),
    new Promise<boolean>((done) => {
      timer = setTimeout(() => done(false), 10_000);
    }),
  ]).finally(() => clearTimeout(timer));
  if (!exited) {
    log('server did not stop within 10 s of SIGTERM; killing it');
    server.child.kill('SIGKILL');
    await server.exited;
  }
}

export function withDatabase(url: string, name: string): string {
  const parsed = new URL(url);
  parsed.pathname = `/${name}`;
  return parsed.toString();
}

export async function adminQuery(sql: string): Promise<void> {
  const admin = new pg.Client({ connectionString: ADMIN_URL });
  await admin.connect();
  try {
    await admin.query(sql);
  } finally {
    await admin.end();
  }
}

export async function getJson<T>(url: string): Promise<T> {
  const response = await fetch(url, { signal: AbortSignal.timeout(30_000) });
  const text = await response.text();
  if (!response.ok) throw new Error(`GET ${url} answered ${response.status}: ${text.slice(0, 300)}`);
  return JSON.parse(text) as T;
}

export function metricValue(text: string, name: string): number | null {
  const line = text.split('\n').find((candidate) => candidate.startsWith(`${name} `) || candidate.startsWith(`${name}{`));
  if (line === undefined) return null;
  const value = Number(line.slice(line.lastIndexOf(' ') + 1));
  return Number.isFinite(value) ? value : null;
}

export async function metricsText(server: Server): Promise<string> {
  const response = await fetch(`${server.url}/metrics`, { signal: AbortSignal.timeout(30_000) });
  return response.text();
}

export interface Measured<T> {
  stats: T;
  cpu: CpuUse;
}

export async function measure<T>(server: Server, run: () => Promise<T>): Promise<Measured<T>> {
  gc();
  const before = await cpuSnapshot();
  const stats = await run();
  const after = await cpuSnapshot();
  return { stats, cpu: cpuBetween(before, after, server.child.pid) };
}

// ---------------------------------------------------------------------------------------------
// Report

export function fmt(value: number | null | undefined, digits = 0): string {
  if (value === null || value === undefined || Number.isNaN(value)) return '-';
  return value.toLocaleString('en-US', { minimumFractionDigits: digits, maximumFractionDigits: digits });
}

export function ms(value: number): string {
  return `${fmt(value, value < 10 ? 2 : 1)} ms`;
}

export function table(header: string[], rows: string[][]): string {
  const widths = header.map((title, column) => Math.max(title.length, ...rows.map((row) => (row[column] ?? '').length)));
  const line = (cells: string[]): string =>
    cells
      .map((cell, column) => cell.padEnd(widths[column] ?? 0))
      .join('  ')
      .trimEnd();
  return [line(header), line(widths.map((width) => '-'.repeat(width))), ...rows.map(line)].join('\n');
}

export function verdict(meets: boolean): string {
  return meets ? 'met' : 'NOT met';
}

export function readProcStatus(pid: number | undefined): Record<string, number> {
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

export function readRssMb(pid: number | undefined): number | null {
  const rss = readProcStatus(pid).VmRSS;
  return rss === undefined ? null : Math.round(rss / 1024);
}

export function mb(bytes: number | null): number | null {
  return bytes === null ? null : Math.round(bytes / 2 ** 20);
}

export interface Machine {
  cores: number;
  cpu_model: string;
  memory_gb: number;
  node: string;
  platform: string;
  postgres: string;
}

// ---------------------------------------------------------------------------------------------
// Cleanup: whatever a section leaves running is undone when it ends, and on SIGINT/SIGTERM.

const pendingCleanups = new Set<() => Promise<void>>();

/** Registers an undo step; the returned function runs it now (once) instead of at the end. */
export function deferCleanup(task: () => Promise<void>): () => Promise<void> {
  let running: Promise<void> | null = null;
  const run = (): Promise<void> => {
    pendingCleanups.delete(run);
    running ??= task().catch((error: unknown) => log(`cleanup failed: ${(error as Error).message}`));
    return running;
  };
  pendingCleanups.add(run);
  return run;
}

/** Runs every pending undo step, the latest first, then kills any server child still alive. */
export async function cleanupAll(): Promise<void> {
  for (const run of [...pendingCleanups].reverse()) await run();
  for (const child of liveChildren) child.kill('SIGKILL'); // one still starting up
}

/** Creates a fresh database; the returned function (also run by cleanupAll) drops it. */
export async function createDatabase(name: string): Promise<() => Promise<void>> {
  await adminQuery(`CREATE DATABASE ${name}`);
  log(`created database ${name}`);
  return deferCleanup(async () => {
    await adminQuery(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`)
      .then(() => log(`dropped database ${name}`))
      .catch((error: unknown) => log(`could not drop database ${name}: ${(error as Error).message}`));
  });
}
