// Topology over real HTTP on real PostgreSQL: snapshot, long-poll, SSE, 410 resync, lease expiry,
// group commit, and two instances sharing one database.
import { strict as assert } from 'node:assert';
import { after, before, describe, it } from 'node:test';
import { DEFAULT_TOPIC_PREFIX, topicNames } from '../../src/domain/events.js';
import { openStore } from '../../src/store/open-store.js';
import { createTestDatabase, type TestDatabase } from '../support/postgres.js';
import { waitFor } from '../support/processes.js';
import { json, serverForSuite, startTestServer, type TestServer } from '../support/server.js';

interface Change {
  version: number;
  node_id: string;
  change_type: string;
  reason: string;
  changed_fields: string[];
  node: { status: string };
}

const register = (url: string, body: Record<string, unknown>) => json<{ topology_version: number; outcome: string }>(`${url}/api/v1/nodes/register`, { body });

/** Reads Server-Sent Events until `stop` says enough. */
async function readEvents(url: string, headers: Record<string, string>, stop: (events: Array<{ id?: string; event: string; data: string }>) => boolean) {
  const controller = new AbortController();
  const response = await fetch(url, { headers, signal: controller.signal });
  assert.equal(response.status, 200);
  assert.match(response.headers.get('content-type') ?? '', /^text\/event-stream/);
  const reader = (response.body as ReadableStream<Uint8Array>).getReader();
  const decoder = new TextDecoder();
  const events: Array<{ id?: string; event: string; data: string }> = [];
  let buffer = '';
  const timer = setTimeout(() => controller.abort(), 8000);
  try {
    while (!stop(events)) {
      const { value, done } = await reader.read();
      if (done) break;
      buffer += decoder.decode(value, { stream: true });
      let end: number;
      while ((end = buffer.indexOf('\n\n')) >= 0) {
        const block = buffer.slice(0, end);
        buffer = buffer.slice(end + 2);
        const event: { id?: string; event: string; data: string } = { event: 'message', data: '' };
        for (const line of block.split('\n')) {
          if (line.startsWith('id: ')) event.id = line.slice(4);
          else if (line.startsWith('event: ')) event.event = line.slice(7);
          else if (line.startsWith('data: ')) event.data += line.slice(6);
        }
        if (event.data) events.push(event);
      }
    }
  } finally {
    clearTimeout(timer);
    controller.abort();
  }
  return events;
}

