// Commands that work on the store (keys, tokens, revocations): the options that name it, as `serve`
// takes them, and where their work goes. PostgreSQL is opened directly (a running server shares it
// safely). The embedded folder is opened only when no server owns it: while one does, the work goes
// through that server's API, at the URL its lock names. `--url` (or ROLLCALL_URL) sends it to that
// server's API whatever the store.
import type { Command } from 'commander';
import { loadConfig, redactUrl, type Config } from '../config/config.js';
import { RollcallError, isRollcallError } from '../domain/errors.js';
import { isMemoryDataDir, openStore } from '../store/open-store.js';
import { describeHolder, holderState, readDataDirHolder, type DataDirHolder } from '../store/pglite/data-dir-lock.js';
import type { Store } from '../store/store.js';
import { namedUrl, withServerOptions, type ServerAccess, type ServerOptions } from './api-access.js';

export interface StoreOptions extends ServerOptions {
  dataDir?: string;
  databaseUrl?: string;
  config?: string;
}

export function withStoreOptions(command: Command): Command {
  return withServerOptions(
    command
      .option('--data-dir <dir>', 'folder of the embedded database (env ROLLCALL_DATA_DIR, default .rollcall/data)')
      .option('--database-url <url>', 'PostgreSQL URL (env ROLLCALL_DATABASE_URL, DATABASE_URL or POSTGRES_HOST/PORT/DB/USER/PASSWORD)')
      .option('--config <file>', 'JSON config file (env ROLLCALL_CONFIG)'),
    "use this registry's API instead of the store (env: ROLLCALL_URL)",
  );
}

export function configOf(options: StoreOptions): Config {
  return loadConfig({ ...(options.config ? { file: options.config } : {}), flags: { dataDir: options.dataDir, databaseUrl: options.databaseUrl } });
}

/** One piece of work, done on the store itself or through a registry's API. */
export interface StoreWork<T> {
  store: (store: Store, target: string) => Promise<T>;
  api: (server: ServerAccess) => Promise<T>;
}

/** How long to wait for a server that holds the folder but does not listen yet. */
const STARTING_SERVER_WAIT_MS = 20_000;

/**
 * Runs `work` for `command` (e.g. `key create`): through the API of --url when given; else on the
 * store the options name, opened and migrated for the work and closed after; or, when a server owns
 * the embedded folder, through that server's API.
 */
export async function withStoreOrServer<T>(command: string, options: StoreOptions, work: StoreWork<T>): Promise<T> {
  const apiKey = options.apiKey ? { apiKey: options.apiKey } : {};
  const url = namedUrl(options);
  if (url !== undefined) return work.api({ url, ...apiKey });
  const config = configOf(options);
  const target = config.databaseUrl ? redactUrl(config.databaseUrl) : `embedded database in ${config.dataDir}`;
  let store: Store;
  try {
    store = await openStore(
      config.databaseUrl
        ? { kind: 'postgres', url: config.databaseUrl, maxConnections: 2 }
        : { kind: 'pglite', dataDir: config.dataDir, command, lockHint: 'stop it, or run with --url and --api-key to use its API' },
    );
  } catch (error) {
    if (!isRollcallError(error) || error.code !== 'DATA_DIR_LOCKED' || config.databaseUrl || isMemoryDataDir(config.dataDir)) throw error;
    const owner = await listeningServer(config.dataDir, error);
    return throughOwner(owner, config.dataDir, () => work.api({ url: owner.url as string, ...apiKey }));
  }
  try {
    await store.migrate();
    return await work.store(store, target);
  } finally {
    await store.close();
  }
}

/** The server that owns the folder, once it listens; the refusal itself when the holder is no server. */
async function listeningServer(dataDir: string, refusal: RollcallError): Promise<DataDirHolder> {
  const deadline = Date.now() + STARTING_SERVER_WAIT_MS;
  for (;;) {
    const holder = await readDataDirHolder(dataDir);
    if (holder === null || holder.command !== 'serve' || holderState(holder) !== 'alive') throw refusal;
    if (holder.url !== null) return holder;
    if (Date.now() >= deadline) {
      throw new RollcallError('DATA_DIR_LOCKED', `${describeHolder(holder)} owns the data folder ${dataDir} but does not listen yet: try again once it serves, or stop it.`, {
        details: { data_dir: dataDir, holder },
      });
    }
    await new Promise((resolve) => setTimeout(resolve, 200));
  }
}

/** Codes that mean the owner's API cannot do this for us as asked. */
const OWNER_REFUSALS = new Set(['UNAUTHENTICATED', 'FORBIDDEN_SCOPE', 'FORBIDDEN_NAMESPACE', 'REGISTRY_UNAVAILABLE', 'CA_NOT_CONFIGURED']);

async function throughOwner<T>(owner: DataDirHolder, dataDir: string, call: () => Promise<T>): Promise<T> {
  process.stderr.write(`${describeHolder(owner)} owns ${dataDir}: going through its API.\n`);
  try {
    return await call();
  } catch (error) {
    if (!isRollcallError(error) || !OWNER_REFUSALS.has(error.code)) throw error;
    const remedy =
      error.code === 'REGISTRY_UNAVAILABLE'
        ? `Stop it to work on the folder directly, or run with --url and --api-key to use its API at another address.`
        : error.code === 'CA_NOT_CONFIGURED'
          ? 'Join tokens and revocations are of use only to a server with a CA: restart it with caCertFile and caKeyFile.'
          : 'Run with --api-key (env ROLLCALL_API_KEY) and an admin key, or stop it to work on the folder directly.';
    throw new RollcallError(error.code, `${describeHolder(owner)} owns ${dataDir}, and its API answered: ${error.message} ${remedy}`, {
      cause: error,
      details: { data_dir: dataDir, holder: owner },
    });
  }
}
