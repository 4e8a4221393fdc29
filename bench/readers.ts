// The readers section of the benchmark: what readers cost the server, and whether they can hold it.
//
//   R1. heap before, halfway and after 10,000 long-polls (5,000 answered at once, one after another;
//       5,000 parked 100 at a time and woken by a change), after a full GC each time; with the live
//       view's listeners and the open watchers left afterwards.
//   R2. memory with 100 stuck SSE readers (they send the request, read the first event, then stop
//       reading) while 2,500 changes of ~4 KiB are committed: RSS and heap before the readers and
//       after the changes, and how many streams were dropped as slow readers.
//   R3. seconds from SIGTERM to exit of `rollcall serve` with 1,000 watchers open (400 long-polls,
//       400 Consul blocking queries, 200 event streams), each on a keep-alive connection.
//
// R1 and R2 run the server in this process (the benchmark runs with --expose-gc, so the heap is
// measured after a full collection); R3 a server child. Figures are printed, never judged.
import { randomBytes } from 'node:crypto';
import { Agent, request as httpRequest } from 'node:http';
import { connect, type Socket } from 'node:net';
import { loadConfig } from '../src/config/config.js';
import { createLogger } from '../src/config/logger.js';
import { startServer, type RunningServer } from '../src/server.js';
import {
  ADMIN_URL,
  JSON_HEADERS,
  createDatabase,
  deferCleanup,
  fmt,
  gc,
  log,
  mb,
  metricValue,
  metricsText,
  registrationBody,
  sleep,
  startServerChild,
  table,
  withDatabase,
  type Server,
} from './common.js';

const LONG_POLLS_SEQUENTIAL = 5_000;
const LONG_POLL_ROUNDS = 50;
const LONG_POLLS_PER_ROUND = 100;
const STUCK_READERS = 100;
const STREAM_CHANGES = 2_500;
const STREAM_PADDING = 'p'.repeat(3 * 1024);
const SHUTDOWN_WATCHERS = { longPolls: 400, blockingQueries: 400, streams: 200 } as const;

export interface ReadersSectionContext {
  root: string;
  results: Record<string, unknown>;
  failures: string[];
}

interface Memory {
  rss_mb: number;
  heap_used_mb: number;
  external_mb: number;
}

/** This process's memory after a full collection. */
function memory(): Memory {
  gc();
  gc();
  const usage = process.memoryUsage();
  return { rss_mb: mb(usage.rss) ?? 0, heap_used_mb: Math.round((usage.heapUsed / 2 ** 20) * 10) / 10, external_mb: mb(usage.external + usage.arrayBuffers) ?? 0 };
}

function get(agent: Agent, url: string): Promise<{ status: number; headers: Record<string, string | string[] | undefined>; body: string }> {
  return new Promise((resolve, reject) => {
    const request = httpRequest(url, { agent }, (response) => {
      const chunks: Buffer[] = [];
      response.on('data', (chunk: Buffer) => chunks.push(chunk));
      response.on('end', () => resolve({ status: response.statusCode ?? 0, headers: response.headers, body: Buffer.concat(chunks).toString('utf8') }));
      response.on('error', reject);
    });
    request.on('error', reject);
    request.end();
  });
}

function post(agent: Agent, url: string, body: string): Promise<number> {
  return new Promise((resolve, reject) => {
    const request = httpRequest(url, { agent, method: 'POST', headers: { ...JSON_HEADERS, 'content-length': Buffer.byteLength(body) } }, (response) => {
      response.resume();
      response.on('end', () => resolve(response.statusCode ?? 0));
    });
    request.on('error', reject);
    request.end(body);
  });
}

async function until(what: string, check: () => Promise<boolean> | boolean, timeoutMs = 60_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(10);
  }
}

/** A registration of node `i` (~1 KiB), padded to about `padding` more. */
function paddedRegistration(i: number, padding = ''): string {
  const body = JSON.parse(registrationBody(i)) as Record<string, unknown>;
  body.node_id = `reader-bench-${i}`;
  if (padding) body.metadata = { ...(body.metadata as object), padding };
  return JSON.stringify(body);
}

