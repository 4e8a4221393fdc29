// One configuration schema: each option's default, environment variable and meaning stand together.
// Sources, later winning: defaults, a JSON config file, environment variables, command-line flags.
import { readFileSync } from 'node:fs';
import { hostname } from 'node:os';
import { Type, type Static } from '@sinclair/typebox';
import { Value } from '@sinclair/typebox/value';
import { RollcallError } from '../domain/errors.js';
import { NAMESPACE_PATTERN } from '../domain/schemas.js';

const LOG_LEVELS = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'] as const;

export const ConfigSchema = Type.Object({
  host: Type.String({ default: '127.0.0.1', description: 'Address the HTTP API listens on. Env ROLLCALL_HOST.' }),
  port: Type.Integer({ minimum: 0, maximum: 65535, default: 9205, description: 'HTTP port. Env ROLLCALL_PORT.' }),
  dataDir: Type.String({ minLength: 1, default: '.rollcall/data', description: 'Folder of the embedded database (used when no databaseUrl); memory:// keeps it in memory only. Env ROLLCALL_DATA_DIR.' }),
  databaseUrl: Type.Optional(Type.String({ minLength: 1, description: 'PostgreSQL URL; when set, PostgreSQL replaces the embedded database. Env ROLLCALL_DATABASE_URL or DATABASE_URL, or the seeds\' POSTGRES_HOST/PORT/DB/USER/PASSWORD.' })),
  databasePoolSize: Type.Integer({ minimum: 2, maximum: 200, default: 10, description: 'PostgreSQL connections. Env ROLLCALL_DATABASE_POOL_SIZE.' }),
  instanceId: Type.Optional(Type.String({ minLength: 1, maxLength: 255, description: 'This instance\'s node id in its own registry. Env ROLLCALL_INSTANCE_ID. Default registry-<hostname>-<port>.' })),
  namespace: Type.String({ pattern: NAMESPACE_PATTERN, default: 'default', description: 'Namespace of records that name none. Env ROLLCALL_NAMESPACE.' }),
  leaseTtlSeconds: Type.Number({ minimum: 1, maximum: 604800, default: 90, description: 'Lease of a node that names none: offline this long after its last heartbeat. Env ROLLCALL_LEASE_TTL_SECONDS.' }),
  heartbeatIntervalSeconds: Type.Number({ exclusiveMinimum: 0, default: 30, description: 'How often the registry renews its own lease. Env ROLLCALL_HEARTBEAT_INTERVAL_SECONDS.' }),
  heartbeatFlushMs: Type.Integer({ minimum: 10, maximum: 60000, default: 1000, description: 'Heartbeats are kept in memory and written to the store in one batch this often. Env ROLLCALL_HEARTBEAT_FLUSH_MS.' }),
  sweepIntervalMs: Type.Integer({ minimum: 50, maximum: 3600000, default: 1000, description: 'How often lapsed leases are looked for. Env ROLLCALL_SWEEP_INTERVAL_MS.' }),
  retentionHours: Type.Number({ exclusiveMinimum: 0, default: 24, description: 'Offline and removed records are purged this long after they left. Env ROLLCALL_RETENTION_HOURS or the seeds\' NODE_TTL_HOURS.' }),
  cleanupIntervalHours: Type.Number({ exclusiveMinimum: 0, default: 1, description: 'How often records, changes and heartbeat history are purged. Env ROLLCALL_CLEANUP_INTERVAL_HOURS or the seeds\' CLEANUP_INTERVAL_HOURS.' }),
  changeRetentionHours: Type.Number({ exclusiveMinimum: 0, default: 24, description: 'How long topology changes are kept for readers that resume by version. Env ROLLCALL_CHANGE_RETENTION_HOURS.' }),
  heartbeatHistory: Type.Boolean({ default: false, description: 'Keep a history of heartbeats (heartbeat_log). Env ROLLCALL_HEARTBEAT_HISTORY.' }),
  heartbeatHistoryHours: Type.Number({ exclusiveMinimum: 0, default: 24, description: 'Retention of the heartbeat history. Env ROLLCALL_HEARTBEAT_HISTORY_HOURS.' }),
  maxBatch: Type.Integer({ minimum: 1, maximum: 10000, default: 500, description: 'Most registrations committed in one transaction. Env ROLLCALL_MAX_BATCH.' }),
  writeConcurrency: Type.Integer({ minimum: 1, maximum: 32, default: 3, description: 'Write transactions in flight at once (PostgreSQL; the embedded database runs one). Env ROLLCALL_WRITE_CONCURRENCY.' }),
  logLevel: Type.Union(LOG_LEVELS.map((level) => Type.Literal(level)), { default: 'info', description: 'Env ROLLCALL_LOG_LEVEL.' }),
});

export type Config = Static<typeof ConfigSchema>;

