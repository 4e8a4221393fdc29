// A second backend that must take a write before the store does (atomic Consul mode): the registry
// runs its step first, then the store's commit, and its compensation when the commit fails.
import type { Logger } from 'pino';
import { nodeKey, type NodeRecord } from '../domain/node.js';
import type { NodeWrite, WriteOutcome } from '../store/store.js';

/** Undoes a saga step; it never rejects: a compensation that fails is left to the saga's own repair. */
export type Compensation = () => Promise<void>;

export interface WriteSaga {
  /**
   * Runs before a content-changing registration or a deregistration is queued for the store, with
   * the node as the live view holds it. Throwing refuses the write (nothing reaches the store).
   * Returns what undoes the step should the store fail or reject the write, or null when the step
   * did nothing.
   */
  beforeWrite(write: NodeWrite, current: NodeRecord | undefined): Promise<Compensation | null>;
  /** Once the write whose beforeWrite resolved is settled: committed, refused, or compensated. */
  afterWrite(write: NodeWrite): void;
  /** Throws when the backend would refuse writes now (for /health), without writing anything. */
  probe?(): Promise<void>;
}

export interface SagaGateOptions {
  /** Queues a write for the store (the engine's group commit). */
  submit: (write: NodeWrite) => Promise<WriteOutcome>;
  /** The node as the live view holds it, for the saga's step. */
  current: (namespace: string, nodeId: string) => NodeRecord | undefined;
  logger: Logger;
  saga?: WriteSaga | null;
}

/**
 * The gate every registration and deregistration passes on its way to the store: straight through,
 * or behind the saga's step when there is one.
 */
export class SagaGate {
  private saga: WriteSaga | null;
  /** The saga's write in flight per node: one at a time, so a compensation restores what it saw. */
  private readonly sagaWrites = new Map<string, Promise<unknown>>();

  constructor(private readonly options: SagaGateOptions) {
    this.saga = options.saga ?? null;
  }

  /** Puts `saga` in front of every write from now on (null removes it). */
  use(saga: WriteSaga | null): void {
    this.saga = saga;
  }

  /** Throws when the saga's backend would refuse writes now; passes when there is no saga. */
  async probe(): Promise<void> {
    await this.saga?.probe?.();
  }

  /**
   * Queues a registration or deregistration, behind the saga's step when there is one: the step
   * runs per write (concurrently across nodes, so group commit still batches the store writes that
   * follow), and is compensated when the store rejects the write or the commit fails.
   */
  write(write: NodeWrite, namespace: string, nodeId: string): Promise<WriteOutcome> {
    const { submit } = this.options;
    const saga = this.saga;
    if (!saga) return submit(write);
    const key = nodeKey(namespace, nodeId);
    const previous = this.sagaWrites.get(key) ?? Promise.resolve();
    const run = previous.then(async () => {
      const compensation = await saga.beforeWrite(write, this.options.current(namespace, nodeId));
      try {
        let outcome: WriteOutcome;
        try {
          outcome = await submit(write);
        } catch (error) {
          await this.compensate(compensation, namespace, nodeId);
          throw error;
        }
        if (outcome.status === 'rejected') await this.compensate(compensation, namespace, nodeId);
        return outcome;
      } finally {
        saga.afterWrite(write);
      }
    });
    const settled = run.catch(() => undefined);
    this.sagaWrites.set(key, settled);
    void settled.then(() => {
      if (this.sagaWrites.get(key) === settled) this.sagaWrites.delete(key);
    });
    return run;
  }

  /** Resolves once the saga steps under way (and their compensations) have settled. */
  async settled(): Promise<void> {
    await Promise.all([...this.sagaWrites.values()]);
  }

  private async compensate(compensation: Compensation | null, namespace: string, nodeId: string): Promise<void> {
    if (!compensation) return;
    // The saga repairs a failed compensation itself; this guards the caller's original error.
    await compensation().catch((error: unknown) => this.options.logger.error({ err: error, namespace, nodeId }, 'saga compensation threw'));
  }
}
