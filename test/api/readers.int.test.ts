// Readers cannot grow the server without bound: answered long-polls and blocking queries leave no
// listener or watcher behind, an event stream whose reader stopped reading is closed past its bound
// (and resumes by Last-Event-ID without a gap), and a request trickled in is cut with 408 while
// long-lived answers outlast that timeout.
import { strict as assert } from 'node:assert';
import { connect, type Socket } from 'node:net';
import { after, before, describe, it } from 'node:test';
import { PATIENCE, pollUntil } from '../support/processes.js';
import { json, serverForSuite, startTestServer, type TestServer } from '../support/server.js';

async function metric(url: string, name: string, labels = ''): Promise<number | null> {
  const text = await (await fetch(`${url}/metrics`)).text();
  const line = text.split('\n').find((candidate) => candidate.startsWith(`${name}${labels} `));
  return line === undefined ? null : Number(line.slice(line.lastIndexOf(' ') + 1));
}

async function untilMetric(url: string, name: string, labels: string, expected: (value: number | null) => boolean, what: string): Promise<void> {
  await pollUntil(() => metric(url, name, labels), expected, { timeoutMs: 5_000, intervalMs: 25, what });
}

const register = async (url: string, nodeId: string, extra: Record<string, unknown> = {}): Promise<number> => {
  const response = await json<{ topology_version: number }>(`${url}/api/v1/nodes/register`, { body: { node_id: nodeId, hostname: nodeId, role: 'reader-test', ...extra } });
  assert.ok(response.status === 200 || response.status === 201, JSON.stringify(response.body));
  return response.body.topology_version;
};

const version = async (url: string): Promise<number> => (await json<{ version: number }>(`${url}/api/v1/topology`)).body.version;

const consulIndex = async (url: string): Promise<number> => {
  const response = await fetch(`${url}/v1/catalog/services`);
  await response.arrayBuffer();
  return Number(response.headers.get('x-consul-index'));
};

/** A raw HTTP/1.1 connection: what it received so far, and whether the server closed it. */
interface RawConnection {
  socket: Socket;
  received: () => string;
  /** The complete Server-Sent Events received (an event cut short at the end is not one). */
  events: () => StreamEvent[];
  closed: Promise<void>;
}

interface StreamEvent {
  id: number | null;
  event: string;
}

function rawConnection(url: string): Promise<RawConnection> {
  const { hostname, port } = new URL(url);
  return new Promise((resolve, reject) => {
    const socket = connect(Number(port), hostname, () => {
      const chunks: Buffer[] = [];
      socket.on('data', (chunk: Buffer) => chunks.push(chunk));
      const closed = new Promise<void>((done) => socket.once('close', () => done()));
      socket.on('error', () => undefined);
      const bytes = (): Buffer => Buffer.concat(chunks);
      resolve({ socket, received: () => bytes().toString('utf8'), events: () => parseEvents(bytes()), closed });
    });
    socket.once('error', reject);
  });
}

/** The body of a chunked response, as far as it has arrived. */
function dechunk(body: Buffer): Buffer {
  const parts: Buffer[] = [];
  let at = 0;
  for (;;) {
    const lineEnd = body.indexOf('\r\n', at);
    if (lineEnd < 0) break;
    const size = parseInt(body.subarray(at, lineEnd).toString('latin1'), 16);
    if (!Number.isFinite(size) || size === 0) break;
    parts.push(body.subarray(lineEnd + 2, Math.min(lineEnd + 2 + size, body.length)));
    at = lineEnd + 2 + size + 2;
    if (at > body.length) break;
  }
  return Buffer.concat(parts);
}

function parseEvents(response: Buffer): StreamEvent[] {
  const headEnd = response.indexOf('\r\n\r\n');
  if (headEnd < 0) return [];
  const blocks = dechunk(response.subarray(headEnd + 4))
    .toString('utf8')
    .split('\n\n');
  blocks.pop();
  return blocks.flatMap((block) => {
    const lines = block.split('\n');
    const event = lines.find((line) => line.startsWith('event: '));
    if (!event) return [];
    const id = lines.find((line) => line.startsWith('id: '));
    return [{ id: id ? Number(id.slice(4)) : null, event: event.slice(7) }];
  });
}

