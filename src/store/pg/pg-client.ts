// SqlClient over node-postgres: a pool for queries, dedicated connections for LISTEN and locks.
import pg from 'pg';
import type { QueryResult, SqlClient, SqlExecutor } from '../sql-client.js';

/** The pg.Pool methods this adapter uses. */
export interface PgClientOptions {
  connectionString: string;
  maxConnections?: number;
  /** Called when a pooled or dedicated connection fails outside a query. */
  onError?: (error: Error) => void;
  /** At close, how long queries under way may take before their connections are ended (default 5 s). */
  closeGraceMs?: number;
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
  /** Connections of our own out of the pool (LISTEN, locks); see checkOut. */
  private readonly checkedOut = new Set<pg.PoolClient>();
  /** Every connection the pool holds, for close() to end the ones left. */
  private readonly connections = new Set<pg.PoolClient>();

  constructor(options: PgClientOptions) {
    this.options = options;
    this.pool = new pg.Pool({
      connectionString: options.connectionString,
      max: options.maxConnections ?? 10,
      connectionTimeoutMillis: 5_000,
      application_name: 'rollcall',
    });
    this.pool.on('error', (error) => options.onError?.(error));
    this.pool.on('connect', (client) => this.connections.add(client));
    this.pool.on('remove', (client) => this.connections.delete(client));
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
      const client = await this.checkOut();
      client.on('notification', (message) => {
        if (message.channel === channel) onNotify(message.payload ?? '');
      });
      client.on('error', (error) => {
        this.options.onError?.(error);
        if (current !== client) return;
        current = null;
        this.giveBack(client, error);
        resubscribe(250);
      });
      try {
        await client.query(`LISTEN ${pg.escapeIdentifier(channel)}`);
      } catch (error) {
        this.giveBack(client, error instanceof Error ? error : true);
        throw error;
      }
      // Unsubscribed (or closed) while this connection was being made: nobody would release it.
      if (stopped || this.closing) {
        this.giveBack(client, true);
        return;
      }
      current = client;
    };
    const resubscribe = (delayMs: number): void => {
      if (stopped || this.closing || retry) return;
      retry = setTimeout(() => {
        retry = null;
        if (stopped || this.closing) return;
        subscribe().then(
          () => {
            if (current) onReconnect?.();
          },
          () => resubscribe(Math.min(delayMs * 2, 5000)),
        );
      }, delayMs);
      retry.unref();
    };
    await subscribe();
    return async () => {
      stopped = true;
      if (retry) clearTimeout(retry);
      retry = null;
      const client = current;
      current = null;
      if (!client) return;
      await client.query(`UNLISTEN ${pg.escapeIdentifier(channel)}`).catch(() => undefined);
      this.giveBack(client);
    };
  }

  async tryAdvisoryLock(key: number): Promise<boolean> {
    if (this.closing) throw new Error('the store is closed');
    if (this.heldLocks.has(key)) return true;
    // One session holds every duty lock; concurrent first calls share its creation (two sessions
    // would leave one checked out forever, and pool.end() waiting for it).
    this.lockSession ??= this.checkOut().then(
      (client) => {
        client.on('error', (error) => {
          // The session died: every lock it held is gone, and so is the claim on duties. The dead
          // client goes back to the pool to be discarded (else pool.end() would wait for it forever).
          this.heldLocks.clear();
          // Released already when close() ended it (ending it may report an error afterwards).
          if (this.lockClient !== client) return;
          this.lockClient = null;
          this.lockSession = null;
          this.giveBack(client, error);
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

  /**
   * A connection of our own (LISTEN, locks), out of the pool until giveBack. None is handed out once
   * closing: close() could not know of it, and pool.end() would wait for it forever.
   */
  private async checkOut(): Promise<pg.PoolClient> {
    if (this.closing) throw new Error('the store is closed');
    const client = await this.pool.connect();
    if (this.closing) {
      client.release(true);
      throw new Error('the store is closed');
    }
    this.checkedOut.add(client);
    return client;
  }

  /** Returns a connection of our own to the pool, once (a second release would throw); with an error it is discarded. */
  private giveBack(client: pg.PoolClient, error?: Error | boolean): void {
    if (!this.checkedOut.delete(client)) return;
    client.release(error);
  }

  /**
   * Idempotent (pg's Pool.end() never settles when called a second time), and settles: our own
   * connections are discarded, queries under way get `closeGraceMs` to finish, then every connection
   * left is ended under them (they fail) so that the pool can end.
   */
  close(): Promise<void> {
    this.closing ??= (async () => {
      if (this.lockSession) await this.lockSession.catch(() => undefined);
      this.lockSession = null;
      this.lockClient = null;
      this.heldLocks.clear();
      for (const client of [...this.checkedOut]) this.giveBack(client, true);
      const ended = this.pool.end();
      if (await settlesWithin(ended, this.options.closeGraceMs ?? 5_000)) return;
      for (const client of this.connections) void client.end().catch(() => undefined);
      if (!(await settlesWithin(ended, 2_000))) throw new Error(`the database pool did not end: ${this.connections.size} connection(s) still open`);
    })();
    return this.closing;
  }
}

/** Whether `promise` settles within `ms` (a rejection counts as settled). */
async function settlesWithin(promise: Promise<unknown>, ms: number): Promise<boolean> {
  let timer: NodeJS.Timeout | undefined;
  const late = new Promise<false>((resolve) => {
    timer = setTimeout(() => resolve(false), ms);
  });
  try {
    return await Promise.race([
      promise.then(
        () => true,
        () => true,
      ),
      late,
    ]);
  } finally {
    clearTimeout(timer);
  }
}
