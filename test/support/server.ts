// Starts a real rollcall server (HTTP on an ephemeral port) on a fresh PostgreSQL database or PGlite.
import { loadConfig, type Config } from '../../src/config/config.js';
import { startServer, type RunningServer } from '../../src/server.js';
import { testLogger } from './logger.js';
import { createTestDatabase, type TestDatabase } from './postgres.js';

export interface TestServer {
  server: RunningServer;
  url: string;
  database: TestDatabase | null;
  /** Stops the server; keeps the database so a restart can reuse it. */
  stop(): Promise<void>;
  /** Stops the server and drops its database. */
  close(): Promise<void>;
}

export async function startTestServer(options: { store?: 'postgres' | 'pglite'; database?: TestDatabase; config?: Partial<Config> } = {}): Promise<TestServer> {
  const database = options.store === 'pglite' ? null : (options.database ?? (await createTestDatabase()));
  const config = loadConfig({
    env: {},
    flags: {
      port: 0,
      logLevel: 'silent',
      ...(database ? { databaseUrl: database.url } : {}),
      ...options.config,
    },
  });
  const server = await startServer(config, testLogger);
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
    stop,
    async close() {
      await stop();
      await database?.drop();
    },
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
