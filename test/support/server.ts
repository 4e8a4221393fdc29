// Starts a real rollcall server (HTTP on an ephemeral port) on a fresh PostgreSQL database or PGlite:
// `startTestServer` where a test manages it, `serverForSuite` for one that lives as long as a suite.
import { after, before } from 'node:test';
import { loadConfig, type Config } from '../../src/config/config.js';
import { startServer, type RunningServer } from '../../src/server.js';
import { openStore } from '../../src/store/open-store.js';
import { setMemoryTemplate } from '../../src/store/pglite/pglite-client.js';
import type { Store } from '../../src/store/store.js';
import { CuttableProxy } from './cuttable-proxy.js';
import { testLogger } from './logger.js';
import { pgliteTemplate } from './pglite.js';
import { createTestDatabase, type TestDatabase } from './postgres.js';

export interface TestServer {
  server: RunningServer;
  url: string;
  database: TestDatabase | null;
  /** With `storeProxy`: what the server reaches PostgreSQL through; `cut()` takes the store away, `listen()` brings it back. */
  proxy: CuttableProxy | null;
  /** Stops the server; keeps the database so a restart can reuse it. */
  stop(): Promise<void>;
  /** Stops the server (the store back first, should a test have cut it) and drops its database. */
  close(): Promise<void>;
}

export interface TestServerOptions {
  /** PostgreSQL (default: a new migrated database, dropped at close) or embedded PGlite (config.dataDir). */
  store?: 'postgres' | 'pglite';
  /** The PostgreSQL database to serve instead of a new one; dropped at close all the same. */
  database?: TestDatabase;
  /** PostgreSQL through a proxy the test can cut (`proxy`). */
  storeProxy?: boolean;
  /** Writes to the (migrated) PostgreSQL store before the server starts, e.g. the API keys it starts with. */
  seed?: (store: Store) => Promise<void>;
  config?: Partial<Config>;
}

/** Servers starting in this process on an in-memory PGlite database from the run's template. */
let startingFromTemplate = 0;

/** Starts a server; an in-memory embedded database starts from the run's migrated template, if any. */
async function start(config: Config): Promise<RunningServer> {
  const inMemory = !config.databaseUrl && config.dataDir.startsWith('memory://');
  const template = inMemory ? await pgliteTemplate() : undefined;
  if (!template) return startServer(config, testLogger);
  startingFromTemplate += 1;
  setMemoryTemplate(template);
  try {
    return await startServer(config, testLogger);
  } finally {
    startingFromTemplate -= 1;
    if (startingFromTemplate === 0) setMemoryTemplate(undefined);
  }
}

async function seedStore(database: TestDatabase, seed: (store: Store) => Promise<void>): Promise<void> {
  const store = await openStore({ kind: 'postgres', url: database.url });
  try {
    await store.migrate();
    await seed(store);
  } finally {
    await store.close();
  }
}

export async function startTestServer(options: TestServerOptions = {}): Promise<TestServer> {
  if (options.store === 'pglite' && (options.seed || options.storeProxy || options.database)) throw new Error('seed, storeProxy and database are for PostgreSQL');
  const database = options.store === 'pglite' ? null : (options.database ?? (await createTestDatabase('rollcall_test', { migrated: true })));
  let proxy: CuttableProxy | null = null;
  let server: RunningServer;
  try {
    if (database && options.seed) await seedStore(database, options.seed);
    let databaseUrl = database?.url;
    if (database && options.storeProxy) {
      const target = new URL(database.url);
      proxy = new CuttableProxy({ host: target.hostname, port: Number(target.port || 5432) });
      await proxy.listen();
      target.port = String(proxy.port);
      databaseUrl = target.toString();
    }
    const config = loadConfig({
      env: {},
      flags: {
        port: 0,
        logLevel: 'silent',
        ...(databaseUrl ? { databaseUrl } : {}),
        ...options.config,
      },
    });
    server = await start(config);
  } catch (error) {
    await proxy?.cut();
    if (!options.database) await database?.drop();
    throw error;
  }
  let stopped = false;
  const stop = async (): Promise<void> => {
    if (stopped) return;
    stopped = true;
    await server.stop();
  };
  return {
    server,
    url: server.url,
    database,
    proxy,
    stop,
    async close() {
      await proxy?.listen();
      await stop();
      await proxy?.cut();
      await database?.drop();
    },
  };
}

/**
 * A server for the tests of a suite: started before them, closed after them. Its fields are read
 * inside tests and later hooks; `options` may be a function, to use what an earlier `before` made.
 * At the top level of a file, Node 20 starts every `before` at once without waiting for the earlier
 * ones: there, use it only where the options need nothing another hook makes, and no hook reads it.
 */
export function serverForSuite(options: TestServerOptions | (() => TestServerOptions) = {}): TestServer {
  let current: TestServer | undefined;
  before(async () => {
    current = await startTestServer(typeof options === 'function' ? options() : options);
  });
  after(async () => {
    await current?.close();
  });
  const running = (): TestServer => {
    if (!current) throw new Error('the suite server runs only from its before hook to its after hook');
    return current;
  };
  return {
    get server() {
      return running().server;
    },
    get url() {
      return running().url;
    },
    get database() {
      return running().database;
    },
    get proxy() {
      return running().proxy;
    },
    stop: () => running().stop(),
    close: () => running().close(),
  };
}

export async function json<T = Record<string, unknown>>(
  url: string,
  init: { method?: string; body?: unknown; headers?: Record<string, string>; rawBody?: string } = {},
): Promise<{ status: number; contentType: string; body: T }> {
  const headers: Record<string, string> = { ...(init.body !== undefined || init.rawBody !== undefined ? { 'content-type': 'application/json' } : {}), ...init.headers };
  const response = await fetch(url, {
    method: init.method ?? (init.body !== undefined || init.rawBody !== undefined ? 'POST' : 'GET'),
    headers,
    ...(init.rawBody !== undefined ? { body: init.rawBody } : init.body !== undefined ? { body: JSON.stringify(init.body) } : {}),
  });
  const text = await response.text();
  return { status: response.status, contentType: response.headers.get('content-type') ?? '', body: (text ? JSON.parse(text) : null) as T };
}

/** The PostgreSQL database a server runs on (it must run on one). */
export function databaseOf(t: TestServer): TestDatabase {
  if (!t.database) throw new Error('this test server runs on PGlite, not on a PostgreSQL database');
  return t.database;
}

/** The proxy a server reaches PostgreSQL through (it must have been started with `storeProxy`). */
export function proxyOf(t: TestServer): CuttableProxy {
  if (!t.proxy) throw new Error('this test server was started without storeProxy');
  return t.proxy;
}
