// The small driver interface both database adapters implement; every query is written once above it.

export interface QueryResult<Row> {
  rows: Row[];
  rowCount: number;
}

export interface SqlExecutor {
  query<Row = Record<string, unknown>>(text: string, params?: unknown[]): Promise<QueryResult<Row>>;
}

export interface SqlClient extends SqlExecutor {
  /** Runs `work` in one transaction on one connection; rolls back when it throws. */
  transaction<T>(work: (tx: SqlExecutor) => Promise<T>): Promise<T>;
  /** Runs a script of several statements (migrations). */
  exec(script: string): Promise<void>;
  /**
   * Calls `onNotify` with the payload of every NOTIFY on `channel`, and `onReconnect` when the
   * listening connection was replaced (notifications may have been missed); returns an unsubscribe.
   */
  listen(channel: string, onNotify: (payload: string) => void, onReconnect?: () => void): Promise<() => Promise<void>>;
  /** Holds a session-level advisory lock on a dedicated connection while it returns true. */
  tryAdvisoryLock(key: number): Promise<boolean>;
  close(): Promise<void>;
  readonly dialect: 'postgres' | 'pglite';
}
