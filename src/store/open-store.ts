// Opens the store the configuration asks for: PostgreSQL when a URL is given, else embedded PGlite.
import { mkdir } from 'node:fs/promises';
import { PgClient } from './pg/pg-client.js';
import { DataDirLock } from './pglite/data-dir-lock.js';
import { PgliteClient } from './pglite/pglite-client.js';
import { SqlStore } from './sql-store.js';
import type { Store } from './store.js';

export type StoreTarget =
  | { kind: 'postgres'; url: string; maxConnections?: number; onError?: (error: Error) => void }
  | {
      kind: 'pglite';
      dataDir: string | undefined;
      /**
       * The folder's lock, already taken (a server takes it first, to publish its URL in it later);
       * when absent, one is taken here for `command`. Either way the store releases it when it closes.
       */
      lock?: DataDirLock;
      /** Who opens the folder, named to anyone who finds it held; default `store`. */
      command?: string;
      /** How long to wait for a CLI command that holds the folder; default 15 s. */
      lockWaitMs?: number;
      /** The remedy named when another process holds the folder. */
      lockHint?: string;
    };

/** Whether a data folder setting keeps the embedded database in memory only (PGlite's own notation). */
export function isMemoryDataDir(dataDir: string | undefined): boolean {
  return dataDir === undefined || dataDir.startsWith('memory://');
}

/** Takes the embedded folder's lock: one process at a time may have it open. */
export async function lockDataDir(dataDir: string, options: { command: string; waitMs?: number; hint?: string }): Promise<DataDirLock> {
  await mkdir(dataDir, { recursive: true });
  return DataDirLock.acquire(dataDir, { command: options.command, waitMs: options.waitMs ?? 15_000, ...(options.hint ? { hint: options.hint } : {}) });
}

export async function openStore(target: StoreTarget): Promise<Store> {
  if (target.kind === 'postgres') {
    return new SqlStore(new PgClient({ connectionString: target.url, maxConnections: target.maxConnections, onError: target.onError }));
  }
  if (isMemoryDataDir(target.dataDir)) return new SqlStore(await PgliteClient.open(target.dataDir));
  const dataDir = target.dataDir as string;
  const lock =
    target.lock ??
    (await lockDataDir(dataDir, {
      command: target.command ?? 'store',
      ...(target.lockWaitMs !== undefined ? { waitMs: target.lockWaitMs } : {}),
      ...(target.lockHint !== undefined ? { hint: target.lockHint } : {}),
    }));
  try {
    return new SqlStore(await PgliteClient.open(dataDir, lock));
  } catch (error) {
    await lock.release();
    throw error;
  }
}