describe('answered watchers leave nothing behind', () => {
  let t: TestServer;
  const warnings: Error[] = [];
  const onWarning = (warning: Error): void => {
    if (warning.name === 'MaxListenersExceededWarning') warnings.push(warning);
  };
  before(async () => {
    t = await startTestServer({ config: { sweepIntervalMs: 100, heartbeatFlushMs: 100 } });
    process.on('warning', onWarning);
    await register(t.url, 'seed');
  });
  after(async () => {
    process.off('warning', onWarning);
    await t.close();
  });

  it('removes every listener and watcher of long-polls and blocking queries once they are answered, time out or are abandoned', async () => {
    const view = t.server.registry.view;
    const listenersBefore = view.listenerCount;
    const watcherLabels = '{kind="long_poll"}';

    // Answered at once: the reader is behind.
    for (let i = 0; i < 300; i += 1) {
      const current = await version(t.url);
      const answer = await json<{ changes: unknown[] }>(`${t.url}/api/v1/topology/changes?since=${current - 1}&wait=30s`);
      assert.equal(answer.status, 200);
      assert.equal(answer.body.changes.length, 1);
    }
    // Parked together, answered by one change.
    let current = await version(t.url);
    let index = await consulIndex(t.url);
    const parkedPolls = Array.from({ length: 50 }, () => json<{ changes: unknown[] }>(`${t.url}/api/v1/topology/changes?since=${current}&wait=60s`));
    const parkedQueries = Array.from({ length: 50 }, () =>
      fetch(`${t.url}/v1/catalog/services?index=${index}&wait=60s`).then(async (response) => {
        await response.arrayBuffer();
        return response.status;
      }),
    );
    await untilMetric(t.url, 'rollcall_topology_watchers', watcherLabels, (value) => value === 50, '50 parked long-polls');
    await untilMetric(t.url, 'rollcall_consul_blocking_parked', '', (value) => value === 50, '50 parked blocking queries');
    await register(t.url, 'wake-all');
    for (const answer of await Promise.all(parkedPolls)) assert.equal(answer.body.changes.length, 1);
    for (const status of await Promise.all(parkedQueries)) assert.equal(status, 200);

    // Timed out.
    current = await version(t.url);
    index = await consulIndex(t.url);
    const timedOut = await Promise.all([
      ...Array.from({ length: 20 }, () => json<{ changes: unknown[] }>(`${t.url}/api/v1/topology/changes?since=${current}&wait=200ms`).then((answer) => answer.status)),
      ...Array.from({ length: 20 }, () =>
        fetch(`${t.url}/v1/catalog/services?index=${index}&wait=200ms`).then(async (response) => {
          await response.arrayBuffer();
          return response.status;
        }),
      ),
    ]);
    assert.ok(
      timedOut.every((status) => status === 200),
      JSON.stringify(timedOut),
    );

    // Abandoned by their clients while parked.
    const abandon = new AbortController();
    const abandoned = [
      ...Array.from({ length: 20 }, () => fetch(`${t.url}/api/v1/topology/changes?since=${current}&wait=60s`, { signal: abandon.signal }).catch(() => null)),
      ...Array.from({ length: 20 }, () => fetch(`${t.url}/v1/catalog/services?index=${index}&wait=60s`, { signal: abandon.signal }).catch(() => null)),
    ];
    await untilMetric(t.url, 'rollcall_topology_watchers', watcherLabels, (value) => value === 20, '20 parked long-polls');
    await untilMetric(t.url, 'rollcall_consul_blocking_parked', '', (value) => value === 20, '20 parked blocking queries');
    abandon.abort();
    await Promise.all(abandoned);

    await untilMetric(t.url, 'rollcall_topology_watchers', watcherLabels, (value) => value === 0, 'no long-poll left');
    await untilMetric(t.url, 'rollcall_consul_blocking_parked', '', (value) => value === 0, 'no blocking query left');
    await pollUntil(
      async () => view.listenerCount,
      (count) => count === listenersBefore,
      { timeoutMs: 5_000, what: `the live view's listeners back to ${listenersBefore}` },
    );
    assert.deepEqual(
      warnings.map((warning) => warning.message),
      [],
    );
  });
});

