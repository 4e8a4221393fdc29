// The `rollcall` command line: serve, query, join as a node, and a demo fleet.
import { Command, InvalidArgumentError, Option } from 'commander';
import type { Logger } from 'pino';
import { DagiAgent } from '../agent/dagi-agent.js';
import { RollcallClient, type PresentedNode } from '../client/rollcall-client.js';
import { loadConfig, type Config } from '../config/config.js';
import { createLogger, LOG_FORMATS, resolveLogFormat, type LogFormat } from '../config/logger.js';
import { isRollcallError } from '../domain/errors.js';
import { DEFAULT_TOPIC_PREFIX } from '../domain/events.js';
import { NODE_STATUSES, type NodeStatus } from '../domain/node.js';
import { startServer } from '../server.js';
import { PACKAGE } from '../version.js';
import { serverOf, withServerOptions, type ServerAccess, type ServerOptions } from './api-access.js';
import { runDemo } from './demo.js';
import { announceFirstSteps } from './first-steps.js';
import { caCommand, tokenCommand } from './identity-commands.js';
import { keyCommand } from './key-command.js';
import { policyCommand, quotaCommand } from './policy-command.js';
import { KafkaJoin } from './kafka-join.js';
import { renderTable } from './table.js';

function positiveNumber(value: string): number {
  const number = Number(value);
  if (!Number.isFinite(number) || number <= 0) throw new InvalidArgumentError('must be a positive number');
  return number;
}

function port(value: string): number {
  const number = Number(value);
  if (!Number.isInteger(number) || number < 0 || number > 65535) throw new InvalidArgumentError('must be a port from 0 to 65535');
  return number;
}

/** A client of the registry the options name, sending their API key. */
function clientOf(server: ServerAccess): RollcallClient {
  return new RollcallClient(server.url, server.apiKey ? { apiKey: server.apiKey } : {});
}

const JOIN_TRANSPORTS = ['http', 'kafka'] as const;

interface JoinOptions extends ServerOptions {
  transport: (typeof JOIN_TRANSPORTS)[number];
  brokers: string;
  topicPrefix: string;
  nodeType?: string;
  capabilitiesFile?: string;
  role: string;
  labels: string;
  namespace?: string;
  namespaceTopics?: boolean;
  ttl: number;
  interval: number;
  nodeIdFile?: string;
  hostname?: string;
  ip?: string;
  logLevel: string;
  logFormat: LogFormat;
}

function splitLabels(labels: string): string[] {
  return labels
    .split(',')
    .map((label) => label.trim())
    .filter(Boolean);
}

/** What both joins (HTTP and Kafka) take from the command line: the node and its lease. */
function nodeOptionsOf(options: JoinOptions, logger: Logger) {
  return {
    role: options.role,
    labels: splitLabels(options.labels),
    ttlSeconds: options.ttl,
    intervalSeconds: options.interval,
    logger,
    ...(options.namespace ? { namespace: options.namespace } : {}),
    ...(options.nodeIdFile ? { nodeIdFile: options.nodeIdFile } : {}),
    ...(options.hostname ? { hostname: options.hostname } : {}),
    ...(options.ip ? { ip: options.ip } : {}),
  };
}

/** The registry's default prefix: `{env}.omninode_bridge.onex.evt`, env as `rollcall serve` reads it. */
function defaultTopicPrefix(): string {
  return DEFAULT_TOPIC_PREFIX(process.env.ROLLCALL_KAFKA_ENVIRONMENT || process.env.KAFKA_ENVIRONMENT || 'dev');
}

function topicPrefix(value: string): string {
  if (!/^[A-Za-z0-9._-]{1,200}$/.test(value)) throw new InvalidArgumentError('must be 1 to 200 letters, digits, dots, underscores or dashes');
  return value;
}

/** `join --transport kafka`: a NodeAgent on the event plane until SIGTERM/SIGINT; SIGHUP re-announces. */
async function joinOverKafka(options: JoinOptions): Promise<void> {
  const brokers = options.brokers
    .split(',')
    .map((broker) => broker.trim())
    .filter(Boolean);
  if (brokers.length === 0) throw new InvalidArgumentError('--brokers must name at least one host:port');
  if (options.namespaceTopics === true && options.namespace === undefined) throw new InvalidArgumentError('--namespace-topics needs --namespace');
  const logger = createLogger(options.logLevel, undefined, options.logFormat);
  const join = new KafkaJoin({
    brokers,
    topicPrefix: options.topicPrefix,
    nodeType: options.nodeType ?? options.role,
    ...nodeOptionsOf(options, logger),
    ...(options.capabilitiesFile ? { capabilitiesFile: options.capabilitiesFile } : {}),
    ...(options.namespaceTopics === true ? { namespaceTopics: true } : {}),
  });
  untilSignal(async () => join.stop('graceful_shutdown'));
  // SIGHUP: the node's capabilities changed; announce them (an unreadable file keeps the last ones).
  process.on('SIGHUP', () => {
    join.announce('capability_change').then(
      (announced) => logger.info({ announced }, 'SIGHUP: capabilities announced again'),
      (error: unknown) => logger.warn({ err: error }, 'SIGHUP: announcing the capabilities failed'),
    );
  });
  try {
    const nodeId = await join.start();
    process.stdout.write(`joined ${join.target} as ${nodeId}\n`);
  } catch (error) {
    // Stopped while joining: the signal handler sends the tombstone and exits.
    if (isRollcallError(error) && error.code === 'SHUTTING_DOWN') return;
    throw error;
  }
}