async function startInProcess(databaseUrl: string): Promise<RunningServer> {
  const config = loadConfig({ env: {}, flags: { port: 0, databaseUrl, logLevel: 'silent', requestIntrospectionOnStart: false } });
  return startServer(config, createLogger('silent'));
}

async function watcherCount(metrics: () => Promise<string>, kind: string): Promise<number | null> {
  const text = await metrics();
  return metricValue(text, `rollcall_topology_watchers{kind="${kind}"}`);
}

/** R1: heap before and after 10,000 answered long-polls. */
async function longPollHeap(server: RunningServer, failures: string[]): Promise<Record<string, unknown>> {
  const agent = new Agent({ keepAlive: true, maxSockets: LONG_POLLS_PER_ROUND + 10 });
  const url = server.url;
  const metrics = async (): Promise<string> => (await get(agent, `${url}/metrics`)).body;
  const version = async (): Promise<number> => (JSON.parse((await get(agent, `${url}/api/v1/topology`)).body) as { version: number }).version;
  let registered = 0;
  const registerOne = async (): Promise<void> => {
    const status = await post(agent, `${url}/api/v1/nodes/register`, paddedRegistration(registered++));
    if (status !== 200 && status !== 201) failures.push(`readers R1: a registration answered ${status}`);
  };
  const answered = (status: number, body: string): void => {
    if (status !== 200 || (JSON.parse(body) as { changes: unknown[] }).changes.length === 0) failures.push(`readers R1: a long-poll answered ${status} ${body.slice(0, 200)}`);
  };
  await registerOne();
  // Warm up: JIT, sockets and pools are not what is measured.
  for (let i = 0; i < 200; i += 1) await get(agent, `${url}/api/v1/topology/changes?since=${(await version()) - 1}&wait=30s`);
  const listenersBefore = server.registry.view.listenerCount;
  const before = memory();
  const started = performance.now();
  const current = await version();
  for (let i = 0; i < LONG_POLLS_SEQUENTIAL; i += 1) {
    const answer = await get(agent, `${url}/api/v1/topology/changes?since=${current - 1}&wait=30s`);
    answered(answer.status, answer.body);
  }
  const halfway = memory();
  for (let round = 0; round < LONG_POLL_ROUNDS; round += 1) {
    const since = await version();
    const parked = Array.from({ length: LONG_POLLS_PER_ROUND }, () => get(agent, `${url}/api/v1/topology/changes?since=${since}&wait=60s`));
    await until('the long-polls parked', async () => (await watcherCount(metrics, 'long_poll')) === LONG_POLLS_PER_ROUND);
    await registerOne();
    for (const answer of await Promise.all(parked)) answered(answer.status, answer.body);
  }
  const seconds = (performance.now() - started) / 1000;
  agent.destroy();
  await sleep(200);
  const afterMemory = memory();
  const left = await watcherCount(async () => (await fetch(`${url}/metrics`)).text(), 'long_poll');
  return {
    long_polls: LONG_POLLS_SEQUENTIAL + LONG_POLL_ROUNDS * LONG_POLLS_PER_ROUND,
    seconds: Math.round(seconds * 10) / 10,
    before,
    after_sequential: halfway,
    after: afterMemory,
    heap_growth_mb: Math.round((afterMemory.heap_used_mb - before.heap_used_mb) * 10) / 10,
    view_listeners_before: listenersBefore,
    view_listeners_after: server.registry.view.listenerCount,
    watchers_left: left,
  };
}

/** Opens a stream on a raw socket, waits for its first event, then stops reading. */
function stuckReader(url: string): Promise<Socket> {
  const { hostname, port } = new URL(url);
  return new Promise((resolve, reject) => {
    const socket = connect(Number(port), hostname === 'localhost' ? '127.0.0.1' : hostname, () => {
      socket.write('GET /api/v1/topology/stream HTTP/1.1\r\nHost: rollcall\r\nAccept: text/event-stream\r\n\r\n');
    });
    let text = '';
    const onData = (chunk: Buffer): void => {
      text += chunk.toString('utf8');
      if (!text.includes('event: ready')) return;
      socket.off('data', onData);
      socket.pause();
      resolve(socket);
    };
    socket.on('data', onData);
    socket.on('error', () => undefined);
    socket.once('close', () => reject(new Error('a stream closed before its first event')));
  });
}