describe('topology readers', () => {
  const t = serverForSuite({ config: { sweepIntervalMs: 100, heartbeatFlushMs: 100 } });

  it('serves a snapshot of online nodes with its version', async () => {
    await register(t.url, { node_id: 'snap-1', hostname: 'a', role: 'r' });
    await register(t.url, { node_id: 'snap-2', hostname: 'b', role: 'r' });
    await json(`${t.url}/api/v1/nodes/snap-2?reason=manual_deregistration`, { method: 'DELETE' });
    const snapshot = await json<{ version: number; nodes: Array<{ node_id: string; status: string }> }>(`${t.url}/api/v1/topology`);
    const ids = snapshot.body.nodes.map((n) => n.node_id);
    assert.ok(ids.includes('snap-1'));
    assert.ok(!ids.includes('snap-2'));
    assert.ok(snapshot.body.nodes.every((n) => n.status === 'online'));
    const health = await json<{ topology_version: number }>(`${t.url}/health`);
    assert.equal(snapshot.body.version, health.body.topology_version);
  });

  it('long-polls: returns at once when behind, waits for the next change, times out empty', async () => {
    const now = (await json<{ version: number }>(`${t.url}/api/v1/topology`)).body.version;
    const behind = await json<{ version: number; changes: Change[] }>(`${t.url}/api/v1/topology/changes?since=${now - 2}&wait=30s`);
    assert.deepEqual(
      behind.body.changes.map((c) => c.version),
      [now - 1, now],
    );
    const empty = await json<{ version: number; changes: Change[] }>(`${t.url}/api/v1/topology/changes?since=${now}&wait=200ms`);
    assert.deepEqual(empty.body, { version: now, changes: [] });
    const waiting = json<{ version: number; changes: Change[] }>(`${t.url}/api/v1/topology/changes?since=${now}&wait=20s`);
    await new Promise((resolve) => setTimeout(resolve, 100));
    await register(t.url, { node_id: 'poll-1', hostname: 'p', role: 'r' });
    const woke = await waiting;
    assert.deepEqual(
      woke.body.changes.map((c) => [c.node_id, c.change_type, c.version]),
      [['poll-1', 'added', now + 1]],
    );
    assert.equal(woke.body.version, now + 1);
  });

  it('filters the long-poll by namespace and keeps waiting past other namespaces', async () => {
    const now = (await json<{ version: number }>(`${t.url}/api/v1/topology`)).body.version;
    const waiting = json<{ version: number; changes: Change[] }>(`${t.url}/api/v1/topology/changes?since=${now}&wait=20s&namespace=lab`);
    await register(t.url, { node_id: 'ns-default', hostname: 'p', role: 'r' });
    await register(t.url, { node_id: 'ns-lab', hostname: 'p', role: 'r', namespace: 'lab' });
    const woke = await waiting;
    assert.deepEqual(
      woke.body.changes.map((c) => c.node_id),
      ['ns-lab'],
    );
    assert.equal(woke.body.version, now + 2);
  });

  it('answers 410 for a version ahead of the registry, and 400 for a malformed one', async () => {
    const gone = await json<{ code: string }>(`${t.url}/api/v1/topology/changes?since=999999`);
    assert.equal(gone.status, 410);
    assert.equal(gone.body.code, 'VERSION_GONE');
    assert.equal((await json(`${t.url}/api/v1/topology/changes?since=-1`)).status, 400);
    assert.equal((await json(`${t.url}/api/v1/topology/changes?since=1&wait=forever`)).status, 400);
    assert.equal((await json(`${t.url}/api/v1/topology/stream?since=999999`)).status, 410);
  });

  it('streams changes as Server-Sent Events, from a version and from Last-Event-ID', async () => {
    const now = (await json<{ version: number }>(`${t.url}/api/v1/topology`)).body.version;
    const streaming = readEvents(`${t.url}/api/v1/topology/stream?since=${now}`, {}, (events) => events.filter((e) => e.event === 'change').length >= 2);
    await new Promise((resolve) => setTimeout(resolve, 100));
    await register(t.url, { node_id: 'sse-1', hostname: 's', role: 'r' });
    await json(`${t.url}/api/v1/nodes/sse-1?reason=graceful_shutdown`, { method: 'DELETE' });
    const events = (await streaming).filter((e) => e.event === 'change');
    const changes = events.map((e) => JSON.parse(e.data) as Change);
    assert.deepEqual(
      changes.map((c) => [c.node_id, c.change_type, c.reason]),
      [
        ['sse-1', 'added', 'registration'],
        ['sse-1', 'removed', 'graceful_shutdown'],
      ],
    );
    assert.deepEqual(
      events.map((e) => Number(e.id)),
      [now + 1, now + 2],
    );
    const resumed = await readEvents(`${t.url}/api/v1/topology/stream`, { 'last-event-id': String(now + 1) }, (evts) => evts.some((e) => e.event === 'change'));
    const first = resumed.find((e) => e.event === 'change');
    assert.equal(Number(first?.id), now + 2);
  });

  it('takes a node offline when its lease lapses, once, and wants a new registration after', async () => {
    await register(t.url, { node_id: 'lease-1', hostname: 'l', role: 'r', lease_ttl_seconds: 2 });
    const since = (await json<{ version: number }>(`${t.url}/api/v1/topology`)).body.version;
    // 3 s of heartbeats every 250 ms: past the 2 s lease, with room for a slow request.
    for (let i = 0; i < 12; i += 1) {
      await new Promise((resolve) => setTimeout(resolve, 250));
      assert.equal((await json(`${t.url}/api/v1/nodes/heartbeat`, { body: { node_id: 'lease-1' } })).status, 200, 'heartbeats keep it online past its TTL');
    }
    const offline = await waitFor(
      'lease expiry',
      async () => {
        const node = await json<{ status: string; removal_reason: string }>(`${t.url}/api/v1/nodes/lease-1`);
        return node.body.status === 'offline' ? node.body : undefined;
      },
      8000,
    );
    assert.equal(offline.removal_reason, 'lease_expired');
    const changes = await json<{ changes: Change[] }>(`${t.url}/api/v1/topology/changes?since=${since}`);
    const mine = changes.body.changes.filter((c) => c.node_id === 'lease-1');
    assert.deepEqual(
      mine.map((c) => [c.change_type, c.reason]),
      [['removed', 'lease_expired']],
    );
    const beat = await json<{ code: string }>(`${t.url}/api/v1/nodes/heartbeat`, { body: { node_id: 'lease-1' } });
    assert.equal(beat.status, 409);
    assert.equal(beat.body.code, 'REGISTRATION_REQUIRED');
    const back = await register(t.url, { node_id: 'lease-1', hostname: 'l', role: 'r', lease_ttl_seconds: 2 });
    assert.equal(back.body.outcome, 'added');
  });

  it('group-commits concurrent registrations: many writes per transaction, all durable', async () => {
    const metric = async (): Promise<{ sum: number; count: number }> => {
      const text = await (await fetch(`${t.url}/metrics`)).text();
      const sum = Number(/^rollcall_write_batch_size_sum (\S+)$/m.exec(text)?.[1]);
      const count = Number(/^rollcall_write_batch_size_count (\S+)$/m.exec(text)?.[1]);
      return { sum, count };
    };
    const before = await metric();
    const responses = await Promise.all(Array.from({ length: 200 }, (_, i) => register(t.url, { node_id: `burst-${i}`, hostname: `b${i}`, role: 'burst' })));
    assert.ok(responses.every((r) => r.status === 201));
    const afterwards = await metric();
    // The sweeper may write meanwhile (an earlier test's short lease): at least the 200 went through.
    const writes = afterwards.sum - before.sum;
    assert.ok(writes >= 200 && writes <= 210, `${writes} writes went through the queue`);
    // Without group commit there is a transaction per write; how far below depends on how the requests trickle in.
    assert.ok(afterwards.count - before.count <= writes * 0.75, `${writes} writes took ${afterwards.count - before.count} transactions`);
    const store = t.server.registry.store;
    for (let i = 0; i < 200; i += 20) assert.equal((await store.getNode('default', `burst-${i}`))?.status, 'online');
  });
});

