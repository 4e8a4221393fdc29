// Opens the store the configuration asks for: PostgreSQL when a URL is given, else embedded PGlite.
import { mkdir } from 'node:fs/promises';
import { PgClient } from './pg/pg-client.js';
import { PgliteClient } from './pglite/pglite-client.js';
import { SqlStore } from './sql-store.js';
import type { Store } from './store.js';

export type StoreTarget =
  | { kind: 'postgres'; url: string; maxConnections?: number; onError?: (error: Error) => void }
  | { kind: 'pglite'; dataDir: string | undefined };

export async function openStore(target: StoreTarget): Promise<Store> {
  if (target.kind === 'postgres') {
    return new SqlStore(new PgClient({ connectionString: target.url, maxConnections: target.maxConnections, onError: target.onError }));
  }
  // `memory://` keeps the embedded database in memory only (PGlite's own notation).
  if (target.dataDir !== undefined && !target.dataDir.startsWith('memory://')) await mkdir(target.dataDir, { recursive: true });
  return new SqlStore(await PgliteClient.open(target.dataDir));
}