/** Environment variables of rollcall's own, by option. */
const ENV: Partial<Record<keyof Config, string[]>> = {
  host: ['ROLLCALL_HOST'],
  port: ['ROLLCALL_PORT'],
  dataDir: ['ROLLCALL_DATA_DIR'],
  databaseUrl: ['ROLLCALL_DATABASE_URL', 'DATABASE_URL'],
  databasePoolSize: ['ROLLCALL_DATABASE_POOL_SIZE'],
  instanceId: ['ROLLCALL_INSTANCE_ID'],
  namespace: ['ROLLCALL_NAMESPACE'],
  leaseTtlSeconds: ['ROLLCALL_LEASE_TTL_SECONDS'],
  heartbeatIntervalSeconds: ['ROLLCALL_HEARTBEAT_INTERVAL_SECONDS'],
  heartbeatFlushMs: ['ROLLCALL_HEARTBEAT_FLUSH_MS'],
  sweepIntervalMs: ['ROLLCALL_SWEEP_INTERVAL_MS'],
  retentionHours: ['ROLLCALL_RETENTION_HOURS', 'NODE_TTL_HOURS'],
  cleanupIntervalHours: ['ROLLCALL_CLEANUP_INTERVAL_HOURS', 'CLEANUP_INTERVAL_HOURS'],
  changeRetentionHours: ['ROLLCALL_CHANGE_RETENTION_HOURS'],
  heartbeatHistory: ['ROLLCALL_HEARTBEAT_HISTORY'],
  heartbeatHistoryHours: ['ROLLCALL_HEARTBEAT_HISTORY_HOURS'],
  maxBatch: ['ROLLCALL_MAX_BATCH'],
  writeConcurrency: ['ROLLCALL_WRITE_CONCURRENCY'],
  logLevel: ['ROLLCALL_LOG_LEVEL'],
};

type Env = Record<string, string | undefined>;

function fromEnv(env: Env): Record<string, unknown> {
  const values: Record<string, unknown> = {};
  for (const [option, names] of Object.entries(ENV)) {
    const name = names.find((candidate) => env[candidate] !== undefined && env[candidate] !== '');
    if (name !== undefined) values[option] = env[name];
  }
  // The seeds' PostgreSQL variables make a URL when no URL is given.
  if (values.databaseUrl === undefined && env.POSTGRES_HOST) {
    const url = new URL('postgres://localhost');
    url.hostname = env.POSTGRES_HOST;
    url.port = env.POSTGRES_PORT ?? '5432';
    url.pathname = `/${env.POSTGRES_DB ?? 'postgres'}`;
    url.username = env.POSTGRES_USER ?? 'postgres';
    if (env.POSTGRES_PASSWORD) url.password = env.POSTGRES_PASSWORD;
    values.databaseUrl = url.toString();
  }
  return values;
}

function readConfigFile(path: string): Record<string, unknown> {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (cause) {
    throw new RollcallError('CONFIG_INVALID', `Cannot read config file ${path}: ${(cause as Error).message}`, { cause });
  }
  try {
    const parsed: unknown = JSON.parse(text);
    if (parsed === null || typeof parsed !== 'object' || Array.isArray(parsed)) throw new Error('not a JSON object');
    return parsed as Record<string, unknown>;
  } catch (cause) {
    throw new RollcallError('CONFIG_INVALID', `Config file ${path} is not a JSON object: ${(cause as Error).message}`, { cause });
  }
}

export interface ConfigSources {
  env?: Env;
  file?: string;
  /** Values from command-line flags; undefined entries are ignored. */
  flags?: Partial<Record<keyof Config, unknown>>;
}

/** Builds and validates the configuration; the error names the offending option and its source. */
export function loadConfig(sources: ConfigSources = {}): Config {
  const env = sources.env ?? process.env;
  const file = sources.file ?? env.ROLLCALL_CONFIG;
  const layers: Array<[string, Record<string, unknown>]> = [
    ['config file', file ? readConfigFile(file) : {}],
    ['environment', fromEnv(env)],
    ['flags', Object.fromEntries(Object.entries(sources.flags ?? {}).filter(([, value]) => value !== undefined))],
  ];
  const known = new Set(Object.keys(ConfigSchema.properties));
  const merged: Record<string, unknown> = {};
  const origin: Record<string, string> = {};
  for (const [source, values] of layers) {
    for (const [key, value] of Object.entries(values)) {
      if (!known.has(key)) throw new RollcallError('CONFIG_INVALID', `Unknown option "${key}" in ${source}.`, { details: { field: key } });
      merged[key] = value;
      origin[key] = source;
    }
  }
  const config = Value.Default(ConfigSchema, Value.Convert(ConfigSchema, merged)) as Record<string, unknown>;
  const firstError = Value.Errors(ConfigSchema, config).First();
  if (firstError) {
    const field = firstError.path.replace(/^\//, '').split('/')[0] ?? '';
    const where = origin[field] ?? 'defaults';
    // A bad database URL may carry a password: name the field, never echo its value.
    const shown = field === 'databaseUrl' ? '' : ` (got ${JSON.stringify(firstError.value)})`;
    throw new RollcallError('CONFIG_INVALID', `Invalid option "${field}" from ${where}: ${firstError.message}${shown}.`, {
      details: { field, source: where },
    });
  }
  if (typeof config.databaseUrl === 'string') {
    try {
      new URL(config.databaseUrl);
    } catch {
      throw new RollcallError('CONFIG_INVALID', `Invalid option "databaseUrl" from ${origin.databaseUrl ?? 'defaults'}: not a URL.`, {
        details: { field: 'databaseUrl' },
      });
    }
  }
  return config as Config;
}

export function instanceIdOf(config: Config): string {
  return config.instanceId ?? `registry-${hostname().replace(/[^A-Za-z0-9._-]/g, '-')}-${config.port}`;
}

/** The database URL with its password masked, for logs and /health. */
export function redactUrl(url: string): string {
  try {
    const parsed = new URL(url);
    if (parsed.password) parsed.password = '***';
    return parsed.toString();
  } catch {
    return '***';
  }
}