describe('event streams honour backpressure', () => {
  const maxBufferBytes = 256 * 1024;
  const t = serverForSuite({ config: { sweepIntervalMs: 100, heartbeatFlushMs: 100, sseMaxBufferBytes: maxBufferBytes } });

  it('closes the stream of a reader that stopped reading, counts it, and the reader resumes from Last-Event-ID without a gap', async () => {
    const start = await register(t.url, 'stream-seed');
    const streamPath = `/api/v1/topology/stream?since=${start}`;
    const slow = await rawConnection(t.url);
    slow.socket.write(`GET ${streamPath} HTTP/1.1\r\nHost: rollcall\r\nAccept: text/event-stream\r\n\r\n`);
    await pollUntil(
      async () => slow.received(),
      (text) => text.includes('event: ready'),
      { timeoutMs: 5_000, what: 'the ready event' },
    );
    // It stops reading: whatever the server sends piles up in the kernel's buffers, then in the server's.
    slow.socket.pause();
    // A reader that keeps reading, beside it, is never dropped.
    const steady = await rawConnection(t.url);
    steady.socket.write(`GET ${streamPath} HTTP/1.1\r\nHost: rollcall\r\nAccept: text/event-stream\r\n\r\n`);

    // Changes of ~16 KiB each, until the slow reader's stream is dropped (the kernel takes a few MiB
    // first); in bursts well under the bound, which a reader that keeps reading absorbs.
    const padding = 'x'.repeat(16 * 1024);
    let registered = 0;
    for (;;) {
      const dropped = await metric(t.url, 'rollcall_sse_streams_dropped_total', '{reason="slow_reader"}');
      if (dropped !== null && dropped >= 1) break;
      assert.ok(registered < 1_500, `the slow reader was not dropped after ${registered} changes of 16 KiB`);
      await Promise.all(Array.from({ length: 4 }, (_, i) => register(t.url, `stream-${registered + i}`, { metadata: { padding } })));
      registered += 4;
    }
    const last = await version(t.url);
    assert.equal(await metric(t.url, 'rollcall_sse_streams_dropped_total', '{reason="slow_reader"}'), 1);

    // Read what reached the slow reader: the stream ends, its last complete event says where to resume.
    slow.socket.resume();
    await slow.closed;
    const before = slow.events().filter((event) => event.event === 'change');
    assert.ok(before.length > 0);
    const lastEventId = before[before.length - 1]?.id as number;
    assert.ok(lastEventId < last, `the slow reader got everything (${lastEventId} of ${last}) yet was dropped`);

    const resumed = await rawConnection(t.url);
    resumed.socket.write(`GET /api/v1/topology/stream HTTP/1.1\r\nHost: rollcall\r\nAccept: text/event-stream\r\nLast-Event-ID: ${lastEventId}\r\n\r\n`);
    await pollUntil(
      async () => resumed.events().some((event) => event.id === last),
      (done) => done,
      { timeoutMs: 10_000, what: `the resumed stream to reach version ${last}` },
    );
    const after = resumed.events().filter((event) => event.event === 'change');
    const ids = [...before, ...after].map((event) => event.id).filter((id) => id !== null && id <= last);
    assert.deepEqual(
      ids,
      Array.from({ length: last - start }, (_, i) => start + 1 + i),
      'every version once, in order, across the resume',
    );

    // The steady reader got every change on its one stream.
    await pollUntil(
      async () => steady.events().some((event) => event.id === last),
      (done) => done,
      { timeoutMs: 10_000, what: `the steady reader to reach version ${last}` },
    );
    assert.equal(steady.events().filter((event) => event.event === 'change' && event.id !== null && event.id <= last).length, last - start);
    assert.equal(await metric(t.url, 'rollcall_topology_watchers', '{kind="stream"}'), 2);
    steady.socket.destroy();
    resumed.socket.destroy();
    await untilMetric(t.url, 'rollcall_topology_watchers', '{kind="stream"}', (value) => value === 0, 'no stream left open');
  });
});

