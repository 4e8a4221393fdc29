// SIGTERM stops `rollcall serve` within seconds whatever readers hold open (long-polls, Consul blocking
// queries, event streams, idle keep-alive connections), answering each watcher and losing no
// acknowledged write.
import { strict as assert } from 'node:assert';
import { after, describe, it } from 'node:test';
import pg from 'pg';
import { createTestDatabase, type TestDatabase } from '../support/postgres.js';
import { PATIENCE, freePort, killAllCli, pollUntil, spawnCli } from '../support/processes.js';

/** Seconds from SIGTERM to exit on a quiet machine (about 1 s measured), TEST_PATIENCE times that on a busy one. */
const EXIT_WITHIN_S = 5 * PATIENCE;

const databases: TestDatabase[] = [];
after(async () => {
  await killAllCli();
  await Promise.all(databases.map((database) => database.drop()));
});

async function metric(url: string, name: string, labels = ''): Promise<number | null> {
  const text = await (await fetch(`${url}/metrics`)).text();
  const line = text.split('\n').find((candidate) => candidate.startsWith(`${name}${labels} `));
  return line === undefined ? null : Number(line.slice(line.lastIndexOf(' ') + 1));
}

async function register(url: string, nodeId: string): Promise<number> {
  const response = await fetch(`${url}/api/v1/nodes/register`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ node_id: nodeId, hostname: nodeId, role: 'shutdown' }),
  });
  await response.arrayBuffer();
  return response.status;
}

describe('stopping with watchers open', () => {
  it('exits 0 within seconds of SIGTERM with 200 watchers open, answering them and keeping every acknowledged write', { timeout: 60_000 * PATIENCE }, async (t) => {
    const database = await createTestDatabase('rollcall_e2e_shutdown');
    databases.push(database);
    const port = await freePort();
    const proc = spawnCli(['serve', '--database-url', database.url, '--port', String(port)]);
    await proc.waitForLine('stderr', /serving http:\/\//, 20_000);
    const url = `http://127.0.0.1:${port}`;

    const acknowledged = new Set<string>();
    for (const [i, status] of (await Promise.all(Array.from({ length: 40 }, (_, i) => register(url, `before-${i}`)))).entries()) {
      assert.equal(status, 201);
      acknowledged.add(`before-${i}`);
    }
    const version = ((await (await fetch(`${url}/api/v1/topology`)).json()) as { version: number }).version;
    const services = await fetch(`${url}/v1/catalog/services?ns=nobody`);
    await services.arrayBuffer();
    const index = services.headers.get('x-consul-index');

    // 70 long-polls, 70 blocking queries and 60 event streams, each on a keep-alive connection of its own.
    const answered = async (response: Promise<Response>): Promise<number> => {
      const answer = await response;
      await answer.arrayBuffer();
      return answer.status;
    };
    const polls = Array.from({ length: 70 }, () => answered(fetch(`${url}/api/v1/topology/changes?since=${version}&wait=5m&namespace=nobody`)));
    const queries = Array.from({ length: 70 }, () => answered(fetch(`${url}/v1/catalog/services?ns=nobody&index=${index}&wait=10m`)));
    const streams = Array.from({ length: 60 }, () => answered(fetch(`${url}/api/v1/topology/stream`)));
    await pollUntil(
      async () => [
        await metric(url, 'rollcall_topology_watchers', '{kind="long_poll"}'),
        await metric(url, 'rollcall_topology_watchers', '{kind="stream"}'),
        await metric(url, 'rollcall_consul_blocking_parked'),
      ],
      ([long, stream, parked]) => long === 70 && stream === 60 && parked === 70,
      { timeoutMs: 10_000, intervalMs: 100, what: '70 long-polls, 60 streams and 70 blocking queries open' },
    );

    // Writes keep coming while the signal arrives; those acknowledged must survive.
    let writing = true;
    const writers = Array.from({ length: 4 }, async (_, writer) => {
      for (let i = 0; writing; i += 1) {
        const nodeId = `during-${writer}-${i}`;
        const status = await register(url, nodeId).catch(() => null);
        if (status === 201) acknowledged.add(nodeId);
        else if (status === null) break;
      }
    });
    await pollUntil(
      async () => acknowledged.size,
      (size) => size >= 60,
      { timeoutMs: 10_000, what: 'writes under way' },
    );

    const signalled = Date.now();
    proc.kill('SIGTERM');
    // Before watchers were answered and their connections closed as they went idle it took ~72 s.
    const exit = await proc.waitForExit(30_000);
    const seconds = (Date.now() - signalled) / 1000;
    t.diagnostic(`exited ${seconds.toFixed(1)} s after SIGTERM; ${acknowledged.size} registrations acknowledged`);
    writing = false;
    await Promise.all(writers);
    assert.equal(exit.code, 0, proc.stderr);
    assert.ok(seconds < EXIT_WITHIN_S, `exited ${seconds.toFixed(1)} s after SIGTERM`);

    // Every watcher got its answer: long-polls and blocking queries a 200, streams their end.
    assert.deepEqual(new Set(await Promise.all([...polls, ...queries, ...streams])), new Set([200]));

    const client = new pg.Client({ connectionString: database.url });
    await client.connect();
    try {
      const stored = new Set((await client.query<{ node_id: string }>(`SELECT node_id FROM node_registrations WHERE namespace = 'default'`)).rows.map((row) => row.node_id));
      const lost = [...acknowledged].filter((nodeId) => !stored.has(nodeId));
      assert.deepEqual(lost, [], `${lost.length} of ${acknowledged.size} acknowledged registrations lost`);
    } finally {
      await client.end();
    }
  });
});
