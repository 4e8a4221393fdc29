// Group commit: writes that arrive while a transaction is in flight go together in the next one.
import { RollcallError, isRollcallError } from '../domain/errors.js';
import type { NodeWrite, WriteOutcome } from '../store/store.js';

interface Pending {
  write: NodeWrite;
  resolve: (outcome: WriteOutcome) => void;
  reject: (error: unknown) => void;
}

export type CommitBatch = (writes: NodeWrite[]) => Promise<WriteOutcome[]>;

export class WriteQueue {
  private pending: Pending[] = [];
  private flushing: Promise<void> | null = null;

  constructor(
    private readonly commit: CommitBatch,
    private readonly maxBatch: number,
    private readonly onBatch: (size: number) => void = () => undefined,
  ) {}

  get depth(): number {
    return this.pending.length;
  }

  submit(write: NodeWrite): Promise<WriteOutcome> {
    return new Promise((resolve, reject) => {
      this.pending.push({ write, resolve, reject });
      this.flushing ??= this.drain();
    });
  }

  /** Resolves once everything submitted so far is committed (or failed). */
  async idle(): Promise<void> {
    while (this.flushing) await this.flushing;
  }

  private async drain(): Promise<void> {
    // Yield once so writes submitted in the same tick share the first transaction.
    await new Promise<void>((resolve) => setImmediate(resolve));
    while (this.pending.length > 0) {
      const batch = this.pending.splice(0, this.maxBatch);
      this.onBatch(batch.length);
      try {
        const outcomes = await this.commit(batch.map((item) => item.write));
        batch.forEach((item, index) => item.resolve(outcomes[index] as WriteOutcome));
      } catch (cause) {
        const error = isRollcallError(cause)
          ? cause
          : new RollcallError('STORE_UNAVAILABLE', `The store could not commit the write: ${(cause as Error).message}`, { cause });
        for (const item of batch) item.reject(error);
      }
    }
    this.flushing = null;
  }
}