describe('slow senders', () => {
  const requestTimeoutMs = 1_000;
  /** A slow sender is cut by then on a quiet machine (the timeout, then Node's check every 250 ms); TEST_PATIENCE times it on a busy one. */
  const cutWithinMs = 3_000 * PATIENCE;
  const t = serverForSuite({ config: { sweepIntervalMs: 100, heartbeatFlushMs: 100, requestTimeoutMs } });

  /** Sends `head`, then `trickle` a byte every 100 ms; resolves when the server closes the connection. */
  async function trickled(head: string, trickle: string): Promise<{ response: string; elapsedMs: number }> {
    const connection = await rawConnection(t.url);
    const started = Date.now();
    connection.socket.write(head);
    let sent = 0;
    const timer = setInterval(() => {
      if (connection.socket.writable && sent < trickle.length) connection.socket.write(trickle[sent++] as string);
    }, 100);
    const guard = setTimeout(() => connection.socket.destroy(), cutWithinMs + 10_000);
    try {
      await connection.closed;
    } finally {
      clearInterval(timer);
      clearTimeout(guard);
    }
    return { response: connection.received(), elapsedMs: Date.now() - started };
  }

  it('answers 408 with a problem document and closes the connection when a body trickles in', async () => {
    const body = JSON.stringify({ node_id: 'trickled', hostname: 'h', role: 'r', metadata: { padding: 'x'.repeat(400) } });
    const { response, elapsedMs } = await trickled(`POST /api/v1/nodes/register HTTP/1.1\r\nHost: rollcall\r\nContent-Type: application/json\r\nContent-Length: ${body.length}\r\n\r\n`, body);
    assert.match(response, /^HTTP\/1\.1 408 /);
    assert.match(response, /content-type: application\/problem\+json/i);
    assert.equal((JSON.parse(response.slice(response.indexOf('\r\n\r\n') + 4)) as { code: string }).code, 'REQUEST_TIMEOUT');
    // Cut near the timeout, not after the 40 s the whole body would take.
    assert.ok(elapsedMs < cutWithinMs, `cut after ${elapsedMs} ms`);
    assert.equal((await json(`${t.url}/api/v1/nodes/trickled`)).status, 404);
  });

  it('answers 408 when headers trickle in', async () => {
    const { response, elapsedMs } = await trickled('GET /health HTTP/1.1\r\nHost: rollcall\r\n', `X-Slow: ${'y'.repeat(400)}\r\n\r\n`);
    assert.match(response, /^HTTP\/1\.1 408 /);
    assert.ok(elapsedMs < cutWithinMs, `cut after ${elapsedMs} ms`);
  });

  it('answers malformed HTTP with a problem document and a stable code, then closes the connection', async () => {
    const cases = [
      { what: 'headers past the limit', request: `GET /health HTTP/1.1\r\nHost: rollcall\r\nX-Big: ${'b'.repeat(64 * 1024)}\r\n\r\n`, status: 431, code: 'HEADERS_TOO_LARGE' },
      { what: 'a bad request line', request: 'NOT AN HTTP REQUEST\r\n\r\n', status: 400, code: 'MALFORMED_REQUEST' },
      { what: 'a control character in a header name', request: 'GET /health HTTP/1.1\r\nHost: rollcall\r\nBad\u0001Name: v\r\n\r\n', status: 400, code: 'MALFORMED_REQUEST' },
      { what: 'a bad Content-Length', request: 'POST /api/v1/nodes/register HTTP/1.1\r\nHost: rollcall\r\nContent-Length: ten\r\n\r\n', status: 400, code: 'MALFORMED_REQUEST' },
    ];
    for (const { what, request, status, code } of cases) {
      const connection = await rawConnection(t.url);
      connection.socket.write(request);
      await connection.closed;
      const response = connection.received();
      assert.match(response, new RegExp(`^HTTP/1\\.1 ${status} `), what);
      assert.match(response, /content-type: application\/problem\+json/i, what);
      const problem = JSON.parse(response.slice(response.indexOf('\r\n\r\n') + 4)) as { code: string; status: number };
      assert.deepEqual([problem.status, problem.code], [status, code], what);
    }
  });

  it('lets long-polls and event streams answer for longer than the request timeout', async () => {
    const since = await version(t.url);
    const started = Date.now();
    const timedOut = await json<{ changes: unknown[] }>(`${t.url}/api/v1/topology/changes?since=${since}&wait=${3 * requestTimeoutMs}ms`);
    assert.equal(timedOut.status, 200);
    assert.deepEqual(timedOut.body.changes, []);
    assert.ok(Date.now() - started >= 3 * requestTimeoutMs - 100);

    const stream = await rawConnection(t.url);
    stream.socket.write(`GET /api/v1/topology/stream?since=${since} HTTP/1.1\r\nHost: rollcall\r\n\r\n`);
    await pollUntil(
      async () => stream.received(),
      (text) => text.includes('event: ready'),
      { timeoutMs: 5_000, what: 'the ready event' },
    );
    await new Promise((resolve) => setTimeout(resolve, 3 * requestTimeoutMs));
    const changed = await register(t.url, 'after-the-timeout');
    await pollUntil(
      async () => stream.events().some((event) => event.id === changed),
      (done) => done,
      { timeoutMs: 5_000, what: 'the change on a stream older than the request timeout' },
    );
    stream.socket.destroy();
  });
});
