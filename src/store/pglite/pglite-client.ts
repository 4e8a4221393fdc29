// SqlClient over PGlite, the embedded PostgreSQL: one in-process database, kept in a folder.
import { PGlite } from '@electric-sql/pglite';
import type { QueryResult, SqlClient, SqlExecutor } from '../sql-client.js';
import type { DataDirLock } from './data-dir-lock.js';

/**
 * Test support: the data folder (a tarball from PGlite's `dumpDataDir`) that a new in-memory database
 * starts from instead of running initdb, which takes seconds in WASM. The product never sets it.
 */
let memoryTemplate: Blob | undefined;

/** Sets (or, with undefined, clears) the tarball new in-memory databases start from; for tests. */
export function setMemoryTemplate(tarball: Blob | undefined): void {
  memoryTemplate = tarball;
}

export class PgliteClient implements SqlClient {
  readonly dialect = 'pglite' as const;
  private constructor(
    private readonly db: PGlite,
    private readonly lock: DataDirLock | null,
  ) {}

  /**
   * Opens (creating when absent) the database in `dataDir`, whose lock the caller holds (see
   * open-store.ts); in memory when it is undefined. The client releases the lock when it closes.
   */
  static async open(dataDir: string | undefined, lock: DataDirLock | null = null): Promise<PgliteClient> {
    const inMemory = dataDir === undefined || dataDir.startsWith('memory://');
    const options = inMemory && memoryTemplate ? { loadDataDir: memoryTemplate } : {};
    const db = dataDir === undefined ? new PGlite(options) : new PGlite(dataDir, options);
    await db.waitReady;
    return new PgliteClient(db, lock);
  }

  async query<Row>(text: string, params?: unknown[]): Promise<QueryResult<Row>> {
    const result = await this.db.query<Row>(text, params);
    return { rows: result.rows, rowCount: result.affectedRows ?? result.rows.length };
  }

  async transaction<T>(work: (tx: SqlExecutor) => Promise<T>): Promise<T> {
    return this.db.transaction(async (tx) =>
      work({
        query: async <Row>(text: string, params?: unknown[]) => {
          const result = await tx.query<Row>(text, params);
          return { rows: result.rows, rowCount: result.affectedRows ?? result.rows.length };
        },
      }),
    );
  }

  async exec(script: string): Promise<void> {
    await this.db.exec(script);
  }

  /** In-process: the connection cannot drop, so there is never a reconnect to report. */
  async listen(channel: string, onNotify: (payload: string) => void): Promise<() => Promise<void>> {
    return this.db.listen(channel, onNotify);
  }

  /** One process owns the embedded database, so it holds every singleton duty. */
  tryAdvisoryLock(_key: number): Promise<boolean> {
    return Promise.resolve(true);
  }

  async close(): Promise<void> {
    try {
      if (!this.db.closed) await this.db.close();
    } finally {
      await this.lock?.release();
    }
  }
}
