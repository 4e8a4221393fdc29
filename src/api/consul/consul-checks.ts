// Runs the HTTP and TCP checks of services registered through the Consul-compatible API, as Consul's
// agent does: each check every Interval (at least 1 s, Consul's minimum), within its Timeout (10 s
// by default). HTTP: a 2xx answer passes, 429 warns, anything else or no answer is critical. TCP: a
// connection passes. The worst status of a service's run checks becomes the node's health; only the
// instance the service was registered with runs its checks, as only that Consul agent would.
import { connect } from 'node:net';
import type { Logger } from 'pino';
import type { Registry } from '../../engine/registry.js';
import { nodeKey, type NodeRecord } from '../../domain/node.js';
import { consulMetadataOf, goDurationMs, healthOfStatus, runnable, type CheckStatus, type ConsulCheck } from './consul-model.js';

const MIN_INTERVAL_MS = 1000;
const DEFAULT_TIMEOUT_MS = 10_000;
const RANK: Record<CheckStatus, number> = { passing: 0, warning: 1, critical: 2 };

export interface CheckResult {
  status: CheckStatus;
  output: string;
}

interface Running {
  namespace: string;
  nodeId: string;
  /** Runnable checks by CheckID, with their latest result. */
  checks: Map<string, { check: ConsulCheck; timer: NodeJS.Timeout; last: CheckResult | null }>;
}

export interface ConsulCheckRunnerOptions {
  registry: Registry;
  /** Node name of this instance as a Consul agent: only its services' checks are run here. */
  agentNode: string;
  logger: Logger;
  /** Told of every result, to show as the check's Output. */
  onResult: (namespace: string, nodeId: string, result: CheckResult) => void;
}

export class ConsulCheckRunner {
  private readonly services = new Map<string, Running>();
  private closed = false;
  /** Aborts the checks in flight at close, so shutdown does not wait for their timeouts. */
  private readonly closing = new AbortController();

  constructor(private readonly options: ConsulCheckRunnerOptions) {}

  /** Starts, restarts or stops the checks of a node after it was registered, changed or removed. */
  sync(node: NodeRecord): void {
    const key = nodeKey(node.namespace, node.node_id);
    this.stop(key);
    if (this.closed || node.status === 'removed') return;
    const consul = consulMetadataOf(node);
    if (!consul || consul.agent !== this.options.agentNode) return;
    const checks = consul.checks.filter(runnable);
    if (checks.length === 0) return;
    const running: Running = { namespace: node.namespace, nodeId: node.node_id, checks: new Map() };
    for (const check of checks) {
      const intervalMs = Math.max(MIN_INTERVAL_MS, goDurationMs(check.Interval ?? '') ?? MIN_INTERVAL_MS);
      // The first run comes at once, so a new service does not wait a whole interval for its health.
      const timer = setTimeout(() => void this.run(key, running, check.CheckID, intervalMs), 0);
      timer.unref();
      running.checks.set(check.CheckID, { check, timer, last: null });
    }
    this.services.set(key, running);
  }

  stop(key: string): void {
    const running = this.services.get(key);
    if (!running) return;
    for (const entry of running.checks.values()) clearTimeout(entry.timer);
    this.services.delete(key);
  }

  close(): void {
    this.closed = true;
    this.closing.abort();
    for (const key of [...this.services.keys()]) this.stop(key);
  }

  private async run(key: string, running: Running, checkId: string, intervalMs: number): Promise<void> {
    const entry = running.checks.get(checkId);
    if (!entry || this.services.get(key) !== running) return;
    const node = this.options.registry.view.get(running.namespace, running.nodeId);
    if (!node || node.status === 'removed') {
      // Deregistered by other means than this API (REST, a tombstone): its checks end with it.
      this.stop(key);
      return;
    }
    const result = await execute(entry.check, this.closing.signal);
    // Stopped or replaced while the check ran: its result belongs to nothing any more.
    if (this.services.get(key) !== running) return;
    entry.last = result;
    entry.timer = setTimeout(() => void this.run(key, running, checkId, intervalMs), intervalMs);
    entry.timer.unref();
    this.options.onResult(running.namespace, running.nodeId, result);
    await this.apply(running);
  }