/** R2: memory with 100 stuck SSE readers while 2,500 changes of ~4 KiB are committed. */
async function stuckReaders(server: RunningServer, failures: string[]): Promise<Record<string, unknown>> {
  const agent = new Agent({ keepAlive: true, maxSockets: 16 });
  const url = server.url;
  const metrics = async (): Promise<string> => (await get(agent, `${url}/metrics`)).body;
  const before = memory();
  const readers = await Promise.all(Array.from({ length: STUCK_READERS }, () => stuckReader(url)));
  const started = performance.now();
  let next = 1_000_000;
  for (let done = 0; done < STREAM_CHANGES; done += 16) {
    const statuses = await Promise.all(Array.from({ length: 16 }, () => post(agent, `${url}/api/v1/nodes/register`, paddedRegistration(next++, STREAM_PADDING))));
    for (const status of statuses) if (status !== 200 && status !== 201) failures.push(`readers R2: a registration answered ${status}`);
  }
  const seconds = (performance.now() - started) / 1000;
  // Let every stream write (or count) what it is owed before measuring.
  await sleep(1_000);
  const text = await metrics();
  const withReaders = memory();
  const dropped = metricValue(text, 'rollcall_sse_streams_dropped_total{reason="slow_reader"}');
  const open = metricValue(text, 'rollcall_topology_watchers{kind="stream"}');
  for (const socket of readers) socket.destroy();
  agent.destroy();
  await sleep(500);
  return {
    readers: STUCK_READERS,
    changes: STREAM_CHANGES,
    change_bytes: paddedRegistration(0, STREAM_PADDING).length,
    seconds: Math.round(seconds * 10) / 10,
    before,
    with_stuck_readers: withReaders,
    streams_dropped: dropped,
    streams_open: open,
    after_readers_gone: memory(),
  };
}

/** R3: seconds from SIGTERM to exit with 1,000 watchers open. */
async function shutdownWithWatchers(server: Server, failures: string[]): Promise<Record<string, unknown>> {
  const agent = new Agent({ keepAlive: true, maxSockets: Infinity });
  const { longPolls, blockingQueries, streams } = SHUTDOWN_WATCHERS;
  const version = (JSON.parse((await get(agent, `${server.url}/api/v1/topology`)).body) as { version: number }).version;
  const index = (await get(agent, `${server.url}/v1/catalog/services?ns=nobody`)).headers['x-consul-index'] as string;
  const settle = (request: Promise<unknown>): Promise<boolean> =>
    request.then(
      () => true,
      () => false,
    );
  const watchers = [
    ...Array.from({ length: longPolls }, () => settle(get(agent, `${server.url}/api/v1/topology/changes?since=${version}&wait=5m&namespace=nobody`))),
    ...Array.from({ length: blockingQueries }, () => settle(get(agent, `${server.url}/v1/catalog/services?ns=nobody&index=${index}&wait=10m`))),
    ...Array.from({ length: streams }, () => settle(get(agent, `${server.url}/api/v1/topology/stream`))),
  ];
  await until('1,000 watchers open', async () => {
    const text = await metricsText(server);
    return (
      metricValue(text, 'rollcall_topology_watchers{kind="long_poll"}') === longPolls &&
      metricValue(text, 'rollcall_topology_watchers{kind="stream"}') === streams &&
      metricValue(text, 'rollcall_consul_blocking_parked') === blockingQueries
    );
  });
  const signalled = performance.now();
  server.child.kill('SIGTERM');
  let timer: NodeJS.Timeout | undefined;
  const code = await Promise.race([server.exited, new Promise<'timeout'>((resolve) => (timer = setTimeout(() => resolve('timeout'), 120_000)))]).finally(() => clearTimeout(timer));
  const seconds = (performance.now() - signalled) / 1000;
  if (code === 'timeout') {
    failures.push('readers R3: the server did not exit within 120 s of SIGTERM');
    server.child.kill('SIGKILL');
    await server.exited;
  } else if (code !== 0) {
    failures.push(`readers R3: the server exited with code ${String(code)} after SIGTERM`);
  }
  const settled = await Promise.all(watchers);
  agent.destroy();
  return {
    watchers: { long_polls: longPolls, blocking_queries: blockingQueries, streams },
    seconds_to_exit: Math.round(seconds * 100) / 100,
    exit_code: code === 'timeout' ? null : code,
    watchers_answered: settled.filter(Boolean).length,
  };
}

