// SqlClient over node-postgres: a pool for queries, dedicated connections for LISTEN and locks.
import pg from 'pg';
import type { QueryResult, SqlClient, SqlExecutor } from '../sql-client.js';

/** The pg.Pool methods this adapter uses. */
export interface PgClientOptions {
  connectionString: string;
  maxConnections?: number;
  /** Called when a pooled or dedicated connection fails outside a query. */
  onError?: (error: Error) => void;
}

export class PgClient implements SqlClient {
  readonly dialect = 'postgres' as const;
  private readonly pool: pg.Pool;
  private readonly options: PgClientOptions;
  private lockClient: pg.PoolClient | null = null;
  private readonly heldLocks = new Set<number>();
  private closing: Promise<void> | null = null;

  constructor(options: PgClientOptions) {
    this.options = options;
    this.pool = new pg.Pool({
      connectionString: options.connectionString,
      max: options.maxConnections ?? 10,
      connectionTimeoutMillis: 5_000,
      application_name: 'rollcall',
    });
    this.pool.on('error', (error) => options.onError?.(error));
  }

  async query<Row>(text: string, params?: unknown[]): Promise<QueryResult<Row>> {
    const result = await this.pool.query(text, params);
    return { rows: result.rows as Row[], rowCount: result.rowCount ?? 0 };
  }

  async transaction<T>(work: (tx: SqlExecutor) => Promise<T>): Promise<T> {
    const client = await this.pool.connect();
    try {
      await client.query('BEGIN');
      const executor: SqlExecutor = {
        query: async <Row>(text: string, params?: unknown[]) => {
          const result = await client.query(text, params);
          return { rows: result.rows as Row[], rowCount: result.rowCount ?? 0 };
        },
      };
      const value = await work(executor);
      await client.query('COMMIT');
      client.release();
      return value;
    } catch (error) {
      await client.query('ROLLBACK').catch(() => undefined);
      // A connection that failed mid-transaction is not returned to the pool.
      client.release(error instanceof Error ? error : true);
      throw error;
    }
  }

  async exec(script: string): Promise<void> {
    await this.pool.query(script);
  }

  async listen(channel: string, onNotify: (payload: string) => void): Promise<() => Promise<void>> {
    const client = await this.pool.connect();
    client.on('notification', (message) => {
      if (message.channel === channel) onNotify(message.payload ?? '');
    });
    client.on('error', (error) => this.options.onError?.(error));
    await client.query(`LISTEN ${pg.escapeIdentifier(channel)}`);
    return async () => {
      await client.query(`UNLISTEN ${pg.escapeIdentifier(channel)}`).catch(() => undefined);
      client.release();
    };
  }

  async tryAdvisoryLock(key: number): Promise<boolean> {
    if (this.heldLocks.has(key)) return true;
    if (!this.lockClient) {
      const client = await this.pool.connect();
      client.on('error', (error) => {
        // The session died: every lock it held is gone, and so is the claim on duties.
        this.heldLocks.clear();
        this.lockClient = null;
        this.options.onError?.(error);
      });
      this.lockClient = client;
    }
    const result = await this.lockClient.query<{ locked: boolean }>('SELECT pg_try_advisory_lock($1) AS locked', [key]);
    const locked = result.rows[0]?.locked === true;
    if (locked) this.heldLocks.add(key);
    return locked;
  }

  /** Idempotent: pg's Pool.end() never settles when called a second time. */
  close(): Promise<void> {
    this.closing ??= (async () => {
      if (this.lockClient) {
        this.lockClient.release(true);
        this.lockClient = null;
      }
      this.heldLocks.clear();
      await this.pool.end();
    })();
    return this.closing;
  }
}