  /** The worst status of the service's checks that have run, as the node's health. */
  private async apply(running: Running): Promise<void> {
    let worst: CheckStatus | null = null;
    for (const { last } of running.checks.values()) if (last && (worst === null || RANK[last.status] > RANK[worst])) worst = last.status;
    if (worst === null) return;
    const { registry } = this.options;
    const node = registry.view.get(running.namespace, running.nodeId);
    if (!node || node.status !== 'online' || node.health_status === healthOfStatus(worst)) return;
    try {
      await registry.heartbeat({ namespace: running.namespace, node_id: running.nodeId, health_status: healthOfStatus(worst) });
    } catch (err) {
      this.options.logger.warn({ err, namespace: running.namespace, node_id: running.nodeId }, 'could not record a Consul check result');
    }
  }
}

/** Runs one check once. */
export async function execute(check: ConsulCheck, cancel?: AbortSignal): Promise<CheckResult> {
  const timeoutMs = goDurationMs(check.Timeout ?? '') ?? DEFAULT_TIMEOUT_MS;
  if (check.Type === 'http' && check.HTTP !== undefined) return httpCheck(check.HTTP, timeoutMs, cancel);
  if (check.Type === 'tcp' && check.TCP !== undefined) return tcpCheck(check.TCP, timeoutMs, cancel);
  return { status: 'critical', output: `${check.Type.toUpperCase()} checks are not run by rollcall` };
}

async function httpCheck(url: string, timeoutMs: number, cancel?: AbortSignal): Promise<CheckResult> {
  try {
    const timeout = AbortSignal.timeout(timeoutMs);
    const response = await fetch(url, {
      signal: cancel ? AbortSignal.any([timeout, cancel]) : timeout,
      redirect: 'follow',
      headers: { 'user-agent': 'rollcall-consul-check', accept: 'text/plain, text/*, */*' },
    });
    // Consul shows the start of the body as the check's output.
    const body = (await response.text()).slice(0, 4096);
    const line = `HTTP GET ${url}: ${response.status} ${response.statusText} Output: ${body}`;
    if (response.status >= 200 && response.status < 300) return { status: 'passing', output: line };
    if (response.status === 429) return { status: 'warning', output: line };
    return { status: 'critical', output: line };
  } catch (error) {
    const reason = (error as Error).name === 'TimeoutError' ? `timed out after ${timeoutMs} ms` : describe(error);
    return { status: 'critical', output: `Get "${url}": ${reason}` };
  }
}

function tcpCheck(address: string, timeoutMs: number, cancel?: AbortSignal): Promise<CheckResult> {
  const match = /^\[?([^\]]+?)\]?:(\d+)$/.exec(address);
  if (!match) return Promise.resolve({ status: 'critical', output: `TCP address ${address} is not host:port` });
  const [, host, port] = match as unknown as [string, string, string];
  return new Promise((resolve) => {
    const socket = connect({ host, port: Number(port), timeout: timeoutMs, ...(cancel ? { signal: cancel } : {}) });
    const done = (result: CheckResult): void => {
      socket.destroy();
      resolve(result);
    };
    socket.once('connect', () => done({ status: 'passing', output: `TCP connect ${address}: Success` }));
    socket.once('timeout', () => done({ status: 'critical', output: `dial tcp ${address}: i/o timeout after ${timeoutMs} ms` }));
    socket.once('error', (error) => done({ status: 'critical', output: `dial tcp ${address}: ${describe(error)}` }));
  });
}

function describe(error: unknown): string {
  const cause = (error as { cause?: unknown }).cause;
  const message = (error as Error).message;
  return cause instanceof Error ? `${message}: ${cause.message}` : message;
}
