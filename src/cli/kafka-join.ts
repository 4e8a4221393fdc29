// `rollcall join --transport kafka`: this machine as a node of the event plane. A NodeAgent over a
// BusTransport on Kafka announces what the HTTP join registers (role, labels, host, capabilities),
// heartbeats, answers the registry's introspection requests, and leaves with a tombstone.
import { randomUUID } from 'node:crypto';
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { hostname as osHostname } from 'node:os';
import { dirname } from 'node:path';
import type { Logger } from 'pino';
import { BusTransport } from '../agent/bus-transport.js';
import { defaultNodeIdFile, detectIp, readNodeId } from '../agent/dagi-agent.js';
import { NodeAgent, type IntrospectionState } from '../agent/node-agent.js';
import { KafkaBus } from '../bus/kafka-bus.js';
import { RollcallError } from '../domain/errors.js';
import { topicNames } from '../domain/events.js';
import { isJsonObject, type JsonObject } from '../domain/json.js';

export interface KafkaJoinOptions {
  brokers: string[];
  topicPrefix: string;
  role: string;
  /** Announced node_type; the HTTP join's registrations are of type `node`, here it defaults to the role. */
  nodeType: string;
  labels: string[];
  namespace?: string;
  /** Use the namespace's own topics ({prefix}.ns.{namespace}.*; the registry's ROLLCALL_KAFKA_NAMESPACE_TOPICS). */
  namespaceTopics?: boolean;
  /** Lease asked of the registry: offline this long after the last heartbeat. */
  ttlSeconds: number;
  intervalSeconds: number;
  /** Where the node_id is kept across restarts; default as the HTTP join's. */
  nodeIdFile?: string;
  hostname?: string;
  ip?: string;
  /** JSON object announced as the capabilities; read at start and at every re-announcement. */
  capabilitiesFile?: string;
  logger: Logger;
}

/** The node_id kept in `file`, or a new one written there (the registry's own `node-<uuid>` shape). */
async function loadOrCreateNodeId(file: string): Promise<string> {
  const kept = await readNodeId(file);
  if (kept !== undefined) return kept;
  const nodeId = `node-${randomUUID()}`;
  await mkdir(dirname(file), { recursive: true });
  await writeFile(file, `${nodeId}\n`, { mode: 0o644 });
  return nodeId;
}

async function readCapabilities(file: string): Promise<JsonObject> {
  let parsed: unknown;
  try {
    parsed = JSON.parse(await readFile(file, 'utf8'));
  } catch (cause) {
    throw new RollcallError('CONFIG_INVALID', `Cannot read capabilities from ${file}: ${(cause as Error).message}`, { cause });
  }
  if (!isJsonObject(parsed)) throw new RollcallError('CONFIG_INVALID', `Capabilities file ${file} does not hold a JSON object.`);
  return parsed;
}

export class KafkaJoin {
  private readonly bus: KafkaBus;
  private agent: NodeAgent | null = null;
  private starting: Promise<string> | null = null;
  private stopping: Promise<void> | null = null;
  private stopRequested = false;

  constructor(private readonly options: KafkaJoinOptions) {
    this.bus = new KafkaBus({ brokers: options.brokers, clientId: 'rollcall-join', logger: options.logger });
  }

  /** `kafka://<brokers>/<prefix>`: where this node announces itself. */
  get target(): string {
    return `kafka://${this.options.brokers.join(',')}/${this.options.topicPrefix}`;
  }

  /**
   * Connects, announces and starts heartbeats; resolves with the node_id. Rejects with
   * BUS_UNAVAILABLE when Kafka does not answer, SHUTTING_DOWN when stop() came first.
   */
  start(): Promise<string> {
    this.starting ??= this.startOnce();
    return this.starting;
  }

  private async startOnce(): Promise<string> {
    try {
      const nodeId = await loadOrCreateNodeId(this.options.nodeIdFile ?? (await defaultNodeIdFile()));
      // A bad capabilities file fails the start, not just a later re-announcement.
      if (this.options.capabilitiesFile !== undefined) await readCapabilities(this.options.capabilitiesFile);
      this.assertNotStopping();
      await this.bus.connect();
      this.assertNotStopping();
      const { namespace, logger } = this.options;
      this.agent = new NodeAgent({
        identity: { node_id: nodeId, node_type: this.options.nodeType, node_name: this.hostname, ...(namespace === undefined ? {} : { namespace }) },
        introspect: () => this.introspect(),
        transport: new BusTransport({
          bus: this.bus,
          topics: topicNames(this.options.topicPrefix),
          nodeId,
          logger,
          ...(this.options.namespaceTopics === true ? { namespaceTopics: true, ...(namespace === undefined ? {} : { namespace }) } : {}),
        }),
        heartbeatIntervalMs: this.options.intervalSeconds * 1000,
        leaseTtlSeconds: this.options.ttlSeconds,
        logger,
      });
      await this.agent.start();
      this.assertNotStopping();
      return nodeId;
    } catch (error) {
      // Release the bus so the process can exit; a stop() under way does it itself, with its reason.
      if (!this.stopRequested) await this.release('startup_failed').catch(() => undefined);
      throw error;
    }
  }

  /** Re-reads the capabilities and announces them; false when the node is not running (yet). */
  async announce(reason = 'capability_change'): Promise<boolean> {
    if (!this.agent?.running || this.stopRequested) return false;
    await this.agent.announce(reason);
    return true;
  }

  /** Sends the tombstone (once a start announced the node) and closes the bus. */
  stop(reason = 'graceful_shutdown'): Promise<void> {
    this.stopRequested = true;
    this.stopping ??= (async () => {
      // Let a start under way finish or fail first, so a node it announced gets its tombstone.
      await this.starting?.catch(() => undefined);
      await this.release(reason);
    })();
    return this.stopping;
  }

  private async release(reason: string): Promise<void> {
    try {
      await this.agent?.stop(reason);
    } finally {
      await this.bus.close();
    }
  }

  private assertNotStopping(): void {
    if (this.stopRequested) throw new RollcallError('SHUTTING_DOWN', 'The node was stopped before it joined.');
  }

  private get hostname(): string {
    return this.options.hostname ?? osHostname();
  }

  /** What the HTTP join registers, in the introspection's shape (role, labels, host travel in metadata). */
  private async introspect(): Promise<IntrospectionState> {
    const { role, labels, capabilitiesFile } = this.options;
    return {
      capabilities: capabilitiesFile === undefined ? {} : await readCapabilities(capabilitiesFile),
      metadata: { hostname: this.hostname, ip: this.options.ip ?? detectIp(), role, labels, agent: 'rollcall-join', transport: 'kafka', pid: process.pid },
      health_status: 'healthy',
    };
  }
}