export async function readersSection(context: ReadersSectionContext): Promise<string[]> {
  const { root, results, failures } = context;
  const startedAt = performance.now();
  const dbName = `rollcall_bench_${randomBytes(4).toString('hex')}`;
  const dropDatabase = await createDatabase(dbName);
  const databaseUrl = withDatabase(ADMIN_URL, dbName);
  const out: string[] = ['Readers (R1, R2 in this process with the heap measured after a full GC; R3 a server child):'];
  try {
    const server = await startInProcess(databaseUrl);
    const stopServer = deferCleanup(() => server.stop());
    log(`R1: ${fmt(LONG_POLLS_SEQUENTIAL + LONG_POLL_ROUNDS * LONG_POLLS_PER_ROUND)} long-polls`);
    const polls = await longPollHeap(server, failures);
    log(`R2: ${STUCK_READERS} stuck SSE readers, ${fmt(STREAM_CHANGES)} changes`);
    const stuck = await stuckReaders(server, failures);
    await stopServer();

    log('R3: SIGTERM with 1,000 watchers open');
    const child = await startServerChild(root, databaseUrl);
    deferCleanup(async () => {
      if (child.exitCode === undefined) child.child.kill('SIGKILL');
    });
    const shutdown = await shutdownWithWatchers(child, failures);

    results.readers = { long_polls: polls, stuck_sse_readers: stuck, shutdown, seconds: Math.round((performance.now() - startedAt) / 100) / 10 };
    const pollBefore = polls.before as Memory;
    const pollAfter = polls.after as Memory;
    const stuckBefore = stuck.before as Memory;
    const stuckWith = stuck.with_stuck_readers as Memory;
    out.push(
      table(
        ['figure', 'value'],
        [
          [`heap before ${fmt(polls.long_polls as number)} long-polls`, `${fmt(pollBefore.heap_used_mb, 1)} MB (RSS ${fmt(pollBefore.rss_mb)} MB)`],
          [`heap after ${fmt(LONG_POLLS_SEQUENTIAL)} in sequence`, `${fmt((polls.after_sequential as Memory).heap_used_mb, 1)} MB`],
          [
            `heap after ${fmt(LONG_POLL_ROUNDS * LONG_POLLS_PER_ROUND)} more, ${LONG_POLLS_PER_ROUND} at a time`,
            `${fmt(pollAfter.heap_used_mb, 1)} MB (RSS ${fmt(pollAfter.rss_mb)} MB), ${fmt(polls.seconds as number, 1)} s in all`,
          ],
          ['live-view listeners before / after; long-polls left', `${String(polls.view_listeners_before)} / ${String(polls.view_listeners_after)}; ${fmt(polls.watchers_left as number | null)}`],
          [`memory before ${STUCK_READERS} stuck SSE readers`, `RSS ${fmt(stuckBefore.rss_mb)} MB, heap ${fmt(stuckBefore.heap_used_mb, 1)} MB, buffers ${fmt(stuckBefore.external_mb)} MB`],
          [
            `with them, after ${fmt(STREAM_CHANGES)} changes of ${fmt((stuck.change_bytes as number) / 1024, 1)} KiB`,
            `RSS ${fmt(stuckWith.rss_mb)} MB, heap ${fmt(stuckWith.heap_used_mb, 1)} MB, buffers ${fmt(stuckWith.external_mb)} MB`,
          ],
          ['streams dropped as slow readers; still open', `${fmt(stuck.streams_dropped as number | null)}; ${fmt(stuck.streams_open as number | null)}`],
          [
            'SIGTERM to exit, 1,000 watchers open',
            `${fmt(shutdown.seconds_to_exit as number, 2)} s (exit code ${String(shutdown.exit_code)}, ${String(shutdown.watchers_answered)} of 1,000 answered)`,
          ],
        ],
      ),
    );
  } finally {
    await dropDatabase();
  }
  return out;
}
