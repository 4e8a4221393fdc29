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
  private lockSession: Promise<pg.PoolClient> | null = null;
  private lockQueries: Promise<void> = Promise.resolve();
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
    // A connection lost mid-transaction fails the running query, and also emits 'error' on the
    // client; the pool listens only to idle clients, so without this the process would crash.
    const onError = (error: Error): void => this.options.onError?.(error);
    client.on('error', onError);
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
      client.off('error', onError);
      client.release();
      return value;
    } catch (error) {
      await client.query('ROLLBACK').catch(() => undefined);
      // A connection that failed mid-transaction is not returned to the pool (and keeps the
      // listener: a discarded client may still report its end).
      client.release(error instanceof Error ? error : true);
      throw error;
    }
  }

  async exec(script: string): Promise<void> {
    await this.pool.query(script);
  }

  /**
   * LISTENs on a dedicated connection; when that connection dies it listens again on a new one,
   * retrying until it succeeds or is unsubscribed. `onReconnect` hears of each new connection,
   * since notifications sent meanwhile are lost.
   */
  async listen(channel: string, onNotify: (payload: string) => void, onReconnect?: () => void): Promise<() => Promise<void>> {
    let current: pg.PoolClient | null = null;
    let stopped = false;
    let retry: NodeJS.Timeout | null = null;
    const subscribe = async (): Promise<void> => {
      const client = await this.pool.connect();
      client.on('notification', (message) => {
        if (message.channel === channel) onNotify(message.payload ?? '');
      });
      client.on('error', (error) => {
        this.options.onError?.(error);
        if (current !== client) return;
        current = null;
        client.release(error);
        resubscribe(250);
      });
      try {
        await client.query(`LISTEN ${pg.escapeIdentifier(channel)}`);
      } catch (error) {
        client.release(error instanceof Error ? error : true);
        throw error;
      }
      current = client;
    };
    const resubscribe = (delayMs: number): void => {
      if (stopped || retry) return;
      retry = setTimeout(() => {
        retry = null;
        if (stopped) return;
        subscribe().then(
          () => onReconnect?.(),
          () => resubscribe(Math.min(delayMs * 2, 5000)),
        );
      }, delayMs);
      retry.unref();
    };
    await subscribe();
    return async () => {
      stopped = true;
      if (retry) clearTimeout(retry);
      const client = current;
      current = null;
      if (!client) return;
      await client.query(`UNLISTEN ${pg.escapeIdentifier(channel)}`).catch(() => undefined);
      client.release();
    };
  }

  async tryAdvisoryLock(key: number): Promise<boolean> {
    if (this.heldLocks.has(key)) return true;
    // One session holds every duty lock; concurrent first calls share its creation (two sessions
    // would leave one checked out forever, and pool.end() waiting for it).
    this.lockSession ??= this.pool.connect().then(
      (client) => {
        client.on('error', (error) => {
          // The session died: every lock it held is gone, and so is the claim on duties. The dead
          // client goes back to the pool to be discarded (else pool.end() would wait for it forever).
          this.heldLocks.clear();
          // Released already when close() ended it (ending it may report an error afterwards).
          if (this.lockClient !== client) return;
          this.lockClient = null;
          this.lockSession = null;
          client.release(error);
          this.options.onError?.(error);
        });
        this.lockClient = client;
        return client;
      },
      (error: unknown) => {
        this.lockSession = null;
        throw error;
      },
    );
    const lockClient = await this.lockSession;
    // One query at a time on the shared session (duties ask independently).
    const asked = this.lockQueries.then(() => lockClient.query<{ locked: boolean }>('SELECT pg_try_advisory_lock($1) AS locked', [key]));
    this.lockQueries = asked.then(
      () => undefined,
      () => undefined,
    );
    const result = await asked;
    const locked = result.rows[0]?.locked === true;
    if (locked) this.heldLocks.add(key);
    return locked;
  }

  /** Idempotent: pg's Pool.end() never settles when called a second time. */
  close(): Promise<void> {
    this.closing ??= (async () => {
      if (this.lockSession) await this.lockSession.catch(() => undefined);
      this.lockSession = null;
      if (this.lockClient) {
        const client = this.lockClient;
        this.lockClient = null;
        client.release(true);
      }
      this.heldLocks.clear();
      await this.pool.end();
    })();
    return this.closing;
  }
}
