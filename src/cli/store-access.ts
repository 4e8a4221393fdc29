// Commands that work on the store directly (keys, tokens, revocations): the options that name
// it, as `serve` takes them, and opening it for one piece of work.
import type { Command } from 'commander';
import { loadConfig, redactUrl, type Config } from '../config/config.js';
import { openStore } from '../store/open-store.js';
import type { Store } from '../store/store.js';

export interface StoreOptions {
  dataDir?: string;
  databaseUrl?: string;
  config?: string;
}

export function withStoreOptions(command: Command): Command {
  return command
    .option('--data-dir <dir>', 'folder of the embedded database (env ROLLCALL_DATA_DIR, default .rollcall/data)')
    .option('--database-url <url>', 'PostgreSQL URL (env ROLLCALL_DATABASE_URL, DATABASE_URL or POSTGRES_HOST/PORT/DB/USER/PASSWORD)')
    .option('--config <file>', 'JSON config file (env ROLLCALL_CONFIG)');
}

export function configOf(options: StoreOptions): Config {
  return loadConfig({ ...(options.config ? { file: options.config } : {}), flags: { dataDir: options.dataDir, databaseUrl: options.databaseUrl } });
}

/** Opens and migrates the store the options (or config and environment) name, runs `work`, closes it. */
export async function withStore<T>(options: StoreOptions, work: (store: Store, target: string) => Promise<T>): Promise<T> {
  const config = configOf(options);
  const target = config.databaseUrl ? redactUrl(config.databaseUrl) : `embedded database in ${config.dataDir}`;
  const store = await openStore(config.databaseUrl ? { kind: 'postgres', url: config.databaseUrl, maxConnections: 2 } : { kind: 'pglite', dataDir: config.dataDir });
  try {
    await store.migrate();
    return await work(store, target);
  } finally {
    await store.close();
  }
}