/** Runs until SIGTERM/SIGINT, then `stop`; a second signal exits at once. */
function untilSignal(stop: (signal: NodeJS.Signals) => Promise<void>): void {
  let stopping = false;
  const onSignal = (signal: NodeJS.Signals): void => {
    if (stopping) process.exit(130);
    stopping = true;
    stop(signal).then(
      () => process.exit(0),
      (error: unknown) => {
        process.stderr.write(`rollcall: ${(error as Error).message}\n`);
        process.exit(1);
      },
    );
  };
  process.on('SIGTERM', onSignal);
  process.on('SIGINT', onSignal);
}

function formatAge(iso: string): string {
  const seconds = Math.max(0, Math.round((Date.now() - Date.parse(iso)) / 1000));
  if (seconds < 120) return `${seconds}s ago`;
  if (seconds < 7200) return `${Math.round(seconds / 60)}m ago`;
  return `${Math.round(seconds / 3600)}h ago`;
}

function nodeRow(node: PresentedNode): string[] {
  return [node.node_id, node.namespace, node.node_type, node.role ?? '', node.status, node.health_status, node.node_version, node.labels.join(','), formatAge(node.last_heartbeat)];
}

export function buildProgram(): Command {
  const program = new Command('rollcall')
    .description('A node registry: nodes announce what they can do; rollcall keeps it durable, fresh and queryable.')
    .version(PACKAGE.version)
    .showHelpAfterError();

  program
    .command('serve')
    .description('Run the registry (embedded database by default, PostgreSQL with --database-url)')
    .option('--host <host>', 'address to listen on (env ROLLCALL_HOST, default 127.0.0.1)')
    .option('--port <port>', 'HTTP port (env ROLLCALL_PORT, default 9205)', port)
    .option('--data-dir <dir>', 'folder of the embedded database (env ROLLCALL_DATA_DIR, default .rollcall/data)')
    .option('--database-url <url>', 'PostgreSQL URL (env ROLLCALL_DATABASE_URL, DATABASE_URL or POSTGRES_HOST/PORT/DB/USER/PASSWORD)')
    .option('--config <file>', 'JSON config file (env ROLLCALL_CONFIG)')
    .option('--lease-ttl <seconds>', 'default node lease (env ROLLCALL_LEASE_TTL_SECONDS, default 90)', positiveNumber)
    .option('--log-level <level>', 'fatal, error, warn, info, debug, trace or silent (env ROLLCALL_LOG_LEVEL)')
    .option('--log-format <format>', 'json, pretty, or auto: pretty on a terminal (env ROLLCALL_LOG_FORMAT)')
    .option('--insecure', 'serve a non-loopback address without authentication (env ROLLCALL_INSECURE)')
    .action(
      async (options: { host?: string; port?: number; dataDir?: string; databaseUrl?: string; config?: string; leaseTtl?: number; logLevel?: string; logFormat?: string; insecure?: boolean }) => {
        const config: Config = loadConfig({
          ...(options.config ? { file: options.config } : {}),
          flags: {
            host: options.host,
            port: options.port,
            dataDir: options.dataDir,
            databaseUrl: options.databaseUrl,
            leaseTtlSeconds: options.leaseTtl,
            logLevel: options.logLevel,
            logFormat: options.logFormat,
            insecure: options.insecure,
          },
        });
        const logFormat = resolveLogFormat(config.logFormat);
        const logger = createLogger(config.logLevel, undefined, logFormat);
        const server = await startServer(config, logger);
        process.stderr.write(`rollcall ${PACKAGE.version} serving ${server.url} (${config.databaseUrl ? 'PostgreSQL' : `embedded database in ${config.dataDir}`})\n`);
        announceFirstSteps(server.url, logFormat, logger);
        untilSignal(async (signal) => {
          logger.info({ signal }, 'stopping');
          await server.stop();
        });
      },
    );

  program.addCommand(keyCommand());
  program.addCommand(caCommand());
  program.addCommand(tokenCommand());
  program.addCommand(policyCommand());
  program.addCommand(quotaCommand());

  withServerOptions(program.command('nodes').description('List nodes'))
    .option('--role <role>', 'only this role')
    .option('--label <labels>', 'only nodes with all these labels (comma-separated)')
    .option('--status <statuses>', `only these statuses (${NODE_STATUSES.join(', ')})`)
    .option('--type <node_type>', 'only this node type')
    .option('--namespace <namespace>', "only this namespace (default: the registry's default namespace)")
    .option('-A, --all-namespaces', 'nodes of every namespace')
    .option('--capability <json>', 'capabilities containing this JSON, e.g. \'{"gpu":true}\'')
    .option('--version-range <range>', 'node versions in this semver range, e.g. ">=1.2.0"')
    .option('--json', 'print JSON for scripts')
    .action(
      async (
        options: ServerOptions & {
          role?: string;
          label?: string;
          status?: string;
          type?: string;
          namespace?: string;
          allNamespaces?: boolean;
          capability?: string;
          versionRange?: string;
          json?: boolean;
        },
      ) => {
        const client = clientOf(serverOf(options));
        let capability: Record<string, never> | undefined;
        if (options.capability !== undefined) {
          try {
            capability = JSON.parse(options.capability) as Record<string, never>;
          } catch {
            throw new InvalidArgumentError('--capability must be a JSON object');
          }
        }
        const nodes = await client.listAllNodes({
          ...(options.role ? { role: options.role } : {}),
          ...(options.label ? { labels: options.label.split(',') } : {}),
          ...(options.status ? { status: options.status.split(',') as NodeStatus[] } : {}),
          ...(options.type ? { node_type: options.type } : {}),
          ...(options.allNamespaces ? { namespace: '*' } : options.namespace ? { namespace: options.namespace } : {}),
          ...(capability ? { capability } : {}),
          ...(options.versionRange ? { version: options.versionRange } : {}),
        });
        if (options.json) {
          process.stdout.write(`${JSON.stringify(nodes, null, 2)}\n`);
          return;
        }
        process.stdout.write(renderTable(['NODE_ID', 'NAMESPACE', 'TYPE', 'ROLE', 'STATUS', 'HEALTH', 'VERSION', 'LABELS', 'LAST_HEARTBEAT'], nodes.map(nodeRow)));
        process.stdout.write(`${nodes.length} node${nodes.length === 1 ? '' : 's'}\n`);
      },
    );

  withServerOptions(program.command('node <node_id>').description('Show one node'))
    .option('--namespace <namespace>', 'namespace of the node')
    .option('--json', 'print JSON for scripts')
    .action(async (nodeId: string, options: ServerOptions & { namespace?: string; json?: boolean }) => {
      const node = await clientOf(serverOf(options)).getNode(nodeId, options.namespace);
      if (options.json) {
        process.stdout.write(`${JSON.stringify(node, null, 2)}\n`);
        return;
      }
      const rows: string[][] = [
        ['node_id', node.node_id],
        ['namespace', node.namespace],
        ['node_type', node.node_type],
        ['node_version', node.node_version],
        ['role', node.role ?? ''],
        ['labels', node.labels.join(',')],
        ['hostname', node.hostname ?? ''],
        ['ip', node.ip ?? ''],
        ['status', node.status],
        ['health', node.health_status],
        ['incarnation', String(node.incarnation)],
        ['registered_at', node.registered_at],
        ['last_heartbeat', `${node.last_heartbeat} (${formatAge(node.last_heartbeat)})`],
        ['lease_expires_at', node.lease_expires_at ?? '-'],
        ['removal_reason', node.removal_reason ?? '-'],
        ['capabilities', JSON.stringify(node.capabilities)],
        ['endpoints', JSON.stringify(node.endpoints)],
        ['metadata', JSON.stringify(node.metadata)],
      ];
      process.stdout.write(renderTable(['FIELD', 'VALUE'], rows));
    });

  withServerOptions(program.command('deregister <node_id>').description('Remove a node now (tombstone)'))
    .option('--namespace <namespace>', 'namespace of the node')
    .option('--reason <reason>', 'removal reason', 'manual_deregistration')
    .action(async (nodeId: string, options: ServerOptions & { namespace?: string; reason: string }) => {
      const result = await clientOf(serverOf(options)).deregister(nodeId, { reason: options.reason, ...(options.namespace ? { namespace: options.namespace } : {}) });
      process.stdout.write(`${nodeId}: ${result.status}${result.changed ? '' : ' (already)'}\n`);
    });

  withServerOptions(
    program
      .command('join')
      .description('Register this machine as a node, heartbeat until stopped, leave with a tombstone')
      .addOption(new Option('--transport <transport>', 'how to reach the registry: its HTTP API (--url, --api-key), or the Kafka event plane').choices(JOIN_TRANSPORTS).default('http')),
  )
    .addOption(new Option('--brokers <list>', 'Kafka bootstrap servers, comma-separated (kafka transport)').env('KAFKA_BROKER_URL').default('127.0.0.1:9092'))
    .addOption(new Option('--topic-prefix <prefix>', 'prefix of the event topics (kafka transport)').env('ROLLCALL_KAFKA_TOPIC_PREFIX').default(defaultTopicPrefix()).argParser(topicPrefix))
    .option('--node-type <type>', 'node_type to announce (kafka transport; default: the role)')
    .option('--capabilities-file <file>', 'JSON object announced as capabilities, read again on SIGHUP (kafka transport)')
    .option('--namespace-topics', "use the namespace's own topics, {prefix}.ns.{namespace}.* (kafka transport; needs --namespace)")
    .requiredOption('--role <role>', 'role of this node, e.g. production-router')
    .option('--labels <labels>', 'comma-separated labels, e.g. router,gateway', '')
    .option('--namespace <namespace>', 'namespace to join')
    .option('--ttl <seconds>', 'lease: offline this long after the last heartbeat', positiveNumber, 90)
    .option('--interval <seconds>', 'heartbeat interval', positiveNumber, 30)
    .option('--node-id-file <file>', 'where the node_id is kept (default /etc/rollcall/node_id, else ~/.config/rollcall/node_id)')
    .option('--hostname <name>', 'hostname to announce (default: detected)')
    .option('--ip <address>', 'IP address to announce (default: detected)')
    .option('--log-level <level>', 'log level', 'info')
    .addOption(new Option('--log-format <format>', 'log lines as json, or pretty for people; auto: pretty on a terminal').choices(LOG_FORMATS).env('ROLLCALL_LOG_FORMAT').default('auto'))
    .action(async (options: JoinOptions) => {
      if (options.transport === 'kafka') {
        await joinOverKafka(options);
        return;
      }
      if (options.capabilitiesFile !== undefined) throw new InvalidArgumentError('--capabilities-file needs --transport kafka');
      if (options.namespaceTopics === true) throw new InvalidArgumentError('--namespace-topics needs --transport kafka');
      const logger = createLogger(options.logLevel, undefined, options.logFormat);
      const server = serverOf(options);
      const agent = new DagiAgent({
        registryUrl: server.url,
        ...(server.apiKey ? { apiKey: server.apiKey } : {}),
        ...nodeOptionsOf(options, logger),
      });
      untilSignal(async () => agent.stop('graceful_shutdown'));
      try {
        const nodeId = await agent.start();
        process.stdout.write(`joined ${server.url} as ${nodeId}\n`);
      } catch (error) {
        // Stopped while registering: the signal handler sends the tombstone and exits.
        if (isRollcallError(error) && error.code === 'SHUTTING_DOWN') return;
        throw error;
      }
    });

  withServerOptions(program.command('demo').description('Start a simulated fleet against a registry, so you can watch rollcall at work'))
    .option('--nodes <count>', 'fleet size', positiveNumber, 20)
    .option('--interval <seconds>', 'heartbeat interval of each simulated node', positiveNumber, 5)
    .option('--duration <seconds>', 'stop after this long (default: until Ctrl-C)', positiveNumber)
    .action(async (options: ServerOptions & { nodes: number; interval: number; duration?: number }) => {
      const server = serverOf(options);
      await runDemo({
        registryUrl: server.url,
        ...(server.apiKey ? { apiKey: server.apiKey } : {}),
        nodes: Math.round(options.nodes),
        intervalSeconds: options.interval,
        ...(options.duration ? { durationSeconds: options.duration } : {}),
      });
    });

  return program;
}

export async function main(argv: string[]): Promise<void> {
  try {
    await buildProgram().parseAsync(argv);
  } catch (error) {
    const message = isRollcallError(error) ? `${error.code}: ${error.message}` : (error as Error).message;
    // A refused credential: say how to send one (not when the message already names the remedy).
    const hint = isRollcallError(error) && error.code === 'UNAUTHENTICATED' && !error.message.includes('--api-key') ? '\nrollcall: pass an API key with --api-key or ROLLCALL_API_KEY.' : '';
    process.stderr.write(`rollcall: ${message}${hint}\n`);
    process.exitCode = 1;
  }
}