describe('resync after the log was pruned', () => {
  it('answers 410 with the oldest retained version', async () => {
    const t = await startTestServer();
    try {
      for (let i = 0; i < 3; i += 1) await register(t.url, { node_id: `p-${i}`, hostname: 'p', role: 'r' });
      const database = t.database as TestDatabase;
      await t.stop();
      const store = await openStore({ kind: 'postgres', url: database.url });
      await store.pruneChanges(Date.now() + 60_000);
      await store.close();
      const again = await startTestServer({ database });
      const gone = await json<{ code: string; details: { oldest_retained: number } }>(`${again.url}/api/v1/topology/changes?since=0`);
      assert.equal(gone.status, 410);
      assert.equal(gone.body.code, 'VERSION_GONE');
      assert.ok(gone.body.details.oldest_retained > 1);
      const snapshot = await json<{ nodes: Array<{ node_id: string }> }>(`${again.url}/api/v1/topology`);
      assert.ok(['p-0', 'p-1', 'p-2'].every((id) => snapshot.body.nodes.some((n) => n.node_id === id)));
      await again.stop();
    } finally {
      await t.database?.drop();
    }
  });
});

describe('two instances on one database', () => {
  let database: TestDatabase;
  let a: TestServer;
  let b: TestServer;
  before(async () => {
    database = await createTestDatabase();
    a = await startTestServer({ database, config: { sweepIntervalMs: 100, heartbeatFlushMs: 100 } });
    b = await startTestServer({ database, config: { sweepIntervalMs: 100, heartbeatFlushMs: 100 } });
  });
  after(async () => {
    await a.stop();
    await b.stop();
    await database.drop();
  });

  it("shows a registration made on one instance in the other's live view", async () => {
    await register(a.url, { node_id: 'shared-1', hostname: 's', role: 'r', labels: ['x'] });
    const seen = await waitFor(
      'replication to b',
      async () => {
        const got = await json<{ labels: string[] }>(`${b.url}/api/v1/nodes/shared-1`);
        return got.status === 200 ? got.body : undefined;
      },
      3000,
    );
    assert.deepEqual(seen.labels, ['x']);
    const va = (await json<{ version: number }>(`${a.url}/api/v1/topology`)).body.version;
    await waitFor('b at the same version', async () => ((await json<{ version: number }>(`${b.url}/api/v1/topology`)).body.version === va ? true : undefined), 3000);
  });

  it("relays every change into each instance's own in-process bus, keeping no relay position in the store", async () => {
    const topic = topicNames(DEFAULT_TOPIC_PREFIX('dev')).topologyDiff;
    const received = { a: [] as number[], b: [] as number[] };
    const subscriptions = await Promise.all(
      (['a', 'b'] as const).map(async (which) => {
        const server = which === 'a' ? a : b;
        const subscription = await server.server.bus.subscribe({
          group: `relay-test-${which}`,
          topics: [topic],
          start: 'latest',
          handler: async (batch) => {
            for (const message of batch) {
              const diff = JSON.parse(message.value) as { payload: { changes: { node_id: string; version: number }[] } };
              for (const change of diff.payload.changes) if (change.node_id === 'relayed-1') received[which].push(change.version);
            }
          },
        });
        await subscription.ready;
        return subscription;
      }),
    );
    try {
      const registered = await register(a.url, { node_id: 'relayed-1', hostname: 's', role: 'r' });
      const version = registered.body.topology_version;
      // Both instances' buses carry the diff: an in-process follower works on either instance.
      await waitFor('the diff on both instances', async () => (received.a.includes(version) && received.b.includes(version) ? true : undefined), 5000);
      const store = await openStore({ kind: 'postgres', url: database.url });
      try {
        assert.equal(await store.projectionPosition('topology-diff'), 0, 'no position kept for a bus that ends with the process');
      } finally {
        await store.close();
      }
    } finally {
      await Promise.all(subscriptions.map((subscription) => subscription.close()));
    }
  });

  it('counts heartbeats sent to either instance and expires a lapsed lease exactly once', async () => {
    await register(a.url, { node_id: 'shared-lease', hostname: 's', role: 'r', lease_ttl_seconds: 2 });
    await waitFor('b sees it', async () => ((await json(`${b.url}/api/v1/nodes/shared-lease`)).status === 200 ? true : undefined), 3000);
    const since = (await json<{ version: number }>(`${a.url}/api/v1/topology`)).body.version;
    // 3 s of heartbeats every 250 ms: past the 2 s lease, with room for a slow request.
    for (let i = 0; i < 12; i += 1) {
      await new Promise((resolve) => setTimeout(resolve, 250));
      // Heartbeats go only to b; whichever instance sweeps must honour them.
      assert.equal((await json(`${b.url}/api/v1/nodes/heartbeat`, { body: { node_id: 'shared-lease' } })).status, 200);
    }
    assert.equal((await json<{ status: string }>(`${a.url}/api/v1/nodes/shared-lease`)).body.status, 'online');
    await waitFor('expiry', async () => ((await json<{ status: string }>(`${a.url}/api/v1/nodes/shared-lease`)).body.status === 'offline' ? true : undefined), 8000);
    await new Promise((resolve) => setTimeout(resolve, 500));
    const changes = await json<{ changes: Change[] }>(`${a.url}/api/v1/topology/changes?since=${since}`);
    const removals = changes.body.changes.filter((c) => c.node_id === 'shared-lease' && c.change_type === 'removed');
    assert.equal(removals.length, 1);
    assert.equal(removals[0]?.reason, 'lease_expired');
  });
});

describe('embedded default', () => {
  it('serves the same API on PGlite', async () => {
    const t = await startTestServer({ store: 'pglite', config: { dataDir: 'memory://' } });
    try {
      assert.equal((await register(t.url, { node_id: 'embedded-1', hostname: 'e', role: 'r' })).status, 201);
      const health = await json<{ checks: { store: { dialect: string } } }>(`${t.url}/health`);
      assert.equal(health.body.checks.store.dialect, 'pglite');
      assert.equal((await json<{ status: string }>(`${t.url}/api/v1/nodes/embedded-1`)).body.status, 'online');
    } finally {
      await t.close();
    }
  });
});
