// /health tells whether writes go through, not only whether the store answers: PostgreSQL turned
// read-only (a failover onto a standby, an operator's switch) still answers SELECT 1 while every
// registration fails with 503; a stuck transaction holding the version lock makes every write wait.
// /health then answers 503 naming the writes component, notices it by itself when no client writes,
// and recovers by itself once writes are taken again.
import { strict as assert } from 'node:assert';
import { after, before, describe, it } from 'node:test';
import pg from 'pg';
import { ADMIN_URL, createTestDatabase, type TestDatabase } from '../support/postgres.js';
import { waitFor } from '../support/processes.js';
import { json, startTestServer, type TestServer } from '../support/server.js';

interface Health {
  status: string;
  checks: {
    store: { status: string };
    writes: { status: string; last_success_at: string | null; last_error: { code: string; message: string; at: string } | null };
  };
}

describe('/health and failing writes', () => {
  let database: TestDatabase;
  let admin: pg.Client;
  let t: TestServer;

  /** New sessions of the test database are read-only (or not), and the current ones are ended to take it. */
  async function setReadOnly(on: boolean): Promise<void> {
    await admin.query(on ? `ALTER DATABASE ${database.name} SET default_transaction_read_only = on` : `ALTER DATABASE ${database.name} RESET default_transaction_read_only`);
    await admin.query('SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1 AND pid <> pg_backend_pid()', [database.name]);
  }

  const health = () => json<Health>(`${t.url}/health`);
  const register = (nodeId: string) => json<{ code?: string; detail?: string }>(`${t.url}/api/v1/nodes/register`, { body: { node_id: nodeId, hostname: 'h', role: 'writes' } });

  before(async () => {
    database = await createTestDatabase();
    admin = new pg.Client({ connectionString: ADMIN_URL });
    await admin.connect();
    t = await startTestServer({ database, config: { sweepIntervalMs: 30_000 } });
  });
  after(async () => {
    await setReadOnly(false).catch(() => undefined);
    await t.stop();
    await admin.end();
    await database.drop();
  });

  it('answers 503 naming the writes while the store refuses them, and recovers by itself', async () => {
    assert.equal((await register('before')).status, 201);
    assert.equal((await health()).status, 200);

    await setReadOnly(true);
    // The first attempt may meet a connection that was just ended; then the store's own refusal comes.
    const refused = await waitFor(
      'a registration refused by the read-only store',
      async () => {
        const response = await register('during');
        assert.equal(response.status, 503, JSON.stringify(response.body));
        return /read-only/.test(response.body.detail ?? '') ? response : undefined;
      },
      15_000,
    );
    assert.equal(refused.body.code, 'STORE_UNAVAILABLE');

    const failing = await health();
    assert.equal(failing.status, 503, JSON.stringify(failing.body.checks));
    assert.equal(failing.body.status, 'unhealthy');
    assert.equal(failing.body.checks.store.status, 'healthy', 'the store still answers reads: only the writes component tells');
    assert.equal(failing.body.checks.writes.status, 'unhealthy');
    assert.equal(failing.body.checks.writes.last_error?.code, 'STORE_UNAVAILABLE');
    assert.match(failing.body.checks.writes.last_error?.message ?? '', /read-only/);

    // Writes taken again, and no client writes: /health finds out by itself.
    await setReadOnly(false);
    const recovered = await waitFor(
      '/health to recover',
      async () => {
        const response = await health();
        return response.status === 200 ? response : undefined;
      },
      30_000,
    );
    assert.equal(recovered.body.checks.writes.status, 'healthy');
    assert.equal((await register('after')).status, 201);
  });

  it('notices writes failing while no client writes', async () => {
    await setReadOnly(true);
    const failing = await waitFor(
      '/health to notice the read-only store',
      async () => {
        const response = await health();
        return response.status === 503 ? response : undefined;
      },
      30_000,
    );
    assert.equal(failing.body.checks.store.status, 'healthy');
    assert.equal(failing.body.checks.writes.status, 'unhealthy');
    assert.match(failing.body.checks.writes.last_error?.message ?? '', /read-only/);
    await setReadOnly(false);
    await waitFor('/health to recover', async () => ((await health()).status === 200 ? true : undefined), 30_000);
  });

  it('answers 503 while a stuck transaction holds the lock every write needs', async () => {
    const stuck = new pg.Client({ connectionString: database.url });
    await stuck.connect();
    try {
      await stuck.query('BEGIN');
      await stuck.query('SELECT version FROM topology_state WHERE id = 1 FOR UPDATE');
      const failing = await waitFor(
        '/health to notice the held lock',
        async () => {
          const response = await health();
          return response.status === 503 ? response : undefined;
        },
        30_000,
      );
      assert.equal(failing.body.checks.store.status, 'healthy');
      assert.equal(failing.body.checks.writes.status, 'unhealthy');
      assert.match(failing.body.checks.writes.last_error?.message ?? '', /lock timeout/);
      await stuck.query('ROLLBACK');
      await waitFor('/health to recover', async () => ((await health()).status === 200 ? true : undefined), 30_000);
    } finally {
      await stuck.end();
    }
  });
});
