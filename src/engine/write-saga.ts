// A second backend that must take a write before the store does (atomic Consul mode): the registry
// runs its step first, then the store's commit, and its compensation when the commit fails.
import type { NodeRecord } from '../domain/node.js';
import type { NodeWrite } from '../store/store.js';

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
