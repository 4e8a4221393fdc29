// The DAGI bootstrap agent: registers this machine with a role and labels, keeps its node_id across
// restarts, heartbeats until stopped, re-registers when the registry asks, and leaves with a tombstone.
import { access, constants, mkdir, readFile, writeFile } from 'node:fs/promises';
import { homedir, hostname, networkInterfaces } from 'node:os';
import { dirname, join } from 'node:path';
import type { Logger } from 'pino';
import { RollcallError, isRollcallError } from '../domain/errors.js';
import type { JsonObject } from '../domain/json.js';
import { RollcallClient } from '../client/rollcall-client.js';

export interface DagiAgentOptions {
  registryUrl: string;
  /** API key sent as `Authorization: Bearer` (scope nodes:write), once the registry requires one. */
  apiKey?: string;
  role: string;
  labels: string[];
  namespace?: string;
  /** Lease the registry grants; it takes the node offline this long after the last heartbeat. */
  ttlSeconds: number;
  intervalSeconds: number;
  nodeIdFile?: string;
  hostname?: string;
  ip?: string;
  metadata?: JsonObject;
  capabilities?: JsonObject;
  logger: Logger;
}

export const SYSTEM_NODE_ID_FILE = '/etc/rollcall/node_id';

export function userNodeIdFile(): string {
  return join(process.env.XDG_CONFIG_HOME ?? join(homedir(), '.config'), 'rollcall', 'node_id');
}

/** /etc/rollcall/node_id when it can be written, else the user's config folder. */
export async function defaultNodeIdFile(): Promise<string> {
  try {
    await mkdir(dirname(SYSTEM_NODE_ID_FILE), { recursive: true });
    await access(dirname(SYSTEM_NODE_ID_FILE), constants.W_OK);
    return SYSTEM_NODE_ID_FILE;
  } catch {
    return userNodeIdFile();
  }
}

/** The first non-internal IPv4 address, else loopback. */
export function detectIp(): string {
  for (const addresses of Object.values(networkInterfaces())) {
    for (const address of addresses ?? []) {
      if (address.family === 'IPv4' && !address.internal) return address.address;
    }
  }
  return '127.0.0.1';
}

/** The node_id kept in `file`, or undefined when there is none (yet). */
export async function readNodeId(file: string): Promise<string | undefined> {
  try {
    const text = (await readFile(file, 'utf8')).trim();
    return text.length > 0 ? text : undefined;
  } catch {
    return undefined;
  }
}

export class DagiAgent {
  private readonly client: RollcallClient;
  private readonly incarnation = Date.now();
  private timer: NodeJS.Timeout | null = null;
  private nodeIdValue: string | undefined;
  private nodeIdFile: string | undefined;
  private beating: Promise<void> | null = null;
  private stopped = false;
  private starting: Promise<string> | null = null;

  constructor(private readonly options: DagiAgentOptions) {
    this.client = new RollcallClient(options.registryUrl, options.apiKey === undefined ? {} : { apiKey: options.apiKey });
  }

  get nodeId(): string | undefined {
    return this.nodeIdValue;
  }

  /** Registers (retrying until the registry answers) and starts heartbeats. */
  start(): Promise<string> {
    this.starting ??= this.startOnce();
    return this.starting;
  }

  private async startOnce(): Promise<string> {
    this.nodeIdFile = this.options.nodeIdFile ?? (await defaultNodeIdFile());
    this.nodeIdValue = await readNodeId(this.nodeIdFile);
    for (let attempt = 1; ; attempt += 1) {
      if (this.stopped) throw new RollcallError('SHUTTING_DOWN', 'The agent was stopped before it registered.');
      try {
        await this.register();
        break;
      } catch (error) {
        if (!isRollcallError(error) || error.code !== 'REGISTRY_UNAVAILABLE' || this.stopped) throw error;
        const delayMs = Math.min(10_000, 250 * 2 ** attempt) * (0.5 + Math.random() / 2);
        this.options.logger.warn({ attempt, delayMs: Math.round(delayMs) }, 'registry unavailable; retrying');
        await new Promise((resolve) => setTimeout(resolve, delayMs));
      }
    }
    if (!this.stopped) {
      this.timer = setInterval(() => {
        this.beating ??= this.beat().finally(() => {
          this.beating = null;
        });
      }, this.options.intervalSeconds * 1000);
    }
    return this.nodeIdValue as string;
  }

  private async register(): Promise<void> {
    const response = await this.client.register({
      ...(this.nodeIdValue ? { node_id: this.nodeIdValue } : {}),
      hostname: this.options.hostname ?? hostname(),
      ip: this.options.ip ?? detectIp(),
      role: this.options.role,
      labels: this.options.labels,
      ...(this.options.namespace ? { namespace: this.options.namespace } : {}),
      metadata: { ...this.options.metadata, agent: 'rollcall-join', pid: process.pid },
      ...(this.options.capabilities ? { capabilities: this.options.capabilities } : {}),
      incarnation: this.incarnation,
      lease_ttl_seconds: this.options.ttlSeconds,
    });
    if (response.node_id !== this.nodeIdValue) {
      this.nodeIdValue = response.node_id;
      const file = this.nodeIdFile as string;
      await mkdir(dirname(file), { recursive: true });
      await writeFile(file, `${response.node_id}\n`, { mode: 0o644 });
    }
    this.options.logger.info({ nodeId: response.node_id, outcome: response.outcome, nodeIdFile: this.nodeIdFile }, 'registered');
  }

  private async beat(): Promise<void> {
    try {
      await this.client.heartbeat({
        node_id: this.nodeIdValue as string,
        incarnation: this.incarnation,
        ...(this.options.namespace ? { namespace: this.options.namespace } : {}),
      });
    } catch (error) {
      if (isRollcallError(error) && (error.code === 'REGISTRATION_REQUIRED' || error.code === 'NODE_NOT_FOUND')) {
        this.options.logger.warn({ code: error.code }, 'registry asks for registration; registering again');
        await this.register().catch((err: unknown) => this.options.logger.warn({ err }, 'registration failed'));
        return;
      }
      this.options.logger.warn({ err: error }, 'heartbeat failed');
    }
  }

  /** Stops heartbeats and sends the tombstone. */
  async stop(reason = 'graceful_shutdown'): Promise<void> {
    this.stopped = true;
    // A registration in flight may still commit: wait for it, so its node gets the tombstone too.
    if (this.starting) await this.starting.catch(() => undefined);
    if (this.timer) clearInterval(this.timer);
    this.timer = null;
    if (this.beating) await this.beating;
    if (!this.nodeIdValue) return;
    try {
      await this.client.deregister(this.nodeIdValue, { reason, incarnation: this.incarnation, ...(this.options.namespace ? { namespace: this.options.namespace } : {}) });
      this.options.logger.info({ nodeId: this.nodeIdValue, reason }, 'deregistered');
    } catch (error) {
      throw isRollcallError(error) ? error : new RollcallError('REGISTRY_UNAVAILABLE', (error as Error).message, { cause: error });
    }
  }
}
