// PostgreSQL going away and coming back, through a TCP proxy the test can cut: writes get a clear
// 503, reads keep being served from memory, health says so, and everything resumes by itself.
import { strict as assert } from 'node:assert';
import { createServer, type Server, type Socket, connect } from 'node:net';
import { after, before, describe, it } from 'node:test';
import pg from 'pg';
import { createTestDatabase, type TestDatabase } from '../support/postgres.js';
import { waitFor } from '../support/processes.js';
import { json, startTestServer, type TestServer } from '../support/server.js';

/** Forwards a local port to PostgreSQL until cut; restore() listens on the same port again. */
class CuttableProxy {
  private server: Server | null = null;
  private readonly sockets = new Set<Socket>();
  port = 0;

  constructor(private readonly target: { host: string; port: number }) {}

  async listen(): Promise<void> {
    if (this.server) return;
    const server = createServer((client) => {
      const upstream = connect(this.target.port, this.target.host);
      for (const socket of [client, upstream]) {
        this.sockets.add(socket);
        socket.on('close', () => this.sockets.delete(socket));
        socket.on('error', () => socket.destroy());
      }
      client.pipe(upstream).pipe(client);
      client.on('close', () => upstream.destroy());
      upstream.on('close', () => client.destroy());
    });
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(this.port, '127.0.0.1', resolve);
    });
    const address = server.address();
    this.port = typeof address === 'object' && address ? address.port : 0;
    this.server = server;
  }

  async cut(): Promise<void> {
    const server = this.server;
    this.server = null;
    for (const socket of this.sockets) socket.destroy();
    if (server) await new Promise<void>((resolve) => server.close(() => resolve()));
  }
}

describe('store outage', () => {
  let database: TestDatabase;
  let proxy: CuttableProxy;
  let t: TestServer;
  before(async () => {
    database = await createTestDatabase();
    const target = new URL(database.url);
    proxy = new CuttableProxy({ host: target.hostname, port: Number(target.port || 5432) });
    await proxy.listen();
    const viaProxy = new URL(database.url);
    viaProxy.port = String(proxy.port);
    // The fallback tail runs with the sweep (every 30 s here): a prompt update must come from LISTEN.
    t = await startTestServer({ database, config: { databaseUrl: viaProxy.toString(), sweepIntervalMs: 30_000, heartbeatFlushMs: 200 } });
  });
  after(async () => {
    await proxy.listen();
    await t.stop();
    await proxy.cut();
    await database.drop();
  });

  it('refuses writes with 503, keeps serving reads and heartbeats, and recovers by itself', async () => {
    const register = (nodeId: string) => json<{ code?: string; outcome?: string }>(`${t.url}/api/v1/nodes/register`, { body: { node_id: nodeId, hostname: 'h', role: 'outage' } });
    assert.equal((await register('before-outage')).status, 201);

    await proxy.cut();
    const refused = await register('during-outage');
    assert.equal(refused.status, 503);
    assert.match(refused.contentType, /^application\/problem\+json/);
    assert.equal(refused.body.code, 'STORE_UNAVAILABLE');
    const health = await json<{ status: string; checks: { store: { status: string } } }>(`${t.url}/health`);
    assert.equal(health.status, 503);
    assert.equal(health.body.checks.store.status, 'unhealthy');
    // Reads come from memory, heartbeats renew in memory until the store is back.
    assert.equal((await json<{ status: string }>(`${t.url}/api/v1/nodes/before-outage`)).body.status, 'online');
    assert.equal((await json(`${t.url}/api/v1/nodes/heartbeat`, { body: { node_id: 'before-outage' } })).status, 200);

    await proxy.listen();
    const recovered = await waitFor('writes to succeed again', async () => {
      const response = await register('after-outage');
      return response.status === 201 ? response : undefined;
    }, 15_000);
    assert.equal(recovered.body.outcome, 'added');
    await waitFor('health to recover', async () => ((await json(`${t.url}/health`)).status === 200 ? true : undefined), 15_000);

    // What was acknowledged is in the database; what was refused is not.
    const direct = new pg.Client({ connectionString: database.url });
    await direct.connect();
    try {
      const rows = await direct.query<{ node_id: string }>(`SELECT node_id FROM node_registrations WHERE role = 'outage' ORDER BY node_id`);
      assert.deepEqual(rows.rows.map((row) => row.node_id), ['after-outage', 'before-outage']);
      // The heartbeat sent during the outage reached the lease table once the store came back.
      const lease = await waitFor('the held heartbeat to be flushed', async () => {
        const result = await direct.query<{ renewed: boolean }>(
          `SELECT l.last_heartbeat > r.registered_at AS renewed FROM node_leases l JOIN node_registrations r USING (namespace, node_id) WHERE node_id = 'before-outage'`,
        );
        return result.rows[0]?.renewed ? true : undefined;
      }, 15_000);
      assert.equal(lease, true);
    } finally {
      await direct.end();
    }
    assert.equal((await json<{ status: string }>(`${t.url}/api/v1/nodes/before-outage`)).body.status, 'online');

    // LISTEN was re-established on a new connection: a peer's write shows up within seconds.
    const peer = await startTestServer({ database, config: { sweepIntervalMs: 30_000 } });
    try {
      assert.equal((await json(`${peer.url}/api/v1/nodes/register`, { body: { node_id: 'from-peer', hostname: 'p', role: 'outage' } })).status, 201);
      await waitFor('the peer\'s write to reach this instance', async () => ((await json(`${t.url}/api/v1/nodes/from-peer`)).status === 200 ? true : undefined), 5000);
    } finally {
      await peer.stop();
    }
  });
});
