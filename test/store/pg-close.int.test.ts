// Closing a PostgreSQL store settles even when its connections were just ended under it: the LISTEN
// connection reconnecting at that moment must not keep the pool (and the server's stop) open forever.
import { after, before, describe, it } from 'node:test';
import pg from 'pg';
import { openStore } from '../../src/store/open-store.js';
import type { Store } from '../../src/store/store.js';
import { CuttableProxy } from '../support/cuttable-proxy.js';
import { ADMIN_URL, createTestDatabase, type TestDatabase } from '../support/postgres.js';
import { PATIENCE_MS, pollUntil } from '../support/processes.js';

/** Resolves when `closing` settles; fails the test (instead of hanging it) when it never does. */
async function settles(closing: Promise<void>, what: string): Promise<void> {
  let timer: NodeJS.Timeout | undefined;
  const hung = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what} never settled`)), PATIENCE_MS);
  });
  try {
    await Promise.race([closing, hung]);
  } finally {
    clearTimeout(timer);
  }
}

describe('closing a PostgreSQL store whose connections were ended', () => {
  let database: TestDatabase;
  let admin: pg.Client;
  let proxy: CuttableProxy;
  let url: string;
  before(async () => {
    database = await createTestDatabase();
    admin = new pg.Client({ connectionString: ADMIN_URL });
    await admin.connect();
    const target = new URL(database.url);
    proxy = new CuttableProxy({ host: target.hostname, port: Number(target.port || 5432) });
    await proxy.listen();
    const viaProxy = new URL(database.url);
    viaProxy.port = String(proxy.port);
    url = viaProxy.toString();
    const store = await openStore({ kind: 'postgres', url: database.url });
    await store.migrate();
    await store.close();
  });
  after(async () => {
    proxy.resume();
    await proxy.cut();
    await admin.end();
    await database.drop();
  });

  /** A store watching versions whose LISTEN connection is ended, and is reconnecting (held by the proxy) now. */
  async function storeReconnectingItsListener(): Promise<{ store: Store; unwatch: () => Promise<void> }> {
    const store = await openStore({ kind: 'postgres', url, onError: () => undefined });
    const unwatch = await store.watchVersions(() => undefined);
    proxy.hold();
    await admin.query('SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1', [database.name]);
    await pollUntil(
      async () => proxy.held,
      (held) => held > 0,
      { what: 'the listener reconnecting', timeoutMs: 15_000, intervalMs: 20 },
    );
    return { store, unwatch };
  }

  it('settles when the watch is stopped while its connection is being replaced', async () => {
    const { store, unwatch } = await storeReconnectingItsListener();
    await unwatch();
    const closing = store.close();
    proxy.resume();
    await settles(closing, 'store.close()');
    // No connection outlives the store.
    await pollUntil(
      async () => Number((await admin.query<{ count: string }>('SELECT count(*) FROM pg_stat_activity WHERE datname = $1', [database.name])).rows[0]?.count),
      (count) => count === 0,
      { what: 'no connection left to the database', timeoutMs: 15_000 },
    );
  });

  it('settles when the store closes while a watch is still reconnecting', async () => {
    const { store } = await storeReconnectingItsListener();
    const closing = store.close();
    proxy.resume();
    await settles(closing, 'store.close()');
  });
});
